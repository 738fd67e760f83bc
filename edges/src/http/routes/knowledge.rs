//! `/api/knowledge-base/...`: upload (multipart), documents (list, get with progress, delete),
//! hybrid search, and the org's memory text. Everything is scoped to the caller's org; reading
//! needs the viewer role, changing needs editor. The memory text needs no embedding model; the
//! rest answers 503 `KB_UNAVAILABLE` on a node without one.

use std::collections::HashMap;
use std::sync::Arc;

use aurora_actors::knowledge::{KbError, KnowledgeBase};
use aurora_storage::auth::{Principal, Role};
use aurora_supervisors::ingest::IngestMsg;
use bytes::Buf;
use futures::StreamExt;
use serde::Deserialize;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::multipart::FormData;
use warp::{Filter, Rejection, Reply};

use super::{json, Route};
use crate::http::filters::{auth, int_param, json_body, query_map, with_state};
use crate::http::{respond, ApiError, HttpState};

/// Room for the multipart framing and the small fields around the file.
const FORM_OVERHEAD: u64 = 64 * 1024;
/// Longest `title` field.
const MAX_TITLE_BYTES: usize = 1024;

impl From<KbError> for ApiError {
    fn from(err: KbError) -> ApiError {
        match err {
            KbError::Unsupported(m) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                m,
            ),
            KbError::TooLarge(limit) => too_large(limit),
            KbError::Invalid(m) | KbError::Unreadable(m) => ApiError::validation(m),
            KbError::Storage(e) => e.into(),
            KbError::Embedding(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "EMBEDDING_UNAVAILABLE",
                e.to_string(),
            ),
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("the file is over {limit} bytes"),
    )
}

/// The knowledge base, or 503 on a node that has no embedding model.
fn kb(state: &HttpState) -> Result<Arc<KnowledgeBase>, ApiError> {
    state.knowledge.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "KB_UNAVAILABLE",
            "the knowledge base is not available on this node (no embedding model loaded)",
        )
    })
}

/// Refuses anything but `multipart/form-data` (415), and a declared length over the limit
/// (413) before the body is read.
fn multipart_upload(
    state: Arc<HttpState>,
) -> impl Filter<Extract = (FormData,), Error = Rejection> + Clone {
    let limit = state.config.kb.max_upload_bytes;
    warp::header::optional::<String>("content-type")
        .and(warp::header::optional::<u64>("content-length"))
        .and_then(move |ct: Option<String>, length: Option<u64>| async move {
            let essence = ct
                .as_deref()
                .and_then(|c| c.split(';').next())
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "multipart/form-data" {
                return Err(warp::reject::custom(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "upload with multipart/form-data and a 'file' field",
                )));
            }
            if length.is_some_and(|n| n > limit + FORM_OVERHEAD) {
                return Err(warp::reject::custom(too_large(limit)));
            }
            Ok(())
        })
        .untuple_one()
        .and(warp::multipart::form().max_length(limit + FORM_OVERHEAD))
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let base = || warp::path("api").and(warp::path("knowledge-base"));
    let upload = base()
        .and(warp::path("upload"))
        .and(warp::path::end())
        .and(warp::post())
        .and(auth(state.clone(), Role::Editor))
        .and(with_state(state.clone()))
        .and(multipart_upload(state.clone()))
        .then(upload)
        .map(respond);
    let list = base()
        .and(warp::path("documents"))
        .and(warp::path::end())
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(query_map())
        .then(list)
        .map(respond);
    let one = base()
        .and(warp::path("documents"))
        .and(warp::path::param::<String>())
        .and(warp::path::end());
    let get = one
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(get)
        .map(respond);
    let delete = one
        .and(warp::delete())
        .and(auth(state.clone(), Role::Editor))
        .and(with_state(state.clone()))
        .then(delete)
        .map(respond);
    let search = base()
        .and(warp::path("search"))
        .and(warp::path::end())
        .and(warp::post())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and(json_body::<SearchBody>(limit))
        .then(search)
        .map(respond);
    let memory = || base().and(warp::path("memory")).and(warp::path::end());
    let get_memory = memory()
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .then(get_memory)
        .map(respond);
    let put_memory = memory()
        .and(warp::put())
        .and(auth(state.clone(), Role::Editor))
        .and(with_state(state.clone()))
        .and(json_body::<MemoryBody>(limit))
        .then(put_memory)
        .map(respond);
    upload
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(delete)
        .unify()
        .or(search)
        .unify()
        .or(get_memory)
        .unify()
        .or(put_memory)
        .unify()
        .boxed()
}

