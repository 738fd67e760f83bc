//! The admin console's API and the node's metrics.
//!
//! - `GET /api/admin/actors[?kind=&node=]` (admin): the actor tree of every node of the
//!   cluster, from the actors' own status snapshots (each node asked through its gateway), with
//!   counts per kind and per node; a node that does not answer is listed as `unreachable`. Actors owned by other orgs
//!   (sessions, runs, ingestion) are left out and only counted as `hidden`.
//! - `POST /api/admin/actors/stop {kind: "session" | "agent_run", id}` (admin): stop a session
//!   actor of the admin's org, or cancel its running turn, on whichever node it is live.
//! - `GET /admin`: the console page (static HTML and script; it logs in through the API and
//!   polls the tree every two seconds).
//! - `GET /metrics`: Prometheus text: live actors and restarts by kind, turns, tool calls,
//!   hibernating sessions, open WebSockets and cluster members, labelled with this node (each
//!   node is its own scrape target). Read from counters the actors keep, never by asking them,
//!   so a scrape costs the node nothing it routes. It needs `AURORA_METRICS_TOKEN` as a bearer
//!   token (the figures span every org: no org's admin token opens them); unset, it is off.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aurora_actors::ActorSnapshot;
use aurora_cluster::NodeTree;
use aurora_storage::auth::{Principal, Role};
use aurora_supervisors::sessions::{AdminAction, AdminRefusal};
use chrono::Utc;
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Deserialize;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::{json, Route};
use crate::http::filters::{auth, json_body, query_map, with_state};
use crate::http::{respond, ApiError, HttpState};

/// How long the whole tree may take to collect.
const TREE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let actors = warp::path!("api" / "admin" / "actors")
        .and(warp::get())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .and(query_map())
        .then(actors)
        .map(respond);
    let stop = warp::path!("api" / "admin" / "actors" / "stop")
        .and(warp::post())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .and(json_body::<StopBody>(limit))
        .then(stop)
        .map(respond);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(scraper(state.clone()))
        .and(with_state(state))
        .then(metrics)
        .map(respond);
    let page = warp::path!("admin").and(warp::get()).map(console_page);
    actors
        .or(stop)
        .unify()
        .or(metrics)
        .unify()
        .or(page)
        .unify()
        .boxed()
}

/// The console: one self-contained page, so nothing needs a front-end build.
const CONSOLE_PAGE: &str = include_str!("../admin.html");

fn console_page() -> warp::reply::Response {
    warp::http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/html; charset=utf-8")
        .header(
            "content-security-policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        )
        .header("x-content-type-options", "nosniff")
        .body(CONSOLE_PAGE.into())
        .unwrap_or_else(|_| warp::reply().into_response())
}

/// This node's whole tree.
async fn actors(
    who: Principal,
    state: Arc<HttpState>,
    q: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    for key in q.keys() {
        if key != "kind" && key != "node" {
            return Err(ApiError::validation(format!(
                "unknown parameter '{key}' (kind, node)"
            )));
        }
    }
    // Every member's tree, asked at once; a member that does not answer is shown as such
    // rather than failing the whole console.
    let mut nodes = Vec::new();
    let mut hidden = 0;
    let mut unreachable = BTreeMap::new();
    for NodeTree { node, tree } in state.cluster.trees(TREE_TIMEOUT).await {
        match tree {
            Ok(tree) => {
                let (tree, h) = tree.visible_to(who.org_id);
                hidden += h;
                nodes.push(tree);
            }
            Err(e) => {
                unreachable.insert(node.clone(), e.to_string());
                nodes.push(ActorSnapshot::new("node", node, "unreachable", Utc::now()));
            }
        }
    }
    if let Some(node) = q.get("node") {
        nodes.retain(|n| &n.id == node);
    }
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for n in &nodes {
        let all = n.walk();
        by_node.insert(n.id.clone(), all.len());
        for a in all {
            *by_kind.entry(a.kind.clone()).or_default() += 1;
        }
    }
    let mut body = serde_json::json!({
        "nodes": nodes,
        "counts": { "by_kind": by_kind, "by_node": by_node },
        "hidden": hidden,
        "unreachable": unreachable,
    });
    if let Some(kind) = q.get("kind") {
        let matching: Vec<&ActorSnapshot> = nodes
            .iter()
            .flat_map(|n| n.walk())
            .filter(|a| &a.kind == kind)
            .collect();
        body["actors"] = serde_json::to_value(matching).unwrap_or_default();
    }
    Ok(json(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    kind: String,
    id: String,
}

async fn stop(
    who: Principal,
    state: Arc<HttpState>,
    body: StopBody,
) -> Result<warp::reply::Response, ApiError> {
    let action = match body.kind.as_str() {
        "session" => AdminAction::StopSession,
        "agent_run" => AdminAction::CancelRun,
        other => {
            return Err(ApiError::validation(format!(
                "kind must be 'session' or 'agent_run', not '{other}'"
            )))
        }
    };
    let not_found = || ApiError::not_found(format!("no live {} {}", body.kind, body.id));
    let session_id = Uuid::parse_str(&body.id).map_err(|_| not_found())?;
    // Broadcast: the session may be live on any node while it moves between owners.
    let result = state
        .cluster
        .admin(session_id, who.org_id, action, TREE_TIMEOUT)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                format!("the cluster did not answer: {e}"),
            )
        })?;
    match result {
        Ok(()) => {
            Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
        }
        Err(AdminRefusal::NotFound) => Err(not_found()),
        Err(AdminRefusal::NotRunning) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "NOT_RUNNING",
            "the session has no turn running",
        )),
    }
}

