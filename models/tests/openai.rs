//! The OpenAI-compatible provider against a scripted OpenAI-compatible HTTP server.

use std::time::Duration;

use aurora_fakes::{openai, Completion, Reply, ScriptedCall};
use aurora_models::llm::{
    ChatMessage, ChatRequest, FinishReason, HttpPolicy, LlmError, LlmEvent, LlmProvider,
    OpenAiProvider, ToolCall, ToolSpec, Usage,
};
use futures::StreamExt;
use serde_json::json;

fn policy() -> HttpPolicy {
    HttpPolicy {
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_millis(500),
        max_retries: 2,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    }
}

fn provider(base: &str) -> OpenAiProvider {
    OpenAiProvider::new(&base.parse().unwrap(), Some("sk-test".into()), policy()).unwrap()
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-test".into(),
        messages: vec![
            ChatMessage::System {
                content: "You are an SRE.".into(),
            },
            ChatMessage::User {
                content: "Which pods are failing?".into(),
            },
        ],
        tools: std::sync::Arc::from(vec![ToolSpec {
            name: "cloud_exec".into(),
            description: "Run a cloud CLI".into(),
            parameters: json!({ "type": "object", "properties": { "command": { "type": "string" } }, "required": ["command"] }),
        }]),
        max_tokens: Some(256),
    }
}

async fn collect(
    p: &OpenAiProvider,
    req: ChatRequest,
) -> Result<Vec<Result<LlmEvent, LlmError>>, LlmError> {
    let stream = p.stream(req).await?;
    Ok(stream.collect().await)
}

#[tokio::test]
async fn streams_text_then_done_with_usage() {
    let fake = openai::start(vec![Reply::text(
        &["Three ", "pods ", "are failing."],
        (42, 7),
    )])
    .await;
    let events = collect(&provider(&fake.base_url()), request())
        .await
        .unwrap();
    let events: Vec<LlmEvent> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        events,
        vec![
            LlmEvent::Text("Three ".into()),
            LlmEvent::Text("pods ".into()),
            LlmEvent::Text("are failing.".into()),
            LlmEvent::Done {
                finish_reason: FinishReason::Stop,
                usage: Some(Usage {
                    input_tokens: 42,
                    output_tokens: 7
                })
            },
        ]
    );
    // What went over the wire: the OpenAI request shape, streaming with usage, the bearer key.
    let sent = &fake.requests()[0];
    assert_eq!(sent["model"], "gpt-test");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["max_tokens"], 256);
    assert_eq!(
        sent["messages"][0],
        json!({ "role": "system", "content": "You are an SRE." })
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "cloud_exec");
    assert_eq!(
        fake.header("authorization")[0].as_deref(),
        Some("Bearer sk-test")
    );
}

#[tokio::test]
async fn assembles_tool_calls_from_deltas() {
    let reply = Reply::Stream(Completion {
        text: vec!["Let me check.".into()],
        tool_calls: vec![
            ScriptedCall {
                id: "call_a".into(),
                name: "cloud_exec".into(),
                argument_pieces: vec![
                    "{\"comm".into(),
                    "and\": \"kubectl get".into(),
                    " pods\"}".into(),
                ],
            },
            ScriptedCall {
                id: "call_b".into(),
                name: "terraform".into(),
                argument_pieces: vec!["{\"action\":".into(), "\"plan\"}".into()],
            },
        ],
        usage: Some((100, 20)),
        delay: Duration::from_millis(1),
    });
    let fake = openai::start(vec![reply]).await;
    let events: Vec<LlmEvent> = collect(&provider(&fake.base_url()), request())
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events[0], LlmEvent::Text("Let me check.".into()));
    assert_eq!(
        events[1],
        LlmEvent::ToolCall(ToolCall {
            id: "call_a".into(),
            name: "cloud_exec".into(),
            arguments: "{\"command\": \"kubectl get pods\"}".into()
        })
    );
    assert_eq!(
        events[2],
        LlmEvent::ToolCall(ToolCall {
            id: "call_b".into(),
            name: "terraform".into(),
            arguments: "{\"action\":\"plan\"}".into()
        })
    );
    assert_eq!(
        events[3],
        LlmEvent::Done {
            finish_reason: FinishReason::ToolCalls,
            usage: Some(Usage {
                input_tokens: 100,
                output_tokens: 20
            })
        }
    );
    assert_eq!(events.len(), 4);
}

