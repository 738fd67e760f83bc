//! Route table. Each route matches path, then method, then authenticates, then reads its body,
//! so an unknown path is a 404, a wrong method a 405, and nobody unauthenticated gets as far as
//! a body parse error.

mod accounts;
mod admin;
mod credentials;
mod health;
mod incidents;
mod knowledge;
mod llm_config;
mod members;
mod policies;
mod preferences;
mod sessions;
mod signin;
mod tokens;
mod usage;
mod webhooks;

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::{Filter, Rejection, Reply};

use super::HttpState;

pub type Route = BoxedFilter<(warp::reply::Response,)>;

pub fn all(
    state: Arc<HttpState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    health::routes(state.clone())
        .or(signin::routes(state.clone()))
        .unify()
        .or(accounts::routes(state.clone()))
        .unify()
        .or(tokens::routes(state.clone()))
        .unify()
        .or(members::routes(state.clone()))
        .unify()
        .or(preferences::routes(state.clone()))
        .unify()
        .or(sessions::routes(state.clone()))
        .unify()
        .or(usage::routes(state.clone()))
        .unify()
        .or(llm_config::routes(state.clone()))
        .unify()
        .or(policies::routes(state.clone()))
        .unify()
        .or(credentials::routes(state.clone()))
        .unify()
        .or(knowledge::routes(state.clone()))
        .unify()
        .or(webhooks::routes(state.clone()))
        .unify()
        .or(incidents::routes(state.clone()))
        .unify()
        .or(admin::routes(state))
        .unify()
}

/// JSON reply with a status.
pub fn json<T: serde::Serialize>(
    status: warp::http::StatusCode,
    body: &T,
) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}
