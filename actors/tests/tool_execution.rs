//! A panicking tool is contained in its own actor: the caller gets an error, the supervisor
//! sees a failure and keeps running, and the next tool call works.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aurora_actors::tool_execution::{execute, ToolJob};
use aurora_actors::tools::{ToolError, ToolOutput};
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus, SupervisionEvent};

struct Parent;

impl Actor for Parent {
    type Msg = ();
    type State = Arc<AtomicU32>;
    type Arguments = Arc<AtomicU32>;

    async fn pre_start(
        &self,
        _: ActorRef<()>,
        failures: Arc<AtomicU32>,
    ) -> Result<Arc<AtomicU32>, ActorProcessingErr> {
        Ok(failures)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        evt: SupervisionEvent,
        failures: &mut Arc<AtomicU32>,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(..) = evt {
            failures.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn ok_job() -> ToolJob {
    Box::new(|| {
        Box::pin(async {
            Ok(ToolOutput {
                output: "fine".into(),
                exit_code: Some(0),
                truncated: false,
                duration_ms: 0,
            })
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_tool_becomes_an_error_and_nothing_else_breaks() {
    let failures = Arc::new(AtomicU32::new(0));
    let (parent, _) = Actor::spawn(None, Parent, failures.clone()).await.unwrap();
    let boom: ToolJob = Box::new(|| Box::pin(async { panic!("injected tool panic") }));
    let err = execute("call_1", boom, Some(parent.get_cell()))
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::Crashed(_)), "{err}");
    // The supervisor saw the failure and is still there; the next call works.
    for _ in 0..50 {
        if failures.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(failures.load(Ordering::SeqCst), 1);
    assert_eq!(parent.get_status(), ActorStatus::Running);
    let out = execute("call_2", ok_job(), Some(parent.get_cell()))
        .await
        .unwrap();
    assert_eq!(out.output, "fine");
    // Without a supervisor too.
    assert_eq!(
        execute("call_3", ok_job(), None).await.unwrap().output,
        "fine"
    );
    parent.stop(None);
}
