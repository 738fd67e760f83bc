//! The cluster listener: TLS handshakes each under a deadline, off the accept loop.
//!
//! ractor_cluster's own TLS listener awaits each handshake inside its accept loop with no
//! deadline, so one connection that never sends a ClientHello would stop a node from taking any
//! peer again. This loop accepts on `CLUSTER_PORT`, runs each handshake in its own task with
//! [`HANDSHAKE`] to finish, and hands the encrypted stream to the `NodeServer` exactly as its
//! listener would (`ConnectionOpened`). The `NodeServer`'s own listener is bound to an
//! ephemeral loopback port (with the same TLS settings), and its announced address is set back
//! to `CLUSTER_PORT`.

use std::net::SocketAddr;
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How long a peer has to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Binds `addr` and serves it; the task and the port actually bound.
pub(crate) async fn start(
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    server: ActorRef<NodeServerMessage>,
) -> std::io::Result<(JoinHandle<()>, u16)> {
    let listener = TcpListener::bind(addr).await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let server = server.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(local) = stream.local_addr() else {
                    return;
                };
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = server.cast(NodeServerMessage::ConnectionOpened {
                            stream: Box::new(NetworkStream::TlsServer {
                                peer_addr: peer,
                                local_addr: local,
                                stream,
                            }),
                            is_server: true,
                        });
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "cluster peer refused: TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "cluster peer refused: no TLS handshake in time")
                    }
                }
            });
        }
    });
    Ok((task, port))
}
