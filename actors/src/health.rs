//! `HealthActor`: probes the node's dependencies on a fixed interval and publishes the latest
//! report on a watch channel. `/health` reads the channel instead of probing per request, so a
//! load balancer polling hard cannot turn health checks into database load, and the answer is
//! never older than one interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_storage::redis::RedisPool;
use aurora_storage::secrets::SecretStore;
use aurora_storage::Db;
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::watch;

use crate::ActorSnapshot;

/// How long one dependency may take to answer before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The state of one dependency at the last probe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DependencyStatus {
    /// `up` or `down`.
    pub status: &'static str,
    /// A critical dependency being down makes the node unready (HTTP 503).
    pub critical: bool,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The latest health of the node's dependencies.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthReport {
    /// `ok`, `unavailable` (a critical dependency is down) or `starting` (not probed yet).
    pub status: &'static str,
    pub checked_at: Option<DateTime<Utc>>,
    pub dependencies: BTreeMap<&'static str, DependencyStatus>,
}

impl HealthReport {
    pub fn starting() -> HealthReport {
        HealthReport {
            status: "starting",
            checked_at: None,
            dependencies: BTreeMap::new(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

pub struct HealthArgs {
    pub db: Db,
    pub redis: Option<RedisPool>,
    /// The secret store: critical when it is Vault (a service that can go away), reported but
    /// not critical when it is the node's own sealed file.
    pub secrets: Option<SecretStore>,
    pub interval: Duration,
    pub publish: Arc<watch::Sender<HealthReport>>,
}

pub enum HealthMsg {
    /// Probe every dependency now and publish the result.
    Probe,
    Status(RpcReplyPort<ActorSnapshot>),
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for HealthMsg {}

pub struct HealthState {
    args: HealthArgs,
    started_at: DateTime<Utc>,
    probes: u64,
}

pub struct HealthActor;

impl Actor for HealthActor {
    type Msg = HealthMsg;
    type State = HealthState;
    type Arguments = HealthArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HealthMsg>,
        args: HealthArgs,
    ) -> Result<HealthState, ActorProcessingErr> {
        // The first probe is queued rather than awaited so a dependency that hangs cannot delay
        // the node's start; until it reports, `/health` says `starting`.
        myself.send_message(HealthMsg::Probe)?;
        myself.send_interval(args.interval, || HealthMsg::Probe);
        Ok(HealthState {
            args,
            started_at: Utc::now(),
            probes: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<HealthMsg>,
        msg: HealthMsg,
        state: &mut HealthState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HealthMsg::Probe => probe(state).await,
            HealthMsg::Status(reply) => {
                let report = state.args.publish.borrow().clone();
                let _ = reply.send(ActorSnapshot {
                    kind: "health".into(),
                    id: "health".into(),
                    state: report.status.into(),
                    // Its only messages are its own probe timer and status calls.
                    mailbox: 0,
                    restarts: 0,
                    started_at: state.started_at,
                    owner: None,
                    children: vec![],
                });
            }
        }
        Ok(())
    }
}

async fn probe(state: &mut HealthState) {
    let mut deps = BTreeMap::new();
    let db = state.args.db.clone();
    deps.insert(
        "database",
        check(
            true,
            async move { db.ping().await.map_err(|e| e.to_string()) },
        )
        .await,
    );
    if let Some(redis) = state.args.redis.clone() {
        deps.insert(
            "redis",
            check(true, async move {
                redis.ping().await.map_err(|e| e.to_string())
            })
            .await,
        );
    }
    if let Some(store) = state.args.secrets.clone() {
        deps.insert(
            "secret_store",
            check(store.is_critical(), async move {
                store.health().await.map_err(|e| e.to_string())
            })
            .await,
        );
    }
    let all_critical_up = deps.values().all(|d| !d.critical || d.status == "up");
    let report = HealthReport {
        status: if all_critical_up { "ok" } else { "unavailable" },
        checked_at: Some(Utc::now()),
        dependencies: deps,
    };
    let changed = state.args.publish.borrow().status != report.status;
    if changed || state.probes == 0 {
        tracing::info!(status = report.status, "dependency health");
    }
    for (name, dep) in &report.dependencies {
        if dep.status != "up" {
            tracing::warn!(
                dependency = name,
                error = dep.error.as_deref().unwrap_or(""),
                "dependency down"
            );
        }
    }
    state.probes += 1;
    state.args.publish.send_replace(report);
}

async fn check(
    critical: bool,
    fut: impl std::future::Future<Output = Result<(), String>>,
) -> DependencyStatus {
    let start = Instant::now();
    let result = match tokio::time::timeout(PROBE_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(()) => DependencyStatus {
            status: "up",
            critical,
            latency_ms,
            error: None,
        },
        Err(e) => DependencyStatus {
            status: "down",
            critical,
            latency_ms,
            error: Some(e),
        },
    }
}