/// Lets a scrape through with the configured metrics token only: the figures are the node's,
/// across every org, so no org's admin token opens them. Unset, `/metrics` is closed.
fn scraper(state: Arc<HttpState>) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and_then(move |header: Option<String>| {
            let state = state.clone();
            async move {
                let Some(expected) = &state.config.metrics_token else {
                    return Err(warp::reject::custom(ApiError::not_found(
                        "metrics are off: set AURORA_METRICS_TOKEN to scrape them",
                    )));
                };
                let token = header
                    .as_deref()
                    .and_then(crate::http::filters::bearer_of)
                    .unwrap_or_default();
                // Compared as digests: how long the comparison takes says nothing about how
                // much of the token was right.
                use sha2::{Digest, Sha256};
                if Sha256::digest(token.as_bytes()) == Sha256::digest(expected.expose().as_bytes())
                {
                    Ok(())
                } else {
                    Err(warp::reject::custom(ApiError::unauthorized(
                        "metrics need the scrape token (AURORA_METRICS_TOKEN) as a bearer token",
                    )))
                }
            }
        })
        .untuple_one()
}

async fn metrics(state: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    let internal = |e: prometheus::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
    };
    // Every series carries the node, so a scrape of many nodes stays apart.
    let registry = Registry::new_custom(
        None,
        Some(HashMap::from([(
            "node".to_string(),
            state.node_name.clone(),
        )])),
    )
    .map_err(internal)?;
    let members = prometheus::IntGauge::new(
        "aurora_cluster_members",
        "Live members of the cluster as this node sees them (itself included)",
    )
    .map_err(internal)?;
    members.set(state.cluster.members().len() as i64);
    registry.register(Box::new(members)).map_err(internal)?;
    use aurora_actors::metrics::{ACTOR_RESTARTS, LIVE_ACTORS};
    registry
        .register(Box::new(LIVE_ACTORS.clone()))
        .map_err(internal)?;
    registry
        .register(Box::new(ACTOR_RESTARTS.clone()))
        .map_err(internal)?;
    use aurora_actors::metrics::{HIBERNATED_SESSIONS, OPEN_WEBSOCKETS, TOOL_CALLS, TURNS};
    registry
        .register(Box::new(HIBERNATED_SESSIONS.clone()))
        .map_err(internal)?;
    registry
        .register(Box::new(TURNS.clone()))
        .map_err(internal)?;
    registry
        .register(Box::new(TOOL_CALLS.clone()))
        .map_err(internal)?;
    registry
        .register(Box::new(OPEN_WEBSOCKETS.clone()))
        .map_err(internal)?;
    use aurora_actors::metrics::{SCHEDULER_LAST, SCHEDULER_RUNS};
    registry
        .register(Box::new(SCHEDULER_RUNS.clone()))
        .map_err(internal)?;
    registry
        .register(Box::new(SCHEDULER_LAST.clone()))
        .map_err(internal)?;
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .map_err(internal)?;
    Ok(warp::http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", prometheus::TEXT_FORMAT)
        .body(out.into())
        .unwrap_or_else(|_| warp::reply().into_response()))
}
