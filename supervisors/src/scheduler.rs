//! `Scheduler`: the node's periodic jobs, each with a cron expression. Every node runs a
//! scheduler, and each computes the same fire times; a job runs for a fire time only on the
//! node whose claim of it in storage succeeds ([`aurora_storage::scheduler::Schedule`]), so it
//! runs once per period across the cluster. A fire time missed while no node was up is not
//! made up: the next one runs.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_actors::metrics::{SCHEDULER_LAST, SCHEDULER_RUNS};
use aurora_actors::ActorSnapshot;
use aurora_storage::scheduler::Schedule;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// A job's work: `Ok` with what it did, or why it failed.
pub type JobFn = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

#[derive(Clone)]
pub struct Job {
    pub name: String,
    pub schedule: cron::Schedule,
    pub run: JobFn,
    /// Runs on every node (it tends to the node's own disk), not once per cluster.
    pub per_node: bool,
}

impl Job {
    /// A job from its cron expression (seconds first: `0 */5 * * * *` is every 5 minutes).
    pub fn new(name: &str, cron: &str, run: JobFn) -> Result<Job, String> {
        let schedule = cron::Schedule::from_str(cron)
            .map_err(|e| format!("{name}: invalid cron expression {cron:?}: {e}"))?;
        Ok(Job {
            name: name.into(),
            schedule,
            run,
            per_node: false,
        })
    }

    /// This job runs on every node, each for itself.
    pub fn per_node(mut self) -> Job {
        self.per_node = true;
        self
    }
}

#[derive(Clone)]
pub struct SchedulerArgs {
    pub node: String,
    pub schedule: Schedule,
    pub jobs: Vec<Job>,
}

pub enum SchedulerMsg {
    /// Check for due jobs (sent to self every second).
    Tick,
    /// A job run here ended.
    Finished {
        name: String,
        period: i64,
        outcome: &'static str,
        detail: String,
        duration: Duration,
    },
    Status(RpcReplyPort<ActorSnapshot>),
}

impl ractor::Message for SchedulerMsg {}

/// What this node knows of a job.
struct JobState {
    job: Job,
    /// The next fire time to claim.
    next: Option<DateTime<Utc>>,
    running: bool,
    last: Option<(DateTime<Utc>, &'static str, String, Duration)>,
}

pub struct SchedulerState {
    args: SchedulerArgs,
    started_at: DateTime<Utc>,
    jobs: HashMap<String, JobState>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

pub struct Scheduler;

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SchedulerMsg>,
        args: SchedulerArgs,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        let now = Utc::now();
        let jobs = args
            .jobs
            .iter()
            .map(|j| {
                let next = j.schedule.after(&now).next();
                (
                    j.name.clone(),
                    JobState {
                        job: j.clone(),
                        next,
                        running: false,
                        last: None,
                    },
                )
            })
            .collect();
        let ticker = myself.send_interval(Duration::from_millis(500), || SchedulerMsg::Tick);
        Ok(SchedulerState {
            args,
            started_at: now,
            jobs,
            ticker: Some(ticker),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SchedulerMsg>,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.ticker.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Tick => {
                let now = Utc::now();
                for js in state.jobs.values_mut() {
                    let Some(due) = js.next.filter(|t| *t <= now) else {
                        continue;
                    };
                    js.next = js.job.schedule.after(&now).next();
                    if js.running {
                        // The last run here has not ended: this period is skipped here (another
                        // node may claim it).
                        continue;
                    }
                    let period = due.timestamp();
                    let claimed = if js.job.per_node {
                        Ok(true)
                    } else {
                        state
                            .args
                            .schedule
                            .claim(&js.job.name, period, &state.args.node)
                            .await
                    };
                    match claimed {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(job = %js.job.name, error = %e, "cannot claim a job run");
                            continue;
                        }
                    }
                    js.running = true;
                    let (job, me, schedule) =
                        (js.job.clone(), myself.clone(), state.args.schedule.clone());
                    tokio::spawn(async move {
                        let started = Instant::now();
                        // A panicking job is a failed run, not a job stuck "running" forever.
                        let result = std::panic::AssertUnwindSafe((job.run)())
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| Err("the job panicked".into()));
                        let duration = started.elapsed();
                        let (outcome, detail) = match result {
                            Ok(d) => ("ok", d),
                            Err(e) => ("failed", e),
                        };
                        if job.per_node {
                            // Nothing cluster-wide to record.
                        } else if let Err(e) = schedule
                            .finish(
                                &job.name,
                                period,
                                outcome,
                                &detail,
                                duration.as_millis() as i64,
                            )
                            .await
                        {
                            tracing::warn!(job = %job.name, error = %e, "cannot record a job run");
                        }
                        let _ = me.cast(SchedulerMsg::Finished {
                            name: job.name.clone(),
                            period,
                            outcome,
                            detail,
                            duration,
                        });
                    });
                }
            }
            SchedulerMsg::Finished {
                name,
                period,
                outcome,
                detail,
                duration,
            } => {
                SCHEDULER_RUNS
                    .with_label_values(&[name.as_str(), outcome])
                    .inc();
                SCHEDULER_LAST
                    .with_label_values(&[name.as_str(), "end"])
                    .set(Utc::now().timestamp() as f64);
                SCHEDULER_LAST
                    .with_label_values(&[name.as_str(), "seconds"])
                    .set(duration.as_secs_f64());
                if outcome == "failed" {
                    tracing::warn!(job = %name, period, detail = %detail, "periodic job failed");
                } else {
                    tracing::info!(job = %name, period, detail = %detail, ms = duration.as_millis() as u64, "periodic job ran");
                }
                if let Some(js) = state.jobs.get_mut(&name) {
                    js.running = false;
                    js.last = Some((Utc::now(), outcome, detail, duration));
                }
            }
            SchedulerMsg::Status(reply) => {
                let _ = reply.send(status(state).await);
            }
        }
        Ok(())
    }
}

/// The scheduler and one child per job: its last run anywhere in the cluster (from storage:
/// the node that ran it, its outcome and duration), its next fire time.
async fn status(state: &SchedulerState) -> ActorSnapshot {
    let recorded: HashMap<String, aurora_storage::entities::scheduler_jobs::Model> = state
        .args
        .schedule
        .last_runs()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let mut names: Vec<&String> = state.jobs.keys().collect();
    names.sort();
    let children = names
        .into_iter()
        .map(|name| {
            let js = &state.jobs[name];
            let word = match (js.running, recorded.get(name)) {
                (true, _) => "running".to_string(),
                (false, Some(r)) => format!(
                    "last {} on {} at {} ({} ms): {}; next {}",
                    r.outcome.as_deref().unwrap_or("running"),
                    r.node,
                    r.started_at.to_rfc3339(),
                    r.duration_ms.unwrap_or(0),
                    r.detail.as_deref().unwrap_or(""),
                    js.next.map(|n| n.to_rfc3339()).unwrap_or_default(),
                ),
                (false, None) => format!(
                    "not run yet; next {}",
                    js.next.map(|n| n.to_rfc3339()).unwrap_or_default()
                ),
            };
            ActorSnapshot::new("scheduled_job", name.clone(), &word, state.started_at)
        })
        .collect();
    let mut snap = ActorSnapshot::new("scheduler", "scheduler", "running", state.started_at);
    snap.children = children;
    snap
}
