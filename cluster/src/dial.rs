//! Joining the cluster: keep dialing the seeds this node is not connected to, over TLS, with
//! backoff; a link that breaks is dialed again the same way. Links are only made to seeds (and
//! from nodes that name this one), so each node's seeds list the other nodes.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use ractor_cluster::NodeServerMessage;
use tokio::task::JoinHandle;

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How often the links are checked when every seed is connected.
const CHECK_EVERY: Duration = Duration::from_secs(1);
const HANDSHAKE_GRACE: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn start(
    server: ActorRef<NodeServerMessage>,
    seeds: Vec<String>,
    own: String,
    tls: tokio_rustls::TlsConnector,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut retry = FIRST_RETRY;
        // A dialed seed is given time to finish its handshake before it is dialed again.
        let mut dialed: HashMap<String, Instant> = HashMap::new();
        loop {
            let connected = match ractor::call_t!(server, NodeServerMessage::GetSessions, 2000) {
                // Busy (a burst of handshakes): look again next round.
                Err(ractor::RactorErr::Timeout) => {
                    tokio::time::sleep(CHECK_EVERY).await;
                    continue;
                }
                Ok(sessions) => {
                    let mut addrs = HashSet::new();
                    for info in sessions.values() {
                        if let Some(name) = &info.peer_name {
                            addrs.extend(resolve(&name.connection_string).await);
                        }
                    }
                    addrs
                }
                // The node server is gone: the node is shutting down.
                Err(_) => return,
            };
            let own = resolve(&own).await;
            let mut missing = false;
            for seed in &seeds {
                let addrs = resolve(seed).await;
                if addrs.is_empty() || addrs.iter().any(|a| own.contains(a)) {
                    continue;
                }
                if addrs.iter().any(|a| connected.contains(a)) {
                    continue;
                }
                missing = true;
                if dialed
                    .get(seed)
                    .is_some_and(|at| at.elapsed() < HANDSHAKE_GRACE)
                {
                    continue;
                }
                dialed.insert(seed.clone(), Instant::now());
                // Bounded: a seed whose host drops packets must not hold up the others.
                let name = match crate::tls::server_name(seed) {
                    Ok(name) => name,
                    Err(e) => {
                        tracing::warn!(%seed, error = %e, "cluster seed has no usable name");
                        continue;
                    }
                };
                match tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    ractor_cluster::client_connect_enc(&server, seed.as_str(), tls.clone(), name),
                )
                .await
                {
                    Ok(Ok(())) => tracing::info!(%seed, "dialed a cluster seed"),
                    Ok(Err(e)) => {
                        tracing::debug!(%seed, error = %e, "cluster seed not reachable yet")
                    }
                    Err(_) => tracing::debug!(%seed, "cluster seed did not answer the connection"),
                }
            }
            if missing {
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            } else {
                retry = FIRST_RETRY;
                tokio::time::sleep(CHECK_EVERY).await;
            }
        }
    })
}

async fn resolve(addr: &str) -> HashSet<SocketAddr> {
    match tokio::net::lookup_host(addr).await {
        Ok(addrs) => addrs.collect(),
        Err(_) => HashSet::new(),
    }
}
