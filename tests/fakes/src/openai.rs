//! A scripted OpenAI-compatible chat-completions server (`POST /v1/chat/completions`, SSE).

use std::time::Duration;

use serde_json::{json, Value};

use crate::script::{sse_response, status_response, Reply};
use crate::FakeServer;

pub async fn start(script: Vec<Reply>) -> FakeServer {
    FakeServer::start("chat/completions", script, render).await
}

fn chunk(delta: Value, finish: Option<&str>) -> (Option<String>, String) {
    let chunk = json!({ "id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
    (None, chunk.to_string())
}

fn text_chunks(pieces: &[String]) -> Vec<(Option<String>, String)> {
    pieces
        .iter()
        .map(|t| chunk(json!({ "content": t }), None))
        .collect()
}

fn render(reply: Reply) -> warp::reply::Response {
    match reply {
        Reply::Status {
            code,
            message,
            retry_after,
        } => status_response(code, &message, retry_after),
        Reply::Stream(c) => {
            let mut events = text_chunks(&c.text);
            for (i, call) in c.tool_calls.iter().enumerate() {
                let head = json!({ "tool_calls": [{ "index": i, "id": call.id, "type": "function", "function": { "name": call.name, "arguments": "" } }] });
                events.push(chunk(head, None));
                for piece in &call.argument_pieces {
                    events.push(chunk(json!({ "tool_calls": [{ "index": i, "function": { "arguments": piece } }] }), None));
                }
            }
            let finish = if c.tool_calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            events.push(chunk(json!({}), Some(finish)));
            if let Some((input, output)) = c.usage {
                let usage = json!({ "id": "chatcmpl-fake", "choices": [], "usage": { "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output } });
                events.push((None, usage.to_string()));
            }
            events.push((None, "[DONE]".to_string()));
            sse_response(events, c.delay, Duration::ZERO)
        }
        Reply::CutOff(pieces) => sse_response(text_chunks(&pieces), Duration::ZERO, Duration::ZERO),
        Reply::Stall(pieces, pause) => sse_response(text_chunks(&pieces), Duration::ZERO, pause),
        Reply::Garbage => sse_response(
            vec![(None, "{not json".to_string())],
            Duration::ZERO,
            Duration::ZERO,
        ),
    }
}
