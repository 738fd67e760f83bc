//! `GatewayActor`: one per node, the only actor other nodes talk to. It is a member of the
//! process group named after its node (scope [`SCOPE`]), so every node finds every other
//! node's gateway through ractor_cluster's synchronised groups. It
//! - delivers messages forwarded by other nodes to the local sessions, relaying the sessions'
//!   frames back to the connection they came from;
//! - hands frames relayed from other nodes to local connections;
//! - answers calls (liveness, this node's actor tree, admin actions);
//! - keeps the membership: a node is a member while its gateway is in the [`MEMBERS`] groups
//!   *and* it answered a ping within [`SUSPECT_AFTER`] (a node that hangs with its TCP link
//!   open stops answering pings). Each change is published as a new [`Placement`].
//!
//! Two scopes, so that a node can leave (stop being given sessions) while its gateway still
//! relays the frames of turns that clients connected to it are waiting for.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aurora_actors::protocol::ServerFrame;
use aurora_supervisors::sessions::SessionsMsg;
use aurora_supervisors::{NodeMsg, Placement, SessionsHandle};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::{mpsc, watch};

use crate::conns::{Conns, Orphan};
use crate::wire::{self, Answer, Call, Cast, ConnAddr, Forward};

/// The process-group scope the gateways join, each under its node's name: how a node's
/// gateway is found.
pub const SCOPE: &str = "aurora.gateways";
/// The scope of the members: a gateway joins it when its node starts and leaves it when the
/// node starts to shut down.
pub const MEMBERS: &str = "aurora.members";
/// How often peers are pinged and the membership recomputed.
pub(crate) const TICK: Duration = Duration::from_millis(500);
/// A peer that has not answered a ping for this long is no longer a member.
pub(crate) const SUSPECT_AFTER: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long the gateway waits for a local actor when answering a call.
const LOCAL_CALL_MS: u64 = 3000;

#[derive(RactorClusterMessage)]
pub enum GatewayMsg {
    /// A JSON [`Cast`].
    Cast(Vec<u8>),
    /// A JSON [`Call`], answered with a JSON [`Answer`].
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Ping the peers and recompute the membership (sent to self).
    Tick(u8),
    /// The named peer answered a ping (sent to self).
    Alive(String),
    /// The named peer's ping went unanswered (sent to self).
    Silent(String),
}

/// What the gateway and the node's [`crate::Cluster`] handle share.
pub(crate) struct Shared {
    pub name: String,
    pub sessions: SessionsHandle,
    pub node: ActorRef<NodeMsg>,
    pub placement: watch::Sender<Placement>,
    pub conns: Conns,
    /// Relays of frames to connections on other nodes, by connection.
    pub relays: Mutex<HashMap<ConnAddr, mpsc::WeakSender<ServerFrame>>>,
    /// Set once when the node starts to shut down: it takes no more sessions.
    pub leaving: AtomicBool,
    /// Checks the tickets forwarded frames carry.
    pub tickets: aurora_storage::tickets::Tickets,
    pub incidents: aurora_supervisors::incidents::IncidentsHandle,
    /// The sessions' rows: where the turns a dead node left open are found.
    pub store: aurora_storage::sessions::Sessions,
}

pub(crate) struct GatewayActor;

pub(crate) struct GatewayState {
    shared: Arc<Shared>,
    /// Peers in the groups, with when each last answered (or joined).
    peers: HashMap<String, Instant>,
    /// Peers with a ping not yet answered or timed out: a frozen peer gets no new ones (each
    /// would queue on its link).
    pinging: HashSet<String>,
}

/// The gateway of `node`, if it is in the groups.
pub(crate) fn gateway_of(node: &str) -> Option<ActorRef<GatewayMsg>> {
    ractor::pg::get_scoped_members(&SCOPE.to_string(), &node.to_string())
        .into_iter()
        .next()
        .map(ActorRef::from)
}

/// The nodes other than `me` whose gateway is in the groups (members or leaving).
fn gateways(me: &str) -> HashSet<String> {
    ractor::pg::which_scoped_groups(&SCOPE.to_string())
        .into_iter()
        .filter(|g| g != me && gateway_of(g).is_some())
        .collect()
}

