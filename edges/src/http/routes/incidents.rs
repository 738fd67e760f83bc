//! `/api/incidents`: the org's incidents (list with filters and a cursor, detail, edits,
//! manual incidents, analyses run again) and `/api/incidents/stream`, the live feed as
//! Server-Sent Events: every incident change and thought of the org, from whichever node wrote
//! it, resumable with `Last-Event-ID`, with heartbeats, and ended when the token that opened it
//! stops working.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aurora_storage::auth::{Principal, Role};
use aurora_storage::incidents::queries::{IncidentFilter, IncidentPatch, ManualIncident};
use aurora_storage::incidents::{FeedEvent, Severity};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{
    auth, bearer_of, id_param, int_param, json_body, query_map, with_state,
};
use crate::http::{respond, ApiError, HttpState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    notes: Option<String>,
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let stream = warp::path!("api" / "incidents" / "stream")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(warp::header::<String>("authorization"))
        .and(warp::header::optional::<String>("last-event-id"))
        .and(with_state(state.clone()))
        .then(stream)
        .map(respond);
    let list = warp::path!("api" / "incidents")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(query_map())
        .then(list)
        .map(respond);
    let create = warp::path!("api" / "incidents")
        .and(warp::post())
        .and(auth(state.clone(), Role::Editor))
        .and(with_state(state.clone()))
        .and(json_body::<CreateBody>(limit))
        .then(create)
        .map(respond);
    let detail = warp::path!("api" / "incidents" / String)
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(detail)
        .map(respond);
    let patch = warp::path!("api" / "incidents" / String)
        .and(warp::patch())
        .and(auth(state.clone(), Role::Editor))
        .and(with_state(state.clone()))
        .and(json_body::<PatchBody>(limit))
        .then(patch)
        .map(respond);
    let thoughts = warp::path!("api" / "incidents" / String / "thoughts")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(thoughts)
        .map(respond);
    let rca = warp::path!("api" / "incidents" / String / "rca")
        .and(warp::post())
        .and(auth(state.clone(), Role::Editor))
        .and(with_state(state))
        .then(rca)
        .map(respond);
    stream
        .or(list)
        .unify()
        .or(create)
        .unify()
        .or(detail)
        .unify()
        .or(patch)
        .unify()
        .or(thoughts)
        .unify()
        .or(rca)
        .unify()
        .boxed()
}

fn severity(s: Option<&str>) -> Result<Option<Severity>, ApiError> {
    match s {
        None => Ok(None),
        Some(s) => Severity::parse(s).map(Some).ok_or_else(|| {
            ApiError::validation("severity must be one of info, low, medium, high, critical")
        }),
    }
}

/// Tells this node's incidents supervisor that an analysis waits (any node may claim it).
fn claim(s: &HttpState) {
    if let Some(i) = s.incidents_handle.borrow().clone() {
        let _ = i.cast(aurora_supervisors::incidents::IncidentsMsg::Claim);
    }
}

async fn list(
    p: Principal,
    s: Arc<HttpState>,
    q: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    for k in q.keys() {
        if !["status", "severity", "service", "since", "cursor", "limit"].contains(&k.as_str()) {
            return Err(ApiError::validation(format!(
                "unknown query parameter '{k}'"
            )));
        }
    }
    let status = q.get("status").cloned();
    if let Some(st) = &status {
        if !aurora_storage::incidents::queries::STATUSES.contains(&st.as_str()) {
            return Err(ApiError::validation(
                "status must be one of investigating, analyzed, resolved, dismissed",
            ));
        }
    }
    let since = match q.get("since") {
        None => None,
        Some(t) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::validation("since must be an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
    };
    let before = match q.get("cursor") {
        None => None,
        Some(c) => Some(id_param(c, "cursor")?),
    };
    let limit = int_param(&q, "limit", 50, 1..=200)?;
    let filter = IncidentFilter {
        status,
        severity: severity(q.get("severity").map(String::as_str))?,
        service: q.get("service").cloned(),
        since,
        before,
        limit,
    };
    let rows = s.incidents.list(p.org_id, &filter).await?;
    let next = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(json(
        StatusCode::OK,
        &json!({ "incidents": rows, "next_cursor": next }),
    ))
}

async fn create(
    p: Principal,
    s: Arc<HttpState>,
    body: CreateBody,
) -> Result<warp::reply::Response, ApiError> {
    let m = ManualIncident {
        title: body.title,
        severity: severity(body.severity.as_deref())?.unwrap_or(Severity::Medium),
        service: body.service.filter(|s| !s.trim().is_empty()),
        description: body.description.unwrap_or_default(),
    };
    let inc = s.incidents.create_manual(&p, m).await?;
    claim(&s);
    Ok(json(StatusCode::CREATED, &inc))
}

async fn detail(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "incident")?;
    let d = s.incidents.detail(p.org_id, id).await?;
    Ok(json(StatusCode::OK, &d))
}

