//! `IncidentsSupervisor`: the node's incident work. It keeps one `CorrelatorActor` per org
//! this node owns (placement, as for sessions) and one `IncidentRunActor` per analysis it
//! claimed, up to the node's limit (the org limit is kept cluster-wide by the claim). A
//! periodic tick heartbeats the analyses running here, picks up alerts that waited (their
//! nudge went to a node that died), and claims queued analyses. When members leave the
//! cluster, the analyses they were running go back to the queue at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aurora_actors::incidents::correlator::{
    CorrelatorActor, CorrelatorArgs, CorrelatorMsg, CorrelatorShared,
};
use aurora_actors::incidents::incident_run::{
    IncidentRunActor, IncidentRunArgs, IncidentRunMsg, RunShared,
};
use aurora_actors::ActorSnapshot;
use aurora_storage::incidents::Incidents;
use chrono::{DateTime, Utc};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::Placement;

/// Where the edges and the cluster find the current incidents supervisor (`None` while it
/// restarts).
pub type IncidentsHandle = watch::Receiver<Option<ActorRef<IncidentsMsg>>>;

#[derive(Clone)]
pub struct IncidentsArgs {
    pub incidents: Incidents,
    /// This node's name (whose analyses these are).
    pub node: String,
    /// Everything but `on_opened`, which the supervisor sets (it wakes the supervisor).
    pub correlators: CorrelatorShared,
    /// What analyses run with; `None` on a node without an LLM provider: it correlates, and
    /// leaves analyses to nodes that have one.
    pub runs: Option<RunShared>,
    pub placement: watch::Receiver<Placement>,
    /// Most analyses running on this node at once.
    pub node_limit: usize,
    /// Most analyses of one org running at once, cluster-wide.
    pub org_limit: u32,
    /// How often the tick runs.
    pub tick: Duration,
}

pub enum IncidentsMsg {
    /// Alerts of the org wait for its correlator.
    Nudge(Uuid),
    /// Claim queued analyses while this node has room.
    Claim,
    /// Periodic upkeep.
    Tick,
    /// The placement changed.
    Rehome,
    Status(RpcReplyPort<ActorSnapshot>),
}

impl ractor::Message for IncidentsMsg {}

pub struct IncidentsState {
    args: IncidentsArgs,
    started_at: DateTime<Utc>,
    correlators: HashMap<Uuid, ActorRef<CorrelatorMsg>>,
    /// Actor -> org, for supervision events.
    correlator_orgs: HashMap<ActorId, Uuid>,
    runs: HashMap<ActorId, (Uuid, ActorRef<IncidentRunMsg>)>,
    members: Vec<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub struct IncidentsSupervisor;

impl IncidentsSupervisor {
    async fn nudge(myself: &ActorRef<IncidentsMsg>, state: &mut IncidentsState, org_id: Uuid) {
        if let Some(c) = state.correlators.get(&org_id) {
            if c.cast(CorrelatorMsg::Nudge).is_ok() {
                return;
            }
        }
        let mut shared = state.args.correlators.clone();
        let me = myself.clone();
        shared.on_opened = Arc::new(move || {
            let _ = me.cast(IncidentsMsg::Claim);
        });
        let args = CorrelatorArgs { org_id, shared };
        match Actor::spawn_linked(None, CorrelatorActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                state.correlator_orgs.insert(actor.get_id(), org_id);
                state.correlators.insert(org_id, actor);
            }
            Err(e) => tracing::error!(%org_id, error = %e, "cannot start a correlator"),
        }
    }

