//! OpenAI-compatible chat completions with SSE streaming: OpenAI, OpenRouter, Ollama, vLLM,
//! llama.cpp server. Tool calls arrive as deltas spread over many chunks (an id and name first,
//! then pieces of the JSON arguments, keyed by index); they are assembled here and handed out
//! whole, after the text, so callers never see half a call.

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

/// A client of one OpenAI-compatible endpoint.
pub struct OpenAiProvider {
    client: reqwest::Client,
    /// Always ends in `/`, so `chat/completions` joins under it (`.../v1/chat/completions`).
    base_url: Url,
    api_key: Option<String>,
    policy: HttpPolicy,
}

impl OpenAiProvider {
    /// `base_url` is the API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub fn new(
        base_url: &Url,
        api_key: Option<String>,
        policy: HttpPolicy,
    ) -> Result<OpenAiProvider, LlmError> {
        let mut base_url = base_url.clone();
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .build()
            .map_err(|e| LlmError::Unconfigured(format!("cannot build http client: {e}")))?;
        Ok(OpenAiProvider {
            client,
            base_url,
            api_key,
            policy,
        })
    }

    fn body(request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": request.model,
            "messages": request.messages.iter().map(wire_message).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({ "type": "function", "function": { "name": t.name, "description": t.description, "parameters": t.parameters } }))
                .collect();
        }
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        body
    }

    async fn send(&self, body: &Value) -> Result<reqwest::Response, LlmError> {
        let url = self
            .base_url
            .join("chat/completions")
            .map_err(|e| LlmError::Unconfigured(e.to_string()))?;
        send_with_retry(&self.policy, "openai", &url, || {
            let req = self.client.post(url.clone()).json(body);
            match &self.api_key {
                Some(key) => req.bearer_auth(key),
                None => req,
            }
        })
        .await
    }
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>> {
        Box::pin(async move {
            let body = Self::body(&request);
            let response = self.send(&body).await?;
            let events = data_events(response, self.policy.idle_timeout);
            Ok(Box::pin(assemble(events, Assembly::default())) as LlmStream)
        })
    }
}

fn wire_message(m: &ChatMessage) -> Value {
    match m {
        ChatMessage::System { content } => json!({ "role": "system", "content": content }),
        ChatMessage::User { content } => json!({ "role": "user", "content": content }),
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            let mut v = json!({ "role": "assistant", "content": content });
            if !tool_calls.is_empty() {
                v["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
                    .collect();
            }
            v
        }
        ChatMessage::Tool {
            tool_call_id,
            content,
        } => json!({ "role": "tool", "tool_call_id": tool_call_id, "content": content }),
    }
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Turns the chunks of one completion into [`LlmEvent`]s.
#[derive(Default)]
struct Assembly {
    calls: BTreeMap<u64, PartialCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    out: Outbox,
}

impl Assembly {
    fn chunk(&mut self, data: &str) {
        if data.trim() == "[DONE]" {
            self.finish();
            return;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return self.fail(LlmError::Protocol(format!(
                    "invalid chunk ({e}): {}",
                    data.chars().take(200).collect::<String>()
                )))
            }
        };
        if chunk.get("error").is_some() {
            return self.fail(LlmError::Unavailable(error_message(data)));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(Usage {
                input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
            });
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.out.push(LlmEvent::Text(text.to_string()));
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for (i, call) in calls.iter().enumerate() {
                let index = call["index"].as_u64().unwrap_or(i as u64);
                let partial = self.calls.entry(index).or_default();
                if let Some(id) = call["id"].as_str() {
                    partial.id = id.to_string();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    partial.name.push_str(name);
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    partial.arguments.push_str(args);
                }
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(match reason {
                "stop" => FinishReason::Stop,
                "tool_calls" | "function_call" => FinishReason::ToolCalls,
                "length" => FinishReason::Length,
                "content_filter" => FinishReason::ContentFilter,
                other => FinishReason::Other(other.to_string()),
            });
        }
    }

    /// The answer is complete: hand out the assembled tool calls, then `Done`.
    fn finish(&mut self) {
        for (index, call) in std::mem::take(&mut self.calls) {
            if call.name.is_empty() {
                return self.fail(LlmError::Protocol(format!("tool call {index} has no name")));
            }
            let id = if call.id.is_empty() {
                format!("call_{index}")
            } else {
                call.id
            };
            self.out.push(LlmEvent::ToolCall(ToolCall {
                id,
                name: call.name,
                arguments: call.arguments,
            }));
        }
        let finish_reason = self.finish.take().unwrap_or(FinishReason::Stop);
        self.out.push(LlmEvent::Done {
            finish_reason,
            usage: self.usage,
        });
        self.out.end();
    }

    fn fail(&mut self, err: LlmError) {
        self.out.fail(err);
    }
}

impl Assembler for Assembly {
    fn feed(&mut self, data: &str) {
        self.chunk(data);
    }

    fn end_of_stream(&mut self) {
        // Some servers close without `[DONE]` after a finish reason; without one, the answer
        // was cut off.
        if self.finish.is_some() {
            self.finish();
        } else {
            self.fail(LlmError::Unavailable(
                "the stream ended before the answer was complete".into(),
            ));
        }
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }
}
