//! `/chat_api/sessions`: list and create the caller's chat sessions.

use std::collections::HashMap;
use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use aurora_storage::sessions::SessionSummary;
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, int_param, json_body, query_map, with_state};
use crate::http::{respond, ApiError, HttpState};

/// Serialized straight from the rows (no intermediate `serde_json::Value`): this is the hottest
/// read of the API.
#[derive(Serialize)]
struct SessionList {
    sessions: Vec<SessionSummary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: Option<String>,
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let list = warp::path!("chat_api" / "sessions")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(query_map())
        .then(list)
        .map(respond);
    let create = warp::path!("chat_api" / "sessions")
        .and(warp::post())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state))
        .and(json_body::<CreateBody>(limit))
        .then(create)
        .map(respond);
    list.or(create).unify().boxed()
}

async fn list(
    p: Principal,
    s: Arc<HttpState>,
    q: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    let limit = int_param(&q, "limit", 50, 1..=200)?;
    let offset = int_param(&q, "offset", 0, 0..=1_000_000)?;
    let sessions = s.sessions.list(&p, limit, offset).await?;
    Ok(json(StatusCode::OK, &SessionList { sessions }))
}

async fn create(
    p: Principal,
    s: Arc<HttpState>,
    body: CreateBody,
) -> Result<warp::reply::Response, ApiError> {
    let session = s.sessions.create(&p, body.title.as_deref()).await?;
    Ok(json(StatusCode::CREATED, &session))
}
