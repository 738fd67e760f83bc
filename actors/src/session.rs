//! `SessionActor`: one per chat session. It owns the session's one running turn: a query while
//! a turn runs is `SESSION_BUSY`; decisions and cancels go to the running turn. The history
//! lives in storage, so a session actor can be stopped and rebuilt anywhere without loss.
//!
//! An idle session hibernates: asked by its supervisor, it hands back what it would otherwise
//! have to reload (its model context) as a [`Dormant`] record and stops. An actor costs about
//! 10 KiB however little it holds, the record a few hundred bytes, so a node can keep many
//! more sessions ready; the next message starts an actor from the record again.

use std::sync::Arc;

use aurora_models::llm::ChatMessage;
use aurora_storage::auth::Principal;
use aurora_storage::sessions::Sessions;
use aurora_storage::turns::OpenTurn;
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::agent_run::{AgentRunActor, AgentRunArgs, AgentRunMsg, RUN_CRASHED};
use crate::protocol::{Decision, ErrorCode, FrameSink, Mode, ServerFrame};
use crate::turn::{TurnDeps, TurnInput};
use crate::{ActorSnapshot, Counted, Mailbox, SnapshotOwner};

pub struct SessionArgs {
    pub session_id: Uuid,
    pub who: Principal,
    /// What every session of the node shares: one allocation, not one copy per session.
    pub shared: Arc<SessionShared>,
    /// Counts what the sessions supervisor routes here.
    pub mailbox: Mailbox,
    /// What the session kept when it last hibernated (`None` for a session new to this node).
    pub resume: Option<Dormant>,
}

/// A hibernated session's state: what its next actor starts from.
#[derive(Debug)]
pub struct Dormant {
    /// Whose org the session is in, for the admin console's checks while it sleeps.
    pub org_id: Uuid,
    /// The model context, as [`SessionState`] keeps it (`None`: reload from storage).
    pub context: Option<Box<[ChatMessage]>>,
    /// Failed runs so far, so the admin console's restart count survives hibernation.
    pub runs_failed: u32,
}

/// What all sessions of a node share.
pub struct SessionShared {
    pub deps: Arc<TurnDeps>,
    pub sessions: Sessions,
    pub system_prompt: String,
    pub default_model: String,
}

