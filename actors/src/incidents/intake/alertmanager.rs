//! Prometheus Alertmanager webhook (`webhook_config`, payload version 4). Grafana's unified
//! alerting sends the very same alert shape, so [`PromAlert`] and [`normalize_all`] serve both.
//!
//! Per alert:
//! - fingerprint: the alert's `fingerprint` (a hash of its labels, stable across deliveries),
//!   else a sha256 of its labels;
//! - group: label `alertname`, else label `__alert_rule_uid__`, else the Grafana rule uid in
//!   `generatorURL`, else the delivery's `groupKey`;
//! - title: annotation `summary`, else label `alertname`, else the flavour's fallback;
//! - description: annotation `description`, else `message`;
//! - severity: label `severity`, else `priority` (see `severity_word`), else medium;
//! - started_at: `startsAt` (zero time ignored); raw: the element of `alerts` alone.

use std::collections::BTreeMap;

use aurora_storage::incidents::{NewAlert, Source};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{
    bound_labels, check_count, cut, description, given_fingerprint, hashed_fingerprint, invalid,
    label, null_default, service_from_labels, severity_from_labels, status_word, title, typed,
    vendor_time, IntakeError,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    version: String,
    #[serde(default)]
    group_key: Option<String>,
    alerts: Vec<Value>,
}

pub(super) fn parse(
    value: Value,
    received_at: DateTime<Utc>,
) -> Result<Vec<NewAlert>, IntakeError> {
    let delivery: Delivery = typed(&value, "Alertmanager webhook")?;
    if delivery.version != "4" {
        return Err(invalid(
            "unsupported Alertmanager webhook `version`: only \"4\" is accepted",
        ));
    }
    let ctx = Context {
        source: Source::Alertmanager,
        group_key: delivery.group_key.as_deref(),
        fallback_title: "Alertmanager alert",
    };
    normalize_all(&ctx, delivery.alerts, received_at)
}

/// What a delivery lends each of its alerts.
pub(super) struct Context<'a> {
    pub source: Source,
    pub group_key: Option<&'a str>,
    /// Title when the alert has neither `summary` nor `alertname`.
    pub fallback_title: &'a str,
}

/// One element of `alerts`; the fields not needed here stay in `raw`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromAlert {
    status: String,
    #[serde(default, deserialize_with = "null_default")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
}

/// Checks the count first, so an oversized delivery is refused before any alert is read.
pub(super) fn normalize_all(
    ctx: &Context<'_>,
    alerts: Vec<Value>,
    received_at: DateTime<Utc>,
) -> Result<Vec<NewAlert>, IntakeError> {
    check_count(alerts.len())?;
    let alerts = alerts.into_iter().enumerate();
    alerts
        .map(|(i, raw)| normalize(ctx, i, raw, received_at))
        .collect()
}

fn normalize(
    ctx: &Context<'_>,
    i: usize,
    raw: Value,
    received_at: DateTime<Utc>,
) -> Result<NewAlert, IntakeError> {
    let alert: PromAlert = typed(&raw, &format!("alerts[{i}]"))?;
    let status = status_word(&alert.status).ok_or_else(|| {
        invalid(format!(
            "alerts[{i}].status must be \"firing\" or \"resolved\""
        ))
    })?;
    let title = title(
        label(&alert.annotations, "summary")
            .or_else(|| label(&alert.labels, "alertname"))
            .unwrap_or(ctx.fallback_title),
    );
    let fingerprint = given_fingerprint(alert.fingerprint.as_deref()).unwrap_or_else(|| {
        // Labels are the alert's identity; without any, the title is all there is.
        let title_pair = alert.labels.is_empty().then_some(("title", title.as_str()));
        let labels = alert.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        hashed_fingerprint(labels.chain(title_pair))
    });
    let text =
        label(&alert.annotations, "description").or_else(|| label(&alert.annotations, "message"));
    Ok(NewAlert {
        source: ctx.source,
        fingerprint,
        group: group(&alert, ctx),
        status,
        title,
        description: description(text.unwrap_or_default()),
        severity: severity_from_labels(&alert.labels),
        service: service_from_labels(&alert.labels),
        started_at: vendor_time(alert.starts_at.as_deref()).or(Some(received_at)),
        labels: bound_labels(alert.labels),
        raw,
    })
}

fn group(alert: &PromAlert, ctx: &Context<'_>) -> Option<String> {
    label(&alert.labels, "alertname")
        .or_else(|| label(&alert.labels, "__alert_rule_uid__"))
        .or_else(|| alert.generator_url.as_deref().and_then(grafana_rule_uid))
        .or(ctx.group_key)
        .map(|g| cut(g, 256))
        .filter(|g| !g.is_empty())
}

/// The rule uid in a Grafana rule link: `.../alerting/grafana/<uid>/view`.
fn grafana_rule_uid(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("/alerting/grafana/")?;
    let uid = rest.split(['/', '?', '#']).next()?;
    (!uid.is_empty()).then_some(uid)
}
