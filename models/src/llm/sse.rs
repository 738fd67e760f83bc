//! Server-sent events from an HTTP response body, with an idle timeout between events.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};

use super::LlmError;

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
