//! Reusable filters: state, request ids, authentication with role checks, bounded JSON bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aurora_storage::auth::{Principal, Role};
use serde::de::DeserializeOwned;
use warp::http::HeaderValue;
use warp::{Filter, Rejection, Reply};

use super::{ApiError, HttpState};

pub fn with_state(
    state: Arc<HttpState>,
) -> impl Filter<Extract = (Arc<HttpState>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// A request's id: the caller's `X-Request-Id` when it is sane, else a new UUID. It is recorded
/// on the request's tracing span and echoed in the response.
pub struct RequestId {
    id: String,
    start: Instant,
}

pub fn request_id() -> impl Filter<Extract = (RequestId,), Error = std::convert::Infallible> + Clone
{
    let header = warp::header::optional::<String>("x-request-id")
        .or(warp::any().map(|| None))
        .unify();
    header.map(|given: Option<String>| {
        let id = given
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        tracing::Span::current().record("request_id", id.as_str());
        RequestId {
            id,
            start: Instant::now(),
        }
    })
}

/// Adds the request id header and writes the access log line.
pub fn finish(rid: RequestId, reply: warp::reply::Response) -> warp::reply::Response {
    let mut resp = reply.into_response();
    if let Ok(v) = HeaderValue::from_str(&rid.id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let latency_us = rid.start.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::warn!(status, latency_us, "request failed");
    } else {
        tracing::debug!(status, latency_us, "request done");
    }
    resp
}

/// Authenticates the bearer token and checks the caller has at least `role`.
pub fn auth(
    state: Arc<HttpState>,
    role: Role,
) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let state = state.clone();
        async move {
            let header = header.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
            let Some(token) = bearer_of(&header) else {
                return Err(warp::reject::custom(ApiError::unauthorized(
                    "expected 'Authorization: Bearer <token>'",
                )));
            };
            let principal = state
                .accounts
                .authenticate(token)
                .await
                .map_err(|e| warp::reject::custom(ApiError::from(e)))?;
            if principal.role < role {
                return Err(warp::reject::custom(ApiError::forbidden(format!(
                    "this route needs the {} role",
                    role.as_str()
                ))));
            }
            Ok(principal)
        }
    })
}

/// A JSON body of at most `limit` bytes, parsed into `T` with errors that say what is wrong.
/// A declared Content-Length over the limit is refused before reading; a chunked body is read
/// only up to the limit.
pub fn json_body<T: DeserializeOwned + Send>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(
            move |content_type: Option<String>, length: Option<u64>, body| async move {
                if let Some(ct) = content_type {
                    let essence = ct.split(';').next().unwrap_or("").trim();
                    if !essence.eq_ignore_ascii_case("application/json") {
                        return Err(warp::reject::custom(ApiError::new(
                            warp::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "UNSUPPORTED_MEDIA_TYPE",
                            format!("expected application/json, got {essence}"),
                        )));
                    }
                }
                if length.is_some_and(|n| n > limit) {
                    return Err(warp::reject::custom(too_large(limit)));
                }
                let bytes = read_capped(body, limit)
                    .await
                    .map_err(warp::reject::custom)?;
                parse_json(&bytes).map_err(warp::reject::custom)
            },
        )
}

/// The request body as bytes, at most `limit` of them (a larger announced length is refused
/// before anything is read).
pub fn raw_body(limit: u64) -> impl Filter<Extract = (Vec<u8>,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: Option<u64>, body| async move {
            if length.is_some_and(|n| n > limit) {
                return Err(warp::reject::custom(too_large(limit)));
            }
            read_capped(body, limit).await.map_err(warp::reject::custom)
        })
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        warp::http::StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("request body is over {limit} bytes"),
    )
}

async fn read_capped<S, B>(body: S, limit: u64) -> Result<Vec<u8>, ApiError>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Send,
    B: warp::Buf,
{
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty, expected a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::validation(format!("invalid request body: {e}"))
        }
        _ => ApiError::bad_request(format!("malformed JSON: {e}")),
    })
}

/// The query string as a map (empty when there is none).
pub fn query_map() -> impl Filter<Extract = (HashMap<String, String>,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            serde_urlencoded_map(&raw).map_err(|m| warp::reject::custom(ApiError::bad_request(m)))
        })
}

fn serde_urlencoded_map(raw: &str) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("query parameter '{k}' given more than once"));
        }
    }
    Ok(map)
}

/// Parses an optional integer query parameter within `range`.
pub fn int_param(
    q: &HashMap<String, String>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ApiError::validation(format!(
                "{name} must be an integer from {} to {}",
                range.start(),
                range.end()
            ))),
        },
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_of(header: &str) -> Option<&str> {
    match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim()),
        _ => None,
    }
}

/// A path segment that names a row by UUID (`what` names it in the refusal).
pub fn id_param(id: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::validation(format!("{what} id must be a UUID")))
}
