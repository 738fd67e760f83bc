//! A scripted Anthropic messages server (`POST /v1/messages`, SSE with named events).

use std::time::Duration;

use serde_json::{json, Value};

use crate::script::{sse_response, status_response, Reply};
use crate::FakeServer;

pub async fn start(script: Vec<Reply>) -> FakeServer {
    FakeServer::start("messages", script, render).await
}

fn event(data: Value) -> (Option<String>, String) {
    (data["type"].as_str().map(str::to_string), data.to_string())
}

fn message_start(input_tokens: u64) -> (Option<String>, String) {
    event(
        json!({ "type": "message_start", "message": { "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
        "model": "claude-fake", "stop_reason": null, "usage": { "input_tokens": input_tokens, "output_tokens": 1 } } }),
    )
}

fn text_block(pieces: &[String]) -> Vec<(Option<String>, String)> {
    let mut events = vec![event(
        json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
    )];
    for t in pieces {
        events.push(event(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": t } })));
    }
    events
}

fn render(reply: Reply) -> warp::reply::Response {
    match reply {
        Reply::Status {
            code,
            message,
            retry_after,
        } => status_response(code, &message, retry_after),
        Reply::Stream(c) => {
            let (input, output) = c.usage.unwrap_or((0, 0));
            let mut events = vec![message_start(input), event(json!({ "type": "ping" }))];
            let mut index = 0;
            if !c.text.is_empty() {
                events.extend(text_block(&c.text));
                events.push(event(json!({ "type": "content_block_stop", "index": 0 })));
                index = 1;
            }
            for call in &c.tool_calls {
                events.push(event(json!({ "type": "content_block_start", "index": index,
                    "content_block": { "type": "tool_use", "id": call.id, "name": call.name, "input": {} } })));
                for piece in &call.argument_pieces {
                    events.push(event(json!({ "type": "content_block_delta", "index": index, "delta": { "type": "input_json_delta", "partial_json": piece } })));
                }
                events.push(event(
                    json!({ "type": "content_block_stop", "index": index }),
                ));
                index += 1;
            }
            let stop = if c.tool_calls.is_empty() {
                "end_turn"
            } else {
                "tool_use"
            };
            events.push(event(json!({ "type": "message_delta", "delta": { "stop_reason": stop, "stop_sequence": null }, "usage": { "output_tokens": output } })));
            events.push(event(json!({ "type": "message_stop" })));
            sse_response(events, c.delay, Duration::ZERO)
        }
        Reply::CutOff(pieces) => {
            let mut events = vec![message_start(1)];
            events.extend(text_block(&pieces));
            sse_response(events, Duration::ZERO, Duration::ZERO)
        }
        Reply::Stall(pieces, pause) => {
            let mut events = vec![message_start(1)];
            events.extend(text_block(&pieces));
            sse_response(events, Duration::ZERO, pause)
        }
        Reply::Garbage => sse_response(
            vec![(Some("message_start".into()), "{not json".to_string())],
            Duration::ZERO,
            Duration::ZERO,
        ),
    }
}
