//! The node's Prometheus counters, kept by the actors as they go: live actors and restarts by
//! kind, turns, tool calls, open WebSockets. `/metrics` reads only these, so a scrape never asks
//! an actor anything (asking every session would stall routing on a busy node); mailbox depths
//! are in the admin console's tree.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};

/// Live actors by kind (`session`, `agent_run`, `tool_execution`, `kb_ingest`).
pub static LIVE_ACTORS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new("aurora_actors", "Live actors, by kind"),
        &["kind"],
    )
    .expect("valid metric")
});

/// Actors restarted after a crash, by kind.
pub static ACTOR_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "aurora_actor_restarts_total",
            "Actors rebuilt after a crash, by kind",
        ),
        &["kind"],
    )
    .expect("valid metric")
});

/// Counts one live actor of a kind for as long as it is held (in the actor's state: dropped
/// when the actor stops, however it stops).
#[derive(Debug)]
pub struct Live(IntGauge);

impl Live {
    pub fn new(kind: &str) -> Live {
        let g = LIVE_ACTORS.with_label_values(&[kind]);
        g.inc();
        Live(g)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Finished turns by how they ended (`completed`, `cancelled`, `failed`).
pub static TURNS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("aurora_turns_total", "Agent turns finished, by outcome"),
        &["outcome"],
    )
    .expect("valid metric")
});

/// Tool calls that ran, by tool and result (`success`, `error`).
pub static TOOL_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "aurora_tool_calls_total",
            "Tool calls executed, by tool and status",
        ),
        &["tool", "status"],
    )
    .expect("valid metric")
});

/// Sessions hibernating now: idle, their actor stopped, their state kept for the next message.
pub static HIBERNATED_SESSIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "aurora_sessions_hibernated",
        "Idle sessions kept as a record without an actor on this node",
    )
    .expect("valid metric")
});

/// WebSocket connections open now.
pub static OPEN_WEBSOCKETS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "aurora_websocket_connections",
        "WebSocket connections open on this node",
    )
    .expect("valid metric")
});

/// Periodic job runs on this node, by job and outcome (a job runs on one node per period).
pub static SCHEDULER_RUNS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "aurora_scheduler_runs_total",
            "Periodic job runs on this node, by job and outcome",
        ),
        &["job", "outcome"],
    )
    .expect("valid metric")
});

/// When each periodic job last ended on this node, and how long it took.
pub static SCHEDULER_LAST: LazyLock<prometheus::GaugeVec> = LazyLock::new(|| {
    prometheus::GaugeVec::new(
        Opts::new(
            "aurora_scheduler_last_run",
            "The last run of each periodic job on this node: end (unix seconds) and duration (seconds)",
        ),
        &["job", "what"],
    )
    .expect("valid metric")
});
