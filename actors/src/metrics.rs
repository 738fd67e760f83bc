//! The node's Prometheus counters that are events rather than state: turns, tool calls, open
//! WebSockets. Actor counts, mailbox depths and restarts come from the actor tree at scrape time
//! (the HTTP edge's `/metrics` registers these beside them, labelled with the node).

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGauge, Opts};

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
