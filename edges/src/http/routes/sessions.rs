//! `/chat_api/sessions`: the caller's chat sessions: list, create, get with messages, rename,
//! soft delete. Another user's session is a 404, exactly like one that does not exist.

use std::collections::HashMap;
use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use aurora_storage::sessions::SessionSummary;
use aurora_supervisors::sessions::AdminAction;
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
        .and(with_state(state.clone()))
        .and(json_body::<CreateBody>(limit))
        .then(create)
        .map(respond);
    let one = warp::path("chat_api")
        .and(warp::path("sessions"))
        .and(warp::path::param::<String>())
        .and(warp::path::end());
    let get = one
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(get)
        .map(respond);
    let rename = one
        .and(warp::patch().or(warp::put()).unify())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(json_body::<RenameBody>(limit))
        .then(rename)
        .map(respond);
    let delete = one
        .and(warp::delete())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state))
        .then(delete)
        .map(respond);
    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(rename)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    title: String,
}

/// How long a delete waits for the nodes to stop the session's actor.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A session id from the path; anything but a UUID is a 400.
fn session_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::validation("session id must be a UUID"))
}

async fn get(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let session = s.sessions.get(&p, session_id(&id)?).await?;
    Ok(json(StatusCode::OK, &session))
}

async fn rename(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
    body: RenameBody,
) -> Result<warp::reply::Response, ApiError> {
    let session = s.sessions.rename(&p, session_id(&id)?, &body.title).await?;
    Ok(json(StatusCode::OK, &session))
}

async fn delete(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let sid = session_id(&id)?;
    s.sessions.delete(&p, sid).await?;
    // Its live actor, on whichever node, goes too: the next message finds the session deleted
    // instead of a cached history that would take new turns.
    if let Err(e) = s
        .cluster
        .admin(sid, p.org_id, AdminAction::StopSession, STOP_TIMEOUT)
        .await
    {
        tracing::warn!(session_id = %sid, error = %e, "a deleted session's actor could not be stopped everywhere");
    }
    Ok(json(StatusCode::OK, &serde_json::json!({ "deleted": id })))
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
