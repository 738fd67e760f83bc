//! The admin console's API on a whole node: the actor tree (scoped to the admin's org), admin
//! actions on a session and its running turn, the Prometheus metrics, and sessions that
//! hibernate when idle.

/// The scrape token the nodes of these tests are given.
const SCRAPE: &str = "scrape-token-0123456789abcdef";

mod common;

use aurora_fakes::Reply;
use common::ws::{chat_node, is_end, new_session, next, open, query, turn, types, Ws};
use common::{assert_error, Backend};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Reads frames until `status` END; false if the socket ends first.
async fn sees_end(ws: &mut Ws) -> bool {
    while let Some(f) = next(ws).await {
        if is_end(&f) {
            return true;
        }
    }
    false
}

fn kinds(tree: &Value) -> Vec<String> {
    let mut out = vec![tree["kind"].as_str().unwrap().to_string()];
    for c in tree["children"].as_array().unwrap() {
        out.extend(kinds(c));
    }
    out
}

/// A node whose agent asks to run a destructive command: its turns wait for an approval.
async fn approval_node() -> (
    common::TestNode,
    aurora_fakes::FakeServer,
    tempfile::TempDir,
) {
    chat_node(
        vec![Reply::tool_call(
            "call_1",
            "cloud_exec",
            &["{\"command\": \"kubectl delete pod web-1\"}"],
            (10, 5),
        )],
        "#!/bin/sh\necho deleted\n",
        &[("AURORA_METRICS_TOKEN", SCRAPE)],
    )
    .await
}

