//! Durable turns, against real storage (SQLite): a turn's steps are stored as they happen (the
//! query when accepted, the model's tool call before the tool runs, its result after), the
//! session's turn marker stays open until the turn's last write, a turn continued after its
//! node died reports the calls left without results as interrupted (never runs them again),
//! and a tool call that cannot be put on record is not run.

mod common;

use aurora_actors::protocol::{Mode, ServerFrame};
use aurora_actors::turn::{TurnStatus, INTERRUPTED};
use aurora_fakes::Reply;
use aurora_models::llm::{ChatMessage, ToolCall};
use aurora_storage::sessions::Sessions;
use aurora_storage::turns::{OpenTurn, TurnMark, TurnWrite};
use common::{harness, kinds, never};

fn get_pods() -> Reply {
    Reply::tool_call(
        "c1",
        "cloud_exec",
        &["{\"command\": \"kubectl get pods\"}"],
        (10, 5),
    )
}

fn roles(context: &[serde_json::Value]) -> Vec<&str> {
    context
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn a_turns_steps_are_stored_as_they_happen_and_its_marker_stays_open_until_its_last_write() {
    let h = harness(vec![
        get_pods(),
        Reply::text(&["web-1 crash loops"], (20, 5)),
    ])
    .await;
    let (out, _) = h.run(h.input(Mode::Ask, true), never).await;
    assert_eq!(out.status, TurnStatus::Completed);
    // Queued as the turn went: the query, the call, its result. The final answer is the
    // run's last write.
    assert!(out.opened);
    assert_eq!(out.messages.len(), 4);
    assert_eq!(out.written, 3);
    assert_eq!(
        out.usage.len(),
        1,
        "the first call's usage went with its step"
    );
    let sessions = Sessions::new(h.db.clone());
    let stored = sessions.llm_context(&h.who, h.session_id).await.unwrap();
    assert_eq!(roles(&stored), ["user", "assistant", "tool"]);
    assert!(stored[1].to_string().contains("kubectl get pods"));
    assert!(stored[2].to_string().contains("CrashLoopBackOff"));
    let marker = sessions
        .open_turn(&h.who, h.session_id)
        .await
        .unwrap()
        .expect("open until the last write");
    let open = OpenTurn::parse(&marker).unwrap();
    assert_eq!(
        (open.node.as_str(), open.mode.as_str(), open.interactive),
        ("test-node", "ask", true)
    );
    // The last write, as the run makes it, closes the turn.
    let rest = out.messages[out.written..]
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    h.deps
        .writer
        .save(TurnWrite {
            who: h.who.clone(),
            session_id: h.session_id,
            messages: rest,
            context: None,
            first_query: None,
            usage: out.usage,
            mark: TurnMark::Close,
        })
        .await
        .unwrap();
    assert_eq!(
        sessions.open_turn(&h.who, h.session_id).await.unwrap(),
        None
    );
    let stored = sessions.llm_context(&h.who, h.session_id).await.unwrap();
    assert_eq!(roles(&stored), ["user", "assistant", "tool", "assistant"]);
}

/// The history a node left: a destructive call made, its result never stored.
fn dangling() -> Vec<ChatMessage> {
    vec![
        ChatMessage::User {
            content: "delete the broken pod".into(),
        },
        ChatMessage::Assistant {
            content: String::new(),
            tool_calls: vec![ToolCall {
                id: "c9".into(),
                name: "cloud_exec".into(),
                arguments: "{\"command\": \"kubectl delete pod web-1\"}".into(),
            }],
        },
    ]
}

#[tokio::test]
async fn a_continued_turn_reports_calls_without_results_as_interrupted_and_runs_nothing_again() {
    let h = harness(vec![Reply::text(
        &["I will check before repeating it."],
        (5, 5),
    )])
    .await;
    let mut input = h.input(Mode::Agent, true);
    input.history.extend(dangling());
    input.resume = true;
    input.query = String::new();
    let (out, frames) = h.run(input, never).await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert_eq!(
        out.messages[0],
        ChatMessage::Tool {
            tool_call_id: "c9".into(),
            content: INTERRUPTED.into(),
        }
    );
    assert!(
        !out.messages
            .iter()
            .any(|m| matches!(m, ChatMessage::User { .. })),
        "no new query: {:?}",
        out.messages
    );
    assert_eq!(kinds(&frames)[0], "tool_error");
    assert!(
        matches!(&frames[0], ServerFrame::ToolError { data, .. } if data.error.starts_with("interrupted"))
    );
    // The model saw the call answered as interrupted; nothing ran.
    let sent = h.fake.requests();
    assert_eq!(sent.len(), 1);
    let last = sent[0]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "tool");
    assert_eq!(last["tool_call_id"], "c9");
    assert!(!h.audit_actions().await.contains(&"tool.exec".to_string()));
}

#[tokio::test]
async fn a_new_query_after_an_interrupted_turn_answers_its_dangling_calls_first() {
    let h = harness(vec![Reply::text(&["ok"], (5, 5))]).await;
    let mut input = h.input(Mode::Agent, true);
    input.history.extend(dangling());
    let (out, _) = h.run(input, never).await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert!(
        matches!(&out.messages[0], ChatMessage::Tool { tool_call_id, .. } if tool_call_id == "c9")
    );
    assert!(
        matches!(&out.messages[1], ChatMessage::User { content } if content == "Why is web failing?")
    );
    // What the provider got is well formed: the call's answer comes before the new question.
    let sent = h.fake.requests();
    let messages = sent[0]["messages"].as_array().unwrap();
    let n = messages.len();
    assert_eq!(messages[n - 2]["role"], "tool");
    assert_eq!(messages[n - 1]["role"], "user");
}

#[tokio::test]
async fn a_tool_call_that_cannot_be_stored_is_not_run() {
    let h = harness(vec![get_pods(), Reply::text(&["could not check"], (5, 5))]).await;
    // The session is deleted: every step of the turn is refused by storage.
    Sessions::new(h.db.clone())
        .delete(&h.who, h.session_id)
        .await
        .unwrap();
    let (out, frames) = h.run(h.input(Mode::Ask, true), never).await;
    let refused: Vec<&ServerFrame> = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::ToolError { data, .. } if data.error.contains("could not be saved")))
        .collect();
    assert_eq!(refused.len(), 1, "{frames:?}");
    assert!(
        !kinds(&frames).contains(&"tool_result".to_string()),
        "{frames:?}"
    );
    assert!(!h.audit_actions().await.contains(&"tool.exec".to_string()));
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.starts_with("not run"))
    );
}

#[test]
fn results_that_answer_no_call_or_an_answered_one_are_left_out_of_the_models_view() {
    use aurora_actors::turn::well_formed;
    let tool = |id: &str, content: &str| ChatMessage::Tool {
        tool_call_id: id.into(),
        content: content.into(),
    };
    let mut history = dangling();
    // The call's real result, and then a second answer to it (two nodes wrote the turn), and
    // a result whose call was never stored (a lost step).
    history.push(tool("c9", "pod deleted"));
    history.push(tool("c9", INTERRUPTED));
    history.push(tool("lost", "output"));
    history.push(ChatMessage::User {
        content: "and now?".into(),
    });
    let kept = well_formed(history);
    let results: Vec<&ChatMessage> = kept
        .iter()
        .filter(|m| matches!(m, ChatMessage::Tool { .. }))
        .collect();
    assert_eq!(results, [&tool("c9", "pod deleted")]);
    assert_eq!(kept.len(), 4);
}