impl GatewayActor {
    fn cast(state: &GatewayState, bytes: &[u8]) {
        let cast: Cast = match wire::decode(bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable message from another node dropped");
                return;
            }
        };
        match cast {
            Cast::Route {
                session_id,
                who,
                ticket,
                msg,
                reply_to,
            } => {
                if !vouched(&state.shared.tickets, &ticket, &who) {
                    tracing::warn!(session_id = %session_id, user_id = %who.user_id, "a forwarded frame's principal does not match its ticket; refused");
                    refuse_forged(reply_to, session_id);
                    return;
                }
                let frames = relay(&state.shared, reply_to);
                if let Err(frame) =
                    crate::local::deliver(&state.shared.sessions, session_id, &who, msg, &frames)
                {
                    // The client's node waits for an END for a query.
                    let _ = frames.try_send(*frame);
                    let _ = frames.try_send(ServerFrame::end(session_id));
                }
            }
            Cast::Frames { conn, frames } => state.shared.conns.deliver(conn, frames),
            Cast::Correlate { org_id } => crate::local::correlate(&state.shared.incidents, org_id),
        }
    }

    /// Answers a call without holding up the gateway: slow parts run in a task.
    fn call(state: &GatewayState, bytes: &[u8], reply: RpcReplyPort<Vec<u8>>) {
        let call: Call = match wire::decode(bytes) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(wire::encode(&Answer::Failed(format!(
                    "undecodable call: {e}"
                ))));
                return;
            }
        };
        let shared = state.shared.clone();
        match call {
            Call::Ping => {
                let _ = reply.send(wire::encode(&Answer::Pong));
            }
            Call::Tree => {
                tokio::spawn(async move {
                    let answer = match ractor::call_t!(shared.node, NodeMsg::Status, LOCAL_CALL_MS)
                    {
                        Ok(tree) => Answer::Tree(Box::new(tree)),
                        Err(e) => {
                            Answer::Failed(format!("the actor tree could not be collected: {e}"))
                        }
                    };
                    let _ = reply.send(wire::encode(&answer));
                });
            }
            Call::Admin {
                session_id,
                org_id,
                action,
            } => {
                let sessions = shared.sessions.borrow().as_ref().map(|c| c.actor.clone());
                tokio::spawn(async move {
                    let answer = match sessions {
                        None => Answer::Failed("the chat runtime is not running".into()),
                        Some(sessions) => match ractor::call_t!(
                            sessions,
                            |reply| SessionsMsg::Admin {
                                session_id,
                                org_id,
                                action,
                                reply,
                            },
                            LOCAL_CALL_MS
                        ) {
                            Ok(result) => Answer::Admin(result),
                            Err(e) => Answer::Failed(format!(
                                "the sessions supervisor did not answer: {e}"
                            )),
                        },
                    };
                    let _ = reply.send(wire::encode(&answer));
                });
            }
        }
    }

    /// Pings every peer in the groups (answers come back as [`GatewayMsg::Alive`]).
    fn ping(myself: &ActorRef<GatewayMsg>, state: &mut GatewayState) {
        let grouped = gateways(&state.shared.name);
        let now = Instant::now();
        state.peers.retain(|p, _| grouped.contains(p));
        state.pinging.retain(|p| grouped.contains(p));
        for peer in grouped {
            state.peers.entry(peer.clone()).or_insert(now);
            if state.pinging.contains(&peer) {
                continue;
            }
            let Some(gateway) = gateway_of(&peer) else {
                continue;
            };
            state.pinging.insert(peer.clone());
            let me = myself.clone();
            tokio::spawn(async move {
                let ping = wire::encode(&Call::Ping);
                let answered = matches!(
                    gateway
                        .call(|reply| GatewayMsg::Call(ping, reply), Some(PING_TIMEOUT))
                        .await,
                    Ok(ractor::rpc::CallResult::Success(_))
                );
                let _ = me.cast(if answered {
                    GatewayMsg::Alive(peer)
                } else {
                    GatewayMsg::Silent(peer)
                });
            });
        }
    }

    /// Recomputes the members and publishes a new placement when they changed; turns that
    /// clients here were waiting on from a node that died continue on their session's new
    /// owner, and so do the turns it ran that no client waits for, on the nodes that own them.
    fn refresh(state: &mut GatewayState) {
        let shared = &state.shared;
        let grouped = gateways(&shared.name);
        state.peers.retain(|p, _| grouped.contains(p));
        let reachable: HashSet<&String> = state
            .peers
            .iter()
            .filter(|(_, seen)| seen.elapsed() < SUSPECT_AFTER)
            .map(|(p, _)| p)
            .collect();
        let live: Vec<String> = ractor::pg::which_scoped_groups(&MEMBERS.to_string())
            .into_iter()
            .filter(|m| reachable.contains(m))
            .collect();
        let next = if shared.leaving.load(Ordering::SeqCst) {
            Placement::leaving(shared.name.clone(), live)
        } else {
            Placement::new(shared.name.clone(), live)
        };
        // A node whose gateway is gone or silent will not finish the turns it runs for
        // clients here (a node that is only leaving still does): the session's owner in the
        // new placement continues each.
        let alive = |node: &str| node == shared.name || reachable.contains(&node.to_string());
        let orphans = shared.conns.orphaned(alive);
        if !orphans.is_empty() {
            tracing::warn!(turns = orphans.len(), "continuing turns whose node stopped");
        }
        let previous = shared.placement.borrow().clone();
        if next.nodes() == previous.nodes() {
            for orphan in orphans {
                continue_turn(shared, &next, orphan);
            }
            return;
        }
        // Nodes that died (not merely leaving): the turns they ran for clients elsewhere, or
        // for no client, continue on their sessions' owners.
        let dead: HashSet<String> = previous
            .nodes()
            .iter()
            .filter(|n| !alive(n.as_str()))
            .cloned()
            .collect();
        let gone: Vec<&String> = previous
            .nodes()
            .iter()
            .filter(|n| !next.nodes().contains(n))
            .collect();
        let joined: Vec<&String> = next
            .nodes()
            .iter()
            .filter(|n| !previous.nodes().contains(n))
            .collect();
        tracing::info!(members = ?next.nodes(), ?joined, left = ?gone, "cluster membership changed");
        shared.placement.send_replace(next.clone());
        // After the new placement is out, so the owner's sessions supervisor agrees.
        for orphan in orphans {
            continue_turn(shared, &next, orphan);
        }
        if !dead.is_empty() {
            resume_orphans(shared.clone(), move |node| dead.contains(node));
        }
    }
}

