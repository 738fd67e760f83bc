//! The cluster speaks mutual TLS: a peer that dials in plain TCP, or presents a certificate from
//! another CA, never becomes a member, though it knows the cookie. The same probe is first shown
//! joining a plaintext listener, and joining the node with the cluster's own certificate, so a
//! refusal means the defence and not a broken probe.

mod common;

use std::time::Duration;

use aurora_cluster::tls::{ClusterTls, TlsFiles};
use common::cluster::{TestCluster, COOKIE};
use common::pki::{identity, Identity};
use ractor::{Actor, ActorRef};
use ractor_cluster::{IncomingEncryptionMode, NodeServer, NodeServerMessage};

/// A probe node of our own: a ractor_cluster listener (plain, or TLS with `tls`).
async fn probe(name: &str, tls: Option<&ClusterTls>) -> ActorRef<NodeServerMessage> {
    let port = common::free_port();
    let server = NodeServer::new(
        port,
        COOKIE.to_string(),
        name.to_string(),
        "127.0.0.1".to_string(),
        tls.map(|t| IncomingEncryptionMode::Tls(t.acceptor.clone())),
        None,
    )
    .with_listen_addr("127.0.0.1".parse().unwrap());
    let (server, _) = Actor::spawn(None, server, ()).await.unwrap();
    server
}

/// Whether `probe` has an authenticated link to a peer within `wait`.
async fn joined(probe: &ActorRef<NodeServerMessage>, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if let Ok(sessions) = ractor::call_t!(probe, NodeServerMessage::GetSessions, 1000) {
            if sessions.values().any(|s| s.peer_name.is_some()) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn load(id: &Identity) -> ClusterTls {
    ClusterTls::load(&TlsFiles {
        cert: &id.cert,
        key: &id.key,
        ca: &id.ca,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_foreign_certificate_peers_are_refused() {
    // The probe works: a plaintext probe links to a plaintext listener that has the cookie,
    // as a node without TLS would let it.
    let plain_port = common::free_port();
    let plain_listener = NodeServer::new(
        plain_port,
        COOKIE.to_string(),
        "plain-listener".to_string(),
        "127.0.0.1".to_string(),
        None,
        None,
    )
    .with_listen_addr("127.0.0.1".parse().unwrap());
    let _ = Actor::spawn(None, plain_listener, ()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dialer = probe("dialer", None).await;
    ractor_cluster::client_connect(&dialer, format!("127.0.0.1:{plain_port}"))
        .await
        .unwrap();
    assert!(
        joined(&dialer, Duration::from_secs(5)).await,
        "plaintext probes never linked"
    );

    let cluster = TestCluster::start(1, vec![]).await;
    let node = format!("127.0.0.1:{}", cluster.nodes[0].cluster);
    let name = aurora_cluster::tls::server_name(&node).unwrap();

    // Plain TCP to the node, with the right cookie: no link.
    let plain = probe("plain", None).await;
    let _ = ractor_cluster::client_connect(&plain, node.as_str()).await;
    assert!(
        !joined(&plain, Duration::from_secs(3)).await,
        "a plaintext peer joined"
    );

    // TLS with a certificate from another CA, and the cookie: no link.
    let dir = tempfile::tempdir().unwrap();
    let foreign = load(&identity(dir.path(), "foreign"));
    let evil = probe("evil", Some(&foreign)).await;
    let _ = ractor_cluster::client_connect_enc(
        &evil,
        node.as_str(),
        foreign.connector.clone(),
        name.clone(),
    )
    .await;
    assert!(
        !joined(&evil, Duration::from_secs(3)).await,
        "a peer with a foreign certificate joined"
    );

    // A connection that never starts its handshake holds up nobody (a listener that waited
    // on it would take no peer again).
    let _stalled = tokio::net::TcpStream::connect(node.as_str()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The cluster's own certificate: linked.
    let ours = load(&cluster.tls);
    let friend = probe("friend", Some(&ours)).await;
    ractor_cluster::client_connect_enc(&friend, node.as_str(), ours.connector.clone(), name)
        .await
        .unwrap();
    assert!(
        joined(&friend, Duration::from_secs(5)).await,
        "the cluster's own certificate did not link"
    );
}
