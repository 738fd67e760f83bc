//! `/api/llm-usage`: what the caller's model calls used and cost.

use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, with_state};
use crate::http::{respond, ApiError, HttpState};

pub fn routes(state: Arc<HttpState>) -> Route {
    let summary = warp::path!("api" / "llm-usage" / "summary")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(summary)
        .map(respond);
    let session = warp::path!("api" / "llm-usage" / "session" / String)
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state))
        .then(session)
        .map(respond);
    summary.or(session).unify().boxed()
}

async fn summary(p: Principal, s: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    Ok(json(StatusCode::OK, &s.usage.summary(&p).await?))
}

async fn session(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id
        .parse()
        .map_err(|_| ApiError::validation("session id must be a UUID"))?;
    Ok(json(StatusCode::OK, &s.usage.for_session(&p, id).await?))
}
