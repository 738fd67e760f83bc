//! `/api/org/members` and `/api/org/invitations`: who is in the org, and how others get in.
//! Everyone in the org sees the members; only admins invite, change roles and remove. An
//! invitation's code is shown once, in the answer that creates it.

use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, id_param, json_body, with_state};
use crate::http::{respond, ApiError, HttpState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    role: Role,
    #[serde(default)]
    email: Option<String>,
    #[serde(default = "default_invitation_hours")]
    expires_in_hours: i64,
}

fn default_invitation_hours() -> i64 {
    72
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: Role,
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let members = warp::path!("api" / "org" / "members")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(list_members)
        .map(respond);
    let set_role = warp::path!("api" / "org" / "members" / String)
        .and(warp::patch())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .and(json_body::<RoleBody>(limit))
        .then(set_role)
        .map(respond);
    let remove = warp::path!("api" / "org" / "members" / String)
        .and(warp::delete())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .then(remove)
        .map(respond);
    let invite = warp::path!("api" / "org" / "invitations")
        .and(warp::post())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .and(json_body::<InviteBody>(limit))
        .then(invite)
        .map(respond);
    let invitations = warp::path!("api" / "org" / "invitations")
        .and(warp::get())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .then(list_invitations)
        .map(respond);
    let revoke = warp::path!("api" / "org" / "invitations" / String)
        .and(warp::delete())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state))
        .then(revoke_invitation)
        .map(respond);
    members
        .or(set_role)
        .unify()
        .or(remove)
        .unify()
        .or(invite)
        .unify()
        .or(invitations)
        .unify()
        .or(revoke)
        .unify()
        .boxed()
}

async fn list_members(p: Principal, s: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    let members = s.accounts.list_users(p.org_id).await?;
    Ok(json(StatusCode::OK, &json!({ "members": members })))
}

async fn set_role(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
    body: RoleBody,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "member")?;
    let user = s.accounts.set_role(&p, id, body.role).await?;
    tracing::info!(member = %id, role = body.role.as_str(), "member role changed");
    Ok(json(StatusCode::OK, &user))
}

async fn remove(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "member")?;
    s.accounts.remove_member(&p, id).await?;
    tracing::info!(member = %id, "member removed");
    Ok(json(StatusCode::OK, &json!({ "removed": id })))
}

async fn invite(
    p: Principal,
    s: Arc<HttpState>,
    body: InviteBody,
) -> Result<warp::reply::Response, ApiError> {
    let issued = s
        .accounts
        .invite(&p, body.role, body.email.as_deref(), body.expires_in_hours)
        .await?;
    tracing::info!(invitation = %issued.invitation.id, role = body.role.as_str(), "invitation issued");
    Ok(json(StatusCode::CREATED, &issued))
}

async fn list_invitations(
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let now = chrono::Utc::now();
    let rows: Vec<_> = s
        .accounts
        .list_invitations(p.org_id)
        .await?
        .into_iter()
        .map(|i| {
            let status = match (i.accepted_at, i.expires_at > now) {
                (Some(_), _) => "accepted",
                (None, true) => "open",
                (None, false) => "expired",
            };
            let mut v = serde_json::to_value(&i).unwrap_or_default();
            v["status"] = json!(status);
            v
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "invitations": rows })))
}

async fn revoke_invitation(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "invitation")?;
    s.accounts.revoke_invitation(&p, id).await?;
    Ok(json(StatusCode::OK, &json!({ "revoked": id })))
}
