//! The cluster: nodes that share one PostgreSQL and one Redis, connected by ractor_cluster.
//!
//! Each node runs a `NodeServer` (cookie-authenticated) and a gateway actor that every other
//! node reaches through the synchronised process groups. A session is owned by one node, chosen
//! by rendezvous hashing over the live members ([`Placement`]); any node's edge accepts any
//! client and forwards to the owner, whose gateway relays the streamed frames back. A node on
//! its own runs the same gateway with no listener: one code path, alone or clustered.

mod conns;
mod dial;
mod error;
mod gateway;
mod listen;
mod local;
pub mod tls;
pub mod wire;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aurora_actors::protocol::ServerFrame;
use aurora_actors::ActorSnapshot;
use aurora_config::ClusterConfig;
use aurora_storage::auth::Principal;
use aurora_supervisors::sessions::{AdminAction, AdminRefusal};
use aurora_supervisors::{NodeMsg, Placement, SessionsHandle};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

pub use conns::TURN_LOST;
pub use error::ClusterError;
use gateway::{gateway_of, GatewayActor, GatewayMsg, Shared};
pub use gateway::{MEMBERS, SCOPE};
pub use wire::Forward;
use wire::{Answer, Call, Cast, ConnAddr};

/// What the cluster needs from the node it runs in.
pub struct ClusterArgs {
    pub name: String,
    pub sessions: SessionsHandle,
    pub node: ActorRef<NodeMsg>,
    /// Published on every membership change (the sessions supervisor watches it).
    pub placement: watch::Sender<Placement>,
    /// Checks the tickets forwarded frames carry.
    pub tickets: aurora_storage::tickets::Tickets,
    /// This node's incidents supervisor: correlation nudges for orgs it owns arrive here.
    pub incidents: aurora_supervisors::incidents::IncidentsHandle,
    /// The sessions' rows: where the turns a dead node left open are found.
    pub store: aurora_storage::sessions::Sessions,
}

/// A handle on this node's view of the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    gateway: ActorRef<GatewayMsg>,
    server: Option<ActorRef<NodeServerMessage>>,
    dialer: Mutex<Option<JoinHandle<()>>>,
    /// The cluster port's accept loop (`listen`).
    listener: Mutex<Option<JoinHandle<()>>>,
}

/// One node's tree, or why it could not be had.
pub struct NodeTree {
    pub node: String,
    pub tree: Result<ActorSnapshot, ClusterError>,
}

/// A WebSocket connection known to the cluster: frames for it may come from any node. Closing
/// (dropping) it forgets it.
pub struct Conn {
    id: u64,
    frames: mpsc::Sender<ServerFrame>,
    cluster: Cluster,
    /// The ticket the connection was opened with, sent along with forwarded frames.
    ticket: String,
}

impl Conn {
    /// The client was sent the frame that ends its turn in `session_id`.
    pub fn settled(&self, session_id: Uuid) {
        self.cluster.inner.shared.conns.settle(self.id, session_id);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.cluster.inner.shared.conns.close(self.id);
    }
}

