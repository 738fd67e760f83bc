//! `AgentRunActor`: one per turn. It runs [`run_turn`] in a task of its own, so that approval
//! decisions and cancels keep flowing through its mailbox while the turn waits; persists what
//! the turn added before it stops (its session then sends `END`); and turns a panic inside the
//! turn into an `error` frame instead of silence.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use aurora_models::llm::ChatMessage;
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::{Decision, ErrorCode, FrameSink, ServerFrame, UsageInfoData};
use crate::turn::{run_turn, TurnDeps, TurnInput, TurnIo};
use crate::{ActorSnapshot, Mailbox};
use aurora_storage::turns::{TurnMark, TurnWrite};

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// The stop reason of a run whose turn panicked (its session counts it as a failure).
pub const RUN_CRASHED: &str = "turn crashed";

pub struct AgentRunArgs {
    pub deps: Arc<TurnDeps>,
    pub input: TurnInput,
    pub frames: FrameSink,
    /// Counts the decisions and cancels its session sends it.
    pub mailbox: Mailbox,
    /// Told the turn's messages once they are saved (the session keeps its context in step).
    pub saved: oneshot::Sender<Vec<ChatMessage>>,
}

pub enum AgentRunMsg {
    /// `(confirmation_id, decision, approver)`.
    Decision(String, Decision, uuid::Uuid),
    Cancel,
    Status(RpcReplyPort<ActorSnapshot>),
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for AgentRunMsg {}

pub struct AgentRunState {
    /// Counted in `aurora_actors` while the actor lives.
    _live: crate::metrics::Live,
    decisions: mpsc::Sender<(String, Decision, uuid::Uuid)>,
    cancel: Arc<watch::Sender<bool>>,
    session_id: uuid::Uuid,
    started_at: DateTime<Utc>,
    mailbox: Mailbox,
}

pub struct AgentRunActor;

impl Actor for AgentRunActor {
    type Msg = AgentRunMsg;
    type State = AgentRunState;
    type Arguments = AgentRunArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentRunMsg>,
        args: AgentRunArgs,
    ) -> Result<AgentRunState, ActorProcessingErr> {
        let (decisions_tx, decisions_rx) = mpsc::channel(16);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let cancel_tx = Arc::new(cancel_tx);
        let session_id = args.input.session_id;
        let frames = args.frames.clone();
        let mailbox = args.mailbox.clone();
        let supervisor = myself.get_cell();
        let cancel = cancel_tx.clone();
        // What closes the turn's marker if the turn panics (else a later sweep would take it
        // for a turn its node died in).
        let (writer, who) = (args.deps.writer.clone(), args.input.who.clone());
        let work = async move {
            let mut io = TurnIo {
                frames: args.frames.clone(),
                decisions: decisions_rx,
                cancel: cancel_rx,
                supervisor: Some(supervisor),
            };
            // Tests inject a crash of the run here (a no-op unless configured).
            fail::fail_point!("agent-run");
            // The turn timeout cancels the turn the way a client would, so the partial answer
            // is kept, and then says why.
            // Boxed: the turn's future is large (every tool path is in it), and the task that
            // runs this block is moved a few times as it is spawned.
            let mut turn = Box::pin(run_turn(&args.deps, &args.input, &mut io));
            let mut timed_out = false;
            let outcome = tokio::select! {
                outcome = &mut turn => outcome,
                _ = tokio::time::sleep(args.deps.turn_timeout) => {
                    timed_out = true;
                    let _ = cancel.send(true);
                    turn.await
                }
            };
            if timed_out {
                let text = format!(
                    "the turn timed out after {} s",
                    args.deps.turn_timeout.as_secs()
                );
                let _ = args
                    .frames
                    .send(ServerFrame::error(
                        ErrorCode::Internal,
                        text,
                        Some(session_id),
                    ))
                    .await;
            }
            // The turn's last write: what its steps did not queue yet, closing its marker.
            let messages: Vec<serde_json::Value> = outcome.messages[outcome.written..]
                .iter()
                .filter_map(|m| serde_json::to_value(m).ok())
                .collect();
            let turn = TurnWrite {
                who: args.input.who.clone(),
                session_id,
                messages,
                context: None,
                first_query: (!outcome.opened && !args.input.resume)
                    .then(|| args.input.query.clone()),
                usage: outcome.usage,
                mark: if outcome.opened {
                    TurnMark::Close
                } else {
                    TurnMark::Keep
                },
            };
            let saved = args.deps.writer.save(turn).await;
            // Answered by now: they were queued before the last write.
            let mut unsaved = outcome.unsaved_steps;
            for step in outcome.pending {
                if let Err(e) = step.committed().await {
                    tracing::error!(error = %e, %session_id, "a step of the turn was not saved");
                    unsaved = true;
                }
            }
            match saved {
                // The user's running total after this turn (PROTOCOL.md: usage_info).
                Ok(total_cost) => {
                    // A folded conversation's context, or one a step of which was not stored,
                    // is read again from storage instead.
                    if !outcome.folded && !unsaved {
                        let _ = args.saved.send(outcome.messages);
                    }
                    let info = ServerFrame::UsageInfo {
                        data: UsageInfoData { total_cost },
                    };
                    let _ = args.frames.send(info).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, %session_id, "cannot persist the turn");
                    let _ = args
                        .frames
                        .send(ServerFrame::error(
                            ErrorCode::Internal,
                            "the turn could not be saved",
                            Some(session_id),
                        ))
                        .await;
                }
            }
        };
        // One task for the whole turn. Whatever happens to it, the actor stops; its session
        // then sends END, after it has marked itself free, so a client reacting to END never
        // meets SESSION_BUSY. A panic in the turn is caught here and reported.
        tokio::spawn(async move {
            let mut reason = "turn finished";
            if let Err(panic) = AssertUnwindSafe(work).catch_unwind().await {
                let e = panic_text(&panic);
                tracing::error!(error = %e, %session_id, "agent run crashed");
                reason = RUN_CRASHED;
                let close = TurnWrite {
                    who,
                    session_id,
                    messages: Vec::new(),
                    context: None,
                    first_query: None,
                    usage: Vec::new(),
                    mark: TurnMark::Close,
                };
                if let Err(e) = writer.save(close).await {
                    tracing::error!(error = %e, %session_id, "cannot close a crashed turn");
                }
                let _ = frames
                    .send(ServerFrame::error(
                        ErrorCode::Internal,
                        "the run failed unexpectedly",
                        Some(session_id),
                    ))
                    .await;
            }
            myself.stop(Some(reason.into()));
        });
        Ok(AgentRunState {
            _live: crate::metrics::Live::new("agent_run"),
            decisions: decisions_tx,
            cancel: cancel_tx,
            session_id,
            started_at: Utc::now(),
            mailbox,
        })
    }

    /// Stopped from outside (its session crashed, the node shuts down): the turn is cancelled
    /// like a client cancel, so what it produced so far is still saved.
    async fn post_stop(
        &self,
        _myself: ActorRef<AgentRunMsg>,
        state: &mut AgentRunState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state.cancel.send(true);
        Ok(())
    }

    /// Tool executions are linked under the run: their failures are already reported to the
    /// turn (as `tool_error`), so they must not stop the run, which ractor's default would do.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<AgentRunMsg>,
        evt: SupervisionEvent,
        _state: &mut AgentRunState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(_, err) = evt {
            tracing::warn!(error = %err, "tool execution failed");
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<AgentRunMsg>,
        msg: AgentRunMsg,
        state: &mut AgentRunState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, AgentRunMsg::Status(_)) {
            state.mailbox.taken();
        }
        match msg {
            AgentRunMsg::Decision(id, decision, approver) => {
                let _ = state.decisions.send((id, decision, approver)).await;
            }
            AgentRunMsg::Cancel => {
                let _ = state.cancel.send(true);
            }
            AgentRunMsg::Status(reply) => {
                let _ = reply.send(ActorSnapshot {
                    kind: "agent_run".into(),
                    id: state.session_id.to_string(),
                    state: if *state.cancel.borrow() {
                        "cancelling".into()
                    } else {
                        "running".into()
                    },
                    mailbox: state.mailbox.len(),
                    restarts: 0,
                    started_at: state.started_at,
                    owner: None,
                    children: vec![],
                });
            }
        }
        Ok(())
    }
}
