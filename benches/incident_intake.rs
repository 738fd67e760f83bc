//! Alert intake (issue: incidents): webhooks accepted per second with correlation on, and the
//! time from a webhook to its incident on the feed. A load generator over HTTP on loopback for
//! any server that speaks the node's URL shapes (the node, and the Flask + Celery anchor in
//! `benches/anchors/intake/`):
//!
//! - `POST {BASE_URL}/api/webhooks/generic/{WEBHOOK_TOKEN}`: one generic alert per request;
//! - `GET {BASE_URL}/api/incidents?limit=200[&cursor=]` (bearer): the incidents' alert counts,
//!   to see correlation catch up;
//! - `GET {FEED_URL}/api/incidents/stream` (bearer; `FEED_URL` defaults to `BASE_URL`): the
//!   feed, `incident` events whose `data.change` is `created` for a new incident.
//!
//! Two phases, each bounded in count and time, and the whole run by `TIMEOUT_SECS` (900):
//!
//! 1. Throughput: `ALERTS` alerts (20 000) from `CONCURRENCY` closed-loop clients (64), one
//!    alert per request, spread round-robin over `GROUPS` group/service pairs (200): the first
//!    alert of a pair opens an incident, the rest join it. Reports the accepted alerts/s (202
//!    answers over the time to the last answer, at most `THROUGHPUT_SECS`), then polls the
//!    incident list until every accepted alert is in an incident (at most `DRAIN_SECS`):
//!    alerts correlated per second, end to end.
//! 2. Latency: `RATE` alerts/s (200) for `LAT_SECS` s (10), open loop, each with a title,
//!    group and service of its own (so each opens a new incident), with the feed connected
//!    first: webhook sent -> its incident's `created` event read from the feed, p50/p90/p99/max,
//!    waiting at most `LAT_WAIT_SECS` (60) after the last send for stragglers.
//!
//! Prints a `RESULT` line with every figure for the script. Set up by
//! `benches/incident_intake.sh`; by hand:
//!
//!   BASE_URL=http://127.0.0.1:15090 WEBHOOK_TOKEN=awh_... BEARER_TOKEN=aur_... \
//!     cargo bench --bench incident_intake

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_str(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} must be set"))
}

#[derive(Clone)]
struct Cfg {
    label: String,
    base: String,
    feed: String,
    webhook: String,
    bearer: String,
    /// Tells this run's alerts and incidents apart from any other run's on the same server.
    run: String,
    alerts: usize,
    concurrency: usize,
    groups: usize,
    throughput_secs: u64,
    drain_secs: u64,
    rate: usize,
    lat_secs: usize,
    lat_wait_secs: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn alert(title: String, group: String, service: String, fingerprint: String) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "title": title,
        "group": group,
        "service": service,
        "fingerprint": fingerprint,
        "status": "firing",
        "severity": "high",
        "description": format!("{title}: p99 latency above 2 s on {service} for 5 minutes"),
    }))
    .expect("json")
}

/// Posts one alert; the answer's status and, for a refusal, its body.
async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), String> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.as_u16() == 202 {
        Ok(())
    } else {
        Err(format!(
            "{status}: {}",
            text.chars().take(300).collect::<String>()
        ))
    }
}

/// Alerts placed in this run's throughput incidents: the sum of their alert counts.
async fn placed(cfg: &Cfg, client: &reqwest::Client) -> anyhow::Result<i64> {
    let prefix = format!("tp {} ", cfg.run);
    let mut sum = 0;
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut url = format!("{}/api/incidents?limit=200", cfg.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let resp = client.get(&url).bearer_auth(&cfg.bearer).send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("GET /api/incidents: {status} {v}");
        }
        for i in v["incidents"].as_array().into_iter().flatten() {
            if i["title"].as_str().is_some_and(|t| t.starts_with(&prefix)) {
                sum += i["alert_count"].as_i64().unwrap_or(0);
            }
        }
        cursor = match &v["next_cursor"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if cursor.is_none() {
            break;
        }
    }
    Ok(sum)
}

