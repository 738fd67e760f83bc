//! `/api/org/credentials`: the org's cloud credentials, for admins only. The secret is
//! write-only: a create answers, and the list shows, only id, provider, name, metadata and
//! creation time. The body is read as plain JSON and checked by the storage layer, whose
//! refusals name the field and never quote a value (serde's own messages can quote one).

use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use aurora_storage::credentials::NewCredential;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, json_body, with_state};
use crate::http::{respond, ApiError, HttpState};

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let list = warp::path!("api" / "org" / "credentials")
        .and(warp::get())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .then(list)
        .map(respond);
    let create = warp::path!("api" / "org" / "credentials")
        .and(warp::post())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .and(json_body::<Value>(limit))
        .then(create)
        .map(respond);
    let delete = warp::path!("api" / "org" / "credentials" / String)
        .and(warp::delete())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state))
        .then(delete)
        .map(respond);
    list.or(create).unify().or(delete).unify().boxed()
}

async fn list(p: Principal, s: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &json!({ "credentials": s.credentials.list(p.org_id).await? }),
    ))
}

async fn create(
    p: Principal,
    s: Arc<HttpState>,
    body: Value,
) -> Result<warp::reply::Response, ApiError> {
    let new = NewCredential::from_json(&body)?;
    drop(body);
    let credential = s.credentials.create(&p, new).await?;
    tracing::info!(credential = %credential.id, provider = credential.provider.as_str(), "credential created");
    Ok(json(StatusCode::CREATED, &credential))
}

async fn delete(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = crate::http::filters::id_param(&id, "credential")?;
    s.credentials.delete(&p, id).await?;
    Ok(json(StatusCode::OK, &json!({ "deleted": id })))
}