/// A new session of `token`'s user with a turn waiting for approval, and its socket.
async fn turn_awaiting_approval(t: &common::TestNode, token: &str) -> (String, Ws) {
    let sid = new_session(t, token).await;
    let mut ws = open(t, token).await;
    query(&mut ws, &sid, "clean up web-1", "agent").await;
    loop {
        let f = next(&mut ws)
            .await
            .expect("frames until the approval request");
        if f["type"] == "execution_confirmation" {
            return (sid, ws);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_their_orgs_actors_stop_them_and_metrics_count_them() {
    // The turn waits for an approval, so its run stays alive while the console looks at it.
    let (t, _fake, _dir) = approval_node().await;
    assert_eq!(t.backend, Backend::Sqlite);
    let admin = t.register("admin@one.io", "One").await;
    let viewer = t.add_user(&admin, "viewer@one.io", "viewer").await;
    let other = t.register("admin@two.io", "Two").await;
    let (sid, mut ws) = turn_awaiting_approval(&t, &admin).await;

    let (status, body) = t.get("/api/admin/actors", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let node = &body["nodes"][0];
    assert_eq!(node["kind"], "node");
    let all = kinds(node);
    for k in ["health", "sessions_supervisor", "session", "agent_run"] {
        assert!(all.iter().any(|x| x == k), "{k} missing from {all:?}");
    }
    assert_eq!(body["counts"]["by_kind"]["session"], 1, "{body}");
    assert_eq!(
        body["counts"]["by_node"][node["id"].as_str().unwrap()],
        all.len()
    );
    let (_, filtered) = t.get("/api/admin/actors?kind=session", Some(&admin)).await;
    let sessions = filtered["actors"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], sid.as_str());
    assert_eq!(sessions[0]["state"], "running");
    let me = t.principal(&admin).await;
    assert_eq!(sessions[0]["owner"]["org_id"], me.org_id.to_string());
    let (_, none) = t
        .get("/api/admin/actors?node=aurora@elsewhere", Some(&admin))
        .await;
    assert_eq!(none["nodes"], json!([]));
    let (status, body) = t.get("/api/admin/actors?color=red", Some(&admin)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");

    // Another org's admin sees the node but not this org's session or run.
    let (_, theirs) = t.get("/api/admin/actors", Some(&other)).await;
    let their_kinds = kinds(&theirs["nodes"][0]);
    assert!(!their_kinds
        .iter()
        .any(|k| k == "session" || k == "agent_run"));
    assert_eq!(theirs["hidden"], 2, "{theirs}");
    let (status, body) = t.get("/api/admin/actors", Some(&viewer)).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");

    // Actions: refused across orgs, then the run is cancelled and the session stopped.
    let stop = |token: String, body: Value| {
        let req = t
            .client
            .post(format!("{}/api/admin/actors/stop", t.base))
            .bearer_auth(token)
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let resp = stop(other.clone(), json!({ "kind": "agent_run", "id": sid })).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = stop(admin.clone(), json!({ "kind": "mailbox", "id": sid })).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = stop(admin.clone(), json!({ "kind": "agent_run", "id": sid })).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let ended = sees_end(&mut ws).await;
    assert!(ended, "the client sees the cancelled turn end");
    let resp = stop(admin.clone(), json!({ "kind": "agent_run", "id": sid })).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    // Metrics need a token: an admin's (or the configured scrape token, tested below).
    assert_eq!(raw(&t, "/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        raw(&t, "/metrics", Some(&admin)).await.0,
        StatusCode::UNAUTHORIZED,
        "an org's admin does not see the node's metrics"
    );
    let (status, metrics) = raw(&t, "/metrics", Some(SCRAPE)).await;
    assert_eq!(status, StatusCode::OK);
    let node_name = t.node().name.clone();
    for line in [
        format!("aurora_actors{{kind=\"session\",node=\"{node_name}\"}} 1"),
        format!("aurora_turns_total{{outcome=\"cancelled\",node=\"{node_name}\"}} 1"),
        format!("aurora_websocket_connections{{node=\"{node_name}\"}} 1"),
        // Live for now: hibernation waits AURORA_SESSION_HIBERNATE_SECS.
        format!("aurora_sessions_hibernated{{node=\"{node_name}\"}} 0"),
    ] {
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }

    let resp = stop(admin.clone(), json!({ "kind": "session", "id": sid })).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (_, after) = t.get("/api/admin/actors?kind=session", Some(&admin)).await;
    assert_eq!(after["actors"], json!([]));
    // The history is intact: the session is rebuilt from storage when it is used again.
    let (status, session) = t
        .get(&format!("/chat_api/sessions/{sid}"), Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert!(session.to_string().contains("clean up web-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_is_served() {
    let t = common::TestNode::start(Backend::Sqlite).await;
    let resp = t
        .client
        .get(format!("{}/admin", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(resp.headers().contains_key("content-security-policy"));
    let page = resp.text().await.unwrap();
    for needle in [
        "/api/auth/login",
        "/api/admin/actors",
        "/api/admin/actors/stop",
        "id=\"tree\"",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
}

async fn raw(t: &common::TestNode, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = t.client.get(format!("{}{path}", t.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_session_mid_turn_ends_the_turn_for_its_client() {
    let (t, _fake, _dir) = approval_node().await;
    let admin = t.register("admin@stop.io", "Stop").await;
    let (sid, mut ws) = turn_awaiting_approval(&t, &admin).await;
    let resp = t
        .client
        .post(format!("{}/api/admin/actors/stop", t.base))
        .bearer_auth(&admin)
        .json(&json!({ "kind": "session", "id": sid }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let ended = sees_end(&mut ws).await;
    assert!(ended, "the client of a stopped session sees its turn end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_hibernates_and_its_next_turn_wakes_it() {
    let (t, fake, _dir) = chat_node(
        vec![
            Reply::text(&["first answer"], (1, 1)),
            Reply::text(&["second answer"], (1, 1)),
        ],
        "#!/bin/sh\n",
        &[
            ("AURORA_SESSION_HIBERNATE_SECS", "1"),
            ("AURORA_METRICS_TOKEN", SCRAPE),
        ],
    )
    .await;
    let token = t.register("sleepy@acme.io", "Acme").await;
    let sid = new_session(&t, &token).await;
    let mut ws = open(&t, &token).await;
    query(&mut ws, &sid, "hello", "agent").await;
    turn(&mut ws, "execute").await;

    let node_name = t.node().name.clone();
    let hibernated = |n: u32| format!("aurora_sessions_hibernated{{node=\"{node_name}\"}} {n}");
    let mut slept = false;
    for _ in 0..60 {
        if raw(&t, "/metrics", Some(SCRAPE))
            .await
            .1
            .contains(&hibernated(1))
        {
            slept = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(slept, "the idle session hibernated");
    let (_, live) = t.get("/api/admin/actors?kind=session", Some(&token)).await;
    assert_eq!(live["actors"], json!([]), "no actor while it sleeps");

    // The same connection asks again: the session wakes with its history.
    query(&mut ws, &sid, "again", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    assert!(!types(&frames).contains(&"error"), "{frames:?}");
    let second = &fake.requests()[1]["messages"];
    assert_eq!(second[2]["content"], "first answer", "{second}");
    assert!(raw(&t, "/metrics", Some(SCRAPE))
        .await
        .1
        .contains(&hibernated(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_scrape_token() {
    let t =
        common::TestNode::start_with(common::Backend::Sqlite, &[("AURORA_METRICS_TOKEN", SCRAPE)])
            .await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("scrape-token-wrong"), StatusCode::UNAUTHORIZED),
        (Some(viewer.as_str()), StatusCode::UNAUTHORIZED),
        // Metrics are the node's, across orgs: no org's admin reads them.
        (Some(admin.as_str()), StatusCode::UNAUTHORIZED),
        (Some(SCRAPE), StatusCode::OK),
    ] {
        let (status, body) = raw(&t, "/metrics", token).await;
        assert_eq!(status, want, "{token:?}: {body}");
        if want != StatusCode::OK {
            assert!(!body.contains("aurora_"), "{body}");
        }
    }
    t.stop().await;
    // With no scrape token configured, metrics are off.
    let off = common::TestNode::start(common::Backend::Sqlite).await;
    assert_eq!(raw(&off, "/metrics", None).await.0, StatusCode::NOT_FOUND);
    off.stop().await;
}
