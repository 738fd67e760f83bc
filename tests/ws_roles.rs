//! Roles on the agent, over a real WebSocket on a whole node: a viewer is held to ask mode
//! (reads only) and cannot approve; an approval is judged by the approver's role at the moment
//! it arrives, not when their ticket was issued; the gate's class reaches the client.

mod common;

use aurora_fakes::Reply;
use common::ws::{chat_node, new_session, next, open, query, send, turn, turn_answering, types};
use serde_json::{json, Value};

/// A `kubectl` that logs each run in its working directory (the session's), so a test can
/// prove what never ran.
const LOGGING_KUBECTL: &str = "#!/bin/sh\necho \"$@\" >> ran\necho \"kubectl $1 done\"\n";

fn call(id: &str, command: &str) -> Reply {
    let args = json!({ "command": command }).to_string();
    Reply::tool_call(id, "cloud_exec", &[args.as_str()], (10, 2))
}

fn ran(t: &common::TestNode, user: &str, sid: &str) -> String {
    let path = t
        .data_dir()
        .join("sessions")
        .join(user)
        .join(sid)
        .join("ran");
    std::fs::read_to_string(path).unwrap_or_default()
}

fn errors(frames: &[Value]) -> Vec<(String, String)> {
    frames
        .iter()
        .filter(|f| f["type"] == "error")
        .map(|f| {
            (
                f["data"]["code"].as_str().unwrap_or_default().to_string(),
                f["data"]["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_held_to_ask_mode_and_reads_only() {
    let (t, _fake, _dir) = chat_node(
        vec![
            // The viewer's ask-mode turn: a read runs, a write (kubectl exec) is refused.
            call("c1", "kubectl get pods"),
            call("c2", "kubectl exec web-1 -- cat /etc/shadow"),
            Reply::text(&["Read what I could."], (10, 2)),
        ],
        LOGGING_KUBECTL,
        &[],
    )
    .await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;
    let me = t.principal(&viewer).await;
    let sid = new_session(&t, &viewer).await;
    let mut ws = open(&t, &viewer).await;

    // Agent mode is refused before the model is asked anything.
    query(&mut ws, &sid, "delete web-1", "agent").await;
    let frames = turn_answering(&mut ws, Some("execute")).await;
    assert!(
        errors(&frames).iter().any(|(c, _)| c == "FORBIDDEN"),
        "{frames:?}"
    );
    assert!(!types(&frames).contains(&"tool_call"), "{frames:?}");

    // Ask mode: the read runs, the write never does.
    query(&mut ws, &sid, "look around", "ask").await;
    let frames = turn(&mut ws, "execute").await;
    assert!(
        !types(&frames).contains(&"execution_confirmation"),
        "{frames:?}"
    );
    assert!(
        errors(&frames).iter().any(|(c, _)| c == "READ_ONLY_MODE"),
        "{frames:?}"
    );
    let log = ran(&t, &me.user_id.to_string(), &sid);
    assert!(log.contains("get pods"), "{log}");
    assert!(!log.contains("exec"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_judged_by_the_role_held_when_it_arrives() {
    let (t, _fake, _dir) = chat_node(
        vec![
            call("c1", "kubectl delete pod web-1"),
            Reply::text(&["Done."], (10, 2)),
        ],
        LOGGING_KUBECTL,
        &[("AURORA_APPROVAL_TIMEOUT_SECS", "5")],
    )
    .await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let editor = t.add_user(&admin, "editor@acme.io", "editor").await;
    let me = t.principal(&editor).await;
    let sid = new_session(&t, &editor).await;
    let mut ws = open(&t, &editor).await;
    query(&mut ws, &sid, "delete web-1", "agent").await;

    // Wait for the question: it names the class and who may answer.
    let confirmation = loop {
        let f = next(&mut ws).await.expect("a frame");
        if f["type"] == "execution_confirmation" {
            break f;
        }
    };
    assert_eq!(confirmation["data"]["classification"], "destructive");
    assert_eq!(confirmation["data"]["approver_role"], "editor");

    // The editor is made a viewer while the question is open: their `execute` is refused.
    use sea_orm::{ConnectionTrait, Statement};
    let db = t.node().db().connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE users SET role = 'viewer' WHERE id = ?",
        [me.user_id.into()],
    ))
    .await
    .unwrap();
    let answer = json!({
        "type": "confirmation_response",
        "confirmation_id": confirmation["data"]["confirmation_id"],
        "decision": "execute",
        "session_id": sid,
    });
    send(&mut ws, answer).await;
    let frames = turn_answering(&mut ws, None).await;
    assert!(
        errors(&frames)
            .iter()
            .any(|(c, m)| c == "FORBIDDEN" && m.contains("viewers cannot approve")),
        "{frames:?}"
    );
    assert!(
        frames.iter().any(|f| f["type"] == "tool_error"
            && f["data"]["error"].as_str().unwrap().contains("no answer")),
        "{frames:?}"
    );
    assert!(ran(&t, &me.user_id.to_string(), &sid).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_connection_follows_removal_and_demotion() {
    let (t, fake, _dir) = chat_node(
        vec![
            Reply::text(&["fine"], (10, 2)),
            Reply::text(&["never"], (10, 2)),
        ],
        LOGGING_KUBECTL,
        &[],
    )
    .await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let editor = t.add_user(&admin, "editor@acme.io", "editor").await;
    let ed = t.principal(&editor).await;
    let sid = new_session(&t, &editor).await;
    // Opened while an editor, with an agent-mode turn: the session's actor is live.
    let mut ws = open(&t, &editor).await;
    query(&mut ws, &sid, "look around", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    assert!(!types(&frames).contains(&"error"), "{frames:?}");
    assert_eq!(fake.requests().len(), 1);

    // Demoted to viewer: the same connection and the live session are held to ask mode from
    // the next query.
    let path = format!("/api/org/members/{}", ed.user_id);
    let (status, _) = t
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    query(&mut ws, &sid, "scale it up", "agent").await;
    let frames = turn_answering(&mut ws, None).await;
    assert!(
        errors(&frames).iter().any(|(code, _)| code == "FORBIDDEN"),
        "{frames:?}"
    );
    assert_eq!(fake.requests().len(), 1);

    // Removed: the next frame is refused and the connection closed.
    let (status, _) = t
        .call(reqwest::Method::DELETE, &path, Some(&admin), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    query(&mut ws, &sid, "still here?", "ask").await;
    let f = next(&mut ws).await.unwrap();
    assert_eq!(f["data"]["code"], "UNAUTHORIZED", "{f}");
    assert!(next(&mut ws).await.is_none(), "closed after UNAUTHORIZED");
    assert_eq!(fake.requests().len(), 1);
    t.stop().await;
}

/// A named API token of the admin's: (token, id).
async fn named_token(t: &common::TestNode, admin: &str, name: &str) -> (String, String) {
    let (_, made) = t
        .post("/api/auth/tokens", Some(admin), json!({ "name": name }))
        .await;
    (
        made["token"].as_str().unwrap().to_string(),
        made["id"].as_str().unwrap().to_string(),
    )
}

async fn revoke(t: &common::TestNode, admin: &str, id: &str) {
    let (status, _) = t
        .call(
            reqwest::Method::DELETE,
            &format!("/api/auth/tokens/{id}"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_websockets() {
    let (t, fake, _dir) = chat_node(vec![], LOGGING_KUBECTL, &[]).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let sid = new_session(&t, &admin).await;
    // A connection opened with a token ends when the token is revoked.
    let (laptop, laptop_id) = named_token(&t, &admin, "laptop").await;
    let mut ws = open(&t, &laptop).await;
    revoke(&t, &admin, &laptop_id).await;
    query(&mut ws, &sid, "still mine?", "ask").await;
    let f = next(&mut ws).await.unwrap();
    assert_eq!(f["data"]["code"], "UNAUTHORIZED", "{f}");
    assert!(next(&mut ws).await.is_none(), "closed after UNAUTHORIZED");
    // A ticket bought with a token revoked since cannot be redeemed.
    let (phone, phone_id) = named_token(&t, &admin, "phone").await;
    let ticket = common::ws::ticket(&t, &phone).await;
    revoke(&t, &admin, &phone_id).await;
    let mut ws = common::ws::connect(&t, &ticket).await;
    let f = next(&mut ws).await.unwrap();
    assert_eq!(f["data"]["code"], "UNAUTHORIZED", "{f}");
    assert!(fake.requests().is_empty());
    t.stop().await;
}