/// Sends the turn of `orphan`'s client to the session's owner in `placement`, to be
/// continued from its last durable step; if it cannot be sent, the client is told.
fn continue_turn(shared: &Arc<Shared>, placement: &Placement, orphan: Orphan) {
    let Orphan {
        conn,
        session_id,
        who,
        ticket,
        frames,
    } = orphan;
    let owner = placement.owner(session_id).to_string();
    shared.conns.moved(conn, session_id, &owner);
    if owner != shared.name {
        if let Some(gateway) = gateway_of(&owner) {
            let cast = Cast::Route {
                session_id,
                who,
                ticket,
                msg: Forward::Resume,
                reply_to: ConnAddr {
                    node: shared.name.clone(),
                    conn,
                },
            };
            if gateway.cast(GatewayMsg::Cast(wire::encode(&cast))).is_err() {
                shared.conns.lose(conn, session_id);
            }
            return;
        }
        shared.conns.moved(conn, session_id, &shared.name);
    }
    if crate::local::deliver(&shared.sessions, session_id, &who, Forward::Resume, &frames).is_err()
    {
        shared.conns.lose(conn, session_id);
    }
}

/// Continues, on this node, the open interactive turns whose node fails `dead` and whose
/// session this node owns, with no client attached yet (one that asks attaches). Background
/// runs are continued by their own analyses. In a task: it reads storage.
pub(crate) fn resume_orphans(shared: Arc<Shared>, dead: impl Fn(&str) -> bool + Send + 'static) {
    tokio::spawn(async move {
        let open = match shared.store.open_turns().await {
            Ok(open) => open,
            Err(e) => {
                tracing::error!(error = %e, "cannot look for turns left by a stopped node");
                return;
            }
        };
        let placement = shared.placement.borrow().clone();
        let orphans: Vec<_> = open
            .into_iter()
            .filter(|t| {
                t.open.interactive && dead(&t.open.node) && placement.is_local(t.session_id)
            })
            .collect();
        if orphans.is_empty() {
            return;
        }
        // At start-up the sessions supervisor may still be starting.
        let mut handle = shared.sessions.clone();
        let waited =
            tokio::time::timeout(Duration::from_secs(60), handle.wait_for(|s| s.is_some())).await;
        let Ok(Ok(sessions)) = waited.map(|r| r.map(|s| s.clone())) else {
            tracing::warn!(
                turns = orphans.len(),
                "no sessions supervisor to continue turns left by a stopped node"
            );
            return;
        };
        let Some(sessions) = sessions else {
            return;
        };
        let mut resumed = 0;
        for turn in orphans {
            let route = SessionsMsg::Route {
                session_id: turn.session_id,
                who: turn.who,
                msg: aurora_actors::session::SessionMsg::Resume { frames: None },
            };
            if sessions.cast(route).is_ok() {
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(turns = resumed, "continuing turns left by a stopped node");
        }
    });
}

/// The sender that relays a session's frames to connection `addr` on another node, made on
/// first use and shared by every message from that connection.
fn relay(shared: &Shared, addr: ConnAddr) -> mpsc::Sender<ServerFrame> {
    let mut relays = shared.relays.lock().unwrap_or_else(|e| e.into_inner());
    // A relay whose task ended (the connection's node was briefly out of the groups) is
    // replaced: its senders live on in sessions, but nothing reads it any more.
    if let Some(tx) = relays.get(&addr).and_then(mpsc::WeakSender::upgrade) {
        if !tx.is_closed() {
            return tx;
        }
    }
    relays.retain(|_, weak| weak.upgrade().is_some());
    let (tx, mut rx) = mpsc::channel::<ServerFrame>(1024);
    relays.insert(addr.clone(), tx.downgrade());
    tokio::spawn(async move {
        // Frames go in batches: one cluster message per burst of stream deltas.
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 64).await > 0 {
            let Some(gateway) = gateway_of(&addr.node) else {
                break;
            };
            let cast = Cast::Frames {
                conn: addr.conn,
                frames: std::mem::take(&mut batch),
            };
            if gateway.cast(GatewayMsg::Cast(wire::encode(&cast))).is_err() {
                break;
            }
        }
    });
    tx
}

