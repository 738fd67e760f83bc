//! The cluster under load: release `aurora serve` processes on 127.0.0.1 sharing a PostgreSQL
//! database and Redis, their agents answered at once by a scripted OpenAI-compatible server.
//! Bounded in count and time:
//! - turns per second with 1 node and with 3 nodes (CLIENTS clients, TURNS turns each, every
//!   client its own session, connections spread over the nodes), and what each node holds;
//! - forwarding: latency of a turn (query sent -> first streamed frame, -> END) for a session
//!   owned by the node the client is connected to vs one owned by another node;
//! - failover: kill -9 of a session's owner -> the next turn of that session done elsewhere.
//!
//!   cargo bench --bench cluster
//!   CLIENTS=48 TURNS=50 cargo bench --bench cluster

#[path = "../tests/common/mod.rs"]
mod tcommon;

use std::time::{Duration, Instant};

use aurora_fakes::Reply;
use aurora_supervisors::Placement;
use serde_json::Value;
use tcommon::cluster::TestCluster;
use tcommon::ws::{is_end, next, query, Ws};
use uuid::Uuid;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn instant_replies(n: usize) -> Vec<Reply> {
    (0..n).map(|_| Reply::text(&["ok"], (1, 1))).collect()
}

fn placement(c: &TestCluster) -> Placement {
    let names: Vec<String> = c.nodes.iter().map(|p| p.name.clone()).collect();
    Placement::new(names[0].clone(), names)
}

/// One turn: (time to the first frame, time to END).
async fn timed_turn(ws: &mut Ws, sid: &str) -> (Duration, Duration) {
    let started = Instant::now();
    query(ws, sid, "status?", "agent").await;
    let mut first = None;
    loop {
        let f: Value = next(ws).await.expect("frames");
        first.get_or_insert_with(|| started.elapsed());
        assert_ne!(f["type"], "error", "{f}");
        if is_end(&f) {
            return (first.unwrap(), started.elapsed());
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn throughput(nodes: usize, clients: usize, turns: usize) {
    let c = TestCluster::start(nodes, instant_replies(clients * turns + 10)).await;
    let token = c.register(0, "bench@cluster.test").await;
    let mut sockets = Vec::new();
    for k in 0..clients {
        let sid = c.new_session(k % nodes, &token).await;
        let ws = c
            .open(k % nodes, k % nodes, &token)
            .await
            .expect("connects");
        sockets.push((sid, ws));
    }
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|(sid, mut ws)| {
            tokio::spawn(async move {
                for _ in 0..turns {
                    timed_turn(&mut ws, &sid).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (_, body) = c.get(0, "/api/admin/actors?kind=session", &token).await;
    let held = body["actors"].as_array().map_or(0, Vec::len);
    let rss: Vec<String> = c
        .nodes
        .iter()
        .map(|p| format!("{} {} MiB", p.name, rss_kib(p.pid().unwrap()) / 1024))
        .collect();
    println!(
        "{nodes} node(s): {} turns by {clients} clients in {:.2} s = {:.0} turns/s; {held} session actors held; rss {}",
        clients * turns,
        elapsed.as_secs_f64(),
        (clients * turns) as f64 / elapsed.as_secs_f64(),
        rss.join(", ")
    );
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn forwarding(turns: usize) {
    let c = TestCluster::start(3, instant_replies(2 * turns + 10)).await;
    let token = c.register(0, "fwd@cluster.test").await;
    let place = placement(&c);
    let (mut direct, mut relayed) = (None, None);
    while direct.is_none() || relayed.is_none() {
        let sid = c.new_session(0, &token).await;
        match place.owner(Uuid::parse_str(&sid).unwrap()) {
            "node1" => direct = direct.or(Some(sid)),
            "node2" => relayed = relayed.or(Some(sid)),
            _ => {}
        }
    }
    let (direct, relayed) = (direct.unwrap(), relayed.unwrap());
    let mut ws = c.open(0, 0, &token).await.expect("connects");
    // Warm both sessions up (actor started, context loaded).
    timed_turn(&mut ws, &direct).await;
    timed_turn(&mut ws, &relayed).await;
    let (mut d_first, mut d_end, mut r_first, mut r_end) = (vec![], vec![], vec![], vec![]);
    for _ in 0..turns {
        let (f, e) = timed_turn(&mut ws, &direct).await;
        d_first.push(f);
        d_end.push(e);
        let (f, e) = timed_turn(&mut ws, &relayed).await;
        r_first.push(f);
        r_end.push(e);
    }
    for v in [&mut d_first, &mut d_end, &mut r_first, &mut r_end] {
        v.sort();
    }
    println!("forwarding ({turns} turns each, one client on node1, turns one at a time):");
    for (label, first, end) in [
        ("owned by node1 (direct)   ", &d_first, &d_end),
        ("owned by node2 (forwarded)", &r_first, &r_end),
    ] {
        println!(
            "  {label}: first frame p50 {:.2} ms p99 {:.2} ms; END p50 {:.2} ms p99 {:.2} ms",
            pct(first, 0.5),
            pct(first, 0.99),
            pct(end, 0.5),
            pct(end, 0.99)
        );
    }
}

async fn failover(reps: usize) {
    let mut c = TestCluster::start(3, instant_replies(4 * reps + 10)).await;
    let token = c.register(0, "failover@cluster.test").await;
    let mut ws = c.open(0, 0, &token).await.expect("connects");
    let mut detected = Vec::new();
    let mut rehomed = Vec::new();
    for _ in 0..reps {
        let place = placement(&c);
        let sid = loop {
            let sid = c.new_session(0, &token).await;
            if place.owner(Uuid::parse_str(&sid).unwrap()) == "node3" {
                break sid;
            }
        };
        timed_turn(&mut ws, &sid).await;
        let killed = Instant::now();
        c.kill(2);
        // Until the node the client is on no longer counts the dead one.
        loop {
            if c.members(0).await.is_some_and(|m| m.len() == 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        detected.push(killed.elapsed());
        timed_turn(&mut ws, &sid).await;
        rehomed.push(killed.elapsed());
        c.spawn(2);
        c.wait_members(3).await;
    }
    detected.sort();
    rehomed.sort();
    println!(
        "failover after kill -9 ({reps} times): membership updated in max {:.0} ms; next turn of a session the dead node owned done in p50 {:.0} ms, max {:.0} ms",
        pct(&detected, 1.0),
        pct(&rehomed, 0.5),
        pct(&rehomed, 1.0)
    );
}

#[tokio::main]
async fn main() {
    // Built and listed as a test target too (`--all-targets`): run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let clients = env_usize("CLIENTS", 24);
    let turns = env_usize("TURNS", 40);
    throughput(1, clients, turns).await;
    throughput(3, clients, turns).await;
    forwarding(env_usize("FORWARD_TURNS", 300)).await;
    failover(env_usize("FAILOVERS", 5)).await;
}
