//! `NodeSupervisor`: the root of a node's supervision tree. It owns the node-wide children (the
//! health monitor, the sessions supervisor when an LLM provider is configured, and the ingest
//! supervisor and the embedding pool when an embedding model is loaded, the incidents supervisor
//! and the scheduler; the integrations, discovery and cluster supervisors join it as they are
//! built), restarts them
//! with backoff, and reports the tree on request. The edges reach the sessions supervisor through
//! a watch channel the node supervisor updates on every restart, so they never hold a dead ref.

use std::sync::Arc;
use std::time::Duration;

use aurora_actors::{ActorSnapshot, Counted, HealthActor, HealthArgs, HealthMsg, HealthReport};
use aurora_storage::redis::RedisPool;
use aurora_storage::secrets::SecretStore;
use aurora_storage::Db;
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;

use crate::embeddings::{EmbeddingArgs, EmbeddingMsg, EmbeddingSupervisor};
use crate::incidents::{IncidentsArgs, IncidentsMsg, IncidentsSupervisor};
use crate::ingest::{IngestArgs, IngestMsg, IngestSupervisor};
use crate::scheduler::{Scheduler, SchedulerArgs, SchedulerMsg};
use crate::sessions::{SessionsArgs, SessionsMsg, SessionsSupervisor};
use crate::Backoff;

/// How long the node waits for one child's status before leaving it out of the tree.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a stopping supervisor waits for its children.
pub(crate) const CHILDREN_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the edges find the current sessions supervisor (`None` while it restarts).
pub type SessionsHandle = watch::Receiver<Option<Counted<SessionsMsg>>>;

/// Where the edges find the current ingest supervisor (`None` while it restarts, or on a node
/// without a knowledge base).
pub type IngestHandle = watch::Receiver<Option<ActorRef<IngestMsg>>>;

pub struct NodeArgs {
    pub node_name: String,
    pub db: Db,
    pub redis: Option<RedisPool>,
    /// The secret store, probed by the health monitor.
    pub secrets: Option<SecretStore>,
    pub health_interval: Duration,
    pub health: Arc<watch::Sender<HealthReport>>,
    /// What the sessions supervisor is started with; `None` on a node without an LLM provider.
    pub sessions: Option<SessionsArgs>,
    pub sessions_handle: Arc<watch::Sender<Option<Counted<SessionsMsg>>>>,
    /// The embedding pool's workers; `None` on a node without an embedding model.
    pub embeddings: Option<EmbeddingArgs>,
    /// What the ingest supervisor is started with; `None` on a node without a knowledge base.
    pub ingest: Option<IngestArgs>,
    pub ingest_handle: Arc<watch::Sender<Option<ActorRef<IngestMsg>>>>,
    /// What the incidents supervisor is started with; `None` on a node without an LLM provider
    /// (alerts are still stored and correlated by a node with one).
    pub incidents: Option<IncidentsArgs>,
    pub incidents_handle: Arc<watch::Sender<Option<ActorRef<IncidentsMsg>>>>,
    /// The periodic jobs.
    pub scheduler: Option<SchedulerArgs>,
    pub backoff: Backoff,
}

/// The node's direct children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child {
    Health,
    Sessions,
    Embeddings,
    Ingest,
    Incidents,
    Scheduler,
}

impl Child {
    fn name(self) -> &'static str {
        match self {
            Child::Health => "health",
            Child::Sessions => "sessions",
            Child::Embeddings => "embeddings",
            Child::Ingest => "ingest",
            Child::Incidents => "incidents",
            Child::Scheduler => "scheduler",
        }
    }
}

pub enum NodeMsg {
    /// The actor tree of this node.
    Status(RpcReplyPort<ActorSnapshot>),
    /// Respawn a child (sent to self after a backoff delay).
    Restart(Child),
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for NodeMsg {}

/// One supervised child: its live actor, if any, and how often it was restarted.
struct Slot {
    cell: Option<ActorCell>,
    restarts: u32,
}

pub struct NodeState {
    args: NodeArgs,
    started_at: DateTime<Utc>,
    health: Slot,
    sessions: Slot,
    embeddings: Slot,
    ingest: Slot,
    incidents: Slot,
    scheduler: Slot,
}

impl NodeState {
    fn slot(&mut self, child: Child) -> &mut Slot {
        match child {
            Child::Health => &mut self.health,
            Child::Sessions => &mut self.sessions,
            Child::Embeddings => &mut self.embeddings,
            Child::Ingest => &mut self.ingest,
            Child::Incidents => &mut self.incidents,
            Child::Scheduler => &mut self.scheduler,
        }
    }

