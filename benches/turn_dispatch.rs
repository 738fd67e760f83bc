//! Turn dispatch throughput: sessions started and turns completed per second through the real
//! supervision tree (SessionsSupervisor -> SessionActor -> AgentRunActor), with the turn loop,
//! persistence of every turn and usage row, and an in-process provider that answers at once.
//! The anchor is Celery running no-op tasks (227/s tuned, FACTS.md).
//!
//!   cargo bench --bench turn_dispatch                      # SQLite (embedded default)
//!   DATABASE_URL=postgres://... cargo bench --bench turn_dispatch
//!
//! Bounded: SESSIONS sessions (default 10 000, so each phase lasts long enough to measure) with
//! TURNS turns each (default 5), CONCURRENCY clients at a time (default 64), each with one
//! channel for the frames of all its turns, as a WebSocket connection has. The sessions belong
//! to USERS users in turn (default 1: one user's turns all update one running-total row).
//! ANALYZE=1 (set to anything) takes the database's statistics once the sessions exist, as autovacuum would on a
//! live database (they then describe `chat_messages` empty: the run adds its rows).

// The node's allocator, so the figures are the node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::sync::Arc;
use std::time::Instant;

use aurora_actors::protocol::{Mode, RunStatus, ServerFrame};
use aurora_actors::session::SessionMsg;
use aurora_storage::auth::Principal;
use aurora_storage::sessions::Sessions;
use aurora_supervisors::sessions::{SessionsMsg, SessionsSupervisor};
use ractor::{Actor, ActorRef};
use tokio::sync::mpsc;
use uuid::Uuid;

/// One turn: route a query, wait for END. `frames` is the client's one channel for all its
/// turns, as a WebSocket connection has (`edges::ws`).
async fn turn(
    sup: &ActorRef<SessionsMsg>,
    who: &Principal,
    session_id: Uuid,
    (tx, rx): &mut (mpsc::Sender<ServerFrame>, mpsc::Receiver<ServerFrame>),
) {
    let msg = SessionMsg::Query {
        query: "status?".into(),
        mode: Mode::Agent,
        model: None,
        interactive: true,
        frames: tx.clone(),
        role: None,
    };
    sup.cast(SessionsMsg::Route {
        session_id,
        who: who.clone(),
        msg,
    })
    .expect("supervisor alive");
    while let Some(f) = rx.recv().await {
        if let ServerFrame::Error { data, .. } = &f {
            panic!("turn failed: {}", data.text);
        }
        if matches!(&f, ServerFrame::Status { data, .. } if data.status == RunStatus::End) {
            return;
        }
    }
    panic!("frames channel closed before END");
}

async fn run_phase(
    name: &str,
    sup: &ActorRef<SessionsMsg>,
    ids: &[(Principal, Uuid)],
    turns: usize,
    concurrency: usize,
) {
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(ids.to_vec()));
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (sup, queue) = (sup.clone(), queue.clone());
        clients.push(tokio::spawn(async move {
            let mut frames = mpsc::channel(1024);
            let mut latencies = Vec::new();
            loop {
                let Some((who, id)) = queue.lock().unwrap().pop() else {
                    return latencies;
                };
                for _ in 0..turns {
                    let sent = Instant::now();
                    turn(&sup, &who, id, &mut frames).await;
                    latencies.push(sent.elapsed());
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(ids.len() * turns);
    for c in clients {
        latencies.extend(c.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    // Nearest-rank percentile; 0 for a phase with no turns (SESSIONS=0 or TURNS=0).
    let ms = |q: f64| {
        let rank = (latencies.len().saturating_sub(1) as f64 * q) as usize;
        latencies.get(rank).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let total = ids.len() * turns;
    println!(
        "{name}: {} sessions, {total} turns in {secs:.2} s: {:.0} turns/s, {:.0} sessions/s; \
         turn latency p50 {:.1} ms, p99 {:.1} ms",
        ids.len(),
        total as f64 / secs,
        ids.len() as f64 / secs,
        ms(0.5),
        ms(0.99),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Built and listed as a test target too (`--all-targets`): run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let sessions_n = common::env_usize("SESSIONS", 10_000);
    let turns = common::env_usize("TURNS", 5);
    let concurrency = common::env_usize("CONCURRENCY", 64);
    let users_n = common::env_usize("USERS", 1).max(1);
    let bench = common::Bench::start().await?;
    let mut users = vec![bench.who.clone()];
    for _ in 1..users_n {
        users.push(bench.user().await?);
    }
    let store = Sessions::new(bench.db.clone());
    let mut ids = Vec::with_capacity(sessions_n);
    for i in 0..sessions_n {
        let who = &users[i % users_n];
        ids.push((who.clone(), store.create(who, None).await?.id));
    }
    if std::env::var("ANALYZE").is_ok() {
        use sea_orm::ConnectionTrait;
        bench.db.connection().execute_unprepared("ANALYZE").await?;
    }
    let backend = bench.backend;
    let (sup, _) = Actor::spawn(None, SessionsSupervisor, bench.sessions_args()).await?;
    println!("backend {backend}, concurrency {concurrency}, users {users_n}");
    // Every session is new here: each first turn starts a SessionActor.
    run_phase("cold (session start + 1 turn)", &sup, &ids, 1, concurrency).await;
    run_phase(
        "warm (turns on live sessions)",
        &sup,
        &ids,
        turns,
        concurrency,
    )
    .await;
    // Waited for: returning from main while the supervisor stops its sessions would cancel
    // the stops (ractor panics on a cancelled child join).
    sup.stop_and_wait(None, Some(std::time::Duration::from_secs(30)))
        .await?;
    let _ = bench.db.close().await;
    Ok(())
}
