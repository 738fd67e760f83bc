//! The agent turn loop against a scripted OpenAI-compatible server, a fake `kubectl`, and real
//! storage (SQLite) for policies, usage and the audit log.

mod common;

use std::time::Duration;

use aurora_actors::protocol::{Decision, ErrorCode, Mode, ServerFrame};
use aurora_actors::turn::TurnStatus;
use aurora_fakes::{Completion, Reply};
use aurora_models::llm::ChatMessage;
use aurora_storage::policies::Effect;
use common::{decide, harness, kinds, never, Action};

#[tokio::test]
async fn answers_stream_and_usage_is_recorded() {
    let h = harness(vec![Reply::text(&["Web ", "is fine."], (50, 5))]).await;
    let (out, frames) = h.run(h.input(Mode::Agent, true), never).await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert_eq!(
        kinds(&frames),
        ["message", "message", "usage_final", "message"]
    );
    assert_eq!(out.messages.len(), 2);
    assert_eq!(
        out.messages[1],
        ChatMessage::Assistant {
            content: "Web is fine.".into(),
            tool_calls: vec![]
        }
    );
    assert_eq!(out.totals.input_tokens, 50);
    // The turn hands one usage row per model call to its run, which writes them with the turn.
    assert_eq!(out.usage.len(), 1);
    assert_eq!(
        (out.usage[0].input_tokens, out.usage[0].output_tokens),
        (50, 5)
    );
    assert!(out.usage[0].cost_usd > 0.0, "gpt-4o is priced");
}

#[tokio::test]
async fn a_read_runs_and_its_output_goes_back_to_the_model() {
    let h = harness(vec![
        Reply::tool_call(
            "call_1",
            "cloud_exec",
            &["{\"command\": \"kubectl get pods\"}"],
            (80, 10),
        ),
        Reply::text(&["web-1 is crash looping."], (120, 8)),
    ])
    .await;
    let (out, frames) = h.run(h.input(Mode::Ask, true), never).await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert_eq!(
        kinds(&frames),
        [
            "usage_final",
            "tool_call",
            "tool_result",
            "message",
            "usage_final",
            "message"
        ]
    );
    let sent = h.fake.requests();
    assert_eq!(sent.len(), 2);
    let tool_msg = &sent[1]["messages"][3];
    assert_eq!(tool_msg["role"], "tool");
    assert!(tool_msg["content"]
        .as_str()
        .unwrap()
        .contains("CrashLoopBackOff"));
    assert!(h.audit_actions().await.contains(&"tool.exec".to_string()));
}

#[tokio::test]
async fn destructive_commands_wait_for_approval() {
    let script = || {
        vec![
            Reply::tool_call(
                "call_d",
                "cloud_exec",
                &["{\"command\": \"kubectl delete pod web-1\"}"],
                (80, 10),
            ),
            Reply::text(&["Done."], (100, 2)),
        ]
    };
    // Approved: it runs.
    let h = harness(script()).await;
    let (out, frames) = h
        .run(h.input(Mode::Agent, true), decide(Decision::Execute))
        .await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert_eq!(
        kinds(&frames),
        [
            "usage_final",
            "tool_call",
            "execution_confirmation",
            "tool_call",
            "tool_result",
            "message",
            "usage_final",
            "message"
        ]
    );
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("deleted"))
    );
    let actions = h.audit_actions().await;
    assert!(
        actions.contains(&"approval.decision".to_string())
            && actions.contains(&"tool.exec".to_string()),
        "{actions:?}"
    );

    // Declined: it does not, and the model is told.
    let h = harness(script()).await;
    let (out, frames) = h
        .run(h.input(Mode::Agent, true), decide(Decision::Cancel))
        .await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert!(kinds(&frames).contains(&"tool_error".to_string()));
    assert!(!kinds(&frames).contains(&"tool_result".to_string()));
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("declined"))
    );

    // Nobody answers: it times out and does not run.
    let mut h = harness(script()).await;
    h.deps.approval_timeout = Duration::from_millis(200);
    let (out, frames) = h.run(h.input(Mode::Agent, true), never).await;
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("no answer"))
    );
    assert!(!kinds(&frames).contains(&"tool_result".to_string()));

    // Ask mode: read-only, refused outright.
    let h = harness(script()).await;
    let (_, frames) = h.run(h.input(Mode::Ask, true), never).await;
    assert!(frames.iter().any(
        |f| matches!(f, ServerFrame::Error { data, .. } if data.code == ErrorCode::ReadOnlyMode)
    ));
    assert!(!kinds(&frames).contains(&"execution_confirmation".to_string()));

    // A background run never asks and never runs it.
    let h = harness(script()).await;
    let (out, frames) = h.run(h.input(Mode::Agent, false), never).await;
    assert!(!kinds(&frames).contains(&"execution_confirmation".to_string()));
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("background"))
    );
}

