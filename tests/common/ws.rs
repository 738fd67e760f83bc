//! WebSocket client helpers and a node whose agent talks to a scripted LLM server.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use aurora_fakes::{anthropic, openai, FakeServer, Reply};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{Backend, TestNode};

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(t: &TestNode, ticket: &str) -> Ws {
    let url = format!("ws://{}/?token={ticket}", t.node().ws_addr());
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

pub async fn ticket(t: &TestNode, token: &str) -> String {
    let (_, body) = t.post("/api/auth/ws-token", Some(token), json!({})).await;
    body["token"].as_str().unwrap().to_string()
}

/// A connected, started socket for `token`'s user.
pub async fn open(t: &TestNode, token: &str) -> Ws {
    let mut ws = connect(t, &ticket(t, token).await).await;
    assert_eq!(next(&mut ws).await.unwrap()["data"]["status"], "START");
    ws
}

/// A new chat session of `token`'s user.
pub async fn new_session(t: &TestNode, token: &str) -> String {
    let (_, session) = t.post("/chat_api/sessions", Some(token), json!({})).await;
    session["id"].as_str().unwrap().to_string()
}

/// The next JSON frame (pings skipped); `None` when the server closed.
pub async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")?
        {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

pub async fn query(ws: &mut Ws, sid: &str, text: &str, mode: &str) {
    send(
        ws,
        json!({ "type": "query", "query": text, "session_id": sid, "mode": mode }),
    )
    .await;
}

pub fn is_end(f: &Value) -> bool {
    f["type"] == "status" && f["data"]["status"] == "END"
}

/// Frames until `status` END, answering every approval with `decision` (`None`: never answer).
pub async fn turn_answering(ws: &mut Ws, decision: Option<&str>) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(f) = next(ws).await {
        if let (true, Some(decision)) = (f["type"] == "execution_confirmation", decision) {
            let (id, sid) = (
                f["data"]["confirmation_id"].clone(),
                f["session_id"].clone(),
            );
            send(ws, json!({ "type": "confirmation_response", "confirmation_id": id, "decision": decision, "session_id": sid })).await;
        }
        let end = is_end(&f);
        frames.push(f);
        if end {
            break;
        }
    }
    frames
}

/// Frames until `status` END, answering every approval with `decision`.
pub async fn turn(ws: &mut Ws, decision: &str) -> Vec<Value> {
    turn_answering(ws, Some(decision)).await
}

pub fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().map(|f| f["type"].as_str().unwrap()).collect()
}

/// A fake `terraform` whose "state" is a counter: apply adds one, destroy resets it.
pub const FAKE_TERRAFORM: &str = r#"#!/bin/sh
case "$1" in
  init) mkdir -p .terraform; echo "Terraform has been successfully initialized!";;
  plan) echo "state serial $(cat terraform.tfstate 2>/dev/null || echo none)"; echo "Plan: 1 to add.";;
  apply) n=$(cat terraform.tfstate 2>/dev/null || echo 0); n=$((n+1)); echo $n > terraform.tfstate; echo "Apply complete! Resources: 1 added. serial $n";;
  destroy) echo 0 > terraform.tfstate; echo "Destroy complete!";;
  *) echo "unknown $1" >&2; exit 1;;
esac
"#;

/// Which scripted LLM protocol the node talks to.
#[derive(Clone, Copy, Debug)]
pub enum Llm {
    OpenAi,
    Anthropic,
}

/// A node whose agent talks to a scripted LLM server and whose `kubectl` is the given shell
/// script. Keep the returned fake and directory alive for the test.
pub async fn chat_node_on(
    backend: Backend,
    llm: Llm,
    script: Vec<Reply>,
    kubectl: &str,
    extra: &[(&str, &str)],
) -> (TestNode, FakeServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // Searchable by the sandbox user, which runs the tools.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for (name, script) in [("kubectl", kubectl), ("terraform", FAKE_TERRAFORM)] {
        let bin = dir.path().join(name);
        std::fs::write(&bin, script).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (fake, provider, model) = match llm {
        Llm::OpenAi => (openai::start(script).await, "openai", "gpt-4o"),
        Llm::Anthropic => (
            anthropic::start(script).await,
            "anthropic",
            "claude-sonnet-4",
        ),
    };
    let (base, path) = (
        fake.base_url(),
        format!("{}:/usr/bin:/bin", dir.path().display()),
    );
    let mut config = vec![
        ("LLM_PROVIDER", provider),
        ("LLM_BASE_URL", base.as_str()),
        ("LLM_MODEL", model),
        ("LLM_API_KEY", "sk-test"),
        ("AURORA_TOOL_PATH", path.as_str()),
    ];
    config.extend_from_slice(extra);
    let t = TestNode::start_with(backend, &config).await;
    (t, fake, dir)
}

/// [`chat_node_on`] on SQLite with the OpenAI-compatible protocol.
pub async fn chat_node(
    script: Vec<Reply>,
    kubectl: &str,
    extra: &[(&str, &str)],
) -> (TestNode, FakeServer, tempfile::TempDir) {
    chat_node_on(Backend::Sqlite, Llm::OpenAi, script, kubectl, extra).await
}
