//! Memory per open, idle WebSocket connection on a node: starts the release `aurora` binary
//! (SQLite, no LLM needed), opens N authenticated connections from this process, and reads the
//! node's resident memory (/proc/<pid>/status) before and after. Bounded: N connections
//! (default 10000), opened 64 at a time, held for a few seconds, then closed.
//!
//!   cargo bench --bench ws_idle
//!   CONNECTIONS=2000 cargo bench --bench ws_idle

mod common;

use std::process::Stdio;
use std::time::Duration;

use futures::{stream, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Built and listed as a test target too (`--all-targets`): run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let n = common::env_usize("CONNECTIONS", 10_000);
    let dir = tempfile::tempdir()?;
    let (http, ws) = (free_port(), free_port());
    let mut node = tokio::process::Command::new(env!("CARGO_BIN_EXE_aurora"))
        .arg("serve")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HTTP_PORT", http.to_string())
        .env("WS_PORT", ws.to_string())
        .env("AURORA_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = node.id().expect("running");
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reg: Value = client
        .post(format!("{base}/api/auth/register"))
        .json(&json!({ "email": "ws-bench@acme.io", "password": "correct horse battery", "org_name": "Bench" }))
        .send()
        .await?
        .json()
        .await?;
    let token = reg["token"].as_str().expect("registered").to_string();
    // Warm-up: a first batch of connections, closed again, so that allocator and runtime
    // growth is not charged to the measured ones.
    let open = |count: usize| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            stream::iter(0..count)
                .map(|_| {
                    let (client, base, token) = (client.clone(), base.clone(), token.clone());
                    async move {
                        let ticket: Value = client
                            .post(format!("{base}/api/auth/ws-token"))
                            .bearer_auth(&token)
                            .json(&json!({}))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        let url = format!(
                            "ws://127.0.0.1:{ws}/?token={}",
                            ticket["token"].as_str().unwrap()
                        );
                        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                        // START means the connection is authenticated and attached.
                        match socket.next().await {
                            Some(Ok(Message::Text(t))) => assert!(t.contains("START"), "{t}"),
                            other => panic!("expected START, got {other:?}"),
                        }
                        socket
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await
        }
    };
    drop(open(n / 10).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = common::rss_of(&pid.to_string());
    let sockets = open(n).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = common::rss_of(&pid.to_string());
    let per = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "{n} idle websocket connections: node rss {:.1} MiB -> {:.1} MiB, {:.0} bytes per connection ({:.1} KiB)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per,
        per / 1024.0
    );
    drop(sockets);
    node.kill().await?;
    Ok(())
}
