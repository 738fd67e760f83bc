//! The WebSocket chat edge (PROTOCOL.md). One task per connection: it authenticates the
//! ticket, then relays client frames to the session's owner (this node's sessions supervisor or
//! another node's, through the cluster) and the sessions' frames back,
//! pings every 20 s and drops a peer silent for 30 s. A dropped socket does not stop a turn.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_actors::protocol::{ClientFrame, ErrorCode, ServerFrame};
use aurora_cluster::{Cluster, Conn, Forward};
use aurora_storage::auth::Principal;
use aurora_storage::cache::{Cache, RateDecision};
use aurora_storage::tickets::Tickets;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use uuid::Uuid;

mod budget;
mod limits;

use budget::{FrameBudget, Spend};
use limits::{PerUser, Sockets};

const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT_LIMIT: Duration = Duration::from_secs(30);
/// How long a client may take to send `init` when the ticket is not in the URL.
const INIT_WAIT: Duration = Duration::from_secs(10);

pub struct WsState {
    pub tickets: Tickets,
    /// Each query checks the account is still a member, with its role as it is now.
    pub accounts: aurora_storage::auth::Accounts,
    pub cache: Cache,
    /// Where a session's messages go: this node's sessions or the owner node's.
    pub cluster: Cluster,
    /// Whether this node has an LLM provider, i.e. takes queries at all.
    pub chat_enabled: bool,
    pub max_frame_bytes: usize,
    pub rate_limit: (u32, Duration),
    /// Sockets open at once on this node, and authenticated connections per user.
    pub max_connections: usize,
    pub max_per_user: usize,
    /// How long the WebSocket handshake may take (a client that opens a socket and sends
    /// nothing must not hold it).
    pub handshake_wait: Duration,
    pub sockets: Sockets,
    pub per_user: PerUser,
}

pub struct WsServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// Tells the open connections to close: when idle ([`Closing::Drain`]) or at once.
    closing: watch::Sender<Closing>,
    /// Connections open now.
    open: Arc<AtomicUsize>,
}

/// What the open connections are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Closing {
    Open,
    /// Close as soon as no query of the connection waits for its END.
    Drain,
    Now,
}

impl WsServer {
    /// Stops accepting new connections; open ones go on (see [`WsServer::close_all`]).
    pub async fn stop_accepting(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Closes each open connection with `1001 going away` as soon as none of its queries waits
    /// for an END: clients move to another node between turns, never in the middle of one.
    pub fn drain(&self) {
        self.closing.send_replace(Closing::Drain);
    }

    /// Connections still open.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Closes every open connection with `1001 going away` (clients reconnect to another node).
    pub fn close_all(&self) {
        self.closing.send_replace(Closing::Now);
    }

    /// Stops accepting and closes the open connections.
    pub async fn shutdown(mut self) {
        self.stop_accepting().await;
        self.close_all();
    }
}

pub async fn serve_ws(state: WsState, listener: TcpListener) -> std::io::Result<WsServer> {
    let addr = listener.local_addr()?;
    let state = Arc::new(state);
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let (closing, closing_rx) = watch::channel(Closing::Open);
    let open = Arc::new(AtomicUsize::new(0));
    let counted = open.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Some(socket) = state.sockets.admit(state.max_connections) else {
                            tracing::warn!(%peer, cap = state.max_connections, "websocket refused: the node's connection cap is reached");
                            drop(stream);
                            continue;
                        };
                        // Frames are small and each is flushed as sent: without this, Nagle
                        // holds the second of two quick frames until the client's delayed ACK
                        // (about 40 ms a turn).
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                        }
                        let state = state.clone();
                        let closing = closing_rx.clone();
                        let counted = counted.clone();
                        tokio::spawn(async move {
                            let _socket = socket;
                            if let Err(e) = connection(state, stream, closing, counted).await {
                                tracing::debug!(%peer, error = %e, "websocket connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "websocket accept failed");
                        // Out of descriptors, most likely: give open connections time to end.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = &mut stop_rx => break,
            }
        }
    });
    tracing::info!(%addr, "websocket edge listening");
    Ok(WsServer {
        addr,
        stop: Some(stop_tx),
        task: Some(task),
        closing,
        open,
    })
}

fn text(frame: &ServerFrame) -> Message {
    Message::Text(serde_json::to_string(frame).unwrap_or_default().into())
}

fn close(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }))
}

/// Counts an open connection (in `/metrics` and for the server) for as long as it lives.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(count: Arc<AtomicUsize>) -> OpenConnection {
        aurora_actors::metrics::OPEN_WEBSOCKETS.inc();
        count.fetch_add(1, Ordering::SeqCst);
        OpenConnection(count)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        aurora_actors::metrics::OPEN_WEBSOCKETS.dec();
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

