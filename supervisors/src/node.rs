//! `NodeSupervisor`: the root of a node's supervision tree. It owns the node-wide children (today
//! the health monitor; the sessions, ingest, integrations, discovery and cluster supervisors join
//! it as they are built), restarts them with backoff, and reports the tree on request.

use std::sync::Arc;
use std::time::Duration;

use aurora_actors::{ActorSnapshot, HealthActor, HealthArgs, HealthMsg, HealthReport};
use aurora_storage::redis::RedisPool;
use aurora_storage::Db;
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;

use crate::Backoff;

/// How long the node waits for one child's status before leaving it out of the tree.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

pub struct NodeArgs {
    pub node_name: String,
    pub db: Db,
    pub redis: Option<RedisPool>,
    pub health_interval: Duration,
    pub health: Arc<watch::Sender<HealthReport>>,
}

pub enum NodeMsg {
    /// The actor tree of this node.
    Status(RpcReplyPort<ActorSnapshot>),
    /// Respawn the health monitor (sent to self after a backoff delay).
    RestartHealth,
}

pub struct NodeState {
    args: NodeArgs,
    started_at: DateTime<Utc>,
    health: Option<ActorRef<HealthMsg>>,
    health_restarts: u32,
    backoff: Backoff,
}

pub struct NodeSupervisor;

impl NodeSupervisor {
    async fn spawn_health(
        myself: &ActorRef<NodeMsg>,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let args = HealthArgs {
            db: state.args.db.clone(),
            redis: state.args.redis.clone(),
            interval: state.args.health_interval,
            publish: state.args.health.clone(),
        };
        let (health, _) = Actor::spawn_linked(None, HealthActor, args, myself.get_cell()).await?;
        state.health = Some(health);
        Ok(())
    }

    fn schedule_restart(myself: &ActorRef<NodeMsg>, state: &mut NodeState, reason: &str) {
        let delay = state.backoff.delay(state.health_restarts);
        state.health_restarts += 1;
        state.health = None;
        tracing::warn!(
            child = "health",
            restarts = state.health_restarts,
            delay_ms = delay.as_millis() as u64,
            reason,
            "restarting child"
        );
        myself.send_after(delay, || NodeMsg::RestartHealth);
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
            health: None,
            health_restarts: 0,
            backoff: Backoff::DEFAULT,
        };
        Self::spawn_health(&myself, &mut state).await?;
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
                let mut children = Vec::new();
                if let Some(health) = &state.health {
                    if let Ok(mut snap) = ractor::call_t!(
                        health,
                        HealthMsg::Status,
                        STATUS_TIMEOUT.as_millis() as u64
                    ) {
                        snap.restarts = state.health_restarts;
                        children.push(snap);
                    }
                }
                let _ = reply.send(ActorSnapshot {
                    kind: "node".into(),
                    id: state.args.node_name.clone(),
                    state: "running".into(),
                    restarts: 0,
                    started_at: state.started_at,
                    children,
                });
            }
            NodeMsg::RestartHealth => {
                if state.health.is_none() {
                    if let Err(e) = Self::spawn_health(&myself, state).await {
                        Self::schedule_restart(&myself, state, &e.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) if is_child(&cell, &state.health) => {
                Self::schedule_restart(&myself, state, &err.to_string());
            }
            SupervisionEvent::ActorTerminated(cell, _, reason)
                if is_child(&cell, &state.health) =>
            {
                // A child only stops on its own when something is wrong: the node stops its
                // children itself on shutdown, after which no events are handled.
                Self::schedule_restart(&myself, state, reason.as_deref().unwrap_or("stopped"));
            }
            _ => {}
        }
        Ok(())
    }
}

fn is_child<M>(cell: &ActorCell, child: &Option<ActorRef<M>>) -> bool {
    child.as_ref().is_some_and(|c| c.get_id() == cell.get_id())
}