impl Actor for GatewayActor {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<GatewayMsg>,
        shared: Arc<Shared>,
    ) -> Result<GatewayState, ActorProcessingErr> {
        for scope in [SCOPE, MEMBERS] {
            ractor::pg::join_scoped(
                scope.to_string(),
                shared.name.clone(),
                vec![myself.get_cell()],
            );
        }
        for scope in [SCOPE, MEMBERS] {
            ractor::pg::monitor_scope(scope.to_string(), myself.get_cell());
        }
        myself.send_interval(TICK, || GatewayMsg::Tick(0));
        Ok(GatewayState {
            shared,
            peers: HashMap::new(),
            pinging: HashSet::new(),
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<GatewayMsg>,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        for scope in [SCOPE, MEMBERS] {
            ractor::pg::demonitor_scope(scope.to_string(), myself.get_id());
        }
        for scope in [SCOPE, MEMBERS] {
            ractor::pg::leave_scoped(
                scope.to_string(),
                state.shared.name.clone(),
                vec![myself.get_cell()],
            );
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GatewayMsg::Cast(bytes) => Self::cast(state, &bytes),
            GatewayMsg::Call(bytes, reply) => Self::call(state, &bytes, reply),
            GatewayMsg::Tick(_) => {
                Self::ping(&myself, state);
                Self::refresh(state);
            }
            GatewayMsg::Alive(peer) => {
                state.pinging.remove(&peer);
                if let Some(seen) = state.peers.get_mut(&peer) {
                    *seen = Instant::now();
                }
                Self::refresh(state);
            }
            GatewayMsg::Silent(peer) => {
                state.pinging.remove(&peer);
                Self::refresh(state);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<GatewayMsg>,
        evt: SupervisionEvent,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        // A gateway joining or leaving the groups (a node connecting, or its link breaking):
        // a new node counts as alive from now until its pings say otherwise.
        if let SupervisionEvent::ProcessGroupChanged(change) = evt {
            if let ractor::pg::GroupChangeMessage::Join(scope, group, _) = &change {
                if scope == SCOPE && group != &state.shared.name {
                    state.peers.insert(group.clone(), Instant::now());
                }
            }
            Self::refresh(state);
        }
        Ok(())
    }
}

/// Tells the sending node's connection its frame was refused: one message straight to that
/// node's gateway, no relay kept for it.
fn refuse_forged(reply_to: ConnAddr, session_id: uuid::Uuid) {
    let Some(gateway) = gateway_of(&reply_to.node) else {
        return;
    };
    let cast = Cast::Frames {
        conn: reply_to.conn,
        frames: vec![
            ServerFrame::error(
                aurora_actors::protocol::ErrorCode::Unauthorized,
                "the connection could not be verified",
                Some(session_id),
            ),
            ServerFrame::end(session_id),
        ],
    };
    let _ = gateway.cast(GatewayMsg::Cast(wire::encode(&cast)));
}

/// Whether `ticket` is one this cluster signed, naming `who`'s user and org with at least
/// `who`'s role (the edge lowers the role of a member demoted since the ticket; it never
/// raises it).
pub(crate) fn vouched(
    tickets: &aurora_storage::tickets::Tickets,
    ticket: &str,
    who: &aurora_storage::auth::Principal,
) -> bool {
    tickets
        .vouch(ticket)
        .is_ok_and(|p| p.user_id == who.user_id && p.org_id == who.org_id && who.role <= p.role)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aurora_storage::auth::{Principal, Role};
    use aurora_storage::cache::Cache;
    use aurora_storage::tickets::Tickets;
    use uuid::Uuid;

    use super::*;

    fn who(role: Role) -> Principal {
        Principal {
            user_id: Uuid::now_v7(),
            org_id: Uuid::now_v7(),
            email: "a@acme.io".into(),
            role,
        }
    }

    #[tokio::test]
    async fn a_forwarded_principal_must_match_its_ticket() {
        let tickets = Tickets::new(
            b"cluster-secret-0123456789abcdef",
            Cache::local(),
            Duration::from_secs(30),
        );
        let viewer = who(Role::Viewer);
        let ticket = tickets.issue(&viewer).unwrap().token;
        // Redeemed by the edge (burned) and later forwarded: still vouches.
        tickets.redeem(&ticket).await.unwrap();
        assert!(vouched(&tickets, &ticket, &viewer));
        // A peer claiming someone else, or more rights, with that ticket: refused.
        let mut admin = viewer.clone();
        admin.role = Role::Admin;
        assert!(!vouched(&tickets, &ticket, &admin));
        assert!(!vouched(&tickets, &ticket, &who(Role::Viewer)));
        // Fewer rights (a member demoted since): vouched.
        let editor = who(Role::Editor);
        let editor_ticket = tickets.issue(&editor).unwrap().token;
        let mut demoted = editor.clone();
        demoted.role = Role::Viewer;
        assert!(vouched(&tickets, &editor_ticket, &demoted));
        // A ticket signed with another key, or none at all: refused.
        let forged = Tickets::new(
            b"another-secret-0123456789abcdef",
            Cache::local(),
            Duration::from_secs(30),
        )
        .issue(&viewer)
        .unwrap()
        .token;
        assert!(!vouched(&tickets, &forged, &viewer));
        assert!(!vouched(&tickets, "", &viewer));
        // Long expired: still vouches (a connection outlives its ticket).
        let short = Tickets::new(
            b"cluster-secret-0123456789abcdef",
            Cache::local(),
            Duration::from_secs(0),
        );
        let old = short.issue(&viewer).unwrap().token;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(vouched(&tickets, &old, &viewer));
    }
}