// The handshake callback's signature (and its large error type) is tungstenite's.
#[allow(clippy::result_large_err)]
async fn connection(
    state: Arc<WsState>,
    stream: TcpStream,
    mut closing: watch::Receiver<Closing>,
    counted: Arc<AtomicUsize>,
) -> Result<(), WsError> {
    let mut url_token: Option<String> = None;
    let callback = |req: &Request, resp: Response| {
        url_token = req.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        });
        Ok(resp)
    };
    // Small buffers: tungstenite's defaults (128 KiB to read, 128 KiB to write) made an idle
    // connection cost about 125 KiB; chat frames are small, and each is flushed as sent.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(state.max_frame_bytes))
        .max_frame_size(Some(state.max_frame_bytes));
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    let ws = match tokio::time::timeout(state.handshake_wait, handshake).await {
        Ok(ws) => ws?,
        Err(_) => {
            tracing::debug!("websocket handshake timed out");
            return Ok(());
        }
    };
    let (mut sink, mut incoming) = ws.split();

    let token = match url_token {
        Some(t) => Some(t),
        None => match tokio::time::timeout(INIT_WAIT, incoming.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => match ClientFrame::parse(&t) {
                Ok(ClientFrame::Init { token }) => Some(token),
                _ => None,
            },
            _ => None,
        },
    };
    let who = match &token {
        Some(t) => redeem(&state, t).await,
        None => Err("send a ticket: ?token= in the URL or an init frame first".to_string()),
    };
    let (who, bound_to) = match who {
        Ok(p) => p,
        Err(reason) => {
            sink.send(text(&ServerFrame::error(
                ErrorCode::Unauthorized,
                reason,
                None,
            )))
            .await?;
            sink.send(close(CloseCode::Policy, "unauthorized")).await?;
            return Ok(());
        }
    };
    let Some(_user_slot) = state.per_user.admit(who.user_id, state.max_per_user) else {
        let reason = format!(
            "at most {} connections per user; close one and try again",
            state.max_per_user
        );
        sink.send(text(&ServerFrame::error(
            ErrorCode::RateLimited,
            reason,
            None,
        )))
        .await?;
        sink.send(close(CloseCode::Again, "too many connections"))
            .await?;
        return Ok(());
    };
    // Counted from here: a socket that never finished its handshake or authenticated holds
    // up no drain.
    let _open = OpenConnection::new(counted);
    let (frames_tx, mut frames_rx) = mpsc::channel::<ServerFrame>(1024);
    let conn = state.cluster.open(frames_tx, token.unwrap_or_default());
    sink.send(text(&ServerFrame::start())).await?;
    let mut ticker = tokio::time::interval(PING_EVERY);
    ticker.tick().await;
    let mut last_seen = Instant::now();
    // Sessions with a query of this connection waiting for its END.
    let mut waiting: HashSet<Uuid> = HashSet::new();
    let mut budget = FrameBudget::new();
    loop {
        let idle = waiting.is_empty();
        if *closing.borrow() == Closing::Now || (idle && *closing.borrow() == Closing::Drain) {
            let _ = sink
                .send(close(CloseCode::Away, "the node is shutting down"))
                .await;
            break;
        }
        tokio::select! {
            msg = incoming.next() => {
                last_seen = Instant::now();
                if matches!(msg, Some(Ok(Message::Text(_) | Message::Binary(_)))) {
                    match budget.spend() {
                        Spend::Allowed => {}
                        Spend::Refuse => {
                            let msg_text = "too many frames on this connection; slow down";
                            sink.send(text(&ServerFrame::error(ErrorCode::RateLimited, msg_text, None))).await?;
                            continue;
                        }
                        Spend::Drop => continue,
                        Spend::Close => {
                            let _ = sink.send(close(CloseCode::Policy, "too many frames")).await;
                            break;
                        }
                    }
                }
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        match client_frame(&state, (&who, &bound_to), &t, &conn).await {
                            Ok(Some(session_id)) => {
                                waiting.insert(session_id);
                            }
                            Ok(None) => {}
                            Err(reply) if reply.is_unauthorized() => {
                                sink.send(text(&reply)).await?;
                                sink.send(close(CloseCode::Policy, "unauthorized")).await?;
                                break;
                            }
                            Err(reply) => sink.send(text(&reply)).await?,
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        sink.send(text(&ServerFrame::error(ErrorCode::BadMessage, "frames are JSON text", None))).await?;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {} // ping / pong: tungstenite answers pings itself
                    Some(Err(WsError::Capacity(e))) => {
                        let _ = sink.send(close(CloseCode::Size, &e.to_string())).await;
                        break;
                    }
                    Some(Err(e)) => return Err(e),
                }
            }
            Some(frame) = frames_rx.recv() => {
                if let Some(session_id) = frame.settles() {
                    waiting.remove(&session_id);
                    conn.settled(session_id);
                }
                sink.send(text(&frame)).await?;
            }
            changed = closing.changed() => {
                // The server itself is gone: close now (a change is looked at above).
                if changed.is_err() {
                    let _ = sink.send(close(CloseCode::Away, "the node is shutting down")).await;
                    break;
                }
            }
            _ = ticker.tick() => {
                if last_seen.elapsed() > SILENT_LIMIT {
                    let _ = sink.send(close(CloseCode::Away, "no answer to pings")).await;
                    break;
                }
                sink.send(Message::Ping(Vec::new().into())).await?;
            }
        }
    }
    Ok(())
}

