//! Helpers for the incident tests: webhook tokens, deliveries, the SSE feed, waiting.

#![allow(dead_code)]

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{read, TestNode};

/// Creates a webhook token (as `admin`), with a PagerDuty signing secret when given.
pub async fn webhook(base: &str, admin: &str, secret: Option<&str>) -> String {
    let mut body = json!({ "name": "alerts" });
    if let Some(s) = secret {
        body["signing_secret"] = json!(s);
    }
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/org/webhooks"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, v) = read(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// Posts `body` to the `flavour` webhook with `token`, with extra headers.
pub async fn deliver(
    base: &str,
    flavour: &str,
    token: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/webhooks/{flavour}/{token}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.body(body).send().await.unwrap()).await
}

/// A generic alert.
pub fn generic(title: &str, group: &str, service: &str, fingerprint: &str, status: &str) -> Value {
    json!({
        "title": title,
        "group": group,
        "service": service,
        "fingerprint": fingerprint,
        "status": status,
        "severity": "high",
        "description": format!("{title} on {service}"),
    })
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The org's incidents, newest first.
pub async fn incidents(t: &TestNode, token: &str) -> Vec<Value> {
    let (status, v) = t.get("/api/incidents", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["incidents"].as_array().unwrap().clone()
}

/// One SSE event as received.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// An open feed: events arrive on the channel until it is dropped.
pub struct Feed {
    pub rx: tokio::sync::mpsc::Receiver<Sse>,
    task: tokio::task::JoinHandle<()>,
    /// Whether the stream ended (the server closed it).
    pub ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens `/api/incidents/stream` on `base` (from `last_id` when given). Panics unless the
/// server answers 200 with an event stream.
pub async fn open_feed(base: &str, token: &str, last_id: Option<&str>) -> Feed {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/api/incidents/stream"))
        .bearer_auth(token);
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream")));
    let (tx, rx) = tokio::sync::mpsc::channel(10_000);
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ended.clone();
    let task = tokio::spawn(async move {
        let mut events = resp.bytes_stream().eventsource();
        while let Some(Ok(e)) = events.next().await {
            let data = serde_json::from_str(&e.data).unwrap_or(Value::String(e.data.clone()));
            let _ = tx
                .send(Sse {
                    id: e.id,
                    event: e.event,
                    data,
                })
                .await;
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    Feed { rx, task, ended }
}

impl Feed {
    /// The next event for which `pick` holds, within `secs`.
    pub async fn until(&mut self, secs: u64, what: &str, pick: impl Fn(&Sse) -> bool) -> Sse {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(e)) if pick(&e) => return e,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the feed ended while waiting for {what}"),
                Err(_) => panic!("timed out after {secs} s waiting for {what} on the feed"),
            }
        }
    }
}
