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

/// Events an assembler has ready, and whether it will produce more.
#[derive(Default)]
pub struct Outbox {
    pending: std::collections::VecDeque<Result<LlmEvent, LlmError>>,
    ended: bool,
}

impl Outbox {
    pub fn push(&mut self, event: LlmEvent) {
        self.pending.push_back(Ok(event));
    }

    /// The answer is complete: nothing follows what is queued.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Queues `err` as the last item.
    pub fn fail(&mut self, err: LlmError) {
        self.pending.push_back(Err(err));
        self.ended = true;
    }
}

/// A provider's decoder of stream events into [`LlmEvent`]s; [`assemble`] drives it.
pub trait Assembler: Send + 'static {
    /// One SSE `data` payload.
    fn feed(&mut self, data: &str);
    /// The body ended; decide whether the answer was complete.
    fn end_of_stream(&mut self);
    fn outbox(&mut self) -> &mut Outbox;
}

/// Feeds `events` to `asm` and yields what it produces, until it has ended.
pub fn assemble<A: Assembler>(
    events: impl Stream<Item = Result<String, LlmError>> + Send + 'static,
    asm: A,
) -> impl Stream<Item = Result<LlmEvent, LlmError>> + Send {
    let events = Box::pin(events);
    futures::stream::unfold((events, asm), |(mut events, mut asm)| async move {
        loop {
            if let Some(item) = asm.outbox().pending.pop_front() {
                return Some((item, (events, asm)));
            }
            if asm.outbox().ended {
                return None;
            }
            match events.next().await {
                Some(Ok(data)) => asm.feed(&data),
                Some(Err(e)) => asm.outbox().fail(e),
                None => asm.end_of_stream(),
            }
        }
    })
}
