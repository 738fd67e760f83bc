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
//! - `GET /metrics`: Prometheus text: actors, mailbox depths and restarts by kind (from the same
//!   tree), turns, tool calls, open WebSockets and cluster members, labelled with this node
//!   (each node is its own scrape target). Unauthenticated, like most scrape targets:
//!   the node binds to loopback unless told otherwise.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aurora_actors::ActorSnapshot;
use aurora_cluster::NodeTree;
use aurora_storage::auth::{Principal, Role};
use aurora_supervisors::sessions::{AdminAction, AdminRefusal};
use aurora_supervisors::NodeMsg;
use chrono::Utc;
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};
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
async fn tree(state: &HttpState) -> Result<ActorSnapshot, ApiError> {
    ractor::call_t!(state.node, NodeMsg::Status, TREE_TIMEOUT.as_millis() as u64).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("the actor tree could not be collected: {e}"),
        )
    })
}

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

async fn metrics(state: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    let internal = |e: prometheus::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
    };
    let tree = tree(&state).await?;
    // Every series carries the node, so a scrape of many nodes stays apart.
    let registry = Registry::new_custom(
        None,
        Some(HashMap::from([("node".to_string(), tree.id.clone())])),
    )
    .map_err(internal)?;
    let gauge = |name: &str, help: &str| -> Result<IntGaugeVec, ApiError> {
        let g = IntGaugeVec::new(Opts::new(name, help), &["kind"]).map_err(internal)?;
        registry.register(Box::new(g.clone())).map_err(internal)?;
        Ok(g)
    };
    let actors = gauge("aurora_actors", "Live actors, by kind")?;
    let mailbox = gauge(
        "aurora_actor_mailbox_depth",
        "Messages waiting, summed by kind",
    )?;
    let restarts = gauge(
        "aurora_actor_restarts",
        "Restarts of the live actors, summed by kind",
    )?;
    for a in tree.walk() {
        let kind = [a.kind.as_str()];
        actors.with_label_values(&kind).inc();
        mailbox.with_label_values(&kind).add(a.mailbox as i64);
        restarts.with_label_values(&kind).add(a.restarts as i64);
    }
    let members = prometheus::IntGauge::new(
        "aurora_cluster_members",
        "Live members of the cluster as this node sees them (itself included)",
    )
    .map_err(internal)?;
    members.set(state.cluster.members().len() as i64);
    registry.register(Box::new(members)).map_err(internal)?;
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
