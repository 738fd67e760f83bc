//! Sessions nobody else can take: a stranger's frames for someone's session id never start an
//! actor in the stranger's name (before or after the owner's is live), frames that carry no
//! query start none at all, and a flood of frames with made-up ids is bounded.

mod common;

use aurora_fakes::Reply;
use common::ws::{chat_node, is_end, new_session, next, open, send, Ws};
use common::TestNode;
use serde_json::{json, Value};

const KUBECTL: &str = "#!/bin/sh\necho ok\n";

/// The session actors live on the node now.
async fn live_sessions(t: &TestNode) -> Vec<String> {
    let tree = t.node().actor_tree().await.unwrap();
    tree.children
        .iter()
        .find(|c| c.kind == "sessions_supervisor")
        .map(|s| s.children.iter().map(|c| c.id.clone()).collect())
        .unwrap_or_default()
}

/// Frames until the END of `sid`'s turn (or the first frame refusing it).
async fn turn_of(ws: &mut Ws, sid: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(f) = next(ws).await {
        let done = (is_end(&f) && f["session_id"] == sid) || f["type"] == "error";
        frames.push(f);
        if done {
            break;
        }
    }
    frames
}

fn query(sid: &str, text: &str) -> Value {
    json!({ "type": "query", "query": text, "session_id": sid, "mode": "ask" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_take_a_session_before_its_owner_starts_it() {
    let (t, fake, _dir) = chat_node(vec![Reply::text(&["hello"], (10, 2))], KUBECTL, &[]).await;
    let owner = t.register("owner@acme.io", "Acme").await;
    // A member of the same org, and someone from another org.
    let colleague = t.add_user(&owner, "colleague@acme.io", "editor").await;
    let stranger = t.register("eve@evil.io", "Evil").await;
    let sid = new_session(&t, &owner).await;

    for token in [&colleague, &stranger] {
        let mut ws = open(&t, token).await;
        send(&mut ws, query(&sid, "mine now")).await;
        let f = next(&mut ws).await.unwrap();
        assert_eq!(f["type"], "error", "{f}");
        assert_eq!(f["data"]["code"], "NOT_FOUND", "{f}");
        // Frames with no query do not start anything either.
        send(
            &mut ws,
            json!({ "type": "control", "action": "cancel", "session_id": sid }),
        )
        .await;
        send(
            &mut ws,
            json!({ "type": "confirmation_response", "confirmation_id": "x", "decision": "execute", "session_id": sid }),
        )
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        live_sessions(&t).await.is_empty(),
        "no actor for a refused claim"
    );
    assert!(fake.requests().is_empty());

    // The owner's session is theirs: the turn runs.
    let mut ws = open(&t, &owner).await;
    send(&mut ws, query(&sid, "hi")).await;
    let frames = turn_of(&mut ws, &sid).await;
    assert!(
        frames.iter().all(|f| f["type"] != "error"),
        "the owner was refused: {frames:?}"
    );
    assert!(is_end(frames.last().unwrap()), "{frames:?}");
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(live_sessions(&t).await, vec![sid]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_take_a_live_session() {
    let (t, fake, _dir) = chat_node(
        vec![
            Reply::text(&["one"], (10, 2)),
            Reply::text(&["two"], (10, 2)),
        ],
        KUBECTL,
        &[],
    )
    .await;
    let owner = t.register("owner@acme.io", "Acme").await;
    let stranger = t.register("eve@evil.io", "Evil").await;
    let sid = new_session(&t, &owner).await;
    let mut ws = open(&t, &owner).await;
    send(&mut ws, query(&sid, "first")).await;
    turn_of(&mut ws, &sid).await;

    let mut evil = open(&t, &stranger).await;
    send(&mut evil, query(&sid, "mine now")).await;
    assert_eq!(next(&mut evil).await.unwrap()["data"]["code"], "NOT_FOUND");

    send(&mut ws, query(&sid, "second")).await;
    let frames = turn_of(&mut ws, &sid).await;
    assert!(frames.iter().all(|f| f["type"] != "error"), "{frames:?}");
    assert_eq!(fake.requests().len(), 2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_frames_with_made_up_ids_starts_nothing_and_is_cut_off() {
    let (t, _fake, _dir) = chat_node(vec![], KUBECTL, &[]).await;
    let user = t.register("eve@evil.io", "Evil").await;
    let mut ws = open(&t, &user).await;
    // Control frames with random session ids, as fast as the socket takes them.
    async fn flood(ws: &mut Ws, n: usize) {
        for _ in 0..n {
            let frame = json!({ "type": "control", "action": "cancel", "session_id": uuid::Uuid::now_v7() });
            let msg = tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into());
            if futures::SinkExt::send(ws, msg).await.is_err() {
                return;
            }
        }
    }
    flood(&mut ws, 500).await;
    // Told once that it is over budget; the rest is dropped unanswered.
    let f = next(&mut ws).await.unwrap();
    assert_eq!(f["data"]["code"], "RATE_LIMITED", "{f}");
    // Kept up, the flood gets the connection closed.
    flood(&mut ws, 2_000).await;
    let mut after = Vec::new();
    while let Some(f) = next(&mut ws).await {
        after.push(f);
    }
    assert!(
        after.iter().all(|f| f["data"]["code"] == "RATE_LIMITED"),
        "{after:?}"
    );
    assert!(
        live_sessions(&t).await.is_empty(),
        "a frame with no query started a session"
    );
    // Others are served as before.
    let (status, _) = t.get("/api/auth/me", Some(&user)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    t.stop().await;
}
