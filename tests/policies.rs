//! `/api/org/command-policies` on both backends.

mod common;

use common::{assert_error, Backend, TestNode};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn org_rules_steer_the_gate(backend: Backend) {
    let t = TestNode::start(backend).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;
    let base = "/api/org/command-policies";
    let check = |cmd: &'static str| json!({ "command": cmd });

    let (_, v) = t
        .post(
            &format!("{base}/check"),
            Some(&viewer),
            check("kubectl delete pod web-1 -n sandbox"),
        )
        .await;
    assert_eq!(v["verdict"], "needs_approval");
    let (_, v) = t
        .post(
            &format!("{base}/check"),
            Some(&viewer),
            check("kubectl get pods -n prod"),
        )
        .await;
    assert_eq!(v["verdict"], "allowed");

    let (status, allow) = t
        .post(base, Some(&admin), json!({ "effect": "allow", "pattern": r"^kubectl delete pod \S+ -n sandbox$", "description": "sandbox is disposable" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{allow}");
    let (status, _) = t
        .post(
            base,
            Some(&admin),
            json!({ "effect": "deny", "pattern": r"-n prod\b" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (_, v) = t
        .post(
            &format!("{base}/check"),
            Some(&viewer),
            check("kubectl delete pod web-1 -n sandbox"),
        )
        .await;
    assert_eq!(v["verdict"], "allowed");
    let (_, v) = t
        .post(
            &format!("{base}/check"),
            Some(&viewer),
            check("kubectl get pods -n prod"),
        )
        .await;
    assert_eq!(v["verdict"], "denied");
    assert!(v["reason"].as_str().unwrap().contains("-n prod"));

    let (_, list) = t.get(base, Some(&viewer)).await;
    assert_eq!(list["policies"].as_array().unwrap().len(), 2);
    // Rules are per org.
    let other = t.register("admin@globex.io", "Globex").await;
    let (_, list) = t.get(base, Some(&other)).await;
    assert_eq!(list["policies"], json!([]));
    let (_, v) = t
        .post(
            &format!("{base}/check"),
            Some(&other),
            check("kubectl get pods -n prod"),
        )
        .await;
    assert_eq!(v["verdict"], "allowed");
    let id = allow["id"].as_str().unwrap();
    let (status, body) = t
        .call(Method::DELETE, &format!("{base}/{id}"), Some(&other), None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");

    // Bad input and roles.
    let before = t.row_counts().await;
    for body in [
        json!({ "effect": "allow", "pattern": "(unclosed" }),
        json!({ "effect": "maybe", "pattern": "x" }),
        json!({ "effect": "deny", "pattern": "" }),
        json!({ "effect": "deny" }),
        json!({ "effect": "deny", "pattern": "x".repeat(501) }),
    ] {
        let (status, resp) = t.post(base, Some(&admin), body).await;
        assert_error(status, &resp, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    }
    let (status, resp) = t
        .post(
            base,
            Some(&viewer),
            json!({ "effect": "allow", "pattern": ".*" }),
        )
        .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, resp) = t
        .call(Method::DELETE, &format!("{base}/{id}"), Some(&viewer), None)
        .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(t.row_counts().await, before);

    let (status, _) = t
        .call(Method::DELETE, &format!("{base}/{id}"), Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, v) = t
        .post(
            &format!("{base}/check"),
            Some(&viewer),
            check("kubectl delete pod web-1 -n sandbox"),
        )
        .await;
    assert_eq!(v["verdict"], "needs_approval");
    t.stop().await;
}

on_both_backends!(org_rules_steer_the_gate);
