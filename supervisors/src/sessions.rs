//! `SessionsSupervisor`: owns every `SessionActor` of the node. Messages for a session are routed
//! through it: it checks the session belongs to the caller, starts the actor on first use,
//! stops actors idle past the configured time, and after a session actor crashes rebuilds it
//! from storage on its next message (the history is in the database, so nothing acknowledged is
//! lost), counting restarts per session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_actors::protocol::{ErrorCode, ServerFrame};
use aurora_actors::session::{SessionActor, SessionArgs, SessionMsg};
use aurora_actors::turn::TurnDeps;
use aurora_actors::ActorSnapshot;
use aurora_storage::auth::Principal;
use aurora_storage::sessions::Sessions;
use chrono::{DateTime, Utc};
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus, MessagingErr, RpcReplyPort,
    SupervisionEvent,
};
use uuid::Uuid;

pub struct SessionsArgs {
    pub deps: Arc<TurnDeps>,
    pub sessions: Sessions,
    pub system_prompt: String,
    pub default_model: String,
    pub idle_after: Duration,
}

pub enum SessionsMsg {
    /// Deliver `msg` to `who`'s session `session_id`.
    Route {
        session_id: Uuid,
        who: Principal,
        msg: SessionMsg,
    },
    /// Stop session actors idle for longer than `idle_after` (sent to self periodically).
    Sweep,
    Status(RpcReplyPort<ActorSnapshot>),
}

struct Entry {
    actor: ActorRef<SessionMsg>,
    owner: Uuid,
    last_used: Instant,
}

pub struct SessionsState {
    args: SessionsArgs,
    live: HashMap<Uuid, Entry>,
    restarts: HashMap<Uuid, u32>,
    started_at: DateTime<Utc>,
}

pub struct SessionsSupervisor;

/// The frames channel a message carries, to answer refusals on.
fn frames_of(msg: &SessionMsg) -> Option<tokio::sync::mpsc::Sender<ServerFrame>> {
    match msg {
        SessionMsg::Query { frames, .. } => Some(frames.clone()),
        _ => None,
    }
}

impl Actor for SessionsSupervisor {
    type Msg = SessionsMsg;
    type State = SessionsState;
    type Arguments = SessionsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionsMsg>,
        args: SessionsArgs,
    ) -> Result<SessionsState, ActorProcessingErr> {
        let every = (args.idle_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
        myself.send_interval(every, || SessionsMsg::Sweep);
        Ok(SessionsState {
            args,
            live: HashMap::new(),
            restarts: HashMap::new(),
            started_at: Utc::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionsMsg>,
        msg: SessionsMsg,
        state: &mut SessionsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionsMsg::Route {
                session_id,
                who,
                mut msg,
            } => {
                if let Some(entry) = state.live.get_mut(&session_id) {
                    if entry.owner != who.user_id {
                        // Someone else's session: exactly as if it did not exist.
                        if let Some(frames) = frames_of(&msg) {
                            let _ = frames
                                .send(ServerFrame::error(
                                    ErrorCode::NotFound,
                                    "session not found",
                                    Some(session_id),
                                ))
                                .await;
                        }
                        return Ok(());
                    }
                    // An actor that died but whose supervision event is still on its way takes
                    // no messages: rebuild it now instead of dropping this one.
                    let alive = matches!(
                        entry.actor.get_status(),
                        ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading
                    );
                    if alive {
                        match entry.actor.cast(msg) {
                            Ok(()) => {
                                entry.last_used = Instant::now();
                                return Ok(());
                            }
                            Err(MessagingErr::SendErr(returned)) => msg = returned,
                            Err(_) => return Ok(()),
                        }
                    }
                    state.live.remove(&session_id);
                }
                let args = SessionArgs {
                    session_id,
                    who: who.clone(),
                    deps: state.args.deps.clone(),
                    sessions: state.args.sessions.clone(),
                    system_prompt: state.args.system_prompt.clone(),
                    default_model: state.args.default_model.clone(),
                };
                let (actor, _) =
                    Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await?;
                let _ = actor.cast(msg);
                state.live.insert(
                    session_id,
                    Entry {
                        actor,
                        owner: who.user_id,
                        last_used: Instant::now(),
                    },
                );
            }
            SessionsMsg::Sweep => {
                let now = Instant::now();
                let idle: Vec<Uuid> = state
                    .live
                    .iter()
                    .filter(|(_, e)| now.duration_since(e.last_used) >= state.args.idle_after)
                    .map(|(id, _)| *id)
                    .collect();
                for id in idle {
                    let Some(entry) = state.live.get(&id) else {
                        continue;
                    };
                    // A session with a turn running is not idle, however old its last message.
                    let running = ractor::call_t!(entry.actor, SessionMsg::Status, 500)
                        .map(|s| s.state == "running")
                        .unwrap_or(false);
                    if !running {
                        if let Some(entry) = state.live.remove(&id) {
                            entry.actor.stop(Some("idle".into()));
                        }
                    }
                }
            }
            SessionsMsg::Status(reply) => {
                let mut children = Vec::new();
                for (id, entry) in &state.live {
                    if let Ok(mut snap) = ractor::call_t!(entry.actor, SessionMsg::Status, 500) {
                        snap.restarts += state.restarts.get(id).copied().unwrap_or(0);
                        children.push(snap);
                    }
                }
                let _ = reply.send(ActorSnapshot {
                    kind: "sessions_supervisor".into(),
                    id: "sessions".into(),
                    state: "running".into(),
                    restarts: 0,
                    started_at: state.started_at,
                    children,
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SessionsMsg>,
        evt: SupervisionEvent,
        state: &mut SessionsState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(id) = session_of(&cell, &state.live) {
                    state.live.remove(&id);
                    *state.restarts.entry(id).or_default() += 1;
                    tracing::error!(session_id = %id, error = %err, "session actor crashed; it is rebuilt from storage on its next message");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = session_of(&cell, &state.live) {
                    state.live.remove(&id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn session_of(cell: &ActorCell, live: &HashMap<Uuid, Entry>) -> Option<Uuid> {
    live.iter()
        .find(|(_, e)| e.actor.get_id() == cell.get_id())
        .map(|(id, _)| *id)
}