#[tokio::test]
async fn org_deny_rules_block_commands() {
    let h = harness(vec![
        Reply::tool_call(
            "call_1",
            "cloud_exec",
            &["{\"command\": \"kubectl get secrets -n prod\"}"],
            (10, 1),
        ),
        Reply::text(&["I may not look there."], (10, 1)),
    ])
    .await;
    h.deps
        .policies
        .create(&h.who, Effect::Deny, r"\bsecrets\b", None)
        .await
        .unwrap();
    let (out, frames) = h.run(h.input(Mode::Agent, true), never).await;
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("not run"))
    );
    assert!(!kinds(&frames).contains(&"tool_result".to_string()));
    assert!(h.audit_actions().await.contains(&"tool.denied".to_string()));
}

#[tokio::test]
async fn cancel_mid_stream_keeps_the_partial_answer() {
    let slow = Reply::Stream(Completion {
        text: (0..50).map(|i| format!("word{i} ")).collect(),
        usage: Some((10, 50)),
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let h = harness(vec![slow]).await;
    let (out, _) = h
        .run(h.input(Mode::Agent, true), |f| match f {
            ServerFrame::Message { data, .. } if data.text == "word2 " => Some(Action::Cancel),
            _ => None,
        })
        .await;
    assert_eq!(out.status, TurnStatus::Cancelled);
    let ChatMessage::Assistant { content, .. } = &out.messages[1] else {
        panic!("{:?}", out.messages)
    };
    assert!(
        content.starts_with("word0 word1 word2 ") && !content.contains("word49"),
        "{content}"
    );
}

#[tokio::test]
async fn provider_failures_end_the_turn_with_an_error_frame() {
    let h = harness(vec![Reply::status(503, "down for maintenance")]).await;
    let (out, frames) = h.run(h.input(Mode::Agent, true), never).await;
    assert!(matches!(
        &out.status,
        TurnStatus::Failed {
            code: ErrorCode::LlmUnavailable,
            ..
        }
    ));
    assert!(frames.iter().any(
        |f| matches!(f, ServerFrame::Error { data, .. } if data.code == ErrorCode::LlmUnavailable)
    ));
    assert_eq!(out.messages.len(), 1, "the query is kept");
}

#[tokio::test]
async fn ask_mode_offers_no_terraform_and_refuses_a_terraform_write() {
    let h = harness(vec![
        Reply::tool_call(
            "call_1",
            "terraform",
            &["{\"action\": \"write\", \"files\": {\"main.tf\": \"# x\"}}"],
            (10, 2),
        ),
        Reply::tool_call(
            "call_2",
            "terraform",
            &["{\"action\": \"write\", \"files\": {\"../x.tf\": \"# x\"}}"],
            (10, 2),
        ),
        Reply::text(&["Nothing written."], (10, 2)),
    ])
    .await;
    let (out, frames) = h.run(h.input(Mode::Ask, true), never).await;
    assert_eq!(out.status, TurnStatus::Completed);
    // The model was only offered cloud_exec.
    let offered: Vec<String> = h.fake.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(offered, ["cloud_exec"]);
    // A write it asked for anyway is refused as read-only; a bad file name is an argument error.
    assert!(frames.iter().any(
        |f| matches!(f, ServerFrame::Error { data, .. } if data.code == ErrorCode::ReadOnlyMode)
    ));
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("ask mode only reads"))
    );
    assert!(
        matches!(&out.messages[4], ChatMessage::Tool { content, .. } if content.contains("not a terraform file name"))
    );
    assert!(!kinds(&frames).contains(&"tool_result".to_string()));
}
