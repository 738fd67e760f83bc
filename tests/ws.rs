//! The WebSocket protocol end to end on a whole node: tickets, a turn with a read and an
//! approved destructive tool call, history over REST, bad frames, rate limit.

mod common;

use std::time::Duration;

use aurora_fakes::seaweed::SeaweedFs;
use aurora_fakes::{openai, Reply};
use aurora_storage::objects::{ObjectKey, ObjectStore, S3Settings};
use common::ws::{chat_node, chat_node_on, connect, next, send, ticket, turn, types, Llm};
use common::{Backend, TestNode};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(a_chat_turn_over_websocket);

/// The Done-when scenario of a chat turn, on the embedded default and on PostgreSQL + Redis.
async fn a_chat_turn_over_websocket(backend: Backend) {
    // The server backend keeps objects (terraform state) in S3: a real SeaweedFS.
    let weed = match backend {
        Backend::Postgres => Some(tokio::task::spawn_blocking(SeaweedFs::start).await.unwrap()),
        Backend::Sqlite => None,
    };
    let mut extra = vec![("AURORA_RATE_LIMIT_QUERIES", "3")];
    if let Some(weed) = &weed {
        extra.push(("S3_ENDPOINT", weed.s3_endpoint.as_str()));
        extra.push(("S3_BUCKET", "aurora"));
    }
    let (t, fake, _dir) = chat_node_on(
        backend,
        Llm::OpenAi,
        vec![
        Reply::tool_call(
            "call_1",
            "cloud_exec",
            &["{\"command\":", " \"kubectl get pods\"}"],
            (100, 10),
        ),
        Reply::text(&["web-1 is ", "crash looping."], (150, 8)),
        Reply::tool_call(
            "call_2",
            "terraform",
            &["{\"action\": \"write\", \"files\": {\"main.tf\": \"resource \\\"null_resource\\\" \\\"web\\\" {}\"}}"],
            (200, 10),
        ),
        Reply::tool_call(
            "call_3",
            "terraform",
            &["{\"action\":", " \"apply\"}"],
            (220, 10),
        ),
        Reply::text(&["Replaced web."], (250, 4)),
    ],
        "#!/bin/sh\ncase \"$1\" in\n  get) echo 'web-1 0/1 CrashLoopBackOff';;\n  delete) echo 'pod \"web-1\" deleted';;\nesac\n",
        &extra,
    )
    .await;
    let token = t.register("oncall@acme.io", "Acme").await;
    let (_, session) = t.post("/chat_api/sessions", Some(&token), json!({})).await;
    let sid = session["id"].as_str().unwrap().to_string();

    let first = ticket(&t, &token).await;
    let mut ws = connect(&t, &first).await;
    assert_eq!(next(&mut ws).await.unwrap()["data"]["status"], "START");

    // Malformed frames are answered and the connection stays open.
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap()["data"]["code"], "BAD_MESSAGE");

    send(&mut ws, json!({ "type": "query", "query": "Why is web failing?", "session_id": sid, "mode": "agent" })).await;
    let frames = turn(&mut ws, "execute").await;
    let kinds = types(&frames);
    for k in [
        "tool_call",
        "tool_result",
        "message",
        "usage_final",
        "status",
    ] {
        assert!(kinds.contains(&k), "{k} missing in {kinds:?}");
    }
    let info = frames.iter().find(|f| f["type"] == "usage_info").unwrap();
    assert!(info["data"]["total_cost"].as_f64().unwrap() > 0.0);
    assert_eq!(
        kinds[kinds.len() - 2],
        "usage_info",
        "usage_info comes just before END"
    );
    let result = frames.iter().find(|f| f["type"] == "tool_result").unwrap();
    assert!(result["data"]["output"]
        .as_str()
        .unwrap()
        .contains("CrashLoopBackOff"));

    send(
        &mut ws,
        json!({ "type": "query", "query": "Replace it with terraform.", "session_id": sid }),
    )
    .await;
    let frames = turn(&mut ws, "execute").await;
    let kinds = types(&frames);
    // Writing configuration needs no approval; apply does, and runs once approved.
    let confirmations: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "execution_confirmation")
        .collect();
    assert_eq!(confirmations.len(), 1, "{kinds:?}");
    assert_eq!(confirmations[0]["data"]["command"], "terraform apply");
    assert!(
        frames.iter().any(|f| f["type"] == "tool_result"
            && f["data"]["output"]
                .as_str()
                .unwrap()
                .contains("Apply complete!")),
        "{frames:?}"
    );

    // The applied state is in object storage, under the user's own prefix.
    let who = t.principal(&token).await;
    let objects = match &weed {
        Some(weed) => ObjectStore::s3(&S3Settings {
            endpoint: weed.s3_endpoint.clone(),
            bucket: "aurora".into(),
            region: "us-east-1".into(),
            access_key: None,
            secret_key: None,
        })
        .await
        .unwrap(),
        None => ObjectStore::local(t.data_dir().join("objects")),
    };
    let key = ObjectKey::new(
        who.org_id,
        who.user_id,
        &format!("terraform/{sid}/terraform.tfstate"),
    )
    .unwrap();
    assert_eq!(
        objects.get(&key).await.unwrap().as_deref(),
        Some(&b"1\n"[..])
    );

    // The second turn's model call saw the whole first turn (the session keeps its context).
    let second_turn = fake.requests()[2]["messages"].to_string();
    for earlier in [
        "Why is web failing?",
        "CrashLoopBackOff",
        "web-1 is crash looping.",
    ] {
        assert!(
            second_turn.contains(earlier),
            "{earlier} missing: {second_turn}"
        );
    }

    // The node's actor tree shows the session.
    let tree = t.node().actor_tree().await.unwrap();
    let sessions = tree
        .children
        .iter()
        .find(|c| c.kind == "sessions_supervisor")
        .expect("sessions subtree");
    assert!(
        sessions
            .children
            .iter()
            .any(|c| c.kind == "session" && c.id == sid),
        "{tree:?}"
    );

    // The history over REST shows all of it.
    let (_, detail) = t
        .get(&format!("/chat_api/sessions/{sid}"), Some(&token))
        .await;
    let roles: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant",
            "tool",
            "assistant",
            "tool",
            "assistant"
        ]
    );
    let (_, usage) = t
        .get(&format!("/api/llm-usage/session/{sid}"), Some(&token))
        .await;
    assert_eq!(usage["calls"].as_array().unwrap().len(), 5);

    // Third query is allowed (and fails at the exhausted fake), the fourth is over the limit.
    send(
        &mut ws,
        json!({ "type": "query", "query": "again", "session_id": sid }),
    )
    .await;
    turn(&mut ws, "cancel").await;
    send(
        &mut ws,
        json!({ "type": "query", "query": "and again", "session_id": sid }),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["data"]["code"], "RATE_LIMITED");

    // A ticket works once; garbage never.
    for bad in [first.as_str(), "garbage"] {
        let mut ws = connect(&t, bad).await;
        let f = next(&mut ws).await.unwrap();
        assert_eq!(f["data"]["code"], "UNAUTHORIZED", "{bad}");
        assert!(next(&mut ws).await.is_none(), "closed after UNAUTHORIZED");
    }
    // Another user's session id is NOT_FOUND.
    let other = t.register("other@globex.io", "Globex").await;
    let mut ws2 = connect(&t, &ticket(&t, &other).await).await;
    next(&mut ws2).await;
    send(
        &mut ws2,
        json!({ "type": "query", "query": "hi", "session_id": sid }),
    )
    .await;
    assert_eq!(next(&mut ws2).await.unwrap()["data"]["code"], "NOT_FOUND");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_re_attaches_and_answers_the_pending_approval() {
    let (t, _fake, _dir) = chat_node(
        vec![
            Reply::tool_call(
                "call_1",
                "cloud_exec",
                &["{\"command\": \"kubectl delete pod web-1\"}"],
                (10, 1),
            ),
            Reply::text(&["Deleted."], (10, 1)),
        ],
        "#!/bin/sh\necho 'pod \"web-1\" deleted'\n",
        &[],
    )
    .await;
    let token = t.register("oncall@acme.io", "Acme").await;
    let (_, session) = t.post("/chat_api/sessions", Some(&token), json!({})).await;
    let sid = session["id"].as_str().unwrap().to_string();

    let mut a = connect(&t, &ticket(&t, &token).await).await;
    next(&mut a).await;
    send(
        &mut a,
        json!({ "type": "query", "query": "delete web-1", "session_id": sid }),
    )
    .await;
    let confirmation = loop {
        let f = next(&mut a).await.expect("frames until the approval");
        if f["type"] == "execution_confirmation" {
            break f;
        }
    };
    drop(a); // the socket goes away; the turn waits on

    let mut b = connect(&t, &ticket(&t, &token).await).await;
    assert_eq!(next(&mut b).await.unwrap()["data"]["status"], "START");
    let id = confirmation["data"]["confirmation_id"].clone();
    send(&mut b, json!({ "type": "confirmation_response", "confirmation_id": id, "decision": "execute", "session_id": sid })).await;
    let frames = turn(&mut b, "execute").await;
    let kinds = types(&frames);
    assert!(
        kinds.contains(&"tool_result") && kinds.last() == Some(&"status"),
        "{kinds:?}"
    );
    let (_, detail) = t
        .get(&format!("/chat_api/sessions/{sid}"), Some(&token))
        .await;
    assert_eq!(detail["messages"].as_array().unwrap().len(), 4);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_sessions_oversized_frames_and_no_provider() {
    let slow = Reply::Stream(aurora_fakes::Completion {
        text: vec!["x ".into(); 40],
        usage: Some((1, 1)),
        delay: Duration::from_millis(25),
        ..Default::default()
    });
    let fake = openai::start(vec![slow]).await;
    let base = fake.base_url();
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("LLM_PROVIDER", "openai"),
            ("LLM_BASE_URL", &base),
            ("LLM_MODEL", "gpt-4o"),
            ("AURORA_WS_MAX_FRAME_BYTES", "65536"),
        ],
    )
    .await;
    let token = t.register("busy@acme.io", "Acme").await;
    let (_, session) = t.post("/chat_api/sessions", Some(&token), json!({})).await;
    let sid = session["id"].as_str().unwrap().to_string();
    let mut ws = connect(&t, &ticket(&t, &token).await).await;
    next(&mut ws).await;
    send(
        &mut ws,
        json!({ "type": "query", "query": "long", "session_id": sid }),
    )
    .await;
    send(
        &mut ws,
        json!({ "type": "query", "query": "meanwhile", "session_id": sid }),
    )
    .await;
    let mut busy = false;
    let mut ended = false;
    while let Some(f) = next(&mut ws).await {
        busy |= f["type"] == "error" && f["data"]["code"] == "SESSION_BUSY";
        if f["type"] == "status" && f["data"]["status"] == "END" {
            ended = true;
            break;
        }
    }
    assert!(
        busy && ended,
        "one turn ran, the second query was SESSION_BUSY"
    );

    // A frame over the limit closes the connection with 1009.
    ws.send(Message::Text("x".repeat(70_000).into()))
        .await
        .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(frame)))) => break Some(u16::from(frame.code)),
            Some(Ok(_)) => continue,
            _ => break None,
        }
    };
    assert_eq!(closed, Some(1009));
    t.stop().await;

    // Without a provider, a query is answered LLM_UNAVAILABLE.
    let t = TestNode::start(Backend::Sqlite).await;
    let token = t.register("nollm@acme.io", "Acme").await;
    let mut ws = connect(&t, &ticket(&t, &token).await).await;
    next(&mut ws).await;
    send(
        &mut ws,
        json!({ "type": "query", "query": "hi", "session_id": uuid::Uuid::now_v7() }),
    )
    .await;
    assert_eq!(
        next(&mut ws).await.unwrap()["data"]["code"],
        "LLM_UNAVAILABLE"
    );
    t.stop().await;
}
