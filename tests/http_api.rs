//! The HTTP API end to end on a whole node, on SQLite and on PostgreSQL.

mod common;

use common::{assert_error, Backend, TestNode};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn register_login_me(backend: Backend) {
    let t = TestNode::start(backend).await;
    let (status, body) = t
        .post("/api/auth/register", None, json!({ "email": "Alice@Example.com", "password": "correct horse battery", "org_name": "Acme SRE" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"]["email"], "alice@example.com");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["org"]["name"], "Acme SRE");
    assert!(body["user"].get("password_hash").is_none());

    let (status, body) = t
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "alice@example.com", "password": "correct horse battery" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("aur_"));

    let (status, me) = t.get("/api/auth/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["role"], "admin");

    let (status, org) = t.get("/api/orgs/current", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(org["name"], "Acme SRE");
    assert_eq!(org["id"], me["org_id"]);

    let (status, body) = t
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "alice@example.com", "password": "wrong password" }),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let (status, body) = t
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "nobody@example.com", "password": "wrong password" }),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    t.stop().await;
}

async fn admin_manages_users_and_roles_are_enforced(backend: Backend) {
    let t = TestNode::start(backend).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;
    let editor = t.add_user(&admin, "editor@acme.io", "editor").await;

    let (status, body) = t.get("/api/admin/users", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let emails: Vec<_> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        emails,
        ["admin@acme.io", "viewer@acme.io", "editor@acme.io"]
    );

    for token in [&viewer, &editor] {
        let (status, body) = t.get("/api/admin/users", Some(token)).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
        let (status, body) = t
            .post(
                "/api/admin/users",
                Some(token),
                json!({ "email": "x@acme.io", "password": "long enough pw" }),
            )
            .await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    }
    let (status, me) = t.get("/api/auth/me", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "viewer");

    // Another org's admin sees only its own users.
    let other = t.register("admin@globex.io", "Globex").await;
    let (_, body) = t.get("/api/admin/users", Some(&other)).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 1);
    t.stop().await;
}