async fn patch(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
    body: PatchBody,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "incident")?;
    let patch = IncidentPatch {
        status: body.status,
        severity: severity(body.severity.as_deref())?,
        title: body.title,
        notes: body.notes,
    };
    let inc = s.incidents.patch(&p, id, patch).await?;
    Ok(json(StatusCode::OK, &inc))
}

async fn thoughts(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "incident")?;
    // The incident must be the org's: an unknown id is a 404, not an empty list.
    let d = s.incidents.detail(p.org_id, id).await?;
    Ok(json(StatusCode::OK, &json!({ "thoughts": d.thoughts })))
}

async fn rca(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "incident")?;
    let inc = s.incidents.rerun(&p, id).await?;
    claim(&s);
    Ok(json(StatusCode::ACCEPTED, &inc))
}

/// Most stored events sent to a resuming client (older ones: read the incident instead).
const BACKLOG: u64 = 1000;

async fn stream(
    p: Principal,
    header: String,
    last_event_id: Option<String>,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let after = match last_event_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::validation("Last-Event-ID must be an event id"))?,
        ),
    };
    // Subscribed before the backlog is read, so nothing written in between is missed.
    let live = s.incidents.feed().subscribe(p.org_id);
    let backlog = match after {
        Some(after) => s.incidents.events_after(p.org_id, after, BACKLOG).await?,
        None => Vec::new(),
    };
    let token_hash = aurora_storage::auth::token_hash(bearer_of(&header).unwrap_or_default());
    let heartbeat = Duration::from_secs(s.config.incidents.sse_heartbeat_secs);
    let events = feed_stream(s.clone(), p, token_hash, backlog, live, heartbeat);
    // The feed runs in a task of its own and hands its events over a channel: warp needs a
    // body it can share between threads, which the database futures inside are not. A client
    // that goes away drops the receiver, and the task ends at its next event or heartbeat.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut events = std::pin::pin!(events);
        loop {
            tokio::select! {
                // The client went away: stop now, not at the next event.
                _ = tx.closed() => return,
                e = events.next() => match e {
                    Some(e) => {
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
    });
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let reply = warp::sse::reply(body);
    Ok(warp::reply::Reply::into_response(reply))
}

/// The SSE events of one client: the backlog, then the org's live events (each once), with a
/// heartbeat comment (after checking the client's token again) every `heartbeat`. Ends when the client's
/// token stops working or the client fell too far behind (it resumes with `Last-Event-ID`).
fn feed_stream(
    s: Arc<HttpState>,
    p: Principal,
    token_hash: String,
    backlog: Vec<FeedEvent>,
    mut live: tokio::sync::broadcast::Receiver<Arc<FeedEvent>>,
    heartbeat: Duration,
) -> impl Stream<Item = Result<warp::sse::Event, Infallible>> + Send + 'static {
    async_stream::stream! {
        let mut sent: BTreeSet<i64> = BTreeSet::new();
        for e in backlog {
            sent.insert(e.id);
            yield Ok(event(&e));
        }
        yield Ok(warp::sse::Event::default().comment("ready"));
        // The heartbeat (and the token check that goes with it) keeps its own clock: a busy
        // org's events do not put it off.
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Chosen inside select!, answered outside it: `yield` cannot sit in a macro's arms.
            let next = tokio::select! {
                next = live.recv() => Some(next),
                _ = beat.tick() => None,
            };
            match next {
                Some(Ok(e)) => {
                    if e.org_id != p.org_id || !sent.insert(e.id) {
                        continue;
                    }
                    if sent.len() > 10_000 {
                        sent.pop_first();
                    }
                    yield Ok(event(&e));
                }
                Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    // Too far behind: the client reconnects with its last id and reads the
                    // rest from storage.
                    yield Ok(warp::sse::Event::default().event("reset").data("{\"reason\":\"lagged\"}"));
                    break;
                }
                Some(Err(_)) => break,
                None => {
                    if s.accounts.authenticate_hash(&token_hash).await.is_err() {
                        yield Ok(warp::sse::Event::default().event("error").data("{\"code\":\"UNAUTHORIZED\"}"));
                        break;
                    }
                    yield Ok(warp::sse::Event::default().comment("heartbeat"));
                }
            }
        }
    }
}

fn event(e: &FeedEvent) -> warp::sse::Event {
    let data = json!({
        "id": e.id,
        "incident_id": e.incident_id,
        "kind": e.kind,
        "data": e.data,
        "created_at": e.created_at,
    });
    warp::sse::Event::default()
        .id(e.id.to_string())
        .event(e.kind.clone())
        .data(data.to_string())
}
