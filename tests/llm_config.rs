//! `/api/llm-config` against scripted provider servers.

mod common;

use aurora_fakes::{anthropic, openai, Reply};
use common::{assert_error, Backend, TestNode};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_providers_and_tests_the_configured_one() {
    let fake = openai::start(vec![
        Reply::text(&["O", "K"], (12, 1)),
        Reply::status(401, "bad key"),
    ])
    .await;
    let base = fake.base_url();
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("LLM_PROVIDER", "openai"),
            ("LLM_BASE_URL", &base),
            ("LLM_MODEL", "gpt-4o-mini"),
            ("LLM_API_KEY", "sk-secret-value"),
        ],
    )
    .await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;

    let (status, body) = t.get("/api/llm-config/providers", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["configured"]["provider"], "openai");
    assert_eq!(body["configured"]["model"], "gpt-4o-mini");
    assert_eq!(body["configured"]["api_key_set"], true);
    assert!(
        !body.to_string().contains("sk-secret-value"),
        "the key never leaves the node"
    );
    assert_eq!(body["providers"].as_array().unwrap().len(), 2);

    let (status, body) = t
        .post("/api/llm-config/test-provider", Some(&viewer), json!({}))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, body) = t
        .post("/api/llm-config/test-provider", Some(&admin), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["reply"], "OK");
    assert_eq!(body["usage"]["input_tokens"], 12);
    assert_eq!(fake.requests()[0]["model"], "gpt-4o-mini");
    // The provider refusing (here: a bad key) is a clear gateway error.
    let (status, body) = t
        .post(
            "/api/llm-config/test-provider",
            Some(&admin),
            json!({ "model": "gpt-4o" }),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_GATEWAY, "LLM_REJECTED");
    assert_eq!(fake.requests()[1]["model"], "gpt-4o");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_or_unreachable_is_llm_unavailable() {
    let t = TestNode::start(Backend::Sqlite).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let (_, body) = t.get("/api/llm-config/providers", Some(&admin)).await;
    assert_eq!(body["configured"], serde_json::Value::Null);
    let (status, body) = t
        .post("/api/llm-config/test-provider", Some(&admin), json!({}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "LLM_UNAVAILABLE",
    );
    t.stop().await;

    // Anthropic configured, but its server answers 529 every time.
    let fake = anthropic::start(vec![Reply::status(529, "overloaded"); 8]).await;
    let base = fake.base_url();
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("LLM_PROVIDER", "anthropic"),
            ("LLM_BASE_URL", &base),
            ("LLM_MODEL", "claude-sonnet-4"),
            ("LLM_API_KEY", "sk-ant"),
        ],
    )
    .await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let (status, body) = t
        .post("/api/llm-config/test-provider", Some(&admin), json!({}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "LLM_UNAVAILABLE",
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("overloaded"));
    t.stop().await;
}
