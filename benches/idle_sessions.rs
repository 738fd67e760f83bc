//! Memory per idle session. N sessions are started through the sessions supervisor, exactly as
//! the WebSocket edge starts them, and left idle, in two ways:
//!
//! 1. hibernating (as the node runs them): each idle session's actor stops after
//!    `HIBERNATE_MS` and its state waits in the supervisor as a record; sessions start in waves
//!    of `WAVE` (1000), each hibernating before the next starts;
//! 2. awake: hibernation off, every idle session keeps its `SessionActor`;
//!
//! then N bare ractor actors (no state, no messages) show the framework's own cost.
//! Each figure is the growth of the heap (every byte allocated and not freed, counted by this
//! bench's allocator, mimalloc as the node's underneath) and of the process's resident memory,
//! divided by N. Includes the supervisor's bookkeeping for each session.
//!
//!   cargo bench --bench idle_sessions                      # N = 20000
//!   SESSIONS=50000 cargo bench --bench idle_sessions

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use aurora_actors::metrics::HIBERNATED_SESSIONS;
use aurora_actors::session::SessionMsg;
use aurora_supervisors::sessions::{SessionsMsg, SessionsSupervisor};
use ractor::{Actor, ActorRef};
use tokio::sync::mpsc;
use uuid::Uuid;

/// mimalloc (the node's allocator), counting the bytes in use.
struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap bytes in use and resident bytes, now.
fn usage() -> (isize, u64) {
    (HEAP.load(Ordering::Relaxed), common::rss_bytes())
}

fn report(what: &str, n: usize, before: (isize, u64), after: (isize, u64)) {
    let heap = (after.0 - before.0) as f64 / n as f64;
    let rss = after.1.saturating_sub(before.1) as f64 / n as f64;
    println!(
        "{what}: heap {heap:.0} bytes each ({:.2} KiB); rss {:.1} MiB -> {:.1} MiB, {rss:.0} bytes each ({:.2} KiB)",
        heap / 1024.0,
        before.1 as f64 / 1048576.0,
        after.1 as f64 / 1048576.0,
        rss / 1024.0
    );
}

/// Starts `n` sessions: one `Attach` each, from one client channel, as one connection
/// attached to many sessions.
fn start(sup: &ActorRef<SessionsMsg>, n: usize, who: &common::Bench) {
    let (client, _) = mpsc::channel(1);
    for _ in 0..n {
        let msg = SessionMsg::Attach(client.clone());
        sup.cast(SessionsMsg::Route {
            session_id: Uuid::now_v7(),
            who: who.who.clone(),
            msg,
        })
        .expect("supervisor alive");
    }
}

/// Live session actors (a status walk visits every one, so every start before it is done).
async fn live(sup: &ActorRef<SessionsMsg>) -> usize {
    ractor::call_t!(sup, SessionsMsg::Status, 120_000)
        .expect("status")
        .children
        .len()
}

/// Waits until every one of `total` sessions hibernates.
async fn all_hibernated(sup: &ActorRef<SessionsMsg>, total: usize) {
    loop {
        if live(sup).await == 0 && HIBERNATED_SESSIONS.get() as usize == total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() -> anyhow::Result<()> {
    // Built and listed as a test target too (`--all-targets`): run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    // Each way in a fresh process, so that no figure reuses memory another one freed.
    let Ok(phase) = std::env::var("PHASE") else {
        for phase in ["hibernated", "awake", "bare"] {
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg("--bench")
                .env("PHASE", phase)
                .status()?;
            anyhow::ensure!(status.success(), "phase {phase} failed");
        }
        return Ok(());
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(&phase))
}

async fn run(phase: &str) -> anyhow::Result<()> {
    let n = common::env_usize("SESSIONS", 20_000);
    let hibernate_ms = common::env_usize("HIBERNATE_MS", 300) as u64;
    let wave = common::env_usize("WAVE", 1000).max(1);
    let bench = common::Bench::start().await?;
    let warm = (n / 10).min(wave);
    match phase {
        // 1. Hibernating, as on the node.
        "hibernated" => {
            let mut args = bench.sessions_args();
            args.hibernate_after = Duration::from_millis(hibernate_ms);
            let (sup, _) = Actor::spawn(None, SessionsSupervisor, args).await?;
            // Warm the allocator, the runtime and the supervisor's maps with a first batch.
            start(&sup, warm, &bench);
            all_hibernated(&sup, warm).await;
            let before = usage();
            // In waves, as sessions go idle on a node over time: at most `wave` actors exist
            // at once (the memory of the stopped ones is reused by the next, not all returned
            // to the system).
            let mut started = 0;
            while started < n {
                let k = wave.min(n - started);
                start(&sup, k, &bench);
                started += k;
                all_hibernated(&sup, warm + started).await;
            }
            report(
                &format!("{n} idle sessions, hibernated"),
                n,
                before,
                usage(),
            );
            sup.stop_and_wait(None, None).await?;
        }
        // 2. Awake: every idle session keeps its actor.
        "awake" => {
            let (sup, _) = Actor::spawn(None, SessionsSupervisor, bench.sessions_args()).await?;
            start(&sup, warm, &bench);
            assert_eq!(live(&sup).await, warm);
            let before = usage();
            start(&sup, n, &bench);
            assert_eq!(live(&sup).await, warm + n, "every session is live");
            report(
                &format!("{n} idle sessions, awake (one actor each)"),
                n,
                before,
                usage(),
            );
            sup.stop_and_wait(None, None).await?;
        }
        // 3. ractor's own floor.
        "bare" => {
            let before = usage();
            let mut actors = Vec::with_capacity(n);
            for _ in 0..n {
                actors.push(Actor::spawn(None, Bare, ()).await?.0);
            }
            report(
                &format!("{n} bare ractor actors (no state)"),
                n,
                before,
                usage(),
            );
            for a in &actors {
                a.stop(None);
            }
        }
        other => anyhow::bail!("unknown PHASE {other}"),
    }
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