/// Reads the form: the `file` part (bounded by the upload limit) and an optional `title`.
async fn read_form(
    mut form: FormData,
    limit: u64,
) -> Result<(String, Option<String>, Vec<u8>), ApiError> {
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut title = None;
    while let Some(part) = form.next().await {
        let part = part.map_err(|e| ApiError::bad_request(format!("malformed upload: {e}")))?;
        match part.name() {
            "file" => {
                let name = part
                    .filename()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::validation("the 'file' part has no filename"))?;
                let mut bytes = Vec::new();
                let mut stream = Box::pin(part.stream());
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk
                        .map_err(|e| ApiError::bad_request(format!("malformed upload: {e}")))?;
                    if bytes.len() as u64 + chunk.remaining() as u64 > limit {
                        return Err(too_large(limit));
                    }
                    bytes.extend_from_slice(chunk.chunk());
                }
                file = Some((name, bytes));
            }
            "title" => {
                let mut bytes = Vec::new();
                let mut stream = Box::pin(part.stream());
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk
                        .map_err(|e| ApiError::bad_request(format!("malformed upload: {e}")))?;
                    bytes.extend_from_slice(chunk.chunk());
                    if bytes.len() > MAX_TITLE_BYTES {
                        return Err(ApiError::validation("title is too long"));
                    }
                }
                title = Some(
                    String::from_utf8(bytes)
                        .map_err(|_| ApiError::validation("title is not UTF-8"))?,
                );
            }
            other => {
                return Err(ApiError::validation(format!(
                    "unexpected form field '{other}' (expected 'file' and optionally 'title')"
                )))
            }
        }
    }
    let (name, bytes) = file.ok_or_else(|| ApiError::validation("the form has no 'file' part"))?;
    Ok((name, title, bytes))
}

async fn upload(
    who: Principal,
    state: Arc<HttpState>,
    form: FormData,
) -> Result<warp::reply::Response, ApiError> {
    let kb = kb(&state)?;
    let (filename, title, bytes) = read_form(form, kb.max_upload_bytes).await?;
    let doc = kb.accept(&who, &filename, title.as_deref(), bytes).await?;
    let ingest = state.ingest.borrow().clone();
    let sent = ingest.is_some_and(|sup| {
        sup.cast(IngestMsg::Ingest {
            org_id: who.org_id,
            document_id: doc.id,
        })
        .is_ok()
    });
    if !sent {
        // Left `processing`, the document would wait for the stuck sweep: fail it now.
        let reason = "ingestion is unavailable on this node; upload again";
        kb.knowledge
            .mark(
                who.org_id,
                doc.id,
                aurora_storage::knowledge::DocStatus::Failed,
                Some(reason),
            )
            .await?;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "KB_UNAVAILABLE",
            reason,
        ));
    }
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "document": doc }),
    ))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("document not found"))
}

async fn list(
    who: Principal,
    state: Arc<HttpState>,
    q: HashMap<String, String>,
) -> Result<warp::reply::Response, ApiError> {
    let kb = kb(&state)?;
    let limit = int_param(&q, "limit", 100, 1..=500)?;
    let docs = kb.knowledge.list(who.org_id, limit).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "documents": docs }),
    ))
}

async fn get(
    id: String,
    who: Principal,
    state: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let kb = kb(&state)?;
    let doc = kb.knowledge.get(who.org_id, parse_id(&id)?).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "document": doc }),
    ))
}

async fn delete(
    id: String,
    who: Principal,
    state: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let kb = kb(&state)?;
    kb.delete(&who, parse_id(&id)?).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    query: String,
    limit: Option<usize>,
}

async fn search(
    who: Principal,
    state: Arc<HttpState>,
    body: SearchBody,
) -> Result<warp::reply::Response, ApiError> {
    let kb = kb(&state)?;
    let hits = kb
        .search(who.org_id, &body.query, body.limit.unwrap_or(10))
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "results": hits }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryBody {
    content: String,
}

async fn get_memory(
    who: Principal,
    state: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let memory = state.kb_store.memory(who.org_id).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "memory": memory }),
    ))
}

async fn put_memory(
    who: Principal,
    state: Arc<HttpState>,
    body: MemoryBody,
) -> Result<warp::reply::Response, ApiError> {
    let memory = state.kb_store.set_memory(&who, &body.content).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "memory": memory }),
    ))
}
