//! Anthropic messages API with streaming. Text arrives as `text_delta`s; a tool call is a
//! `tool_use` content block whose JSON input arrives as `input_json_delta` pieces. As with the
//! OpenAI client, text streams through and whole tool calls are handed out at the end.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use url::Url;

use super::http::{error_message, send_with_retry};
use super::sse::{assemble, data_events, Assembler, Outbox};
use super::{
    ChatMessage, ChatRequest, FinishReason, HttpPolicy, LlmError, LlmEvent, LlmProvider, LlmStream,
    ToolCall, Usage,
};

/// The API version this client speaks.
const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the request leaves it open.
const DEFAULT_MAX_TOKENS: u32 = 4096;

pub struct AnthropicProvider {
    client: reqwest::Client,
    /// API root ending in `/`, e.g. `https://api.anthropic.com/v1/`.
    base_url: Url,
    api_key: String,
    policy: HttpPolicy,
}

impl AnthropicProvider {
    pub fn new(
        base_url: &Url,
        api_key: String,
        policy: HttpPolicy,
    ) -> Result<AnthropicProvider, LlmError> {
        if api_key.is_empty() {
            return Err(LlmError::Unconfigured(
                "the Anthropic API needs LLM_API_KEY".into(),
            ));
        }
        let mut base_url = base_url.clone();
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .build()
            .map_err(|e| LlmError::Unconfigured(format!("cannot build http client: {e}")))?;
        Ok(AnthropicProvider {
            client,
            base_url,
            api_key,
            policy,
        })
    }

    fn body(request: &ChatRequest) -> Value {
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter_map(|m| match m {
                ChatMessage::System { content } => Some(content.as_str()),
                _ => None,
            })
            .collect();
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "messages": wire_messages(&request.messages),
            "stream": true,
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.parameters }))
                .collect();
        }
        body
    }
}

impl LlmProvider for AnthropicProvider {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>> {
        Box::pin(async move {
            let body = Self::body(&request);
            let url = self
                .base_url
                .join("messages")
                .map_err(|e| LlmError::Unconfigured(e.to_string()))?;
            let response = send_with_retry(&self.policy, "anthropic", &url, || {
                self.client
                    .post(url.clone())
                    .header("x-api-key", &self.api_key)
                    .header("anthropic-version", API_VERSION)
                    .json(&body)
            })
            .await?;
            let events = data_events(response, self.policy.idle_timeout);
            Ok(Box::pin(assemble(events, Assembly::default())) as LlmStream)
        })
    }
}

/// Anthropic wants alternating user/assistant turns, tool results as `tool_result` blocks in a
/// user turn, and the system prompt outside the messages.
fn wire_messages(messages: &[ChatMessage]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for m in messages {
        let (role, blocks) = match m {
            ChatMessage::System { .. } => continue,
            ChatMessage::User { content } => {
                ("user", vec![json!({ "type": "text", "text": content })])
            }
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if !content.is_empty() {
                    blocks.push(json!({ "type": "text", "text": content }));
                }
                for c in tool_calls {
                    let input: Value =
                        serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(
                        json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": input }),
                    );
                }
                ("assistant", blocks)
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => (
                "user",
                vec![
                    json!({ "type": "tool_result", "tool_use_id": tool_call_id, "content": content }),
                ],
            ),
        };
        // Merge consecutive turns of the same role (several tool results in a row).
        match out.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => out.push(json!({ "role": role, "content": blocks })),
        }
    }
    out
}

enum Block {
    Text,
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
}

#[derive(Default)]
struct Assembly {
    blocks: BTreeMap<u64, Block>,
    input_tokens: u64,
    output_tokens: u64,
    stop: Option<FinishReason>,
    out: Outbox,
}

impl Assembly {
    fn event(&mut self, data: &str) {
        let event: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return self.fail(LlmError::Protocol(format!(
                    "invalid event ({e}): {}",
                    data.chars().take(200).collect::<String>()
                )))
            }
        };
        let index = event["index"].as_u64().unwrap_or(0);
        match event["type"].as_str().unwrap_or("") {
            "message_start" => {
                let usage = &event["message"]["usage"];
                self.input_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
                self.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let block = &event["content_block"];
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let id = block["id"].as_str().unwrap_or_default().to_string();
                        let name = block["name"].as_str().unwrap_or_default().to_string();
                        self.blocks.insert(
                            index,
                            Block::ToolUse {
                                id,
                                name,
                                json: String::new(),
                            },
                        );
                    }
                    _ => {
                        if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            self.out.push(LlmEvent::Text(text.to_string()));
                        }
                        self.blocks.insert(index, Block::Text);
                    }
                }
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                match (delta["type"].as_str(), self.blocks.get_mut(&index)) {
                    (Some("text_delta"), _) => {
                        if let Some(text) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                            self.out.push(LlmEvent::Text(text.to_string()));
                        }
                    }
                    (Some("input_json_delta"), Some(Block::ToolUse { json, .. })) => {
                        json.push_str(delta["partial_json"].as_str().unwrap_or(""));
                    }
                    (Some("input_json_delta"), _) => self.fail(LlmError::Protocol(format!(
                        "input delta for block {index}, which is not a tool_use"
                    ))),
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(out) = event["usage"]["output_tokens"].as_u64() {
                    self.output_tokens = out;
                }
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    self.stop = Some(match reason {
                        "end_turn" | "stop_sequence" => FinishReason::Stop,
                        "tool_use" => FinishReason::ToolCalls,
                        "max_tokens" => FinishReason::Length,
                        "refusal" => FinishReason::ContentFilter,
                        other => FinishReason::Other(other.to_string()),
                    });
                }
            }
            "message_stop" => self.finish(),
            "error" => self.fail(LlmError::Unavailable(error_message(data))),
            // ping, content_block_stop and event types added later carry nothing we need.
            _ => {}
        }
    }

    fn finish(&mut self) {
        for (_, block) in std::mem::take(&mut self.blocks) {
            if let Block::ToolUse { id, name, json } = block {
                let arguments = if json.trim().is_empty() {
                    "{}".to_string()
                } else {
                    json
                };
                self.out.push(LlmEvent::ToolCall(ToolCall {
                    id,
                    name,
                    arguments,
                }));
            }
        }
        let usage = Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        };
        let finish_reason = self.stop.take().unwrap_or(FinishReason::Stop);
        self.out.push(LlmEvent::Done {
            finish_reason,
            usage: Some(usage),
        });
        self.out.end();
    }

    fn fail(&mut self, err: LlmError) {
        self.out.fail(err);
    }
}

impl Assembler for Assembly {
    fn feed(&mut self, data: &str) {
        self.event(data);
    }

    fn end_of_stream(&mut self) {
        self.fail(LlmError::Unavailable(
            "the stream ended before the answer was complete".into(),
        ));
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }
}