struct Throughput {
    accepted: usize,
    failed: usize,
    first_error: Option<String>,
    load: Duration,
    req_p50: f64,
    req_p99: f64,
    /// Time from the first request until every accepted alert was in an incident (None: not
    /// within `DRAIN_SECS`), and how many were by then.
    drained: Option<Duration>,
    placed: i64,
}

async fn throughput(cfg: &Cfg, client: &reqwest::Client) -> anyhow::Result<Throughput> {
    let url = Arc::new(format!("{}/api/webhooks/generic/{}", cfg.base, cfg.webhook));
    let next = Arc::new(AtomicUsize::new(0));
    let limit = Duration::from_secs(cfg.throughput_secs);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..cfg.concurrency {
        let (client, url, next, cfg) = (client.clone(), url.clone(), next.clone(), cfg.clone());
        clients.spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut failed, mut first_error) = (0usize, 0usize, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cfg.alerts || started.elapsed() > limit {
                    break;
                }
                let g = i % cfg.groups;
                let body = alert(
                    format!("tp {} alert {i}", cfg.run),
                    format!("tp-{}-group-{g}", cfg.run),
                    format!("tp-{}-svc-{g}", cfg.run),
                    format!("tp-{}-{i}", cfg.run),
                );
                let t = Instant::now();
                match post(&client, &url, body).await {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                }
                lat.push(ms(t.elapsed()));
            }
            (ok, failed, first_error, lat)
        });
    }
    let (mut accepted, mut failed, mut first_error, mut lat) = (0, 0, None, Vec::new());
    while let Some(r) = clients.join_next().await {
        let (ok, f, e, l) = r?;
        accepted += ok;
        failed += f;
        if first_error.is_none() {
            first_error = e;
        }
        lat.extend(l);
    }
    let load = started.elapsed();
    lat.sort_by(|a, b| a.total_cmp(b));
    // Correlation catches up: every accepted alert in an incident.
    let deadline = Instant::now() + Duration::from_secs(cfg.drain_secs);
    let mut drained = None;
    let count = loop {
        let count = placed(cfg, client).await?;
        if count >= accepted as i64 {
            drained = Some(started.elapsed());
            break count;
        }
        if Instant::now() >= deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(Throughput {
        accepted,
        failed,
        first_error,
        load,
        req_p50: pct(&lat, 0.50),
        req_p99: pct(&lat, 0.99),
        drained,
        placed: count,
    })
}

struct Latency {
    sent: usize,
    failed: usize,
    first_error: Option<String>,
    /// Webhook sent -> `created` on the feed, ms, sorted.
    feed: Vec<f64>,
    /// Webhook sent -> 202, ms, sorted.
    ack: Vec<f64>,
    achieved_rate: f64,
}

/// The feed: `(index of the alert, when its incident's `created` event was read)` for each of
/// this run's latency alerts, on the channel; an `error` or `reset` event ends it with a message.
async fn open_feed(
    cfg: &Cfg,
) -> anyhow::Result<(
    tokio::sync::mpsc::UnboundedReceiver<Result<(usize, Instant), String>>,
    tokio::task::JoinHandle<()>,
)> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let resp = client
        .get(format!("{}/api/incidents/stream", cfg.feed))
        .bearer_auth(&cfg.bearer)
        .send()
        .await?;
    if resp.status().as_u16() != 200 {
        bail!(
            "feed: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let prefix = format!("lat {} ", cfg.run);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut events = resp.bytes_stream().eventsource();
        while let Some(e) = events.next().await {
            let at = Instant::now();
            let e = match e {
                Ok(e) => e,
                Err(e) => {
                    let _ = tx.send(Err(format!("feed broke: {e}")));
                    return;
                }
            };
            if e.event == "error" || e.event == "reset" {
                let _ = tx.send(Err(format!("feed ended: {} {}", e.event, e.data)));
                return;
            }
            if e.event != "incident" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&e.data) else {
                continue;
            };
            if v["data"]["change"] != "created" {
                continue;
            }
            let Some(i) = v["data"]["title"]
                .as_str()
                .and_then(|t| t.strip_prefix(&prefix))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if tx.send(Ok((i, at))).is_err() {
                return;
            }
        }
        let _ = tx.send(Err("the feed ended".into()));
    });
    Ok((rx, task))
}

