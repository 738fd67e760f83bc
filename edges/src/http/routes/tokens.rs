//! `/api/auth/tokens` and `/api/auth/logout`: a user's API tokens (named, expiring, shown once),
//! listed and revoked by their owner, and by an admin for the whole org (`?all=true`). A
//! revocation holds on every node of the cluster within a second (`aurora_storage::tokens`).

use std::collections::HashMap;
use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, bearer_of, id_param, json_body, query_map, with_state};
use crate::http::{respond, ApiError, HttpState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default = "default_days")]
    expires_in_days: i64,
}

fn default_days() -> i64 {
    90
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let list = warp::path!("api" / "auth" / "tokens")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(query_map())
        .then(list)
        .map(respond);
    let create = warp::path!("api" / "auth" / "tokens")
        .and(warp::post())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(json_body::<CreateBody>(limit))
        .then(create)
        .map(respond);
    let revoke = warp::path!("api" / "auth" / "tokens" / String)
        .and(warp::delete())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(revoke)
        .map(respond);
    let logout = warp::path!("api" / "auth" / "logout")
        .and(warp::post())
        .and(auth(state.clone(), Role::Viewer))
        .and(warp::header::<String>("authorization"))
        .and(with_state(state))
        .then(logout)
        .map(respond);
    list.or(create)
        .unify()
        .or(revoke)
        .unify()
        .or(logout)
        .unify()
        .boxed()
}

async fn list(
    p: Principal,
    s: Arc<HttpState>,
    q: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    let all = match q.get("all").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::validation("all must be true or false")),
    };
    if all && p.role < Role::Admin {
        return Err(ApiError::forbidden(
            "only an admin can list the organization's tokens",
        ));
    }
    let tokens = s.accounts.list_tokens(&p, all).await?;
    Ok(json(StatusCode::OK, &json!({ "tokens": tokens })))
}

async fn create(
    p: Principal,
    s: Arc<HttpState>,
    body: CreateBody,
) -> Result<warp::reply::Response, ApiError> {
    let t = s
        .accounts
        .create_token(&p, &body.name, body.expires_in_days)
        .await?;
    tracing::info!(token_id = %t.id, "token created");
    Ok(json(StatusCode::CREATED, &t))
}

async fn revoke(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "token")?;
    s.accounts.revoke_token(&p, id).await?;
    tracing::info!(token_id = %id, "token revoked");
    Ok(json(StatusCode::OK, &json!({ "revoked": id })))
}

async fn logout(
    p: Principal,
    header: String,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    // `auth` has already checked the header's shape.
    let token = bearer_of(&header).unwrap_or_default();
    s.accounts.logout(&p, token).await?;
    Ok(json(StatusCode::OK, &json!({ "logged_out": true })))
}
