//! Server-sent events from an HTTP response body, with an idle timeout between events.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};

use super::{LlmError, LlmEvent};

/// The `data` of each event of `response`, or an error when the body breaks, a chunk is not
/// valid SSE, or nothing arrives for `idle`.
pub fn data_events(
    response: reqwest::Response,
    idle: Duration,
) -> impl Stream<Item = Result<String, LlmError>> + Send {
    let events = response.bytes_stream().eventsource();
    futures::stream::unfold(Some(Box::pin(events)), move |state| async move {
        let mut events = state?;
        match tokio::time::timeout(idle, events.next()).await {
            Err(_) => Some((
                Err(LlmError::Unavailable(format!(
                    "no data from the provider for {idle:?}"
                ))),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Ok(event))) => Some((Ok(event.data), Some(events))),
            Ok(Some(Err(e))) => Some((
                Err(LlmError::Unavailable(format!("stream broke off: {e}"))),
                None,
            )),
        }
    })
}

/// A provider's decoder of stream events into [`LlmEvent`]s; [`assemble`] drives it.
pub trait Assembler: Send + 'static {
    /// One SSE `data` payload.
    fn feed(&mut self, data: &str);
    /// The body ended; decide whether the answer was complete.
    fn end_of_stream(&mut self);
    fn fail(&mut self, err: LlmError);
    /// The next event ready to hand out.
    fn pop(&mut self) -> Option<Result<LlmEvent, LlmError>>;
    /// No more events will come.
    fn ended(&self) -> bool;
}

/// Feeds `events` to `asm` and yields what it produces, until it has ended.
pub fn assemble<A: Assembler>(
    events: impl Stream<Item = Result<String, LlmError>> + Send + 'static,
    asm: A,
) -> impl Stream<Item = Result<LlmEvent, LlmError>> + Send {
    let events = Box::pin(events);
    futures::stream::unfold((events, asm), |(mut events, mut asm)| async move {
        loop {
            if let Some(item) = asm.pop() {
                return Some((item, (events, asm)));
            }
            if asm.ended() {
                return None;
            }
            match events.next().await {
                Some(Ok(data)) => asm.feed(&data),
                Some(Err(e)) => asm.fail(e),
                None => asm.end_of_stream(),
            }
        }
    })
}