#[tokio::test]
async fn sends_tool_results_back_in_openai_shape() {
    let fake = openai::start(vec![Reply::text(&["ok"], (1, 1))]).await;
    let mut req = request();
    req.messages.push(ChatMessage::Assistant {
        content: String::new(),
        tool_calls: vec![ToolCall {
            id: "call_a".into(),
            name: "cloud_exec".into(),
            arguments: "{}".into(),
        }],
    });
    req.messages.push(ChatMessage::Tool {
        tool_call_id: "call_a".into(),
        content: "pod-1 CrashLoopBackOff".into(),
    });
    collect(&provider(&fake.base_url()), req).await.unwrap();
    let sent = &fake.requests()[0]["messages"];
    assert_eq!(
        sent[2]["tool_calls"][0],
        json!({ "id": "call_a", "type": "function", "function": { "name": "cloud_exec", "arguments": "{}" } })
    );
    assert_eq!(
        sent[3],
        json!({ "role": "tool", "tool_call_id": "call_a", "content": "pod-1 CrashLoopBackOff" })
    );
}

#[tokio::test]
async fn retries_429_and_5xx_then_succeeds() {
    let fake = openai::start(vec![
        Reply::Status {
            code: 429,
            message: "slow down".into(),
            retry_after: Some(0),
        },
        Reply::status(503, "overloaded"),
        Reply::text(&["fine"], (3, 1)),
    ])
    .await;
    let events = collect(&provider(&fake.base_url()), request())
        .await
        .unwrap();
    assert_eq!(events[0], Ok(LlmEvent::Text("fine".into())));
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn gives_up_after_retries_with_unavailable() {
    let fake = openai::start(vec![
        Reply::status(500, "boom"),
        Reply::status(502, "boom"),
        Reply::status(503, "still down"),
    ])
    .await;
    let err = collect(&provider(&fake.base_url()), request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("still down") && m.contains("3 attempts")),
        "{err}"
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn client_errors_are_rejected_without_retry() {
    let fake = openai::start(vec![
        Reply::status(401, "invalid api key"),
        Reply::text(&["never"], (1, 1)),
    ])
    .await;
    let err = collect(&provider(&fake.base_url()), request())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LlmError::Rejected {
            status: 401,
            message: "invalid api key".into()
        }
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn unreachable_provider_is_unavailable() {
    // A port with nothing behind it: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = collect(&provider(&format!("http://127.0.0.1:{port}/v1")), request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("cannot reach")),
        "{err}"
    );
}

#[tokio::test]
async fn a_stream_cut_off_midway_ends_in_an_error() {
    let fake = openai::start(vec![Reply::CutOff(vec![
        "partial ".into(),
        "answer".into(),
    ])])
    .await;
    let events = collect(&provider(&fake.base_url()), request())
        .await
        .unwrap();
    assert_eq!(events[0], Ok(LlmEvent::Text("partial ".into())));
    assert_eq!(events[1], Ok(LlmEvent::Text("answer".into())));
    assert!(
        matches!(&events[2], Err(LlmError::Unavailable(m)) if m.contains("before the answer was complete"))
    );
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn a_stalled_stream_times_out() {
    let fake = openai::start(vec![Reply::Stall(
        vec!["thinking".into()],
        Duration::from_secs(5),
    )])
    .await;
    let events = collect(&provider(&fake.base_url()), request())
        .await
        .unwrap();
    assert_eq!(events[0], Ok(LlmEvent::Text("thinking".into())));
    assert!(
        matches!(&events[1], Err(LlmError::Unavailable(m)) if m.contains("no data")),
        "{:?}",
        events[1]
    );
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let fake = openai::start(vec![Reply::Garbage]).await;
    let events = collect(&provider(&fake.base_url()), request())
        .await
        .unwrap();
    assert!(
        matches!(&events[0], Err(LlmError::Protocol(_))),
        "{:?}",
        events[0]
    );
    assert_eq!(events.len(), 1);
}
