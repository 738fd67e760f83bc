//! `/api/user-preferences`: the caller's own settings, one JSON value per key.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aurora_storage::auth::{Principal, Role};
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, json_body, query_map, with_state};
use crate::http::{respond, ApiError, HttpState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    key: String,
    value: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    preferences: BTreeMap<String, serde_json::Value>,
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let base = warp::path("api").and(warp::path("user-preferences"));
    let get_one_or_all = base
        .and(warp::path::end())
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(query_map())
        .then(get)
        .map(respond);
    let set_one = base
        .and(warp::path::end())
        .and(warp::post())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(json_body::<SetBody>(limit))
        .then(set)
        .map(respond);
    let get_batch = base
        .and(warp::path!("batch"))
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(query_map())
        .then(get_batch)
        .map(respond);
    let set_batch = base
        .and(warp::path!("batch"))
        .and(warp::post())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(json_body::<BatchBody>(limit))
        .then(set_batch)
        .map(respond);
    let delete = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state))
        .then(delete)
        .map(respond);
    get_one_or_all
        .or(set_one)
        .unify()
        .or(get_batch)
        .unify()
        .or(set_batch)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

async fn get(
    p: Principal,
    s: Arc<HttpState>,
    q: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    match q.get("key") {
        Some(key) => {
            let keys = [key.clone()];
            let mut found = s.preferences.get(&p, Some(&keys)).await?;
            let value = found
                .remove(key)
                .ok_or_else(|| ApiError::not_found(format!("preference '{key}' not set")))?;
            Ok(json(StatusCode::OK, &json!({ "key": key, "value": value })))
        }
        None => {
            let all = s.preferences.get(&p, None).await?;
            Ok(json(StatusCode::OK, &json!({ "preferences": all })))
        }
    }
}

async fn set(
    p: Principal,
    s: Arc<HttpState>,
    body: SetBody,
) -> Result<warp::reply::Response, ApiError> {
    let mut one = BTreeMap::new();
    one.insert(body.key.clone(), body.value.clone());
    s.preferences.set_many(&p, one).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "key": body.key, "value": body.value }),
    ))
}

async fn get_batch(
    p: Principal,
    s: Arc<HttpState>,
    q: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    let keys: Option<Vec<String>> = q.get("keys").map(|k| {
        k.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let found = s.preferences.get(&p, keys.as_deref()).await?;
    Ok(json(StatusCode::OK, &json!({ "preferences": found })))
}

async fn set_batch(
    p: Principal,
    s: Arc<HttpState>,
    body: BatchBody,
) -> Result<warp::reply::Response, ApiError> {
    s.preferences.set_many(&p, body.preferences.clone()).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "preferences": body.preferences }),
    ))
}

async fn delete(
    key: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    s.preferences.delete(&p, &key).await?;
    Ok(json(StatusCode::OK, &json!({ "deleted": key })))
}