async fn latency(cfg: &Cfg, client: &reqwest::Client) -> anyhow::Result<Latency> {
    let total = cfg.rate * cfg.lat_secs;
    let (mut feed, feed_task) = open_feed(cfg).await?;
    // The feed is subscribed once its answer's headers are read; a moment for good measure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = Arc::new(format!("{}/api/webhooks/generic/{}", cfg.base, cfg.webhook));
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    // Open loop, bounded: at most this many requests in flight (a slow server gets the rest late,
    // and the lateness is in its figures, as it would be for a real alert source).
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..total {
        ticker.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (client, url, sent_at, run) = (
            client.clone(),
            url.clone(),
            sent_at.clone(),
            cfg.run.clone(),
        );
        requests.spawn(async move {
            let body = alert(
                format!("lat {run} {i}"),
                format!("lat-{run}-group-{i}"),
                format!("lat-{run}-svc-{i}"),
                format!("lat-{run}-{i}"),
            );
            let t = Instant::now();
            sent_at.lock().unwrap()[i] = Some(t);
            let r = post(&client, &url, body).await;
            drop(permit);
            (r, ms(t.elapsed()))
        });
    }
    let send_time = started.elapsed();
    let (mut failed, mut first_error, mut ack) = (0, None, Vec::new());
    while let Some(r) = requests.join_next().await {
        let (r, t) = r?;
        match r {
            Ok(()) => ack.push(t),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let accepted = total - failed;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cfg.lat_wait_secs);
    let mut seen = vec![None; total];
    let mut got = 0;
    while got < accepted {
        match tokio::time::timeout_at(deadline, feed.recv()).await {
            Ok(Some(Ok((i, at)))) => {
                if i < total && seen[i].is_none() {
                    seen[i] = Some(at);
                    got += 1;
                }
            }
            Ok(Some(Err(e))) => {
                first_error.get_or_insert(e);
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    feed_task.abort();
    let sent_at = sent_at.lock().unwrap();
    let mut feed_ms: Vec<f64> = seen
        .iter()
        .zip(sent_at.iter())
        .filter_map(|(seen, sent)| Some(ms(seen.as_ref()?.duration_since((*sent)?))))
        .collect();
    feed_ms.sort_by(|a, b| a.total_cmp(b));
    ack.sort_by(|a, b| a.total_cmp(b));
    Ok(Latency {
        sent: total,
        failed,
        first_error,
        feed: feed_ms,
        ack,
        achieved_rate: total as f64 / send_time.as_secs_f64(),
    })
}

async fn run(cfg: Cfg) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(cfg.concurrency.max(512))
        .build()?;
    let label = &cfg.label;
    println!(
        "== {label}: {} alerts, {} clients, {} groups; then {}/s for {} s, each a new incident ==",
        cfg.alerts, cfg.concurrency, cfg.groups, cfg.rate, cfg.lat_secs
    );

    let t = throughput(&cfg, &client).await?;
    let accepted_rate = t.accepted as f64 / t.load.as_secs_f64();
    println!(
        "{label} throughput: {} accepted, {} refused in {:.2} s: {:.0} alerts/s accepted \
         (request p50 {:.2} ms, p99 {:.2} ms)",
        t.accepted,
        t.failed,
        t.load.as_secs_f64(),
        accepted_rate,
        t.req_p50,
        t.req_p99
    );
    if let Some(e) = &t.first_error {
        println!("{label}   first refusal: {e}");
    }
    let correlated_rate = match t.drained {
        Some(d) => {
            let r = t.accepted as f64 / d.as_secs_f64();
            println!(
                "{label} correlation: all {} in incidents {:.2} s after the first request: {:.0} alerts/s end to end",
                t.accepted,
                d.as_secs_f64(),
                r
            );
            r
        }
        None => {
            let secs = t.load.as_secs_f64() + cfg.drain_secs as f64;
            let r = t.placed as f64 / secs;
            println!(
                "{label} correlation: NOT caught up within {} s after the load: {} of {} in incidents (about {:.0} alerts/s)",
                cfg.drain_secs, t.placed, t.accepted, r
            );
            r
        }
    };

    let l = latency(&cfg, &client).await?;
    let missing = l.sent - l.failed - l.feed.len();
    println!(
        "{label} latency: {} sent at {:.0}/s ({} refused), {} created events read, {} missing",
        l.sent,
        l.achieved_rate,
        l.failed,
        l.feed.len(),
        missing
    );
    if let Some(e) = &l.first_error {
        println!("{label}   first error: {e}");
    }
    println!(
        "{label}   webhook -> feed: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&l.feed, 0.50),
        pct(&l.feed, 0.90),
        pct(&l.feed, 0.99),
        l.feed.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "{label}   webhook -> 202:  p50 {:.2} ms, p99 {:.2} ms",
        pct(&l.ack, 0.50),
        pct(&l.ack, 0.99)
    );
    println!(
        "RESULT label={label} accepted_per_s={accepted_rate:.0} refused={} req_p50_ms={:.2} req_p99_ms={:.2} \
         correlated_per_s={correlated_rate:.0} drained={} feed_p50_ms={:.2} feed_p90_ms={:.2} feed_p99_ms={:.2} \
         feed_max_ms={:.2} feed_missing={missing} ack_p50_ms={:.2} ack_p99_ms={:.2} lat_rate={:.0}",
        t.failed,
        t.req_p50,
        t.req_p99,
        t.drained.is_some(),
        pct(&l.feed, 0.50),
        pct(&l.feed, 0.90),
        pct(&l.feed, 0.99),
        l.feed.last().copied().unwrap_or(f64::NAN),
        pct(&l.ack, 0.50),
        pct(&l.ack, 0.99),
        l.achieved_rate,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Built and listed as a test target too (`--all-targets`): run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let base = env_str("BASE_URL")?.trim_end_matches('/').to_string();
    let cfg = Cfg {
        label: std::env::var("LABEL").unwrap_or_else(|_| "server".into()),
        feed: std::env::var("FEED_URL")
            .map(|f| f.trim_end_matches('/').to_string())
            .unwrap_or_else(|_| base.clone()),
        base,
        webhook: env_str("WEBHOOK_TOKEN")?,
        bearer: env_str("BEARER_TOKEN")?,
        run: format!("{:08x}", rand_u32()),
        alerts: env_usize("ALERTS", 20_000),
        concurrency: env_usize("CONCURRENCY", 64).max(1),
        groups: env_usize("GROUPS", 200).max(1),
        throughput_secs: env_usize("THROUGHPUT_SECS", 300) as u64,
        drain_secs: env_usize("DRAIN_SECS", 300) as u64,
        rate: env_usize("RATE", 200).max(1),
        lat_secs: env_usize("LAT_SECS", 10).max(1),
        lat_wait_secs: env_usize("LAT_WAIT_SECS", 60) as u64,
    };
    let limit = Duration::from_secs(env_usize("TIMEOUT_SECS", 900) as u64);
    match tokio::time::timeout(limit, run(cfg)).await {
        Ok(r) => r,
        Err(_) => bail!(
            "the run did not finish within TIMEOUT_SECS ({} s)",
            limit.as_secs()
        ),
    }
}

/// A run id from the clock and the process id (no need for a random crate here).
fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}
