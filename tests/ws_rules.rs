//! PROTOCOL.md's rules around approvals, cancel and providers, over a real WebSocket on a whole
//! node: approval cancel and timeout, ask mode refusing a destructive call, cancel mid-stream
//! keeping the partial answer, and a turn through the Anthropic protocol.

mod common;

use std::time::Duration;

use aurora_fakes::{Completion, Reply};
use common::ws::{chat_node, chat_node_on, is_end, new_session, next, open, query, send};
use common::ws::{turn, turn_answering, types, Llm};
use common::Backend;
use serde_json::{json, Value};

/// A `kubectl` that logs each run in its working directory (the session's: the only place a
/// sandboxed tool can write), so a test can prove what never ran.
const LOGGING_KUBECTL: &str = "#!/bin/sh\necho \"$@\" >> ran\necho \"kubectl $1 done\"\n";

/// Where [`LOGGING_KUBECTL`] logs for the session `sid` of the user behind `token`.
async fn ran_log(t: &common::TestNode, token: &str, sid: &str) -> std::path::PathBuf {
    let me = t.principal(token).await;
    t.data_dir()
        .join("sessions")
        .join(me.user_id.to_string())
        .join(sid)
        .join("ran")
}

fn delete_call(id: &str) -> Reply {
    Reply::tool_call(
        id,
        "cloud_exec",
        &["{\"command\": \"kubectl delete pod web-1\"}"],
        (10, 2),
    )
}

fn tool_errors(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "tool_error")
        .map(|f| f["data"]["error"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_timed_out_and_read_only_destructive_calls_never_run() {
    let (t, _fake, _dir) = chat_node(
        vec![
            delete_call("call_1"),
            Reply::text(&["Left it alone."], (10, 2)),
            delete_call("call_2"),
            Reply::text(&["No answer, nothing done."], (10, 2)),
            delete_call("call_3"),
            Reply::text(&["Ask mode is read-only."], (10, 2)),
        ],
        LOGGING_KUBECTL,
        &[("AURORA_APPROVAL_TIMEOUT_SECS", "1")],
    )
    .await;
    let token = t.register("oncall@acme.io", "Acme").await;
    let sid = new_session(&t, &token).await;
    let mut ws = open(&t, &token).await;

    // The user declines.
    query(&mut ws, &sid, "delete web-1", "agent").await;
    let frames = turn(&mut ws, "cancel").await;
    assert!(
        types(&frames).contains(&"execution_confirmation"),
        "{frames:?}"
    );
    assert!(
        tool_errors(&frames)
            .iter()
            .any(|e| e.contains("declined by the user")),
        "{frames:?}"
    );

    // Nobody answers: after the approval timeout the call is not run and the turn goes on.
    query(&mut ws, &sid, "delete web-1 again", "agent").await;
    let frames = turn_answering(&mut ws, None).await;
    assert!(
        tool_errors(&frames)
            .iter()
            .any(|e| e.contains("no answer within 1 s")),
        "{frames:?}"
    );
    assert!(frames
        .iter()
        .any(|f| f["type"] == "message"
            && f["data"]["text"].as_str().unwrap().contains("nothing done")));

    // Ask mode refuses it outright, without asking.
    query(&mut ws, &sid, "delete web-1 in ask mode", "ask").await;
    let frames = turn(&mut ws, "execute").await;
    let kinds = types(&frames);
    assert!(!kinds.contains(&"execution_confirmation"), "{kinds:?}");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "error" && f["data"]["code"] == "READ_ONLY_MODE"),
        "{frames:?}"
    );
    assert!(
        !ran_log(&t, &token, &sid).await.exists(),
        "kubectl must never have run"
    );

    // Every decision is in the history the model sees next time.
    let (_, detail) = t
        .get(&format!("/chat_api/sessions/{sid}"), Some(&token))
        .await;
    let tools: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(tools.len(), 3, "{detail}");
    assert!(tools[0].contains("declined") && tools[1].contains("no answer"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_stream_keeps_the_partial_answer() {
    let slow = Reply::Stream(Completion {
        text: (0..200).map(|i| format!("word{i} ")).collect(),
        usage: Some((5, 200)),
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let (t, _fake, _dir) = chat_node(
        vec![slow, Reply::text(&["Fresh answer."], (5, 2))],
        LOGGING_KUBECTL,
        &[],
    )
    .await;
    let token = t.register("oncall@acme.io", "Acme").await;
    let sid = new_session(&t, &token).await;
    let mut ws = open(&t, &token).await;
    query(&mut ws, &sid, "explain everything", "agent").await;
    let mut streamed = String::new();
    let mut cancelled = false;
    let mut frames = Vec::new();
    while let Some(f) = next(&mut ws).await {
        if f["type"] == "message" && f["data"]["is_chunk"] == true {
            streamed.push_str(f["data"]["text"].as_str().unwrap());
            if !cancelled && streamed.contains("word5 ") {
                send(
                    &mut ws,
                    json!({ "type": "control", "action": "cancel", "session_id": sid }),
                )
                .await;
                cancelled = true;
            }
        }
        let end = is_end(&f);
        frames.push(f);
        if end {
            break;
        }
    }
    assert!(cancelled, "{frames:?}");
    assert!(
        !streamed.contains("word199"),
        "the stream stopped early: {streamed}"
    );
    // The partial answer is saved, exactly as far as it was streamed.
    let (_, detail) = t
        .get(&format!("/chat_api/sessions/{sid}"), Some(&token))
        .await;
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{detail}");
    let saved = messages[1]["content"].as_str().unwrap();
    assert!(saved.starts_with("word0 word1 ") && saved.len() <= streamed.len());

    // The session takes the next query normally.
    query(&mut ws, &sid, "again", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    assert!(frames.iter().any(|f| f["data"]["text"] == "Fresh answer."));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_through_the_anthropic_protocol() {
    let (t, fake, _dir) = chat_node_on(
        Backend::Sqlite,
        Llm::Anthropic,
        vec![
            Reply::tool_call(
                "toolu_1",
                "cloud_exec",
                &["{\"command\":", " \"kubectl get pods\"}"],
                (30, 6),
            ),
            Reply::text(&["All pods ", "are running."], (60, 5)),
        ],
        LOGGING_KUBECTL,
        &[],
    )
    .await;
    let token = t.register("oncall@acme.io", "Acme").await;
    let sid = new_session(&t, &token).await;
    let mut ws = open(&t, &token).await;
    query(&mut ws, &sid, "how are the pods?", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    let kinds = types(&frames);
    assert!(kinds.contains(&"tool_result"), "{kinds:?}");
    assert!(frames
        .iter()
        .any(|f| f["data"]["text"] == "All pods are running."));
    assert!(std::fs::read_to_string(ran_log(&t, &token, &sid).await)
        .unwrap()
        .contains("get pods"));
    // The second request carried the tool result back as a tool_result block.
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let sent = requests[1]["messages"].to_string();
    assert!(
        sent.contains("tool_result") && sent.contains("kubectl get done"),
        "{sent}"
    );
    let (_, usage) = t
        .get(&format!("/api/llm-usage/session/{sid}"), Some(&token))
        .await;
    let calls = usage["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(
        calls.iter().all(|c| c["provider"] == "anthropic"),
        "{usage}"
    );
    t.stop().await;
}
