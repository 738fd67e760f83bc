//! Assembles the node's incident pipeline: the repository and live feed, the webhook tokens,
//! the incidents supervisor's arguments, and the scheduler's periodic jobs.

use std::sync::Arc;
use std::time::Duration;

use aurora_actors::incidents::correlator::{CorrelationConfig, CorrelatorShared};
use aurora_actors::incidents::incident_run::RunShared;
use aurora_actors::knowledge::KnowledgeBase;
use aurora_actors::tools::cloud_exec::CloudExec;
use aurora_config::Config;
use aurora_storage::incidents::webhooks::Webhooks;
use aurora_storage::incidents::Incidents;
use aurora_storage::scheduler::Schedule;
use aurora_storage::secrets::SecretStore;
use aurora_storage::sessions::Sessions;
use aurora_storage::Db;
use aurora_supervisors::incidents::{IncidentsArgs, LocalSessions};
use aurora_supervisors::scheduler::{Job, JobFn, SchedulerArgs};
use aurora_supervisors::{Placement, SessionsHandle};
use tokio::sync::watch;

pub(crate) struct IncidentParts {
    pub incidents: Incidents,
    pub webhooks: Webhooks,
    pub supervisor: IncidentsArgs,
    pub scheduler: SchedulerArgs,
}

/// What the pipeline is built from.
pub(crate) struct Inputs<'a> {
    pub config: &'a Config,
    pub db: &'a Db,
    pub secrets: &'a SecretStore,
    pub knowledge: Option<&'a Arc<KnowledgeBase>>,
    /// The sessions supervisor, when the node has an LLM provider (analyses run there).
    pub sessions: Option<SessionsHandle>,
    pub placement: watch::Receiver<Placement>,
    pub node: &'a str,
    pub cloud_exec: CloudExec,
    /// The incident repository the turns' `incident_lookup` tool also uses.
    pub incidents: Incidents,
}

pub(crate) fn parts(i: Inputs<'_>) -> anyhow::Result<IncidentParts> {
    let cfg = &i.config.incidents;
    let incidents = i.incidents.clone();
    let runs = i.sessions.clone().map(|handle| RunShared {
        incidents: incidents.clone(),
        sessions: Sessions::new(i.db.clone()),
        router: Arc::new(LocalSessions(handle)),
        node: i.node.to_string(),
        model: cfg.rca_model.clone(),
    });
    let supervisor = IncidentsArgs {
        incidents: incidents.clone(),
        node: i.node.to_string(),
        correlators: CorrelatorShared {
            incidents: incidents.clone(),
            embeddings: i.knowledge.map(|kb| kb.embeddings.clone()),
            // The service graph is not built yet: alerts match on their own fields and text.
            topology: None,
            config: CorrelationConfig {
                window: Duration::from_secs(cfg.correlation_window_secs),
                similarity: cfg.correlation_similarity,
                resolve_when_clear: cfg.auto_resolve,
                max_queued: cfg.rca_max_queued_per_org,
            },
            on_opened: Arc::new(|| {}),
        },
        runs,
        placement: i.placement.clone(),
        node_limit: cfg.rca_max_per_node,
        org_limit: cfg.rca_max_per_org,
        tick: Duration::from_millis(cfg.tick_ms),
    };
    let schedule = Schedule::new(i.db.clone());
    let jobs = jobs(&i, &incidents, &schedule)?;
    Ok(IncidentParts {
        webhooks: Webhooks::new(i.db.clone(), i.secrets.clone()),
        incidents,
        supervisor,
        scheduler: SchedulerArgs {
            node: i.node.to_string(),
            schedule,
            jobs,
        },
    })
}

fn job<F, Fut>(f: F) -> JobFn
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

fn jobs(i: &Inputs<'_>, incidents: &Incidents, schedule: &Schedule) -> anyhow::Result<Vec<Job>> {
    let cfg = &i.config.incidents;
    let mut jobs = Vec::new();
    let stale = chrono::Duration::seconds(cfg.rca_stale_secs as i64);
    let inc = incidents.clone();
    jobs.push(
        Job::new(
            "stale_runs",
            &cfg.cron_stale_runs,
            job(move || {
                let inc = inc.clone();
                async move {
                    let n = inc
                        .requeue_stale(Some(stale), &[])
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(format!("{n} analyses queued again"))
                }
            }),
        )
        .map_err(anyhow::Error::msg)?,
    );
    let kb = i.knowledge.cloned();
    let stuck = Duration::from_secs(i.config.kb.stuck_secs);
    jobs.push(
        Job::new(
            "stale_uploads",
            &cfg.cron_stale_uploads,
            job(move || {
                let kb = kb.clone();
                async move {
                    let Some(kb) = kb else {
                        return Ok("no knowledge base on this node".into());
                    };
                    let failed = kb
                        .knowledge
                        .fail_stuck(stuck)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(format!("{} stuck documents failed", failed.len()))
                }
            }),
        )
        .map_err(anyhow::Error::msg)?,
    );
    let exec = i.cloud_exec.clone();
    let idle = Duration::from_secs(cfg.sandbox_idle_secs);
    jobs.push(
        Job::new(
            "idle_sandboxes",
            &cfg.cron_idle_sandboxes,
            job(move || {
                let exec = exec.clone();
                async move {
                    let n = exec.prune_idle(idle).await?;
                    Ok(format!("{n} idle session directories removed"))
                }
            }),
        )
        .map_err(anyhow::Error::msg)?
        .per_node(),
    );
    let (sched, inc) = (schedule.clone(), incidents.clone());
    let retention = chrono::Duration::days(cfg.feed_retention_days as i64);
    jobs.push(Job::new(
        "expired_tokens",
        &cfg.cron_expired_tokens,
        job(move || {
            let (sched, inc) = (sched.clone(), inc.clone());
            async move {
                let now = chrono::Utc::now();
                let (tokens, invitations) = sched
                    .purge_expired(now - chrono::Duration::days(1))
                    .await
                    .map_err(|e| e.to_string())?;
                let events = inc
                    .purge_events(now - retention)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "{tokens} expired tokens, {invitations} spent invitations, {events} old feed events deleted"
                ))
            }
        }),
    ).map_err(anyhow::Error::msg)?);
    Ok(jobs)
}