async fn preferences_round_trip(backend: Backend) {
    let t = TestNode::start(backend).await;
    let token = t.register("pref@acme.io", "Acme").await;
    let (status, body) = t
        .post(
            "/api/user-preferences",
            Some(&token),
            json!({ "key": "theme", "value": "dark" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = t.get("/api/user-preferences?key=theme", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "key": "theme", "value": "dark" }));
    // Overwrite.
    t.post(
        "/api/user-preferences",
        Some(&token),
        json!({ "key": "theme", "value": {"mode": "light", "contrast": 2} }),
    )
    .await;
    let (_, body) = t.get("/api/user-preferences?key=theme", Some(&token)).await;
    assert_eq!(body["value"], json!({"mode": "light", "contrast": 2}));

    let (status, body) = t
        .post(
            "/api/user-preferences/batch",
            Some(&token),
            json!({ "preferences": { "tz": "UTC", "model": "gpt-4o", "n": 3 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = t.get("/api/user-preferences", Some(&token)).await;
    assert_eq!(
        body["preferences"],
        json!({ "theme": {"mode": "light", "contrast": 2}, "tz": "UTC", "model": "gpt-4o", "n": 3 })
    );
    let (_, body) = t
        .get(
            "/api/user-preferences/batch?keys=tz,n,missing",
            Some(&token),
        )
        .await;
    assert_eq!(body["preferences"], json!({ "tz": "UTC", "n": 3 }));

    let (status, body) = t
        .get("/api/user-preferences?key=missing", Some(&token))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (status, _) = t
        .call(
            Method::DELETE,
            "/api/user-preferences/tz",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = t
        .call(
            Method::DELETE,
            "/api/user-preferences/tz",
            Some(&token),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");

    // Another user (same org) sees none of them.
    let other = t.add_user(&token, "colleague@acme.io", "viewer").await;
    let (_, body) = t.get("/api/user-preferences", Some(&other)).await;
    assert_eq!(body["preferences"], json!({}));
    t.stop().await;
}

async fn sessions_list_newest_first(backend: Backend) {
    let t = TestNode::start(backend).await;
    let token = t.register("chat@acme.io", "Acme").await;
    for i in 0..5 {
        let (status, body) = t
            .post(
                "/chat_api/sessions",
                Some(&token),
                json!({ "title": format!("incident {i}") }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = t.get("/chat_api/sessions?limit=3", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let titles: Vec<_> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(titles, ["incident 4", "incident 3", "incident 2"]);
    let (_, body) = t
        .get("/chat_api/sessions?limit=3&offset=3", Some(&token))
        .await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);
    let other = t.register("other@globex.io", "Globex").await;
    let (_, body) = t.get("/chat_api/sessions", Some(&other)).await;
    assert_eq!(body["sessions"], json!([]));
    t.stop().await;
}

async fn health_and_request_ids(backend: Backend) {
    let t = TestNode::start(backend).await;
    let (status, body) = t.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["dependencies"]["database"]["status"], "up");
    if backend == Backend::Postgres {
        assert_eq!(body["dependencies"]["redis"]["status"], "up");
    }
    assert_eq!(t.get("/health/liveness", None).await.0, StatusCode::OK);
    assert_eq!(t.get("/health/readiness", None).await.0, StatusCode::OK);
    let resp = t
        .client
        .get(format!("{}/health", t.base))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-123");
    let resp = t
        .client
        .get(format!("{}/nope", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 36);
    let tree = t.node().actor_tree().await.unwrap();
    assert_eq!(tree.kind, "node");
    assert_eq!(tree.children[0].kind, "health");
    t.stop().await;
}

on_both_backends!(
    register_login_me,
    admin_manages_users_and_roles_are_enforced,
    preferences_round_trip,
    sessions_list_newest_first,
    health_and_request_ids,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_when_redis_is_down() {
    // Port 1 on loopback: nothing listens there.
    let t =
        TestNode::start_unchecked(Backend::Sqlite, &[("REDIS_URL", "redis://127.0.0.1:1/0")]).await;
    // Until the first probe reports, the node says it is starting (and is not ready either).
    let (mut status, mut body) = t.get("/health", None).await;
    for _ in 0..200 {
        if body["status"] != "starting" {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            t.get("/health/readiness", None).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        (status, body) = t.get("/health", None).await;
    }
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["dependencies"]["redis"]["status"], "down");
    assert_eq!(body["dependencies"]["database"]["status"], "up");
    assert_eq!(
        t.get("/health/readiness", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(t.get("/health/liveness", None).await.0, StatusCode::OK);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_can_be_disabled() {
    let t = TestNode::start_with(Backend::Sqlite, &[("AURORA_ALLOW_REGISTRATION", "false")]).await;
    // Closed, a fresh install still takes its first user (its admin), and no one after.
    t.register("root@acme.io", "Acme").await;
    let before = t.row_counts().await;
    let (status, body) = t
        .post("/api/auth/register", None, json!({ "email": "a@acme.io", "password": "correct horse battery", "org_name": "Other" }))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(t.row_counts().await, before);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_listener() {
    let t = TestNode::start(Backend::Sqlite).await;
    let base = t.base.clone();
    let client = t.client.clone();
    t.stop().await;
    // After shutdown the listener is closed: connections are refused rather than served.
    assert!(client
        .get(format!("{base}/health/liveness"))
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_child_is_restarted_and_counted() {
    let t = TestNode::start(Backend::Sqlite).await;
    let tree = t.node().actor_tree().await.unwrap();
    let kinds: Vec<&str> = tree.children.iter().map(|c| c.kind.as_str()).collect();
    // Without a model configured: the health monitor, the incident pipeline (alerts are still
    // taken and correlated; analyses wait for a model) and the scheduler.
    assert_eq!(
        kinds,
        ["health", "incidents_supervisor", "scheduler"],
        "{tree:?}"
    );
    let children = t.node().supervisor().get_children();
    let health = children
        .iter()
        .find(|c| c.is_message_type_of::<aurora_actors::health::HealthMsg>() == Some(true))
        .expect("a health monitor")
        .clone();
    let others: Vec<_> = children
        .iter()
        .map(|c| c.get_id())
        .filter(|id| *id != health.get_id())
        .collect();
    assert_eq!(others.len(), 2);
    health.kill();
    // The supervisor notices, backs off (100 ms for the first restart) and respawns it.
    let mut tree = t.node().actor_tree().await.unwrap();
    for _ in 0..100 {
        if tree.children.first().is_some_and(|c| c.restarts == 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        tree = t.node().actor_tree().await.unwrap();
    }
    assert_eq!(tree.children.len(), 3, "{tree:?}");
    assert_eq!(tree.children[0].kind, "health");
    assert_eq!(tree.children[0].restarts, 1);
    assert!(
        tree.children[1..].iter().all(|c| c.restarts == 0),
        "{tree:?}"
    );
    let now: Vec<_> = t
        .node()
        .supervisor()
        .get_children()
        .iter()
        .map(|c| c.get_id())
        .collect();
    assert!(
        !now.contains(&health.get_id()),
        "the health monitor was replaced"
    );
    assert!(
        others.iter().all(|id| now.contains(id)),
        "its siblings kept running"
    );
    // The node kept serving throughout, and the new monitor publishes again.
    assert_eq!(t.get("/health", None).await.0, StatusCode::OK);
    t.stop().await;
}

/// The claims of a JWT, read without checking the signature (the node checks it on redeem).
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn ws_tickets(backend: Backend) {
    let t = TestNode::start(backend).await;
    let token = t.register("ws@acme.io", "Acme").await;
    let (status, body) = t.post("/api/auth/ws-token", Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ticket = body["token"].as_str().unwrap();
    let claims = jwt_claims(ticket);
    assert_eq!(claims["aud"], "chatbot-ws");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    let (_, me) = t.get("/api/auth/me", Some(&token)).await;
    assert_eq!(claims["sub"], me["id"]);
    assert_eq!(claims["org"], me["org_id"]);
    // Two tickets never share a jti.
    let (_, again) = t.post("/api/auth/ws-token", Some(&token), json!({})).await;
    assert_ne!(
        jwt_claims(again["token"].as_str().unwrap())["jti"],
        claims["jti"]
    );
    let (status, body) = t.post("/api/auth/ws-token", None, json!({})).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    t.stop().await;
}

mod tickets {
    use super::*;
    on_both_backends!(ws_tickets);
}

async fn session_get_rename_delete(backend: Backend) {
    let t = TestNode::start(backend).await;
    let token = t.register("s@acme.io", "Acme").await;
    let colleague = t.add_user(&token, "c@acme.io", "editor").await;
    let (_, created) = t
        .post(
            "/chat_api/sessions",
            Some(&token),
            json!({ "title": "db latency" }),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/chat_api/sessions/{id}");

    let (status, body) = t.get(&path, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "db latency");
    assert_eq!(body["messages"], json!([]));

    let (status, body) = t
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({ "title": "db latency in eu-west" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "db latency in eu-west");
    assert_eq!(
        t.get(&path, Some(&token)).await.1["title"],
        "db latency in eu-west"
    );

    // Someone else's session is not found, for reading, renaming and deleting alike.
    let other = t.register("o@globex.io", "Globex").await;
    for who in [&colleague, &other] {
        let (status, body) = t.get(&path, Some(who)).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
        let (status, body) = t
            .call(
                Method::PATCH,
                &path,
                Some(who),
                Some(json!({ "title": "mine now" })),
            )
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
        let (status, body) = t.call(Method::DELETE, &path, Some(who), None).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let (status, body) = t.get("/chat_api/sessions/not-a-uuid", Some(&token)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let (status, body) = t
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({ "title": "" })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");

    let (status, _) = t.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = t.get(&path, Some(&token)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (status, body) = t.call(Method::DELETE, &path, Some(&token), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(
        t.get("/chat_api/sessions", Some(&token)).await.1["sessions"],
        json!([])
    );
    // Soft delete: the row is still there.
    let counts: std::collections::HashMap<_, _> = t.row_counts().await.into_iter().collect();
    assert_eq!(counts["chat_sessions"], 1);
    t.stop().await;
}

mod session_crud {
    use super::*;
    on_both_backends!(session_get_rename_delete);
}

async fn llm_usage_summaries(backend: Backend) {
    use aurora_storage::cache::Cache;
    use aurora_storage::usage::{LlmUsage, UsageRecord};
    let t = TestNode::start(backend).await;
    let token = t.register("u@acme.io", "Acme").await;
    let (_, s1) = t.post("/chat_api/sessions", Some(&token), json!({})).await;
    let session: uuid::Uuid = s1["id"].as_str().unwrap().parse().unwrap();
    let who = t.principal(&token).await;
    // The chat runtime saves calls with their turn through the turn writer; here the test
    // stands in for the turns (no messages, one call each).
    let cache = match backend {
        Backend::Postgres => {
            Cache::Redis(aurora_storage::redis::RedisPool::new(&common::redis_url()).unwrap())
        }
        Backend::Sqlite => Cache::local(),
    };
    let usage = LlmUsage::new(t.node().db().clone(), cache.clone());
    let writer = aurora_storage::turns::TurnWriter::start(t.node().db().clone(), cache);
    let record = |who: &aurora_storage::auth::Principal, rec: UsageRecord| {
        let turn = aurora_storage::turns::TurnWrite {
            who: who.clone(),
            session_id: session,
            messages: vec![],
            context: Some(vec![]),
            first_query: None,
            usage: vec![rec],
            mark: Default::default(),
        };
        let writer = writer.clone();
        async move { writer.save(turn).await }
    };
    let rec = |session_id, model: &str, i, o, cost| UsageRecord {
        session_id,
        provider: "openai".into(),
        model: model.into(),
        input_tokens: i,
        output_tokens: o,
        cost_usd: cost,
    };
    assert!(
        (record(&who, rec(Some(session), "gpt-4o", 1000, 100, 0.0035))
            .await
            .unwrap()
            - 0.0035)
            .abs()
            < 1e-12
    );
    record(&who, rec(Some(session), "gpt-4o", 2000, 200, 0.007))
        .await
        .unwrap();
    let total = record(&who, rec(None, "gpt-4o-mini", 500, 50, 0.0001))
        .await
        .unwrap();
    assert!((total - 0.0106).abs() < 1e-9, "{total}");
    assert!(record(&who, rec(None, "x", 1, 1, f64::NAN)).await.is_err());

    // Concurrent calls: the running total is exact and matches a fresh read from the database.
    let calls: Vec<_> = (0..16)
        .map(|_| tokio::spawn(record(&who, rec(None, "gpt-4o-mini", 10, 1, 0.001))))
        .collect();
    let mut highest = 0.0f64;
    for c in calls {
        highest = highest.max(c.await.unwrap().unwrap());
    }
    assert!((highest - 0.0266).abs() < 1e-9, "{highest}");
    let fresh = LlmUsage::new(t.node().db().clone(), Cache::local());
    assert!((fresh.total_cost(&who).await.unwrap() - 0.0266).abs() < 1e-9);
    assert!((usage.total_cost(&who).await.unwrap() - 0.0266).abs() < 1e-9);

    let (status, body) = t.get("/api/llm-usage/summary", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["calls"], 3 + 16);
    assert_eq!(body["input_tokens"], 3500 + 160);
    assert_eq!(body["output_tokens"], 350 + 16);
    assert!((body["total_cost_usd"].as_f64().unwrap() - 0.0266).abs() < 1e-9);
    let gpt4o = body["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "gpt-4o")
        .unwrap();
    assert_eq!(gpt4o["calls"], 2);

    let (status, body) = t
        .get(&format!("/api/llm-usage/session/{session}"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["calls"].as_array().unwrap().len(), 2);
    assert_eq!(body["summary"]["input_tokens"], 3000);

    // Another user: their summary is empty and this session is not theirs.
    let other = t.add_user(&token, "v@acme.io", "viewer").await;
    let (_, body) = t.get("/api/llm-usage/summary", Some(&other)).await;
    assert_eq!(body["calls"], 0);
    let (status, body) = t
        .get(&format!("/api/llm-usage/session/{session}"), Some(&other))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (status, body) = t.get("/api/llm-usage/session/nope", Some(&token)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    t.stop().await;
}

mod usage {
    use super::*;
    on_both_backends!(llm_usage_summaries);
}

async fn turn_history_is_persisted(backend: Backend) {
    use aurora_storage::auth::Principal;
    use aurora_storage::cache::Cache;
    use aurora_storage::sessions::Sessions;
    use aurora_storage::turns::{TurnWrite, TurnWriter};
    use serde_json::Value;
    let t = TestNode::start(backend).await;
    let token = t.register("h@acme.io", "Acme").await;
    let who = t.principal(&token).await;
    let (_, created) = t.post("/chat_api/sessions", Some(&token), json!({})).await;
    assert_eq!(created["title"], "New chat");
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let sessions = Sessions::new(t.node().db().clone());
    let writer = TurnWriter::start(t.node().db().clone(), Cache::local());
    let save = |who: &Principal, messages: Vec<Value>, context: Vec<Value>, first: Option<&str>| {
        let turn = TurnWrite {
            who: who.clone(),
            session_id: id,
            messages,
            context: Some(context),
            first_query: first.map(str::to_string),
            usage: vec![],
            mark: Default::default(),
        };
        let writer = writer.clone();
        async move { writer.save(turn).await }
    };
    let turn = vec![
        json!({ "role": "user", "content": "Why   is checkout\nslow?" }),
        json!({ "role": "assistant", "content": "The database is saturated." }),
    ];
    save(
        &who,
        turn.clone(),
        turn.clone(),
        Some("Why   is checkout\nslow?"),
    )
    .await
    .unwrap();
    save(
        &who,
        vec![json!({ "role": "user", "content": "and now?" })],
        vec![json!({ "role": "user", "content": "and now?" })],
        Some("and now?"),
    )
    .await
    .unwrap();
    let (_, body) = t
        .get(&format!("/chat_api/sessions/{id}"), Some(&token))
        .await;
    assert_eq!(
        body["title"], "Why is checkout slow?",
        "named after the first question only"
    );
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["content"], "The database is saturated.");
    assert!(messages.iter().all(|m| m["timestamp"].is_string()));
    let context = sessions.llm_context(&who, id).await.unwrap();
    assert_eq!(context.len(), 3);
    assert!(
        context[0].get("timestamp").is_none(),
        "the model's context carries no display fields"
    );
    // Someone else's or a deleted session takes nothing.
    let other = aurora_storage::auth::Principal {
        user_id: uuid::Uuid::now_v7(),
        ..who.clone()
    };
    assert!(save(&other, turn.clone(), vec![], None).await.is_err());
    t.call(
        Method::DELETE,
        &format!("/chat_api/sessions/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert!(save(&who, turn, vec![], None).await.is_err());
    t.stop().await;
}

mod history {
    use super::*;
    on_both_backends!(turn_history_is_persisted);
}