pub enum SessionMsg {
    Query {
        query: String,
        mode: Mode,
        model: Option<String>,
        interactive: bool,
        frames: mpsc::Sender<ServerFrame>,
        /// The caller's role as the edge found it for this query (a member demoted since the
        /// session started is held to the new role from this turn on); `None`: unchanged.
        role: Option<aurora_storage::auth::Role>,
    },
    Decision {
        confirmation_id: String,
        decision: Decision,
        /// Who answered: their role is checked when the turn receives the answer.
        approver: Uuid,
    },
    Cancel,
    /// A (re)connected client's channel: the running turn's frames go there from now on.
    Attach(mpsc::Sender<ServerFrame>),
    /// The node that ran this session's turn died: continue the turn from its last durable
    /// step (if it is still open and no other node took it), streaming to `frames` if a
    /// client waits for it. Already running here: `frames` is attached to it.
    Resume {
        frames: Option<mpsc::Sender<ServerFrame>>,
    },
    Status(RpcReplyPort<ActorSnapshot>),
    /// Hibernate if idle: the answer is the state to keep, and the actor stops. `None` (it
    /// keeps running) when a turn runs or messages wait behind this one.
    Hibernate(RpcReplyPort<Option<Dormant>>),
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for SessionMsg {}

pub struct SessionState {
    /// Counted in `aurora_actors` while the actor lives.
    _live: crate::metrics::Live,
    args: SessionArgs,
    run: Option<Run>,
    /// The model context so far, loaded from storage on the first turn and extended by every
    /// saved turn; `None` until then, and again after a turn whose save is uncertain.
    context: Option<Vec<ChatMessage>>,
    started_at: DateTime<Utc>,
    runs_failed: u32,
}

/// The running turn.
struct Run {
    actor: Counted<AgentRunMsg>,
    frames: FrameSink,
    /// The turn's messages, sent by the run once they are saved.
    saved: oneshot::Receiver<Vec<ChatMessage>>,
}

pub struct SessionActor;

/// The stop reason of a session that hibernated.
pub const HIBERNATED: &str = "hibernated";

fn owner_of(who: &Principal) -> SnapshotOwner {
    SnapshotOwner {
        org_id: who.org_id,
        user_id: Some(who.user_id),
    }
}

impl SessionActor {
    async fn start_turn(
        myself: &ActorRef<SessionMsg>,
        state: &mut SessionState,
        (query, mode, model, interactive, frames): QueryParts,
        resume: bool,
    ) -> Result<(), ActorProcessingErr> {
        let sid = state.args.session_id;
        if state.run.is_some() {
            let _ = frames
                .send(ServerFrame::error(
                    ErrorCode::SessionBusy,
                    "a turn is already running in this session",
                    Some(sid),
                ))
                .await;
            return Ok(());
        }
        let loaded = match state.context.take() {
            Some(context) => Ok(context),
            None => state
                .args
                .shared
                .sessions
                .llm_context(&state.args.who, sid)
                .await
                .map(|context| {
                    context
                        .into_iter()
                        .filter_map(|m| serde_json::from_value::<ChatMessage>(m).ok())
                        .collect()
                }),
        };
        let history: Vec<ChatMessage> = match loaded {
            Ok(history) => crate::turn::well_formed(history),
            Err(e) => {
                let code = if matches!(e, aurora_storage::StorageError::NotFound(_)) {
                    ErrorCode::NotFound
                } else {
                    ErrorCode::Internal
                };
                let _ = frames
                    .send(ServerFrame::error(code, e.to_string(), Some(sid)))
                    .await;
                let _ = frames.send(ServerFrame::end(sid)).await;
                return Ok(());
            }
        };
        // Tests inject a crash of the session here (a no-op unless configured).
        fail::fail_point!("session-query");
        let mut messages = Vec::with_capacity(history.len() + 1);
        messages.push(ChatMessage::System {
            content: state.args.shared.system_prompt.clone(),
        });
        messages.extend(history.iter().cloned());
        state.context = Some(history);
        let input = TurnInput {
            who: state.args.who.clone(),
            session_id: sid,
            history: messages,
            query,
            model: model.unwrap_or_else(|| state.args.shared.default_model.clone()),
            mode,
            interactive,
            resume,
        };
        let sink = FrameSink::new(frames);
        let (saved_tx, saved) = oneshot::channel();
        let args = AgentRunArgs {
            deps: state.args.shared.deps.clone(),
            input,
            frames: sink.clone(),
            mailbox: Mailbox::new(),
            saved: saved_tx,
        };
        let mailbox = args.mailbox.clone();
        let (run, _) = Actor::spawn_linked(None, AgentRunActor, args, myself.get_cell()).await?;
        state.run = Some(Run {
            actor: Counted::new(run, mailbox),
            frames: sink,
            saved,
        });
        Ok(())
    }
}

impl SessionActor {
    /// Continues the turn a dead node left open (see [`SessionMsg::Resume`]).
    async fn resume(
        myself: &ActorRef<SessionMsg>,
        state: &mut SessionState,
        frames: Option<mpsc::Sender<ServerFrame>>,
    ) -> Result<(), ActorProcessingErr> {
        let sid = state.args.session_id;
        if let Some(run) = &state.run {
            if let Some(frames) = frames {
                run.frames.attach(frames);
            }
            return Ok(());
        }
        let shared = state.args.shared.clone();
        let who = state.args.who.clone();
        // Tell a waiting client why nothing follows, and end its wait.
        let finish = |error: Option<(ErrorCode, String)>| {
            let frames = frames.clone();
            async move {
                if let Some(frames) = frames {
                    if let Some((code, text)) = error {
                        let _ = frames.send(ServerFrame::error(code, text, Some(sid))).await;
                    }
                    let _ = frames.send(ServerFrame::end(sid)).await;
                }
            }
        };
        let seen = match shared.sessions.open_turn(&who, sid).await {
            Ok(Some(seen)) => seen,
            // Ended (its last write landed before its node died) or never durable.
            Ok(None) => {
                finish(Some((ErrorCode::Internal, TURN_GONE.into()))).await;
                return Ok(());
            }
            Err(e) => {
                tracing::error!(session_id = %sid, error = %e, "cannot read the turn to continue");
                finish(Some((ErrorCode::Internal, TURN_GONE.into()))).await;
                return Ok(());
            }
        };
        let Some(open) = OpenTurn::parse(&seen) else {
            finish(Some((ErrorCode::Internal, TURN_GONE.into()))).await;
            return Ok(());
        };
        // Older than two turn timeouts: whatever ran it is long gone (a turn never runs past
        // one), and nobody is waiting for it.
        let stale = chrono::Duration::from_std(shared.deps.turn_timeout * 2)
            .is_ok_and(|limit| Utc::now() - open.started_at > limit);
        if open.resumes >= MAX_RESUMES || stale {
            // Closed, not continued: its dangling calls are answered by the next turn.
            let closed = shared.sessions.claim_turn(&who, sid, &seen, None).await;
            tracing::warn!(session_id = %sid, resumes = open.resumes, stale, ?closed, "a turn is abandoned instead of continued");
            let text = if stale {
                "this turn stopped with its node too long ago to be continued (your history holds what was saved): ask again".to_string()
            } else {
                format!(
                    "this turn was continued {} times after the node running it stopped; it is abandoned (your history holds what was saved)",
                    open.resumes
                )
            };
            finish(Some((ErrorCode::Internal, text))).await;
            return Ok(());
        }
        let next = OpenTurn {
            node: shared.deps.node.clone(),
            resumes: open.resumes + 1,
            ..open.clone()
        };
        match shared
            .sessions
            .claim_turn(&who, sid, &seen, Some(&next))
            .await
        {
            Ok(true) => {}
            // Another node took it, or it ended meanwhile.
            Ok(false) => {
                finish(None).await;
                return Ok(());
            }
            Err(e) => {
                tracing::error!(session_id = %sid, error = %e, "cannot take over the turn");
                finish(Some((ErrorCode::Internal, TURN_GONE.into()))).await;
                return Ok(());
            }
        }
        tracing::info!(session_id = %sid, from = %open.node, resumes = next.resumes, "continuing a turn whose node stopped");
        let mode = serde_json::from_value(serde_json::Value::String(open.mode.clone()))
            .unwrap_or(Mode::Ask);
        // Without a client, frames go nowhere until one attaches.
        let frames = frames.unwrap_or_else(|| mpsc::channel(1).0);
        // The context is read again: it holds the turn's steps so far.
        state.context = None;
        let parts = (
            String::new(),
            mode,
            Some(open.model),
            open.interactive,
            frames,
        );
        Self::start_turn(myself, state, parts, true).await
    }
}

/// What a client waiting on a turn that cannot be continued is told.
pub const TURN_GONE: &str = "the node running this turn stopped and the turn cannot be continued (your history holds what was saved): ask again";

/// Continuations of one turn after its node died, before it is abandoned: a turn that takes
/// its node down (a tool or a reply that crashes it) must not take node after node with it.
const MAX_RESUMES: u32 = 2;

/// A query's fields: text, mode, model, interactive, client channel.
type QueryParts = (
    String,
    Mode,
    Option<String>,
    bool,
    mpsc::Sender<ServerFrame>,
);

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionMsg>,
        mut args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let (context, runs_failed) = match args.resume.take() {
            Some(d) => (d.context.map(Vec::from), d.runs_failed),
            None => (None, 0),
        };
        Ok(SessionState {
            _live: crate::metrics::Live::new("session"),
            args,
            run: None,
            context,
            started_at: Utc::now(),
            runs_failed,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let sid = state.args.session_id;
        if !matches!(msg, SessionMsg::Status(_) | SessionMsg::Hibernate(_)) {
            state.args.mailbox.taken();
        }
        match msg {
            SessionMsg::Query {
                query,
                mode,
                model,
                interactive,
                frames,
                role,
            } => {
                if let Some(role) = role {
                    state.args.who.role = role;
                }
                // Boxed: the turn start is the largest future this actor awaits, and an
                // unboxed one would sit in every idle session's task.
                let query = (query, mode, model, interactive, frames);
                Box::pin(Self::start_turn(&myself, state, query, false)).await?;
            }
            SessionMsg::Decision {
                confirmation_id,
                decision,
                approver,
            } => {
                if let Some(run) = &state.run {
                    let _ =
                        run.actor
                            .cast(AgentRunMsg::Decision(confirmation_id, decision, approver));
                }
            }
            SessionMsg::Cancel => {
                if let Some(run) = &state.run {
                    let _ = run.actor.cast(AgentRunMsg::Cancel);
                }
            }
            SessionMsg::Resume { frames } => {
                Box::pin(Self::resume(&myself, state, frames)).await?;
            }
            SessionMsg::Attach(frames) => {
                if let Some(run) = &state.run {
                    run.frames.attach(frames);
                }
            }
            SessionMsg::Hibernate(reply) => {
                // Messages queued behind this one came after the supervisor asked: stopping
                // now would drop them. A supervisor that gave up waiting would not record the
                // state: then stay too.
                if state.run.is_some() || !state.args.mailbox.is_empty() || reply.is_closed() {
                    let _ = reply.send(None);
                    return Ok(());
                }
                let dormant = Dormant {
                    org_id: state.args.who.org_id,
                    context: state.context.take().map(Vec::into_boxed_slice),
                    runs_failed: state.runs_failed,
                };
                if reply.send(Some(dormant)).is_ok() {
                    myself.stop(Some(HIBERNATED.into()));
                }
            }
            SessionMsg::Status(reply) => {
                let mut children = Vec::new();
                if let Some(run) = &state.run {
                    let run = run.actor.actor.clone();
                    let call =
                        Box::pin(async move { ractor::call_t!(run, AgentRunMsg::Status, 500) });
                    if let Ok(mut snap) = call.await {
                        snap.owner = Some(owner_of(&state.args.who));
                        children.push(snap);
                    }
                }
                let _ = reply.send(ActorSnapshot {
                    kind: "session".into(),
                    id: sid.to_string(),
                    state: if state.run.is_some() {
                        "running".into()
                    } else {
                        "idle".into()
                    },
                    mailbox: state.args.mailbox.len(),
                    restarts: state.runs_failed,
                    started_at: state.started_at,
                    owner: Some(owner_of(&state.args.who)),
                    children,
                });
            }
        }
        Ok(())
    }

    /// Stopped (idle, shutdown, moved): a running turn is cancelled and saves what it has.
    async fn post_stop(
        &self,
        myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children(Some("session stopped".into()));
        // The run's end is normally reported when it terminates, which a stopping session no
        // longer hears: its client gets the END here (the run still saves what it has).
        if let Some(run) = state.run.take() {
            run.frames
                .send(ServerFrame::end(state.args.session_id))
                .await;
        }
        Ok(())
    }

    /// A run ends by stopping itself; if it fails instead, its client still gets an error and
    /// END, and the session stays usable.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SessionMsg>,
        evt: SupervisionEvent,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let sid = state.args.session_id;
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, reason) if is_run(&cell, &state.run) => {
                if reason.as_deref() == Some(RUN_CRASHED) {
                    state.runs_failed += 1;
                }
                if let Some(mut run) = state.run.take() {
                    // Extend the context with what was saved; if nothing was (the save failed,
                    // the turn crashed), reload from storage next time instead of guessing.
                    match (run.saved.try_recv(), state.context.as_mut()) {
                        (Ok(added), Some(context)) => context.extend(added),
                        _ => state.context = None,
                    }
                    run.frames.send(ServerFrame::end(sid)).await;
                }
            }
            SupervisionEvent::ActorFailed(cell, err) if is_run(&cell, &state.run) => {
                tracing::error!(session_id = %sid, error = %err, "agent run failed");
                state.runs_failed += 1;
                state.context = None;
                if let Some(Run { frames, .. }) = state.run.take() {
                    let _ = frames
                        .send(ServerFrame::error(
                            ErrorCode::Internal,
                            "the run failed unexpectedly",
                            Some(sid),
                        ))
                        .await;
                    let _ = frames.send(ServerFrame::end(sid)).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn is_run(cell: &ActorCell, run: &Option<Run>) -> bool {
    run.as_ref()
        .is_some_and(|r| r.actor.actor.get_id() == cell.get_id())
}
