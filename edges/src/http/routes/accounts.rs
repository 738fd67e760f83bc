//! The caller's identity and org, WebSocket tickets, and admin user management (signing in is
//! in `signin`, members and invitations in `members`).

use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, json_body, with_state};
use crate::http::{respond, ApiError, HttpState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
    email: String,
    password: String,
    #[serde(default = "default_role")]
    role: Role,
}

fn default_role() -> Role {
    Role::Viewer
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let me = warp::path!("api" / "auth" / "me")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .map(|p: Principal| json(StatusCode::OK, &p_json(&p)));
    let ws_token = warp::path!("api" / "auth" / "ws-token")
        .and(warp::post())
        .and(auth(state.clone(), Role::Viewer))
        .and(warp::header::<String>("authorization"))
        .and(with_state(state.clone()))
        .map(ws_token);
    let org = warp::path!("api" / "orgs" / "current")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(current_org)
        .map(respond);
    let list_users = warp::path!("api" / "admin" / "users")
        .and(warp::get())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .then(list_users)
        .map(respond);
    let create_user = warp::path!("api" / "admin" / "users")
        .and(warp::post())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state))
        .and(json_body::<CreateUserBody>(limit))
        .then(create_user)
        .map(respond);
    me.or(ws_token)
        .unify()
        .or(org)
        .unify()
        .or(list_users)
        .unify()
        .or(create_user)
        .unify()
        .boxed()
}

pub(super) fn p_json(p: &Principal) -> serde_json::Value {
    json!({ "id": p.user_id, "email": p.email, "role": p.role, "org_id": p.org_id })
}

/// A single-use ticket for the WebSocket edge (PROTOCOL.md, "Connecting and authenticating"),
/// bound to the API token it was asked with: the connection lives only as long as that token.
fn ws_token(p: Principal, header: String, s: Arc<HttpState>) -> warp::reply::Response {
    // `auth` has already checked the header's shape.
    let token = crate::http::filters::bearer_of(&header).unwrap_or_default();
    respond(
        s.tickets
            .issue_bound(&p, &aurora_storage::auth::token_hash(token))
            .map(|t| {
                json(
                    StatusCode::OK,
                    &json!({ "token": t.token, "expires_at": t.expires_at }),
                )
            })
            .map_err(ApiError::from),
    )
}

async fn current_org(p: Principal, s: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    let org = s.accounts.organization(p.org_id).await?;
    Ok(json(StatusCode::OK, &org))
}

async fn list_users(p: Principal, s: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    let users = s.accounts.list_users(p.org_id).await?;
    Ok(json(StatusCode::OK, &json!({ "users": users })))
}

async fn create_user(
    p: Principal,
    s: Arc<HttpState>,
    body: CreateUserBody,
) -> Result<warp::reply::Response, ApiError> {
    let user = s
        .accounts
        .create_user(&p, &body.email, &body.password, body.role)
        .await?;
    Ok(json(StatusCode::CREATED, &user))
}
