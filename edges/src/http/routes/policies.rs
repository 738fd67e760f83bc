//! `/api/org/command-policies`: the org's allow/deny rules for agent commands, and a check of
//! what the gate says about one command.

use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use aurora_storage::classify::classify;
use aurora_storage::policies::{Effect, GateMode};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, json_body, with_state};
use crate::http::{respond, ApiError, HttpState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    effect: Effect,
    pattern: String,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    command: String,
    /// `agent` (default), `ask` or `background`.
    mode: Option<GateMode>,
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let list = warp::path!("api" / "org" / "command-policies")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(list)
        .map(respond);
    let create = warp::path!("api" / "org" / "command-policies")
        .and(warp::post())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .and(json_body::<CreateBody>(limit))
        .then(create)
        .map(respond);
    let check = warp::path!("api" / "org" / "command-policies" / "check")
        .and(warp::post())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(json_body::<CheckBody>(limit))
        .then(check)
        .map(respond);
    let delete = warp::path!("api" / "org" / "command-policies" / String)
        .and(warp::delete())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state))
        .then(delete)
        .map(respond);
    list.or(create)
        .unify()
        .or(check)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

async fn list(p: Principal, s: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &json!({ "policies": s.policies.list(p.org_id).await? }),
    ))
}

async fn create(
    p: Principal,
    s: Arc<HttpState>,
    body: CreateBody,
) -> Result<warp::reply::Response, ApiError> {
    let policy = s
        .policies
        .create(&p, body.effect, &body.pattern, body.description.as_deref())
        .await?;
    Ok(json(StatusCode::CREATED, &policy))
}

async fn check(
    p: Principal,
    s: Arc<HttpState>,
    body: CheckBody,
) -> Result<warp::reply::Response, ApiError> {
    if body.command.len() > 64 * 1024 {
        return Err(ApiError::validation("command is over 64 KiB"));
    }
    let argv = shell_words::split(&body.command)
        .map_err(|e| ApiError::validation(format!("cannot split the command: {e}")))?;
    if argv.is_empty() {
        return Err(ApiError::validation("command is empty"));
    }
    let command = shell_words::join(&argv);
    let c = classify(&argv);
    let mode = body.mode.unwrap_or(GateMode::Agent);
    Ok(json(
        StatusCode::OK,
        &s.policies.check(p.org_id, &command, c, mode).await?,
    ))
}

async fn delete(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id
        .parse()
        .map_err(|_| ApiError::validation("policy id must be a UUID"))?;
    s.policies.delete(&p, id).await?;
    Ok(json(StatusCode::OK, &json!({ "deleted": id })))
}
