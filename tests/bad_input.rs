//! Bad input gets a clear JSON error, never a panic, and writes nothing.

mod common;

use aurora_storage::auth::Accounts;
use common::{assert_error, Backend, TestNode};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Sends a request expected to be refused, checks the error, and checks no row changed.
async fn refused(
    t: &TestNode,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    status: StatusCode,
    code: &str,
) {
    let before = t.row_counts().await;
    let (got, resp) = t.call(method.clone(), path, token, body).await;
    assert_error(got, &resp, status, code);
    assert_eq!(t.row_counts().await, before, "{method} {path} wrote rows");
}

async fn refused_raw(
    t: &TestNode,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
    status: StatusCode,
    code: &str,
) {
    let before = t.row_counts().await;
    let (got, resp) = t.post_raw(path, token, content_type, body).await;
    assert_error(got, &resp, status, code);
    assert_eq!(t.row_counts().await, before, "POST {path} wrote rows");
}

async fn malformed_bodies(backend: Backend) {
    let t = TestNode::start(backend).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let reg = "/api/auth/register";
    let json_ct = "application/json";
    refused_raw(
        &t,
        reg,
        None,
        json_ct,
        b"{\"email\": ".to_vec(),
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    refused_raw(
        &t,
        reg,
        None,
        json_ct,
        b"not json at all".to_vec(),
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    refused_raw(
        &t,
        reg,
        None,
        json_ct,
        Vec::new(),
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    refused_raw(
        &t,
        reg,
        None,
        json_ct,
        b"[1,2,3]".to_vec(),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    refused_raw(
        &t,
        reg,
        None,
        "text/xml",
        b"<a/>".to_vec(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    // Wrong field types.
    for body in [
        json!({ "email": 42, "password": "correct horse battery", "org_name": "X" }),
        json!({ "email": "b@acme.io", "password": ["correct horse battery"], "org_name": "X" }),
        json!({ "email": "b@acme.io", "password": "correct horse battery", "org_name": null }),
    ] {
        refused(
            &t,
            Method::POST,
            reg,
            None,
            Some(body),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
    }
    // Missing and unknown fields.
    refused(
        &t,
        Method::POST,
        reg,
        None,
        Some(json!({ "email": "b@acme.io", "password": "correct horse battery" })),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    refused(&t, Method::POST, reg, None, Some(json!({ "email": "b@acme.io", "password": "correct horse battery", "org_name": "X", "role": "admin" })), StatusCode::BAD_REQUEST, "VALIDATION_ERROR").await;
    refused(
        &t,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({ "email": "admin@acme.io" })),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    // Invalid values.
    for body in [
        json!({ "email": "not-an-email", "password": "correct horse battery", "org_name": "X" }),
        json!({ "email": "b@acme.io", "password": "short", "org_name": "X" }),
        json!({ "email": "b@acme.io", "password": "correct horse battery", "org_name": "   " }),
        json!({ "email": "b@acme.io", "password": "correct horse battery", "org_name": "x".repeat(201) }),
        json!({ "email": "b@acme.io", "password": "correct horse battery", "org_name": "bad\u{0007}name" }),
    ] {
        refused(
            &t,
            Method::POST,
            reg,
            None,
            Some(body),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
    }
    refused(
        &t,
        Method::POST,
        "/api/admin/users",
        Some(&admin),
        Some(json!({ "email": "c@acme.io", "password": "correct horse battery", "role": "owner" })),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    // Oversized bodies: over the 1 MiB default, refused from the announced length.
    for (path, token) in [(reg, None), ("/api/user-preferences", Some(admin.as_str()))] {
        let before = t.row_counts().await;
        let (status, body) = t.post_announcing(path, token, 2 * 1024 * 1024).await;
        assert_error(
            status,
            &body,
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        );
        assert_eq!(t.row_counts().await, before, "POST {path} wrote rows");
    }
    t.stop().await;
}

async fn routes_and_methods(backend: Backend) {
    let t = TestNode::start(backend).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    refused(
        &t,
        Method::GET,
        "/api/nothing-here",
        None,
        None,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    refused(
        &t,
        Method::GET,
        "/api/nothing-here",
        Some(&admin),
        None,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    refused(
        &t,
        Method::DELETE,
        "/api/auth/me",
        Some(&admin),
        None,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
    refused(
        &t,
        Method::GET,
        "/api/auth/login",
        None,
        None,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
    refused(
        &t,
        Method::GET,
        "/chat_api/sessions?limit=0",
        Some(&admin),
        None,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    refused(
        &t,
        Method::GET,
        "/chat_api/sessions?limit=abc",
        Some(&admin),
        None,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    refused(
        &t,
        Method::GET,
        "/chat_api/sessions?limit=5;DROP%20TABLE%20chat_sessions",
        Some(&admin),
        None,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    refused(
        &t,
        Method::GET,
        "/chat_api/sessions?limit=1&limit=2",
        Some(&admin),
        None,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    t.stop().await;
}

async fn tokens_and_roles(backend: Backend) {
    let t = TestNode::start(backend).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;
    let me = "/api/auth/me";
    refused(
        &t,
        Method::GET,
        me,
        None,
        None,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    refused(
        &t,
        Method::GET,
        me,
        Some("aur_not-a-real-token"),
        None,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    refused(
        &t,
        Method::GET,
        me,
        Some(&"x".repeat(5000)),
        None,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    refused(
        &t,
        Method::GET,
        me,
        Some("' OR '1'='1"),
        None,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let resp = t
        .client
        .get(format!("{}{me}", t.base))
        .header("authorization", format!("Basic {admin}"))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(resp).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // An expired token.
    let principal = t.principal(&admin).await;
    let accounts = Accounts::new(t.node().db().clone(), 1, 0);
    let expired = accounts
        .issue_token(&principal, "expired", chrono::Duration::seconds(-5))
        .await
        .unwrap();
    let (status, body) = t.get(me, Some(&expired.token)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    // A viewer on admin routes.
    refused(
        &t,
        Method::GET,
        "/api/admin/users",
        Some(&viewer),
        None,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    refused(
        &t,
        Method::POST,
        "/api/admin/users",
        Some(&viewer),
        Some(json!({ "email": "z@acme.io", "password": "correct horse battery" })),
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    // Unauthenticated requests never reach the body parser.
    refused(
        &t,
        Method::POST,
        "/api/user-preferences",
        None,
        Some(json!({ "oops": 1 })),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    t.stop().await;
}

async fn duplicates_conflict(backend: Backend) {
    let t = TestNode::start(backend).await;
    let admin = t.register("dup@acme.io", "Acme").await;
    let body =
        json!({ "email": "DUP@acme.io", "password": "correct horse battery", "org_name": "Other" });
    refused(
        &t,
        Method::POST,
        "/api/auth/register",
        None,
        Some(body),
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;
    let other = t.register("boss@globex.io", "Globex").await;
    // Emails are unique across orgs, also through the admin route.
    refused(
        &t,
        Method::POST,
        "/api/admin/users",
        Some(&other),
        Some(json!({ "email": "dup@acme.io", "password": "correct horse battery" })),
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;
    refused(
        &t,
        Method::POST,
        "/api/admin/users",
        Some(&admin),
        Some(json!({ "email": "boss@globex.io", "password": "correct horse battery" })),
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;
    t.stop().await;
}

async fn preference_limits(backend: Backend) {
    let t = TestNode::start(backend).await;
    let token = t.register("p@acme.io", "Acme").await;
    let p = "/api/user-preferences";
    for key in [
        "",
        "has space",
        "semi;colon",
        "'; DROP TABLE user_preferences; --",
        &"k".repeat(129),
    ] {
        refused(
            &t,
            Method::POST,
            p,
            Some(&token),
            Some(json!({ "key": key, "value": 1 })),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
    }
    refused(
        &t,
        Method::POST,
        p,
        Some(&token),
        Some(json!({ "key": "big", "value": "x".repeat(70 * 1024) })),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    refused(
        &t,
        Method::POST,
        &format!("{p}/batch"),
        Some(&token),
        Some(json!({ "preferences": {} })),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("k{i}"), json!(i))).collect();
    refused(
        &t,
        Method::POST,
        &format!("{p}/batch"),
        Some(&token),
        Some(json!({ "preferences": many })),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    // One bad key in a batch: nothing of the batch is stored.
    refused(
        &t,
        Method::POST,
        &format!("{p}/batch"),
        Some(&token),
        Some(json!({ "preferences": { "good": 1, "bad key": 2 } })),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    let (_, body) = t.get(p, Some(&token)).await;
    assert_eq!(body["preferences"], json!({}));
    t.stop().await;
}

async fn sql_looking_strings_are_data(backend: Backend) {
    let t = TestNode::start(backend).await;
    let evil_org = "'; DROP TABLE organizations; --";
    let evil_email = "robert'--@acme.io";
    let evil_password = "' OR '1'='1' --";
    let (status, body) = t
        .post(
            "/api/auth/register",
            None,
            json!({ "email": evil_email, "password": evil_password, "org_name": evil_org }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["org"]["name"], evil_org);
    assert_eq!(body["user"]["email"], evil_email);
    let (status, body) = t
        .post(
            "/api/auth/login",
            None,
            json!({ "email": evil_email, "password": evil_password }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    // Classic injections against login do not log anyone in.
    for (email, password) in [
        ("' OR 1=1 --", "anything at all"),
        (evil_email, "' OR ''='"),
        ("robert'--@acme.io' --", evil_password),
    ] {
        let (status, body) = t
            .post(
                "/api/auth/login",
                None,
                json!({ "email": email, "password": password }),
            )
            .await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let (_, org) = t.get("/api/orgs/current", Some(&token)).await;
    assert_eq!(org["name"], evil_org);
    let evil_value = "1); DELETE FROM users; --";
    t.post(
        "/api/user-preferences",
        Some(&token),
        json!({ "key": "note", "value": evil_value }),
    )
    .await;
    let (_, body) = t.get("/api/user-preferences?key=note", Some(&token)).await;
    assert_eq!(body["value"], evil_value);
    let (status, body) = t
        .post(
            "/chat_api/sessions",
            Some(&token),
            json!({ "title": "x' UNION SELECT password_hash FROM users --" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = t.get("/chat_api/sessions", Some(&token)).await;
    assert_eq!(
        body["sessions"][0]["title"],
        "x' UNION SELECT password_hash FROM users --"
    );
    let (status, body) = t.post("/api/admin/users", Some(&token), json!({ "email": "x'; DROP TABLE users; --@acme.io", "password": "correct horse battery" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    // Every table is still there with the rows we expect.
    let counts: std::collections::HashMap<_, _> = t.row_counts().await.into_iter().collect();
    assert_eq!(counts["organizations"], 1);
    assert_eq!(counts["users"], 1);
    assert_eq!(counts["chat_sessions"], 1);
    assert_eq!(t.get("/health", None).await.0, StatusCode::OK);
    t.stop().await;
}

on_both_backends!(
    malformed_bodies,
    routes_and_methods,
    tokens_and_roles,
    duplicates_conflict,
    preference_limits,
    sql_looking_strings_are_data,
);
