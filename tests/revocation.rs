//! A token revoked on one node stops working on every node within a second, though each node
//! caches resolved tokens: revocations travel through the shared cache (Redis).

mod common;

use std::time::{Duration, Instant};

use common::{redis_url, Backend, TestNode};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;

/// Another node on the same database; with the shared cache or without it.
async fn peer(of: &TestNode, shared_cache: bool) -> TestNode {
    let url = of.pg.as_ref().expect("a PostgreSQL node").url.clone();
    let redis = redis_url();
    let mut extra = vec![
        ("DATABASE_URL", url.as_str()),
        // Long enough that only the revocation stream can explain a quick refusal.
        ("AURORA_AUTH_CACHE_SECS", "60"),
    ];
    if shared_cache {
        extra.push(("REDIS_URL", redis.as_str()));
    }
    TestNode::start_with(Backend::Sqlite, &extra).await
}

/// How long `token` keeps working on `node`, polled every 50 ms up to `limit`.
async fn still_works_for(node: &TestNode, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if node.get("/api/auth/me", Some(token)).await.0 == StatusCode::UNAUTHORIZED {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    limit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_node_is_refused_on_the_others_within_a_second() {
    let a = TestNode::start_with(Backend::Postgres, &[("AURORA_AUTH_CACHE_SECS", "60")]).await;
    let admin = a.register("root@acme.io", "Acme").await;
    let (status, made) = a
        .post(
            "/api/auth/tokens",
            Some(&admin),
            json!({ "name": "deploy" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();

    let b = peer(&a, true).await;
    // Without the shared cache: the attack (a revoked token keeps working on a node that
    // cached it) succeeds, for as long as the cache holds it.
    let lone = peer(&a, false).await;
    for n in [&b, &lone] {
        assert_eq!(n.get("/api/auth/me", Some(&token)).await.0, StatusCode::OK);
    }

    let (status, _) = a
        .call(
            Method::DELETE,
            &format!("/api/auth/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        a.get("/api/auth/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let on_b = still_works_for(&b, &token, Duration::from_secs(3)).await;
    assert!(
        on_b < Duration::from_secs(1),
        "still accepted on b after {on_b:?}"
    );
    let on_lone = still_works_for(&lone, &token, Duration::from_secs(2)).await;
    assert_eq!(
        on_lone,
        Duration::from_secs(2),
        "a node that does not follow revocations keeps its cached answer"
    );

    // A member removed on one node is refused on the other, as quickly.
    let viewer = a.add_user(&admin, "v@acme.io", "viewer").await;
    assert_eq!(b.get("/api/auth/me", Some(&viewer)).await.0, StatusCode::OK);
    let user_id = b.principal(&viewer).await.user_id;
    let (status, _) = a
        .call(
            Method::DELETE,
            &format!("/api/org/members/{user_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let on_b = still_works_for(&b, &viewer, Duration::from_secs(3)).await;
    assert!(
        on_b < Duration::from_secs(1),
        "removed member still accepted after {on_b:?}"
    );

    lone.stop().await;
    b.stop().await;
    a.stop().await;
}