/// Handles one client frame: `Ok(Some(session))` when a query went to that session (its END
/// is awaited), `Err(frame)` to answer with directly.
async fn client_frame(
    state: &WsState,
    (ticket_who, bound_to): (&Principal, &str),
    raw: &str,
    conn: &Conn,
) -> Result<Option<Uuid>, ServerFrame> {
    let frame = match ClientFrame::parse(raw) {
        Ok(f) => f,
        Err(e) => return Err(ServerFrame::error(e.code, e.message, None)),
    };
    if matches!(frame, ClientFrame::Init { .. }) {
        return Err(ServerFrame::error(
            ErrorCode::BadMessage,
            "already authenticated",
            None,
        ));
    }
    let who = &current(state, ticket_who, bound_to).await?;
    if !state.chat_enabled {
        return Err(ServerFrame::error(
            ErrorCode::LlmUnavailable,
            "no LLM provider is configured on this server",
            None,
        ));
    }
    let (session_id, msg) = match frame {
        ClientFrame::Init { .. } => {
            return Err(ServerFrame::error(
                ErrorCode::BadMessage,
                "already authenticated",
                None,
            ))
        }
        ClientFrame::Query {
            query,
            session_id,
            mode,
            model,
        } => {
            let (limit, window) = state.rate_limit;
            match state
                .cache
                .rate_limit(&format!("aurora:ws-rate:{}", who.user_id), limit, window)
                .await
            {
                Ok(RateDecision::Allowed { .. }) => {}
                Ok(RateDecision::Limited { retry_after }) => {
                    let text = format!(
                        "at most {limit} queries per {} s; try again in {} s",
                        window.as_secs(),
                        retry_after.as_secs().max(1)
                    );
                    return Err(ServerFrame::error(
                        ErrorCode::RateLimited,
                        text,
                        Some(session_id),
                    ));
                }
                Err(e) => {
                    return Err(ServerFrame::error(
                        ErrorCode::Internal,
                        e.to_string(),
                        Some(session_id),
                    ))
                }
            }
            (session_id, Forward::Query { query, mode, model })
        }
        ClientFrame::ConfirmationResponse {
            confirmation_id,
            decision,
            session_id,
        } => (
            session_id,
            Forward::Decision {
                confirmation_id,
                decision,
            },
        ),
        ClientFrame::Control { session_id, .. } => (session_id, Forward::Cancel),
    };
    route(state, who, conn, session_id, msg)
}

/// Sends a client's message to its session; `Some(session)` for a query (its END is awaited).
// The refusal is the frame sent straight back, as `client_frame`'s is: not worth a box.
#[allow(clippy::result_large_err)]
fn route(
    state: &WsState,
    who: &Principal,
    conn: &Conn,
    session_id: Uuid,
    msg: Forward,
) -> Result<Option<Uuid>, ServerFrame> {
    let query = matches!(msg, Forward::Query { .. });
    // The session's owner may be another node: the cluster forwards there and relays back.
    state
        .cluster
        .route(conn, session_id, who, msg)
        .map_err(|f| *f)?;
    Ok(query.then_some(session_id))
}

/// Redeems a ticket and checks the API token it is bound to is alive: the principal, and the
/// token's hash (kept for the connection's life).
async fn redeem(state: &WsState, ticket: &str) -> Result<(Principal, String), String> {
    let (who, bound_to) = state
        .tickets
        .redeem_bound(ticket)
        .await
        .map_err(|e| e.to_string())?;
    let bound_to = bound_to.ok_or_else(|| "invalid ticket".to_string())?;
    let now = current(state, &who, &bound_to)
        .await
        .map_err(|_| "the token this ticket came from is no longer valid".to_string())?;
    Ok((now, bound_to))
}

/// The caller as things stand now, checked at every frame: the API token the connection was
/// opened with must still be alive (revoked, logged out, expired or its member removed: the
/// connection is refused and closed), and the role is the lower of the ticket's and the
/// member's current one (a demotion holds from the next frame; a promotion from the next
/// connection). Cheap: the token lookup is the per-node cache, which every revocation drops.
async fn current(
    state: &WsState,
    ticket_who: &Principal,
    bound_to: &str,
) -> Result<Principal, ServerFrame> {
    match state.accounts.authenticate_hash(bound_to).await {
        Ok(p) if p.user_id == ticket_who.user_id && p.org_id == ticket_who.org_id => {
            let mut who = ticket_who.clone();
            who.role = who.role.min(p.role);
            Ok(who)
        }
        Ok(_) | Err(aurora_storage::StorageError::Unauthorized(_)) => Err(ServerFrame::error(
            ErrorCode::Unauthorized,
            "the token this connection was opened with is no longer valid",
            None,
        )),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the connection's token");
            Err(ServerFrame::error(
                ErrorCode::Internal,
                "the account could not be checked; try again",
                None,
            ))
        }
    }
}
