//! `ToolExecutionActor`: one per tool call. The tool runs inside the actor's handler, so a panic
//! in tool code is caught by ractor and reported to the supervisor as a failure instead of
//! unwinding through the turn; the turn sees the result channel close and reports a
//! `tool_error`, then goes on.

use std::time::Instant;

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use crate::tools::{ToolError, ToolOutput};

/// The work of one call.
pub type ToolJob = Box<dyn FnOnce() -> BoxFuture<'static, Result<ToolOutput, ToolError>> + Send>;

pub struct ToolExecutionArgs {
    pub tool_call_id: String,
    pub job: ToolJob,
    pub reply: oneshot::Sender<Result<ToolOutput, ToolError>>,
}

pub enum ToolExecutionMsg {
    Run,
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for ToolExecutionMsg {}

pub struct ToolExecutionState {
    /// Counted in `aurora_actors` while the actor lives.
    _live: crate::metrics::Live,
    job: Option<(ToolJob, oneshot::Sender<Result<ToolOutput, ToolError>>)>,
    tool_call_id: String,
}

pub struct ToolExecutionActor;

impl Actor for ToolExecutionActor {
    type Msg = ToolExecutionMsg;
    type State = ToolExecutionState;
    type Arguments = ToolExecutionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ToolExecutionMsg>,
        args: ToolExecutionArgs,
    ) -> Result<ToolExecutionState, ActorProcessingErr> {
        // Run in `handle`, not here: a failure in `pre_start` goes to the spawner, not the
        // supervisor.
        myself.send_message(ToolExecutionMsg::Run)?;
        Ok(ToolExecutionState {
            _live: crate::metrics::Live::new("tool_execution"),
            job: Some((args.job, args.reply)),
            tool_call_id: args.tool_call_id,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ToolExecutionMsg>,
        msg: ToolExecutionMsg,
        state: &mut ToolExecutionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ToolExecutionMsg::Run => {
                if let Some((job, reply)) = state.job.take() {
                    let started = Instant::now();
                    // Tests inject a crash of the tool here (a no-op unless configured).
                    fail::fail_point!("tool-execution");
                    let result = job().await;
                    tracing::debug!(tool_call_id = %state.tool_call_id, ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "tool finished");
                    let _ = reply.send(result);
                }
                myself.stop(None);
            }
        }
        Ok(())
    }
}

/// Runs `job` in its own actor under `supervisor` (if any) and waits for its result; a crash
/// of the tool becomes `ToolError::Crashed`.
pub async fn execute(
    tool_call_id: &str,
    job: ToolJob,
    supervisor: Option<ActorCell>,
) -> Result<ToolOutput, ToolError> {
    let (tx, rx) = oneshot::channel();
    let args = ToolExecutionArgs {
        tool_call_id: tool_call_id.to_string(),
        job,
        reply: tx,
    };
    let spawned = match supervisor {
        Some(sup) => Actor::spawn_linked(None, ToolExecutionActor, args, sup).await,
        None => Actor::spawn(None, ToolExecutionActor, args).await,
    };
    if let Err(e) = spawned {
        return Err(ToolError::Crashed(format!("cannot start the tool: {e}")));
    }
    rx.await
        .unwrap_or_else(|_| Err(ToolError::Crashed("the tool crashed while running".into())))
}