    async fn claim(myself: &ActorRef<IncidentsMsg>, state: &mut IncidentsState) {
        let Some(runs) = state.args.runs.clone() else {
            return;
        };
        while state.runs.len() < state.args.node_limit {
            let claimed = match state
                .args
                .incidents
                .claim_analysis(&state.args.node, state.args.org_limit)
                .await
            {
                Ok(Some(c)) => c,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim an analysis");
                    return;
                }
            };
            let incident_id = claimed.incident.id;
            let args = IncidentRunArgs {
                claimed,
                shared: runs.clone(),
            };
            match Actor::spawn_linked(None, IncidentRunActor, args, myself.get_cell()).await {
                Ok((actor, _)) => {
                    state.runs.insert(actor.get_id(), (incident_id, actor));
                }
                Err(e) => {
                    // Left running: the stale-run job queues it again.
                    tracing::error!(%incident_id, error = %e, "cannot start an analysis");
                    return;
                }
            }
        }
    }

    async fn tick(myself: &ActorRef<IncidentsMsg>, state: &mut IncidentsState) {
        let incidents = state.args.incidents.clone();
        let ids: Vec<Uuid> = state.runs.values().map(|(id, _)| *id).collect();
        match incidents.heartbeat(&state.args.node, &ids).await {
            Ok(held) => {
                // Analyses this node lost (re-queued while it was unreachable, now another
                // node's) stop here, so that two nodes never run one analysis.
                for (incident_id, run) in state.runs.values() {
                    if !held.contains(incident_id) {
                        tracing::warn!(%incident_id, "an analysis is another node's now; stopping it here");
                        run.stop(Some("claimed by another node".into()));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot heartbeat the analyses"),
        }
        let waited = Utc::now() - chrono::Duration::seconds(2);
        match incidents.orgs_with_waiting_alerts(waited).await {
            Ok(orgs) => {
                let placement = state.args.placement.borrow().clone();
                for org in orgs.into_iter().filter(|o| placement.is_local(*o)) {
                    Self::nudge(myself, state, org).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for waiting alerts"),
        }
        Self::claim(myself, state).await;
    }

    async fn rehome(state: &mut IncidentsState) {
        let placement = state.args.placement.borrow().clone();
        let now: Vec<String> = placement.nodes().to_vec();
        let gone: Vec<String> = state
            .members
            .iter()
            .filter(|m| !now.contains(m))
            .cloned()
            .collect();
        state.members = now;
        state.correlators.retain(|org, actor| {
            let keep = placement.is_local(*org);
            if !keep {
                actor.stop(Some("org moved to another node".into()));
            }
            keep
        });
        if !gone.is_empty() {
            match state.args.incidents.requeue_stale(None, &gone).await {
                Ok(n) if n > 0 => {
                    tracing::warn!(count = n, "analyses of departed nodes queued again")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot queue departed nodes' analyses"),
            }
        }
    }

    async fn status(state: &IncidentsState) -> ActorSnapshot {
        let mut children = Vec::new();
        for c in state.correlators.values() {
            if let Ok(s) = ractor::call_t!(c, CorrelatorMsg::Status, 500) {
                children.push(s);
            }
        }
        for (_, r) in state.runs.values() {
            if let Ok(s) = ractor::call_t!(r, IncidentRunMsg::Status, 500) {
                children.push(s);
            }
        }
        let mut snap = ActorSnapshot::new(
            "incidents_supervisor",
            "incidents",
            "running",
            state.started_at,
        );
        snap.children = children;
        snap
    }
}

impl Actor for IncidentsSupervisor {
    type Msg = IncidentsMsg;
    type State = IncidentsState;
    type Arguments = IncidentsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IncidentsMsg>,
        args: IncidentsArgs,
    ) -> Result<IncidentsState, ActorProcessingErr> {
        let ticker = myself.send_interval(args.tick, || IncidentsMsg::Tick);
        let mut placement = args.placement.clone();
        let me = myself.clone();
        let watcher = tokio::spawn(async move {
            while placement.changed().await.is_ok() {
                if me.cast(IncidentsMsg::Rehome).is_err() {
                    return;
                }
            }
        });
        let _ = myself.cast(IncidentsMsg::Tick);
        let members = args.placement.borrow().nodes().to_vec();
        Ok(IncidentsState {
            args,
            started_at: Utc::now(),
            correlators: HashMap::new(),
            correlator_orgs: HashMap::new(),
            runs: HashMap::new(),
            members,
            tasks: vec![ticker, watcher],
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<IncidentsMsg>,
        state: &mut IncidentsState,
    ) -> Result<(), ActorProcessingErr> {
        for t in state.tasks.drain(..) {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<IncidentsMsg>,
        msg: IncidentsMsg,
        state: &mut IncidentsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IncidentsMsg::Nudge(org) => Self::nudge(&myself, state, org).await,
            IncidentsMsg::Claim => Self::claim(&myself, state).await,
            IncidentsMsg::Tick => Self::tick(&myself, state).await,
            IncidentsMsg::Rehome => Self::rehome(state).await,
            IncidentsMsg::Status(reply) => {
                let _ = reply.send(Self::status(state).await);
            }
        }
        Ok(())
    }

    /// A correlator that failed is forgotten (the next nudge or tick starts a new one); an
    /// analysis that ended makes room for the next.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<IncidentsMsg>,
        evt: SupervisionEvent,
        state: &mut IncidentsState,
    ) -> Result<(), ActorProcessingErr> {
        let cell: Option<ActorCell> = match &evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => Some(cell.clone()),
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::warn!(error = %err, "incident actor failed");
                Some(cell.clone())
            }
            _ => None,
        };
        if let Some(cell) = cell {
            let id = cell.get_id();
            if let Some(org) = state.correlator_orgs.remove(&id) {
                if state
                    .correlators
                    .get(&org)
                    .is_some_and(|a| a.get_id() == id)
                {
                    state.correlators.remove(&org);
                }
            }
            if state.runs.remove(&id).is_some() {
                let _ = myself.cast(IncidentsMsg::Claim);
            }
        }
        Ok(())
    }
}

/// Routes an analysis' query to this node's sessions supervisor.
pub struct LocalSessions(pub crate::SessionsHandle);

impl aurora_actors::incidents::incident_run::SessionRouter for LocalSessions {
    fn route(
        &self,
        session_id: Uuid,
        who: aurora_storage::auth::Principal,
        msg: aurora_actors::session::SessionMsg,
    ) -> Result<(), String> {
        let sessions = self
            .0
            .borrow()
            .clone()
            .ok_or("the sessions supervisor is restarting")?;
        sessions
            .cast(crate::sessions::SessionsMsg::Route {
                session_id,
                who,
                msg,
            })
            .map_err(|_| "the sessions supervisor is not running".to_string())
    }
}
