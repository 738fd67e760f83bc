//! What the HTTP providers share: sending with retries and reading error bodies.

use url::Url;

use super::{HttpPolicy, LlmError};

/// Sends the request `build` makes, retrying connection failures, timeouts, 429 and 5xx with
/// exponential backoff (or the server's `Retry-After`), until the response headers say 2xx.
/// Other 4xx are the caller's fault and are not retried.
pub async fn send_with_retry(
    policy: &HttpPolicy,
    provider: &'static str,
    url: &Url,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, LlmError> {
    let mut attempt = 0u32;
    loop {
        let (reason, retry_after) =
            match tokio::time::timeout(policy.response_timeout, build().send()).await {
                Err(_) => (
                    format!("no response within {:?}", policy.response_timeout),
                    None,
                ),
                Ok(Err(e)) => (format!("cannot reach {}: {e}", host(url)), None),
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(std::time::Duration::from_secs);
                    let message = error_message(&resp.text().await.unwrap_or_default());
                    if status.as_u16() != 429 && !status.is_server_error() {
                        return Err(LlmError::Rejected {
                            status: status.as_u16(),
                            message,
                        });
                    }
                    (format!("{status}: {message}"), retry_after)
                }
            };
        if attempt >= policy.max_retries {
            return Err(LlmError::Unavailable(format!(
                "{reason} (after {} attempts)",
                attempt + 1
            )));
        }
        let delay = retry_after
            .unwrap_or_else(|| policy.backoff(attempt))
            .min(policy.backoff_max);
        tracing::warn!(provider, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, reason = %reason, "llm request failed, retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn host(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or("?"),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// The provider's own error message when the body is `{"error": {"message": ...}}` (OpenAI and
/// Anthropic both), else the body itself, shortened.
pub fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_json = parsed
        .as_ref()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
        })
        .map(str::to_string);
    from_json.unwrap_or_else(|| body.chars().take(300).collect())
}
