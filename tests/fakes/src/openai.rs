//! A scripted OpenAI-compatible chat-completions server (`POST /v1/chat/completions`, SSE).
//! Each request takes the next [`Reply`] of the script; every request body is recorded.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use warp::http::StatusCode;
use warp::sse::Event;
use warp::{Filter, Reply as _};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A streamed completion.
    Stream(Completion),
    /// A plain error status with a JSON `{"error": {"message"}}` body.
    Status {
        code: u16,
        message: String,
        retry_after: Option<u64>,
    },
    /// Streams these text pieces, then closes without a finish reason or `[DONE]`.
    CutOff(Vec<String>),
    /// Streams these text pieces, then stays silent for `pause` before closing.
    Stall(Vec<String>, Duration),
    /// Streams a chunk that is not JSON.
    Garbage,
}

/// A streamed completion: text pieces, then tool calls (their arguments split in pieces), then
/// usage and `[DONE]`.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    pub text: Vec<String>,
    pub tool_calls: Vec<ScriptedCall>,
    pub usage: Option<(u64, u64)>,
    /// Pause before each chunk.
    pub delay: Duration,
}

#[derive(Clone, Debug)]
pub struct ScriptedCall {
    pub id: String,
    pub name: String,
    pub argument_pieces: Vec<String>,
}

impl Reply {
    /// A text answer streamed in the given pieces, with usage.
    pub fn text(pieces: &[&str], usage: (u64, u64)) -> Reply {
        Reply::Stream(Completion {
            text: pieces.iter().map(|s| s.to_string()).collect(),
            usage: Some(usage),
            ..Default::default()
        })
    }

    /// An answer that calls one tool, its JSON arguments streamed in pieces.
    pub fn tool_call(id: &str, name: &str, argument_pieces: &[&str], usage: (u64, u64)) -> Reply {
        Reply::Stream(Completion {
            tool_calls: vec![ScriptedCall {
                id: id.into(),
                name: name.into(),
                argument_pieces: argument_pieces.iter().map(|s| s.to_string()).collect(),
            }],
            usage: Some(usage),
            ..Default::default()
        })
    }

    pub fn status(code: u16, message: &str) -> Reply {
        Reply::Status {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// A running fake; stops when dropped.
pub struct FakeOpenAi {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Value>>>,
    auth: Arc<Mutex<Vec<Option<String>>>>,
    _stop: oneshot::Sender<()>,
}

impl FakeOpenAi {
    pub async fn start(script: Vec<Reply>) -> FakeOpenAi {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let (r, a) = (requests.clone(), auth.clone());
        let route = warp::path!("v1" / "chat" / "completions")
            .and(warp::post())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::json())
            .map(move |authorization: Option<String>, body: Value| {
                r.lock().unwrap().push(body);
                a.lock().unwrap().push(authorization);
                let next = script.lock().unwrap().pop_front();
                respond(next)
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake openai");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            warp::serve(route)
                .incoming(listener)
                .graceful(async {
                    let _ = rx.await;
                })
                .run()
                .await;
        });
        FakeOpenAi {
            addr,
            requests,
            auth,
            _stop: tx,
        }
    }

    /// The API root to configure a client with (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The `Authorization` header of every request so far.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.auth.lock().unwrap().clone()
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({ "id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
}

fn respond(reply: Option<Reply>) -> warp::reply::Response {
    let Some(reply) = reply else {
        let body = json!({ "error": { "message": "fake script exhausted" } });
        return warp::reply::with_status(
            warp::reply::json(&body),
            StatusCode::INTERNAL_SERVER_ERROR,
        )
        .into_response();
    };
    let (events, delay, pause): (Vec<String>, Duration, Duration) = match reply {
        Reply::Status {
            code,
            message,
            retry_after,
        } => {
            let body = json!({ "error": { "message": message, "type": "fake" } });
            let mut resp = warp::reply::with_status(
                warp::reply::json(&body),
                StatusCode::from_u16(code).unwrap(),
            )
            .into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            return resp;
        }
        Reply::Stream(c) => {
            let mut events: Vec<String> = c
                .text
                .iter()
                .map(|t| chunk(json!({ "content": t }), None).to_string())
                .collect();
            for (i, call) in c.tool_calls.iter().enumerate() {
                let head = json!({ "tool_calls": [{ "index": i, "id": call.id, "type": "function", "function": { "name": call.name, "arguments": "" } }] });
                events.push(chunk(head, None).to_string());
                for piece in &call.argument_pieces {
                    events.push(chunk(json!({ "tool_calls": [{ "index": i, "function": { "arguments": piece } }] }), None).to_string());
                }
            }
            let finish = if c.tool_calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            events.push(chunk(json!({}), Some(finish)).to_string());
            if let Some((input, output)) = c.usage {
                events.push(json!({ "id": "chatcmpl-fake", "choices": [], "usage": { "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output } }).to_string());
            }
            events.push("[DONE]".to_string());
            (events, c.delay, Duration::ZERO)
        }
        Reply::CutOff(pieces) => (
            pieces
                .iter()
                .map(|t| chunk(json!({ "content": t }), None).to_string())
                .collect(),
            Duration::ZERO,
            Duration::ZERO,
        ),
        Reply::Stall(pieces, pause) => (
            pieces
                .iter()
                .map(|t| chunk(json!({ "content": t }), None).to_string())
                .collect(),
            Duration::ZERO,
            pause,
        ),
        Reply::Garbage => (
            vec!["{not json".to_string()],
            Duration::ZERO,
            Duration::ZERO,
        ),
    };
    let stream = futures::stream::iter(events).then(move |data| async move {
        tokio::time::sleep(delay).await;
        Ok::<Event, Infallible>(Event::default().data(data))
    });
    // After the last event, stay quiet for `pause` (a stalled provider), then close.
    let stream = stream.chain(futures::stream::once(async move {
        tokio::time::sleep(pause).await;
        Ok::<Event, Infallible>(Event::default().comment("end"))
    }));
    warp::sse::reply(stream).into_response()
}
