//! Limits an attacker cannot exhaust at the edges: slow and idle connections are closed on both
//! edges, connections are capped per node (and WebSockets per user). Each bound is first shown
//! not holding with the limit set out of reach, so the test cannot pass by accident.

mod common;

use std::time::Duration;

use common::ws::{connect, next, ticket};
use common::{Backend, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closed `stream` within `wait` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (an HTTP 408, say): keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// A client that sends part of a request's headers and then nothing.
async fn slow_headers(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_http_clients_are_cut_off() {
    // Out of reach: the slow client keeps its connection.
    let open = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("AURORA_HTTP_HEADER_SECS", "3600"),
            ("AURORA_HTTP_IDLE_SECS", "3600"),
        ],
    )
    .await;
    let mut s = slow_headers(open.node().http_addr()).await;
    assert!(!closed_within(&mut s, Duration::from_secs(3)).await);
    open.stop().await;

    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("AURORA_HTTP_HEADER_SECS", "1"),
            ("AURORA_HTTP_IDLE_SECS", "2"),
        ],
    )
    .await;
    let addr = t.node().http_addr();
    // Headers trickled in: cut at the header deadline.
    let mut s = slow_headers(addr).await;
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    // A body promised and never sent: cut once idle.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(6)).await);
    // A kept-alive connection left parked: closed once idle.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health/liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(6)).await);
    // Ordinary requests are served as ever.
    assert_eq!(t.get("/health", None).await.0, reqwest::StatusCode::OK);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_capped_per_node() {
    const CAP: usize = 3;
    let t = TestNode::start_with(Backend::Sqlite, &[("AURORA_HTTP_MAX_CONNECTIONS", "3")]).await;
    let addr = t.node().http_addr();
    // The test client may keep a connection of its own open: count what the node takes.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..CAP + 3 {
        let mut s = slow_headers(addr).await;
        if closed_within(&mut s, Duration::from_millis(300)).await {
            refused += 1;
        } else {
            held.push(s);
        }
    }
    assert!(held.len() <= CAP, "{} connections held", held.len());
    assert!(refused >= 3, "only {refused} refused");
    for s in &mut held {
        assert!(!closed_within(s, Duration::from_millis(100)).await);
    }
    // Slots freed are slots for the next clients.
    held.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::new();
    let resp = fresh
        .get(format!("http://{addr}/health/liveness"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_never_finishes_its_handshake_is_closed() {
    let open = TestNode::start_with(Backend::Sqlite, &[("AURORA_WS_HANDSHAKE_SECS", "3600")]).await;
    let mut s = TcpStream::connect(open.node().ws_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(!closed_within(&mut s, Duration::from_secs(3)).await);
    open.stop().await;

    let t = TestNode::start_with(Backend::Sqlite, &[("AURORA_WS_HANDSHAKE_SECS", "1")]).await;
    let mut s = TcpStream::connect(t.node().ws_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_capped_per_node_and_per_user() {
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("AURORA_WS_MAX_CONNECTIONS", "3"),
            ("AURORA_WS_MAX_PER_USER", "2"),
        ],
    )
    .await;
    let alice = t.register("alice@acme.io", "Acme").await;
    let bob = t.register("bob@globex.io", "Globex").await;

    // Per user: the third connection is told why and closed with 1013.
    let mut a1 = connect(&t, &ticket(&t, &alice).await).await;
    assert_eq!(next(&mut a1).await.unwrap()["data"]["status"], "START");
    let mut a2 = connect(&t, &ticket(&t, &alice).await).await;
    assert_eq!(next(&mut a2).await.unwrap()["data"]["status"], "START");
    let url = format!(
        "ws://{}/?token={}",
        t.node().ws_addr(),
        ticket(&t, &alice).await
    );
    let (mut a3, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let refused = next(&mut a3).await.unwrap();
    assert_eq!(refused["data"]["code"], "RATE_LIMITED", "{refused}");
    let close = futures::StreamExt::next(&mut a3).await;
    match close {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1013)
        }
        other => panic!("expected a 1013 close, got {other:?}"),
    }
    // Someone else still gets in (the third socket of the node).
    let mut b1 = connect(&t, &ticket(&t, &bob).await).await;
    assert_eq!(next(&mut b1).await.unwrap()["data"]["status"], "START");

    // Per node: a fourth socket, authenticated or not, is dropped before its handshake.
    let mut raw = TcpStream::connect(t.node().ws_addr()).await.unwrap();
    assert!(closed_within(&mut raw, Duration::from_secs(2)).await);
    drop(b1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut b2 = connect(&t, &ticket(&t, &bob).await).await;
    assert_eq!(next(&mut b2).await.unwrap()["data"]["status"], "START");
    drop((a1, a2));
    t.stop().await;
}
