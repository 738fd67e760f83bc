//! Alert intake: webhook tokens, every vendor flavour, replays, bad and forged deliveries, and
//! org isolation of the incident routes and the feed. (Correlation and analyses:
//! `incident_correlation.rs`, `incident_rca.rs`; across nodes: `incident_cluster.rs`.)

mod common;

use common::incidents::{deliver, generic, incidents, open_feed, wait_for, webhook};
use common::{assert_error, Backend, TestNode};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/actors/src/incidents/intake/fixtures"
);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}.json")).unwrap()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn alert_rows(t: &TestNode) -> i64 {
    t.row_counts()
        .await
        .into_iter()
        .find(|(n, _)| n == "incident_alerts")
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_tokens_are_for_admins_shown_once_and_revocable() {
    let t = TestNode::start(Backend::Postgres).await;
    let admin = t.register("wh-admin@example.com", "Acme").await;
    let viewer = t.add_user(&admin, "wh-viewer@example.com", "viewer").await;
    let (status, body) = t
        .post("/api/org/webhooks", Some(&viewer), json!({"name": "x"}))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, body) = t
        .post("/api/org/webhooks", None, json!({"name": "x"}))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let (status, body) = t
        .post("/api/org/webhooks", Some(&admin), json!({"name": ""}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let (status, body) = t
        .post(
            "/api/org/webhooks",
            Some(&admin),
            json!({"name": "x", "extra": 1}),
        )
        .await;
    assert_eq!(status.as_u16() / 100, 4, "{body}");

    let token = webhook(&t.base, &admin, None).await;
    assert!(token.starts_with("awh_"));
    let (status, list) = t.get("/api/org/webhooks", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let listed = list["webhooks"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        !list.to_string().contains(&token),
        "the token is shown once"
    );
    // Only its hash is stored.
    let stored = {
        use sea_orm::{ConnectionTrait, Statement};
        let conn = t.node().db().connection();
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT token_hash FROM webhook_tokens".to_string(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<String>("", "token_hash").unwrap()
    };
    assert_ne!(stored, token);
    assert!(!stored.contains(&token[4..]));

    let alert = generic("Disk full", "disk", "db", "fp-1", "firing");
    let (status, body) = deliver(&t.base, "generic", &token, alert.to_string(), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"received": 1, "stored": 1}));

    let id = listed[0]["id"].as_str().unwrap();
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/api/org/webhooks/{id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = t
        .call(
            Method::DELETE,
            &format!("/api/org/webhooks/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = deliver(&t.base, "generic", &token, alert.to_string(), &[]).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    // The same answer as for a token that never existed: nothing says whether an org is there.
    let (_, unknown) = deliver(&t.base, "generic", "awh_nope", alert.to_string(), &[]).await;
    assert_eq!(body, unknown);
    let (_, flavour) = deliver(&t.base, "zabbix", &token, alert.to_string(), &[]).await;
    assert_eq!(body, flavour);
    // Another org's admin cannot revoke (or see) this org's tokens.
    let other = t.register("wh-other@example.com", "Other").await;
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/api/org/webhooks/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = t.get("/api/org/webhooks", Some(&other)).await;
    assert_eq!(list["webhooks"], json!([]));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flavour_is_stored_once_and_replays_are_no_ops() {
    let t = TestNode::start(Backend::Postgres).await;
    let admin = t.register("flavours@example.com", "Acme").await;
    let token = webhook(&t.base, &admin, None).await;
    let pd_token = webhook(&t.base, &admin, Some("pd-secret-123")).await;
    let cases: Vec<(&str, &str, &str, i64)> = vec![
        ("grafana", "grafana_firing", "", 2),
        ("grafana", "grafana_resolved", "", -1),
        ("alertmanager", "alertmanager_firing", "", -1),
        ("alertmanager", "alertmanager_resolved", "", -1),
        ("datadog", "datadog_triggered", "", 1),
        ("datadog", "datadog_recovered", "", 1),
        ("generic", "generic_single", "", 1),
        ("generic", "generic_batch", "", -1),
        ("pagerduty", "pagerduty_triggered", "pd", 1),
        ("pagerduty", "pagerduty_resolved", "pd", 1),
        ("pagerduty", "pagerduty_acknowledged", "pd", 0),
    ];
    let mut total = 0;
    for (flavour, name, signed, want) in cases {
        let body = fixture(name);
        let sig = sign("pd-secret-123", &body);
        let (tok, headers): (&str, Vec<(&str, &str)>) = match signed {
            "pd" => (&pd_token, vec![("x-pagerduty-signature", sig.as_str())]),
            _ => (&token, vec![]),
        };
        let (status, v) = deliver(&t.base, flavour, tok, body.clone(), &headers).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {v}");
        let stored = v["stored"].as_i64().unwrap();
        assert!(
            stored >= 0 && stored <= v["received"].as_i64().unwrap(),
            "{name}: {v}"
        );
        if want >= 0 {
            assert_eq!(stored, want, "{name}: {v}");
        } else {
            assert!(stored >= 1, "{name}: {v}");
        }
        total += stored;
        // The same delivery again stores nothing.
        let (status, again) = deliver(&t.base, flavour, tok, body, &headers).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {again}");
        assert_eq!(again["stored"], 0, "{name} replayed: {again}");
        assert_eq!(alert_rows(&t).await, total, "{name}");
    }
    // A resolution after the firing is a new state, and firing again after it another.
    let alert = generic("Flapping", "flap", "api", "fp-flap", "firing");
    let resolved = generic("Flapping", "flap", "api", "fp-flap", "resolved");
    for (a, want) in [
        (&alert, 1),
        (&alert, 0),
        (&resolved, 1),
        (&resolved, 0),
        (&alert, 1),
    ] {
        let (_, v) = deliver(&t.base, "generic", &token, a.to_string(), &[]).await;
        assert_eq!(v["stored"], want, "{v}");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_forged_deliveries_store_nothing() {
    let t = TestNode::start_with(Backend::Postgres, &[("AURORA_MAX_BODY_BYTES", "65536")]).await;
    let admin = t.register("bad-wh@example.com", "Acme").await;
    let token = webhook(&t.base, &admin, None).await;
    let pd = webhook(&t.base, &admin, Some("the-secret")).await;
    let before = t.row_counts().await;
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("generic", b"not json".to_vec()),
        ("generic", b"[]".to_vec()),
        ("generic", br#"{"status": "firing"}"#.to_vec()),
        (
            "generic",
            br#"{"title": "x", "severity": "apocalyptic"}"#.to_vec(),
        ),
        ("generic", br#"{"title": 7}"#.to_vec()),
        ("grafana", br#"{"alerts": "nope"}"#.to_vec()),
        (
            "alertmanager",
            br#"{"version": "3", "alerts": []}"#.to_vec(),
        ),
        ("datadog", b"{}".to_vec()),
        ("generic", Vec::new()),
    ];
    for (flavour, body) in bad {
        let shown = String::from_utf8_lossy(&body).to_string();
        let (status, v) = deliver(&t.base, flavour, &token, body, &[]).await;
        assert_error(status, &v, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert!(!v.to_string().contains(&token), "{shown}: {v}");
    }
    // A batch with one bad alert stores none of it.
    let batch = json!({"alerts": [generic("ok", "g", "s", "f1", "firing"), {"title": "bad", "status": "exploded"}]});
    let (status, v) = deliver(&t.base, "generic", &token, batch.to_string(), &[]).await;
    assert_error(status, &v, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    // Oversized: refused from the announced length, and when streamed without one.
    let (status, v) = t
        .post_announcing(&format!("/api/webhooks/generic/{token}"), None, 1 << 20)
        .await;
    assert_error(
        status,
        &v,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    // PagerDuty: unsigned, wrongly signed, tampered, and to a token without a secret.
    let body = fixture("pagerduty_triggered");
    let good = sign("the-secret", &body);
    let wrong = sign("another-secret", &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'P').unwrap();
    tampered[at] = b'Q';
    for (tok, b, h) in [
        (&pd, body.clone(), None),
        (&pd, body.clone(), Some(wrong.as_str())),
        (&pd, body.clone(), Some("v1=zz")),
        (&pd, tampered, Some(good.as_str())),
        (&token, body.clone(), Some(good.as_str())),
    ] {
        let headers: Vec<(&str, &str)> = h
            .map(|h| vec![("x-pagerduty-signature", h)])
            .unwrap_or_default();
        let (status, v) = deliver(&t.base, "pagerduty", tok, b, &headers).await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert!(!v.to_string().contains("the-secret"));
    }
    // The signed token posted, unsigned, to another flavour's URL: the check is not skipped.
    let generic_alert = generic("Unsigned", "g", "s", "fp-unsigned", "firing").to_string();
    for flavour in ["generic", "grafana", "datadog", "alertmanager"] {
        let (status, v) = deliver(&t.base, flavour, &pd, generic_alert.clone(), &[]).await;
        assert_error(status, &v, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    assert_eq!(
        t.row_counts().await,
        before,
        "a refused delivery wrote nothing"
    );
    // Several signatures (PagerDuty sends one per secret while rotating): one good is enough.
    let both = format!("{wrong},{good}");
    let (status, v) = deliver(
        &t.base,
        "pagerduty",
        &pd,
        body,
        &[("x-pagerduty-signature", both.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_routes_and_feed_are_org_isolated() {
    let t = TestNode::start(Backend::Postgres).await;
    let a = t.register("iso-a@example.com", "A").await;
    let b = t.register("iso-b@example.com", "B").await;
    let mut b_feed = open_feed(&t.base, &b, None).await;
    let token = webhook(&t.base, &a, None).await;
    let alert = generic("CPU hot", "cpu", "api", "fp-cpu", "firing");
    deliver(&t.base, "generic", &token, alert.to_string(), &[]).await;
    let inc = wait_for(10, "the incident", || async {
        incidents(&t, &a).await.into_iter().next()
    })
    .await;
    let id = inc["id"].as_str().unwrap().to_string();
    // Org B sees nothing of it, by list, by id, by any route.
    assert!(incidents(&t, &b).await.is_empty());
    for (method, path, body) in [
        (Method::GET, format!("/api/incidents/{id}"), None),
        (Method::GET, format!("/api/incidents/{id}/thoughts"), None),
        (
            Method::PATCH,
            format!("/api/incidents/{id}"),
            Some(json!({"status": "dismissed"})),
        ),
        (Method::POST, format!("/api/incidents/{id}/rca"), None),
    ] {
        let (status, v) = t.call(method, &path, Some(&b), body).await;
        assert_error(status, &v, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let (_, still) = t.get(&format!("/api/incidents/{id}"), Some(&a)).await;
    assert_ne!(still["status"], "dismissed");
    // Org B's own manual incident shows on B's feed; A's never does.
    let (status, mine) = t
        .post(
            "/api/incidents",
            Some(&b),
            json!({"title": "B's own", "severity": "low"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let seen = b_feed
        .until(10, "B's incident", |e| e.event == "incident")
        .await;
    assert_eq!(seen.data["incident_id"], mine["id"], "{:?}", seen);
    while let Ok(e) = b_feed.rx.try_recv() {
        assert_ne!(e.data["incident_id"].as_str(), Some(id.as_str()));
    }
    // A resumed feed of B replays only B's events.
    let mut replay = open_feed(&t.base, &b, Some("0")).await;
    let first = replay
        .until(5, "B's backlog", |e| e.event == "incident")
        .await;
    assert_eq!(first.data["incident_id"], mine["id"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_rest_filters_pages_edits_and_refuses_bad_input() {
    let t = TestNode::start(Backend::Postgres).await;
    let admin = t.register("rest@example.com", "Acme").await;
    let viewer = t
        .add_user(&admin, "rest-viewer@example.com", "viewer")
        .await;
    let mut ids = Vec::new();
    for (i, sev) in ["low", "high", "critical", "high", "medium"]
        .iter()
        .enumerate()
    {
        let (status, v) = t
            .post(
                "/api/incidents",
                Some(&admin),
                json!({"title": format!("manual {i}"), "severity": sev, "service": format!("svc{}", i % 2)}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["rca_status"], "queued");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let (status, v) = t
        .post("/api/incidents", Some(&viewer), json!({"title": "viewer"}))
        .await;
    assert_error(status, &v, StatusCode::FORBIDDEN, "FORBIDDEN");
    for bad in [
        json!({}),
        json!({"title": ""}),
        json!({"title": "x", "severity": "huge"}),
        json!({"title": "x", "bogus": 1}),
    ] {
        let (status, v) = t.post("/api/incidents", Some(&admin), bad.clone()).await;
        assert_eq!(status.as_u16() / 100, 4, "{bad}: {v}");
        assert!(v["error"]["code"].is_string());
    }
    let (_, high) = t.get("/api/incidents?severity=high", Some(&viewer)).await;
    assert_eq!(high["incidents"].as_array().unwrap().len(), 2);
    let (_, svc) = t.get("/api/incidents?service=svc1", Some(&viewer)).await;
    assert_eq!(svc["incidents"].as_array().unwrap().len(), 2);
    // Pages of two, newest first, cursor to cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/incidents?limit=2&cursor={c}"),
            None => "/api/incidents?limit=2".to_string(),
        };
        let (status, page) = t.get(&path, Some(&viewer)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for i in page["incidents"].as_array().unwrap() {
            seen.push(i["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(seen, want);
    for bad in [
        "status=open",
        "severity=x",
        "since=yesterday",
        "cursor=nope",
        "limit=0",
        "limit=500",
        "colour=red",
    ] {
        let (status, v) = t.get(&format!("/api/incidents?{bad}"), Some(&viewer)).await;
        assert_error(status, &v, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    }
    let (status, v) = t.get("/api/incidents/not-a-uuid", Some(&viewer)).await;
    assert_eq!(status.as_u16() / 100, 4, "{v}");
    // Edits: an editor's, checked; a viewer's refused.
    let id = &ids[0];
    let (status, v) = t
        .call(
            Method::PATCH,
            &format!("/api/incidents/{id}"),
            Some(&viewer),
            Some(json!({"status": "resolved"})),
        )
        .await;
    assert_error(status, &v, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, v) = t
        .call(
            Method::PATCH,
            &format!("/api/incidents/{id}"),
            Some(&admin),
            Some(json!({"status": "closed"})),
        )
        .await;
    assert_error(status, &v, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let (status, v) = t
        .call(
            Method::PATCH,
            &format!("/api/incidents/{id}"),
            Some(&admin),
            Some(json!({"status": "resolved", "severity": "critical", "title": "renamed", "notes": "fixed by hand"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "resolved");
    assert!(v["resolved_at"].is_string());
    let (_, d) = t.get(&format!("/api/incidents/{id}"), Some(&viewer)).await;
    assert_eq!(d["title"], "renamed");
    assert_eq!(d["notes"], "fixed by hand");
    for key in ["alerts", "thoughts", "citations"] {
        assert!(d[key].is_array(), "{d}");
    }
    // "Analyse again" while one is queued is a conflict.
    let (status, v) = t
        .post(
            &format!("/api/incidents/{}/rca", ids[1]),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_error(status, &v, StatusCode::CONFLICT, "CONFLICT");
    t.stop().await;
}