    fn child_of(&self, cell: &ActorCell) -> Option<Child> {
        let is = |slot: &Slot| {
            slot.cell
                .as_ref()
                .is_some_and(|c| c.get_id() == cell.get_id())
        };
        if is(&self.health) {
            Some(Child::Health)
        } else if is(&self.sessions) {
            Some(Child::Sessions)
        } else if is(&self.embeddings) {
            Some(Child::Embeddings)
        } else if is(&self.ingest) {
            Some(Child::Ingest)
        } else if is(&self.incidents) {
            Some(Child::Incidents)
        } else if is(&self.scheduler) {
            Some(Child::Scheduler)
        } else {
            None
        }
    }
}

pub struct NodeSupervisor;

impl NodeSupervisor {
    async fn spawn(
        myself: &ActorRef<NodeMsg>,
        state: &mut NodeState,
        child: Child,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match child {
            Child::Health => {
                let args = HealthArgs {
                    db: state.args.db.clone(),
                    redis: state.args.redis.clone(),
                    secrets: state.args.secrets.clone(),
                    interval: state.args.health_interval,
                    publish: state.args.health.clone(),
                };
                let (health, _) =
                    Actor::spawn_linked(None, HealthActor, args, myself.get_cell()).await?;
                health.get_cell()
            }
            Child::Sessions => {
                let Some(args) = state.args.sessions.clone() else {
                    return Ok(());
                };
                let mailbox = args.mailbox.clone();
                let (sessions, _) =
                    Actor::spawn_linked(None, SessionsSupervisor, args, myself.get_cell()).await?;
                let cell = sessions.get_cell();
                state
                    .args
                    .sessions_handle
                    .send_replace(Some(Counted::new(sessions, mailbox)));
                cell
            }
            Child::Embeddings => {
                let Some(args) = state.args.embeddings.clone() else {
                    return Ok(());
                };
                let (pool, _) =
                    Actor::spawn_linked(None, EmbeddingSupervisor, args, myself.get_cell()).await?;
                pool.get_cell()
            }
            Child::Ingest => {
                let Some(args) = state.args.ingest.clone() else {
                    return Ok(());
                };
                let (ingest, _) =
                    Actor::spawn_linked(None, IngestSupervisor, args, myself.get_cell()).await?;
                let cell = ingest.get_cell();
                state.args.ingest_handle.send_replace(Some(ingest));
                cell
            }
            Child::Incidents => {
                let Some(args) = state.args.incidents.clone() else {
                    return Ok(());
                };
                let (incidents, _) =
                    Actor::spawn_linked(None, IncidentsSupervisor, args, myself.get_cell()).await?;
                let cell = incidents.get_cell();
                state.args.incidents_handle.send_replace(Some(incidents));
                cell
            }
            Child::Scheduler => {
                let Some(args) = state.args.scheduler.clone() else {
                    return Ok(());
                };
                let (scheduler, _) =
                    Actor::spawn_linked(None, Scheduler, args, myself.get_cell()).await?;
                scheduler.get_cell()
            }
        };
        state.slot(child).cell = Some(cell);
        Ok(())
    }

    fn schedule_restart(
        myself: &ActorRef<NodeMsg>,
        state: &mut NodeState,
        child: Child,
        reason: &str,
    ) {
        match child {
            Child::Sessions => {
                state.args.sessions_handle.send_replace(None);
            }
            Child::Ingest => {
                state.args.ingest_handle.send_replace(None);
            }
            Child::Incidents => {
                state.args.incidents_handle.send_replace(None);
            }
            Child::Health | Child::Embeddings | Child::Scheduler => {}
        }
        let backoff = state.args.backoff;
        let slot = state.slot(child);
        // A dead supervisor runs no post_stop: its children would be orphans. Stop them; the
        // new supervisor rebuilds what is needed from storage.
        if let Some(cell) = slot.cell.take() {
            cell.stop_children(Some(format!("{} supervisor restarting", child.name())));
        }
        let delay = backoff.delay(slot.restarts);
        slot.restarts += 1;
        aurora_actors::metrics::ACTOR_RESTARTS
            .with_label_values(&[child.name()])
            .inc();
        tracing::warn!(
            child = child.name(),
            restarts = slot.restarts,
            delay_ms = delay.as_millis() as u64,
            reason,
            "restarting child"
        );
        myself.send_after(delay, move || NodeMsg::Restart(child));
    }

