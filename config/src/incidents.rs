//! The incident pipeline's settings: correlation, background analyses, the live feed, and the
//! periodic jobs' cron expressions (checked here, so a bad one stops start-up).

use std::str::FromStr;

use crate::sources::Sources;
use crate::ConfigError;

#[derive(Clone, Debug)]
pub struct IncidentsConfig {
    /// How long after an incident's last alert a new alert may still join it.
    pub correlation_window_secs: u64,
    /// Least cosine similarity of texts for an alert to join on text alone.
    pub correlation_similarity: f32,
    /// An incident whose alerts are all resolved resolves.
    pub auto_resolve: bool,
    /// Most analyses of one org running at once, cluster-wide; and on one node.
    pub rca_max_per_org: u32,
    pub rca_max_per_node: usize,
    /// Most analyses of one org waiting at once: an incident opened beyond it is not analysed
    /// (it says why; "analyse again" queues it), so an alert storm cannot run up a model bill.
    pub rca_max_queued_per_org: u32,
    /// An analysis whose node has not said it runs it for this long is queued again.
    pub rca_stale_secs: u64,
    /// The model analyses use (default: the node's model).
    pub rca_model: Option<String>,
    /// How often the incidents supervisor heartbeats and looks for waiting work.
    pub tick_ms: u64,
    /// Seconds between SSE heartbeats on a quiet feed.
    pub sse_heartbeat_secs: u64,
    /// Days the feed's events are kept for resuming clients.
    pub feed_retention_days: u64,
    /// A session's sandbox directory untouched this long is removed by the idle-sandbox job.
    pub sandbox_idle_secs: u64,
    /// Cron expressions (seconds first) of the periodic jobs.
    pub cron_stale_runs: String,
    pub cron_stale_uploads: String,
    pub cron_idle_sandboxes: String,
    pub cron_expired_tokens: String,
}

pub(crate) fn incidents_config(src: &Sources) -> Result<IncidentsConfig, ConfigError> {
    let positive = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
        let v: u64 = src.get(key)?.unwrap_or(default);
        if v == 0 {
            return Err(ConfigError::invalid(key, "0", "must be at least 1"));
        }
        Ok(v)
    };
    let cron = |key: &'static str, default: &str| -> Result<String, ConfigError> {
        let v: String = src.get(key)?.unwrap_or_else(|| default.to_string());
        cron::Schedule::from_str(&v).map_err(|e| {
            ConfigError::invalid(
                key,
                &v,
                &format!("not a cron expression (sec min hour day month weekday): {e}"),
            )
        })?;
        Ok(v)
    };
    let similarity: f32 = src.get("AURORA_CORRELATION_SIMILARITY")?.unwrap_or(0.75);
    if !(similarity > 0.0 && similarity <= 1.0) {
        return Err(ConfigError::invalid(
            "AURORA_CORRELATION_SIMILARITY",
            &similarity.to_string(),
            "must be above 0 and at most 1",
        ));
    }
    Ok(IncidentsConfig {
        correlation_window_secs: positive("AURORA_CORRELATION_WINDOW_SECS", 900)?,
        correlation_similarity: similarity,
        auto_resolve: src
            .get_bool("AURORA_INCIDENT_AUTO_RESOLVE")?
            .unwrap_or(true),
        rca_max_per_org: positive("AURORA_RCA_MAX_PER_ORG", 2)? as u32,
        rca_max_per_node: positive("AURORA_RCA_MAX_PER_NODE", 4)? as usize,
        rca_max_queued_per_org: positive("AURORA_RCA_MAX_QUEUED_PER_ORG", 20)? as u32,
        rca_stale_secs: positive("AURORA_RCA_STALE_SECS", 120)?,
        rca_model: src.get("AURORA_RCA_MODEL")?,
        tick_ms: positive("AURORA_INCIDENT_TICK_MS", 2000)?,
        sse_heartbeat_secs: positive("AURORA_SSE_HEARTBEAT_SECS", 15)?,
        feed_retention_days: positive("AURORA_FEED_RETENTION_DAYS", 7)?,
        sandbox_idle_secs: positive("AURORA_SANDBOX_IDLE_SECS", 86_400)?,
        cron_stale_runs: cron("AURORA_CRON_STALE_RUNS", "0 */5 * * * *")?,
        cron_stale_uploads: cron("AURORA_CRON_STALE_UPLOADS", "0 */3 * * * *")?,
        cron_idle_sandboxes: cron("AURORA_CRON_IDLE_SANDBOXES", "0 */10 * * * *")?,
        cron_expired_tokens: cron("AURORA_CRON_EXPIRED_TOKENS", "0 30 3 * * *")?,
    })
}

impl IncidentsConfig {
    pub(crate) fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AURORA_CORRELATION_WINDOW_SECS",
                self.correlation_window_secs.to_string(),
            ),
            (
                "AURORA_CORRELATION_SIMILARITY",
                self.correlation_similarity.to_string(),
            ),
            (
                "AURORA_INCIDENT_AUTO_RESOLVE",
                self.auto_resolve.to_string(),
            ),
            ("AURORA_RCA_MAX_PER_ORG", self.rca_max_per_org.to_string()),
            ("AURORA_RCA_MAX_PER_NODE", self.rca_max_per_node.to_string()),
            (
                "AURORA_RCA_MAX_QUEUED_PER_ORG",
                self.rca_max_queued_per_org.to_string(),
            ),
            ("AURORA_RCA_STALE_SECS", self.rca_stale_secs.to_string()),
            (
                "AURORA_RCA_MODEL",
                self.rca_model.clone().unwrap_or_default(),
            ),
            ("AURORA_INCIDENT_TICK_MS", self.tick_ms.to_string()),
            (
                "AURORA_SSE_HEARTBEAT_SECS",
                self.sse_heartbeat_secs.to_string(),
            ),
            (
                "AURORA_FEED_RETENTION_DAYS",
                self.feed_retention_days.to_string(),
            ),
            (
                "AURORA_SANDBOX_IDLE_SECS",
                self.sandbox_idle_secs.to_string(),
            ),
            ("AURORA_CRON_STALE_RUNS", self.cron_stale_runs.clone()),
            ("AURORA_CRON_STALE_UPLOADS", self.cron_stale_uploads.clone()),
            (
                "AURORA_CRON_IDLE_SANDBOXES",
                self.cron_idle_sandboxes.clone(),
            ),
            (
                "AURORA_CRON_EXPIRED_TOKENS",
                self.cron_expired_tokens.clone(),
            ),
        ]
    }
}
