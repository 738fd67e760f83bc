//! Memory per idle SessionActor: resident memory of this process before and after N session
//! actors are started (through the sessions supervisor, exactly as the WebSocket edge starts
//! them) and left idle. Includes the supervisor's bookkeeping for each session.
//!
//!   cargo bench --bench idle_sessions                      # N = 20000
//!   SESSIONS=50000 cargo bench --bench idle_sessions

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use aurora_actors::session::SessionMsg;
use aurora_supervisors::sessions::{SessionsMsg, SessionsSupervisor};
use ractor::Actor;
use tokio::sync::mpsc;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Built and listed as a test target too (`--all-targets`): run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let n = common::env_usize("SESSIONS", 20_000);
    let bench = common::Bench::start().await?;
    let (sup, _) = Actor::spawn(None, SessionsSupervisor, bench.sessions_args()).await?;
    // One client channel shared by all, as one connection attached to many sessions.
    let (client, _keep) = mpsc::channel(16);
    let settle = || async {
        // A status walk visits every session, so every start before it has finished.
        ractor::call_t!(sup, SessionsMsg::Status, 60_000).expect("status")
    };
    // Warm the allocator, the runtime and the supervisor's maps with a first batch.
    let warm = n / 10;
    for _ in 0..warm {
        let msg = SessionMsg::Attach(client.clone());
        sup.cast(SessionsMsg::Route {
            session_id: Uuid::now_v7(),
            who: bench.who.clone(),
            msg,
        })?;
    }
    settle().await;
    let before = common::rss_bytes();
    for _ in 0..n {
        let msg = SessionMsg::Attach(client.clone());
        sup.cast(SessionsMsg::Route {
            session_id: Uuid::now_v7(),
            who: bench.who.clone(),
            msg,
        })?;
    }
    let tree = settle().await;
    let after = common::rss_bytes();
    assert_eq!(tree.children.len(), warm + n, "every session is live");
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    let floor = bare_actor_floor(n).await;
    println!(
        "{n} idle session actors: rss {:.1} MiB -> {:.1} MiB, {:.0} bytes per session ({:.2} KiB)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per,
        per / 1024.0
    );
    println!(
        "the same number of bare ractor actors (no state, nothing but the framework): {:.0} bytes each ({:.2} KiB)",
        floor,
        floor / 1024.0
    );
    sup.stop(None);
    Ok(())
}

/// An actor with no state and no messages: what ractor itself costs per actor.
struct Bare;

impl ractor::Actor for Bare {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<()>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

async fn bare_actor_floor(n: usize) -> f64 {
    let before = common::rss_bytes();
    let mut actors = Vec::with_capacity(n);
    for _ in 0..n {
        actors.push(Actor::spawn(None, Bare, ()).await.expect("spawn").0);
    }
    let after = common::rss_bytes();
    for a in &actors {
        a.stop(None);
    }
    after.saturating_sub(before) as f64 / n as f64
}
