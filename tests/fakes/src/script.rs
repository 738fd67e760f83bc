use std::convert::Infallible;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use warp::http::StatusCode;
use warp::sse::Event;
use warp::Reply as _;

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
    /// Streams these text pieces, then closes without finishing the answer.
    CutOff(Vec<String>),
    /// Streams these text pieces, then stays silent for the duration before closing.
    Stall(Vec<String>, Duration),
    /// Streams an event that is not JSON.
    Garbage,
}

/// A streamed completion: text pieces, then tool calls (their arguments split in pieces), then
/// usage and the end of the answer.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    pub text: Vec<String>,
    pub tool_calls: Vec<ScriptedCall>,
    pub usage: Option<(u64, u64)>,
    /// Pause before each event.
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

pub(crate) fn status_response(
    code: u16,
    message: &str,
    retry_after: Option<u64>,
) -> warp::reply::Response {
    let body = json!({ "type": "error", "error": { "type": "fake", "message": message } });
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut().insert("retry-after", secs.into());
    }
    resp
}

/// An SSE response of `events` (`(event name, data)`), a `delay` before each, then `pause` of
/// silence before the connection closes.
pub(crate) fn sse_response(
    events: Vec<(Option<String>, String)>,
    delay: Duration,
    pause: Duration,
) -> warp::reply::Response {
    let stream = futures::stream::iter(events).then(move |(name, data)| async move {
        tokio::time::sleep(delay).await;
        let event = Event::default().data(data);
        Ok::<Event, Infallible>(match name {
            Some(name) => event.event(name),
            None => event,
        })
    });
    let stream = stream.chain(futures::stream::once(async move {
        tokio::time::sleep(pause).await;
        Ok::<Event, Infallible>(Event::default().comment("end"))
    }));
    warp::sse::reply(stream).into_response()
}