    async fn status(state: &NodeState) -> ActorSnapshot {
        let mut children = Vec::new();
        if let Some(cell) = &state.health.cell {
            let health: ActorRef<HealthMsg> = cell.clone().into();
            if let Ok(mut snap) =
                ractor::call_t!(health, HealthMsg::Status, STATUS_TIMEOUT.as_millis() as u64)
            {
                snap.restarts = state.health.restarts;
                children.push(snap);
            }
        }
        if let Some(cell) = &state.sessions.cell {
            let sessions: ActorRef<SessionsMsg> = cell.clone().into();
            // The sessions supervisor asks each session in turn: give it longer.
            if let Ok(mut snap) = ractor::call_t!(sessions, SessionsMsg::Status, 2000) {
                snap.restarts = state.sessions.restarts;
                children.push(snap);
            }
        }
        if let Some(cell) = &state.embeddings.cell {
            let pool: ActorRef<EmbeddingMsg> = cell.clone().into();
            if let Ok(mut snap) = ractor::call_t!(
                pool,
                EmbeddingMsg::Status,
                STATUS_TIMEOUT.as_millis() as u64
            ) {
                snap.restarts = state.embeddings.restarts;
                children.push(snap);
            }
        }
        if let Some(cell) = &state.ingest.cell {
            let ingest: ActorRef<IngestMsg> = cell.clone().into();
            if let Ok(mut snap) =
                ractor::call_t!(ingest, IngestMsg::Status, STATUS_TIMEOUT.as_millis() as u64)
            {
                snap.restarts = state.ingest.restarts;
                children.push(snap);
            }
        }
        if let Some(cell) = &state.incidents.cell {
            let incidents: ActorRef<IncidentsMsg> = cell.clone().into();
            if let Ok(mut snap) = ractor::call_t!(incidents, IncidentsMsg::Status, 2000) {
                snap.restarts = state.incidents.restarts;
                children.push(snap);
            }
        }
        if let Some(cell) = &state.scheduler.cell {
            let scheduler: ActorRef<SchedulerMsg> = cell.clone().into();
            if let Ok(mut snap) = ractor::call_t!(scheduler, SchedulerMsg::Status, 2000) {
                snap.restarts = state.scheduler.restarts;
                children.push(snap);
            }
        }
        ActorSnapshot {
            kind: "node".into(),
            id: state.args.node_name.clone(),
            state: "running".into(),
            mailbox: 0,
            restarts: 0,
            started_at: state.started_at,
            owner: None,
            children,
        }
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        let mut state = NodeState {
            args,
            started_at: Utc::now(),
            health: Slot {
                cell: None,
                restarts: 0,
            },
            sessions: Slot {
                cell: None,
                restarts: 0,
            },
            embeddings: Slot {
                cell: None,
                restarts: 0,
            },
            ingest: Slot {
                cell: None,
                restarts: 0,
            },
            incidents: Slot {
                cell: None,
                restarts: 0,
            },
            scheduler: Slot {
                cell: None,
                restarts: 0,
            },
        };
        Self::spawn(&myself, &mut state, Child::Health).await?;
        Self::spawn(&myself, &mut state, Child::Sessions).await?;
        Self::spawn(&myself, &mut state, Child::Embeddings).await?;
        Self::spawn(&myself, &mut state, Child::Ingest).await?;
        Self::spawn(&myself, &mut state, Child::Incidents).await?;
        Self::spawn(&myself, &mut state, Child::Scheduler).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Status(reply) => {
                let _ = reply.send(Self::status(state).await);
            }
            NodeMsg::Restart(child) => {
                if state.slot(child).cell.is_none() {
                    if let Err(e) = Self::spawn(&myself, state, child).await {
                        Self::schedule_restart(&myself, state, child, &e.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// Shutdown: children stop first (sessions cancel their runs, which save what they have),
    /// and their exits no longer count as failures once this actor is stopping.
    async fn post_stop(
        &self,
        myself: ActorRef<NodeMsg>,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        state.args.sessions_handle.send_replace(None);
        state.args.ingest_handle.send_replace(None);
        state.args.incidents_handle.send_replace(None);
        myself
            .stop_children_and_wait(Some("shutdown".into()), Some(CHILDREN_STOP_TIMEOUT))
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(child) = state.child_of(&cell) {
                    Self::schedule_restart(&myself, state, child, &err.to_string());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                // A child only stops on its own when something is wrong: the node stops its
                // children itself on shutdown, after which no events are handled.
                if let Some(child) = state.child_of(&cell) {
                    let reason = reason.as_deref().unwrap_or("stopped");
                    Self::schedule_restart(&myself, state, child, reason);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
