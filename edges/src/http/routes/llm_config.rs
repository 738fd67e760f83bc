//! `/api/llm-config`: which LLM providers the node knows and which one is configured, and a
//! live test of the configured one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_models::llm::{
    ChatMessage, ChatRequest, LlmEvent, DEFAULT_ANTHROPIC_URL, DEFAULT_OPENAI_URL,
};
use aurora_storage::auth::{Principal, Role};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, json_body, with_state};
use crate::http::{respond, ApiError, HttpState};

/// Longest a provider test may take, retries included.
const TEST_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestBody {
    model: Option<String>,
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let providers = warp::path!("api" / "llm-config" / "providers")
        .and(warp::get())
        .and(auth(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .map(providers);
    let test = warp::path!("api" / "llm-config" / "test-provider")
        .and(warp::post())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state))
        .and(json_body::<TestBody>(limit))
        .then(test)
        .map(respond);
    providers.or(test).unify().boxed()
}

fn providers(_: Principal, s: Arc<HttpState>) -> warp::reply::Response {
    let c = &s.config;
    let configured = c.llm_provider.map(|p| {
        json!({
            "provider": format!("{p:?}").to_lowercase(),
            "model": c.llm_model,
            "base_url": c.llm_base_url.as_ref().map(|u| u.to_string()),
            "api_key_set": c.llm_api_key.is_some(),
        })
    });
    json(
        StatusCode::OK,
        &json!({
            "configured": configured,
            "providers": [
                { "id": "openai", "name": "OpenAI-compatible (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp)",
                  "default_base_url": DEFAULT_OPENAI_URL, "api_key": "optional" },
                { "id": "anthropic", "name": "Anthropic", "default_base_url": DEFAULT_ANTHROPIC_URL, "api_key": "required" },
            ],
        }),
    )
}

/// Sends a one-line prompt to the configured provider and reports what came back.
async fn test(
    _: Principal,
    s: Arc<HttpState>,
    body: TestBody,
) -> Result<warp::reply::Response, ApiError> {
    let llm = s
        .llm
        .clone()
        .ok_or_else(|| ApiError::llm_unavailable("no LLM provider is configured (LLM_PROVIDER)"))?;
    let model = body
        .model
        .or_else(|| s.config.llm_model.clone())
        .ok_or_else(|| ApiError::validation("no model given and LLM_MODEL is not set"))?;
    let request = ChatRequest {
        model: model.clone(),
        messages: vec![ChatMessage::User {
            content: "Reply with the single word OK.".into(),
        }],
        tools: std::sync::Arc::from([]),
        max_tokens: Some(16),
    };
    let started = Instant::now();
    let run = async {
        let mut stream = llm.stream(request).await?;
        let mut reply = String::new();
        while let Some(event) = stream.next().await {
            match event? {
                LlmEvent::Text(t) => reply.push_str(&t),
                LlmEvent::ToolCall(_) => {}
                LlmEvent::Done { usage, .. } => return Ok((reply, usage)),
            }
        }
        Err(aurora_models::llm::LlmError::Unavailable(
            "the stream ended without an answer".into(),
        ))
    };
    let (reply, usage) = tokio::time::timeout(TEST_DEADLINE, run)
        .await
        .map_err(|_| ApiError::llm_unavailable(format!("no answer within {TEST_DEADLINE:?}")))??;
    Ok(json(
        StatusCode::OK,
        &json!({
            "ok": true,
            "provider": llm.name(),
            "model": model,
            "reply": reply,
            "latency_ms": started.elapsed().as_millis() as u64,
            "usage": usage,
        }),
    ))
}