impl Cluster {
    /// Starts this node's gateway and, when `config` says so, its cluster listener and the
    /// dialing of the seeds.
    pub async fn start(
        args: ClusterArgs,
        config: &ClusterConfig,
        bind: IpAddr,
    ) -> Result<Cluster, ClusterError> {
        let shared = Arc::new(Shared {
            name: args.name.clone(),
            sessions: args.sessions,
            node: args.node,
            placement: args.placement,
            conns: Default::default(),
            relays: Mutex::new(Default::default()),
            leaving: Default::default(),
            tickets: args.tickets,
            incidents: args.incidents,
            store: args.store,
        });
        shared
            .placement
            .send_replace(Placement::alone(args.name.clone()));
        let (gateway, _) = Actor::spawn(None, GatewayActor, shared.clone())
            .await
            .map_err(|e| ClusterError::Gateway(e.to_string()))?;
        let listen_task: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);
        let (server, dialer) = match (config.port, &config.cookie, &config.tls) {
            (Some(port), Some(cookie), Some(paths)) => {
                let tls = match tls::ClusterTls::load(&tls::TlsFiles {
                    cert: &paths.cert,
                    key: &paths.key,
                    ca: &paths.ca,
                }) {
                    Ok(tls) => tls,
                    Err(e) => {
                        gateway.stop(None);
                        return Err(e);
                    }
                };
                // Isolated: ractor_cluster's transitive mode dials a seed's peers in plain
                // TCP, which the TLS listeners refuse; the dialer dials every seed instead.
                // Its own listener goes to an ephemeral loopback port: peers come in through
                // `listen` (handshakes under a deadline), on CLUSTER_PORT.
                let loopback: IpAddr = if bind.is_ipv6() {
                    std::net::Ipv6Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv4Addr::LOCALHOST.into()
                };
                let server = NodeServer::new(
                    0,
                    cookie.expose().to_string(),
                    args.name.clone(),
                    bind.to_string(),
                    Some(ractor_cluster::IncomingEncryptionMode::Tls(
                        tls.acceptor.clone(),
                    )),
                    Some(ractor_cluster::node::NodeConnectionMode::Isolated),
                )
                .with_listen_addr(loopback);
                let listen_err = |e: String| ClusterError::Listen { port, reason: e };
                let (server, _) = match Actor::spawn(None, server, ()).await {
                    Ok(s) => s,
                    Err(e) => {
                        gateway.stop(None);
                        return Err(listen_err(e.to_string()));
                    }
                };
                let (listener, port) = match listen::start(
                    std::net::SocketAddr::new(bind, port),
                    tls.acceptor.clone(),
                    server.clone(),
                )
                .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        server.stop(None);
                        gateway.stop(None);
                        return Err(listen_err(e.to_string()));
                    }
                };
                // Announced to peers: the port they reach this node on.
                let _ = server.cast(NodeServerMessage::PortChanged { port });
                *listen_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
                let own = format!("{bind}:{port}");
                let dialer = dial::start(server.clone(), config.seeds.clone(), own, tls.connector);
                tracing::info!(node = %args.name, port, seeds = ?config.seeds, "cluster listener started");
                (Some(server), Some(dialer))
            }
            _ => (None, None),
        };
        // Turns this node left open when it last stopped (killed, crashed) continue now (a
        // node of a cluster killed long enough for the others to notice finds them taken).
        let me = args.name.clone();
        gateway::resume_orphans(shared.clone(), move |node| node == me);
        Ok(Cluster {
            inner: Arc::new(Inner {
                shared,
                gateway,
                server,
                dialer: Mutex::new(dialer),
                listener: listen_task,
            }),
        })
    }

    pub fn node_name(&self) -> &str {
        &self.inner.shared.name
    }

    pub fn clustered(&self) -> bool {
        self.inner.server.is_some()
    }

    /// The live members, this node included, sorted.
    pub fn members(&self) -> Vec<String> {
        self.placement().nodes().to_vec()
    }

    pub fn placement(&self) -> Placement {
        self.inner.shared.placement.borrow().clone()
    }

    /// The node that owns `session_id` now.
    pub fn owner_of(&self, session_id: Uuid) -> String {
        self.placement().owner(session_id).to_string()
    }

    /// Registers a connection whose frames go to `frames`.
    /// A client connection, authenticated by `ticket` (redeemed by the edge).
    pub fn open(&self, frames: mpsc::Sender<ServerFrame>, ticket: String) -> Conn {
        let id = self.inner.shared.conns.open(frames.clone());
        Conn {
            id,
            frames,
            cluster: self.clone(),
            ticket,
        }
    }

    /// Tells the node that owns `org_id`'s correlation (placement by org id) that alerts of
    /// the org wait. A nudge lost on the way (the owner just died) is made up by the owner's
    /// periodic look for waiting alerts.
    pub fn correlate(&self, org_id: Uuid) {
        let shared = &self.inner.shared;
        let owner = self.placement().owner(org_id).to_string();
        if owner != shared.name {
            if let Some(gateway) = gateway_of(&owner) {
                let cast = Cast::Correlate { org_id };
                if gateway.cast(GatewayMsg::Cast(wire::encode(&cast))).is_ok() {
                    return;
                }
            }
        }
        crate::local::correlate(&shared.incidents, org_id);
    }

    /// Sends a client's message to the session's owner: directly when that is this node,
    /// through the owner's gateway otherwise. Returns the frame to answer the client with when
    /// it cannot be delivered.
    pub fn route(
        &self,
        conn: &Conn,
        session_id: Uuid,
        who: &Principal,
        msg: Forward,
    ) -> Result<(), Box<ServerFrame>> {
        let shared = &self.inner.shared;
        let query = matches!(msg, Forward::Query { .. });
        // A new turn goes to the session's owner; a decision or cancel goes where the turn it
        // is about runs (during a move that is still the old owner).
        let target = match shared.conns.running_on(conn.id, session_id) {
            Some(node) if !query => node,
            _ => self.placement().owner(session_id).to_string(),
        };
        if query {
            // Recorded before it is sent, so that its END cannot arrive first.
            shared
                .conns
                .started(conn.id, session_id, &target, who, &conn.ticket);
        }
        if target != shared.name {
            // An owner whose gateway is gone from the groups is leaving: the next placement
            // will not name it, and until then the session is served here.
            if let Some(gateway) = gateway_of(&target) {
                let cast = Cast::Route {
                    session_id,
                    who: who.clone(),
                    ticket: conn.ticket.clone(),
                    msg: msg.clone(),
                    reply_to: ConnAddr {
                        node: shared.name.clone(),
                        conn: conn.id,
                    },
                };
                if gateway.cast(GatewayMsg::Cast(wire::encode(&cast))).is_ok() {
                    return Ok(());
                }
            }
            if query {
                shared.conns.moved(conn.id, session_id, &shared.name);
            }
        }
        let delivered = local::deliver(&shared.sessions, session_id, who, msg, &conn.frames);
        if delivered.is_err() && query {
            shared.conns.settle(conn.id, session_id);
        }
        delivered
    }

    async fn call(
        &self,
        node: &str,
        call: &Call,
        timeout: Duration,
    ) -> Result<Answer, ClusterError> {
        let gateway = gateway_of(node).ok_or_else(|| ClusterError::NoSuchNode(node.into()))?;
        let bytes = wire::encode(call);
        let answer = gateway
            .call(|reply| GatewayMsg::Call(bytes, reply), Some(timeout))
            .await
            .map_err(|e| ClusterError::Call {
                node: node.into(),
                reason: e.to_string(),
            })?;
        match answer {
            CallResult::Success(bytes) => match wire::decode(&bytes) {
                Ok(Answer::Failed(reason)) => Err(ClusterError::Remote {
                    node: node.into(),
                    reason,
                }),
                Ok(answer) => Ok(answer),
                Err(e) => Err(ClusterError::Remote {
                    node: node.into(),
                    reason: format!("undecodable answer: {e}"),
                }),
            },
            CallResult::Timeout => Err(ClusterError::Timeout {
                node: node.into(),
                ms: timeout.as_millis() as u64,
            }),
            CallResult::SenderError => Err(ClusterError::Call {
                node: node.into(),
                reason: "the node went away before answering".into(),
            }),
        }
    }

    /// Asks every member the same thing at once.
    async fn call_all(
        &self,
        call: Call,
        timeout: Duration,
    ) -> BTreeMap<String, Result<Answer, ClusterError>> {
        let call = Arc::new(call);
        let mut asks = JoinSet::new();
        for node in self.members() {
            let me = self.clone();
            let call = call.clone();
            asks.spawn(async move {
                let answer = me.call(&node, &call, timeout).await;
                (node, answer)
            });
        }
        let mut answers = BTreeMap::new();
        while let Some(done) = asks.join_next().await {
            if let Ok((node, answer)) = done {
                answers.insert(node, answer);
            }
        }
        answers
    }

    /// The actor tree of every member, in node order.
    pub async fn trees(&self, timeout: Duration) -> Vec<NodeTree> {
        self.call_all(Call::Tree, timeout)
            .await
            .into_iter()
            .map(|(node, answer)| NodeTree {
                node,
                tree: answer.and_then(|a| match a {
                    Answer::Tree(tree) => Ok(*tree),
                    other => Err(ClusterError::Remote {
                        node: String::new(),
                        reason: format!("unexpected answer {other:?}"),
                    }),
                }),
            })
            .collect()
    }

    /// An admin's action on a live session of `org_id`, broadcast to every member: during a
    /// move a session may be live on a node that no longer owns it. `Ok` when any node did it.
    pub async fn admin(
        &self,
        session_id: Uuid,
        org_id: Uuid,
        action: AdminAction,
        timeout: Duration,
    ) -> Result<Result<(), AdminRefusal>, ClusterError> {
        let answers = self
            .call_all(
                Call::Admin {
                    session_id,
                    org_id,
                    action,
                },
                timeout,
            )
            .await;
        let mut refusal = None;
        let mut failure = None;
        for (_, answer) in answers {
            match answer {
                Ok(Answer::Admin(Ok(()))) => return Ok(Ok(())),
                Ok(Answer::Admin(Err(r))) => {
                    if refusal != Some(AdminRefusal::NotRunning) {
                        refusal = Some(r);
                    }
                }
                Ok(_) => {}
                Err(e) => failure = Some(e),
            }
        }
        match (refusal, failure) {
            (Some(r), _) => Ok(Err(r)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(Err(AdminRefusal::NotFound)),
        }
    }

    /// Stops taking sessions: the other members take them over (this node's sessions
    /// supervisor lets the turns running here finish), while frames still flow to and from
    /// this node's connections. Returns once this node's own placement says so; see
    /// [`Cluster::turns_in_flight`].
    pub fn leave(&self) {
        let shared = &self.inner.shared;
        if shared
            .leaving
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        // Done here rather than by a message to the gateway: a stop right after would
        // overtake the message (ractor handles stops first).
        ractor::pg::leave_scoped(
            MEMBERS.to_string(),
            shared.name.clone(),
            vec![self.inner.gateway.get_cell()],
        );
        let others: Vec<String> = self.members();
        shared
            .placement
            .send_replace(Placement::leaving(shared.name.clone(), others));
        // A refresh the gateway was in the middle of may publish the old view after this; the
        // next one (queued now) sees the flag.
        let _ = self.inner.gateway.cast(GatewayMsg::Tick(0));
        tracing::info!("leaving the cluster: new sessions go to the other members");
    }

    /// How many turns this node still has a part in: those running here, and those running
    /// elsewhere for clients connected here (for draining before shutdown).
    pub async fn turns_in_flight(&self) -> usize {
        self.running_turns().await + self.inner.shared.conns.in_flight()
    }

    /// How many turns run on this node now.
    pub async fn running_turns(&self) -> usize {
        let sessions = self
            .inner
            .shared
            .sessions
            .borrow()
            .as_ref()
            .map(|c| c.actor.clone());
        let Some(sessions) = sessions else {
            return 0;
        };
        match ractor::call_t!(
            sessions,
            aurora_supervisors::sessions::SessionsMsg::Status,
            2000
        ) {
            Ok(tree) => tree
                .children
                .iter()
                .filter(|s| s.state == "running")
                .count(),
            Err(_) => 0,
        }
    }

    /// Leaves the cluster: stops dialing, the gateway (peers see this node leave) and the
    /// listener.
    pub async fn shutdown(&self) {
        if let Some(listener) = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            listener.abort();
        }
        if let Some(dialer) = self
            .inner
            .dialer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            dialer.abort();
        }
        let _ = self
            .inner
            .gateway
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(2)))
            .await;
        if let Some(server) = &self.inner.server {
            let _ = server
                .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(2)))
                .await;
        }
    }
}
