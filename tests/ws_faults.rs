//! Injected panics in a tool, a run, a session and the sessions supervisor, seen from a real
//! WebSocket client: each failure is reported to its own client, the node and other sessions
//! keep working, the failed session works again, and nothing acknowledged is lost.
//!
//! Fail points are process-wide, so this file holds a single test (nextest runs each test in
//! its own process; under plain `cargo test` the one test has the binary to itself).

mod common;

use std::time::Duration;

use aurora_fakes::Reply;
use common::ws::{chat_node, new_session, open, query, turn, types};
use reqwest::StatusCode;
use serde_json::Value;

fn error_codes(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .filter(|f| f["type"] == "error")
        .map(|f| f["data"]["code"].as_str().unwrap())
        .collect()
}

fn said(frames: &[Value], text: &str) -> bool {
    frames
        .iter()
        .any(|f| f["type"] == "message" && f["data"]["text"] == text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_stay_inside_the_actor_that_panicked() {
    let (t, _fake, _dir) = chat_node(
        vec![
            Reply::tool_call(
                "call_1",
                "cloud_exec",
                &["{\"command\": \"kubectl get pods\"}"],
                (10, 2),
            ),
            Reply::text(&["The tool crashed; moving on."], (10, 2)),
            Reply::text(&["Back after the run crash."], (10, 2)),
            Reply::text(&["Session A is fine."], (10, 2)),
            Reply::text(&["Session B is back."], (10, 2)),
            Reply::text(&["The supervisor is back."], (10, 2)),
        ],
        "#!/bin/sh\necho web-1 Running\n",
        &[("AURORA_RATE_LIMIT_QUERIES", "100")],
    )
    .await;
    let token = t.register("oncall@acme.io", "Acme").await;
    let (a, b) = (new_session(&t, &token).await, new_session(&t, &token).await);
    let mut ws = open(&t, &token).await;

    // A panicking tool: `tool_error`, and the turn goes on to its answer.
    fail::cfg("tool-execution", "1*panic(injected tool panic)").unwrap();
    query(&mut ws, &a, "check the pods", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    assert!(types(&frames).contains(&"tool_error"), "{frames:?}");
    assert!(said(&frames, "The tool crashed; moving on."), "{frames:?}");

    // A panicking run: `error` then END, and the session takes the next query.
    fail::cfg("agent-run", "1*panic(injected run panic)").unwrap();
    query(&mut ws, &a, "and now?", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    assert_eq!(error_codes(&frames), ["INTERNAL"], "{frames:?}");
    query(&mut ws, &a, "and now?", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    assert!(said(&frames, "Back after the run crash."), "{frames:?}");

    // A panicking session: its client gets `error` + END; the other session is untouched; the
    // crashed one is rebuilt from storage (after its backoff) on its next query.
    fail::cfg("session-query", "1*panic(injected session panic)").unwrap();
    query(&mut ws, &b, "hello B", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    assert_eq!(error_codes(&frames), ["INTERNAL"], "{frames:?}");
    query(&mut ws, &a, "still there, A?", "agent").await;
    assert!(said(&turn(&mut ws, "execute").await, "Session A is fine."));
    query(&mut ws, &b, "hello again B", "agent").await;
    assert!(said(&turn(&mut ws, "execute").await, "Session B is back."));
    let tree = t.node().actor_tree().await.unwrap();
    let sessions = tree
        .children
        .iter()
        .find(|c| c.kind == "sessions_supervisor")
        .unwrap();
    let restarts = |id: &str| {
        sessions
            .children
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.restarts)
    };
    // A: one failed run (counted by the session); B: one crash (counted by the supervisor).
    assert_eq!((restarts(&a), restarts(&b)), (Some(1), Some(1)), "{tree:?}");

    // The sessions supervisor itself dies: the node restarts it and queries work again.
    let old = t.node().sessions().unwrap();
    old.kill();
    let mut waited = Duration::ZERO;
    while t
        .node()
        .sessions()
        .is_none_or(|s| s.get_id() == old.get_id())
    {
        assert!(
            waited < Duration::from_secs(5),
            "sessions supervisor not restarted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    query(&mut ws, &a, "after the restart?", "agent").await;
    assert!(said(
        &turn(&mut ws, "execute").await,
        "The supervisor is back."
    ));
    let tree = t.node().actor_tree().await.unwrap();
    let sessions = tree
        .children
        .iter()
        .find(|c| c.kind == "sessions_supervisor")
        .unwrap();
    assert_eq!(sessions.restarts, 1, "{tree:?}");

    // Nothing acknowledged was lost: every completed turn is in the history.
    let count = |detail: &Value| detail["messages"].as_array().unwrap().len();
    let (_, detail_a) = t
        .get(&format!("/chat_api/sessions/{a}"), Some(&token))
        .await;
    // tool turn (user, assistant call, tool, assistant) + three answered turns (2 each)
    assert_eq!(count(&detail_a), 4 + 2 * 3, "{detail_a}");
    let (_, detail_b) = t
        .get(&format!("/chat_api/sessions/{b}"), Some(&token))
        .await;
    assert_eq!(count(&detail_b), 2, "{detail_b}");
    assert_eq!(t.get("/health", None).await.0, StatusCode::OK);
    t.stop().await;
}
