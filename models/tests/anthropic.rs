//! The Anthropic provider against a scripted Anthropic messages server.

use std::time::Duration;

use aurora_fakes::{anthropic, Completion, Reply, ScriptedCall};
use aurora_models::llm::{
    AnthropicProvider, ChatMessage, ChatRequest, FinishReason, HttpPolicy, LlmError, LlmEvent,
    LlmProvider, ToolCall, ToolSpec, Usage,
};
use futures::StreamExt;
use serde_json::json;

fn provider(base: &str) -> AnthropicProvider {
    let policy = HttpPolicy {
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_millis(500),
        max_retries: 1,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    };
    AnthropicProvider::new(&base.parse().unwrap(), "sk-ant-test".into(), policy).unwrap()
}

fn request(messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4".into(),
        messages,
        tools: std::sync::Arc::from(vec![ToolSpec {
            name: "cloud_exec".into(),
            description: "Run a cloud CLI".into(),
            parameters: json!({ "type": "object" }),
        }]),
        max_tokens: None,
    }
}

async fn events(p: &AnthropicProvider, req: ChatRequest) -> Vec<Result<LlmEvent, LlmError>> {
    p.stream(req).await.unwrap().collect().await
}

#[tokio::test]
async fn streams_text_and_tool_use_blocks() {
    let fake = anthropic::start(vec![Reply::Stream(Completion {
        text: vec!["Checking ".into(), "the pods.".into()],
        tool_calls: vec![ScriptedCall {
            id: "toolu_1".into(),
            name: "cloud_exec".into(),
            argument_pieces: vec!["{\"command\": ".into(), "\"kubectl get pods\"}".into()],
        }],
        usage: Some((321, 45)),
        delay: Duration::ZERO,
    })])
    .await;
    let p = provider(&fake.base_url());
    let got: Vec<LlmEvent> = events(
        &p,
        request(vec![
            ChatMessage::System {
                content: "You are an SRE.".into(),
            },
            ChatMessage::User {
                content: "What is failing?".into(),
            },
        ]),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    assert_eq!(
        got,
        vec![
            LlmEvent::Text("Checking ".into()),
            LlmEvent::Text("the pods.".into()),
            LlmEvent::ToolCall(ToolCall {
                id: "toolu_1".into(),
                name: "cloud_exec".into(),
                arguments: "{\"command\": \"kubectl get pods\"}".into()
            }),
            LlmEvent::Done {
                finish_reason: FinishReason::ToolCalls,
                usage: Some(Usage {
                    input_tokens: 321,
                    output_tokens: 45
                })
            },
        ]
    );
    let sent = &fake.requests()[0];
    assert_eq!(sent["system"], "You are an SRE.");
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["stream"], true);
    assert_eq!(
        sent["messages"],
        json!([{ "role": "user", "content": [{ "type": "text", "text": "What is failing?" }] }])
    );
    assert_eq!(
        sent["tools"][0]["input_schema"],
        json!({ "type": "object" })
    );
    assert_eq!(fake.header("x-api-key")[0].as_deref(), Some("sk-ant-test"));
    assert_eq!(
        fake.header("anthropic-version")[0].as_deref(),
        Some("2023-06-01")
    );
}

#[tokio::test]
async fn tool_results_go_back_as_one_user_turn() {
    let fake = anthropic::start(vec![Reply::text(&["Two pods crash."], (10, 5))]).await;
    let p = provider(&fake.base_url());
    let got = events(
        &p,
        request(vec![
            ChatMessage::User {
                content: "What is failing?".into(),
            },
            ChatMessage::Assistant {
                content: "Let me look.".into(),
                tool_calls: vec![
                    ToolCall {
                        id: "toolu_1".into(),
                        name: "cloud_exec".into(),
                        arguments: "{\"command\":\"kubectl get pods\"}".into(),
                    },
                    ToolCall {
                        id: "toolu_2".into(),
                        name: "cloud_exec".into(),
                        arguments: "{\"command\":\"kubectl get events\"}".into(),
                    },
                ],
            },
            ChatMessage::Tool {
                tool_call_id: "toolu_1".into(),
                content: "pod-a CrashLoopBackOff".into(),
            },
            ChatMessage::Tool {
                tool_call_id: "toolu_2".into(),
                content: "OOMKilled".into(),
            },
        ]),
    )
    .await;
    assert_eq!(
        got.last().unwrap(),
        &Ok(LlmEvent::Done {
            finish_reason: FinishReason::Stop,
            usage: Some(Usage {
                input_tokens: 10,
                output_tokens: 5
            })
        })
    );
    let messages = &fake.requests()[0]["messages"];
    assert_eq!(messages.as_array().unwrap().len(), 3, "{messages}");
    assert_eq!(
        messages[1]["content"][1],
        json!({ "type": "tool_use", "id": "toolu_1", "name": "cloud_exec", "input": { "command": "kubectl get pods" } })
    );
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(
        messages[2]["content"][0],
        json!({ "type": "tool_result", "tool_use_id": "toolu_1", "content": "pod-a CrashLoopBackOff" })
    );
    assert_eq!(messages[2]["content"][1]["tool_use_id"], "toolu_2");
}

#[tokio::test]
async fn failures_are_clear() {
    let fake = anthropic::start(vec![
        Reply::status(529, "overloaded"),
        Reply::status(529, "overloaded"),
        Reply::status(400, "max_tokens: too large"),
        Reply::CutOff(vec!["half".into()]),
        Reply::Garbage,
    ])
    .await;
    let p = provider(&fake.base_url());
    let req = || {
        request(vec![ChatMessage::User {
            content: "hi".into(),
        }])
    };
    let err = p.stream(req()).await.err().unwrap();
    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("overloaded") && m.contains("2 attempts")),
        "{err}"
    );
    let err = p.stream(req()).await.err().unwrap();
    assert_eq!(
        err,
        LlmError::Rejected {
            status: 400,
            message: "max_tokens: too large".into()
        }
    );
    let got = events(&p, req()).await;
    assert_eq!(got[0], Ok(LlmEvent::Text("half".into())));
    assert!(matches!(&got[1], Err(LlmError::Unavailable(_))));
    let got = events(&p, req()).await;
    assert!(matches!(&got[0], Err(LlmError::Protocol(_))));
    assert!(AnthropicProvider::new(
        &"http://127.0.0.1:1/v1".parse().unwrap(),
        String::new(),
        HttpPolicy::default()
    )
    .is_err());
}
