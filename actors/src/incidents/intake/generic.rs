//! Our own generic format, for senders that are none of the vendors (documented on the
//! module [`super`]): one alert object, or `{"alerts": [...]}`. Strict where the vendors are
//! lenient, since whoever sends it reads our documentation: an unknown `status` or `severity`,
//! an unparsable `started_at` or an empty `title` is refused rather than guessed.
//!
//! raw: the whole body for a single alert, the element of `alerts` for a batch.

use std::collections::BTreeMap;

use aurora_storage::incidents::{AlertStatus, NewAlert, Severity, Source};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{
    bound_labels, check_count, cut, description, given_fingerprint, hashed_fingerprint, invalid,
    non_empty, null_default, service_from_labels, status_word, title, typed, IntakeError,
};

#[derive(Deserialize)]
struct Batch {
    alerts: Vec<Value>,
}

#[derive(Deserialize)]
struct Alert {
    title: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    started_at: Option<String>,
}

pub(super) fn parse(
    value: Value,
    received_at: DateTime<Utc>,
) -> Result<Vec<NewAlert>, IntakeError> {
    if value.get("alerts").is_none() {
        return Ok(vec![normalize(value, "generic alert", received_at)?]);
    }
    let batch: Batch = typed(&value, "generic webhook")?;
    check_count(batch.alerts.len())?;
    batch
        .alerts
        .into_iter()
        .enumerate()
        .map(|(i, raw)| normalize(raw, &format!("alerts[{i}]"), received_at))
        .collect()
}

fn normalize(raw: Value, what: &str, received_at: DateTime<Utc>) -> Result<NewAlert, IntakeError> {
    let a: Alert = typed(&raw, what)?;
    let title = title(&a.title);
    if title.is_empty() {
        return Err(invalid(format!("{what}: `title` is empty")));
    }
    let status = match a.status.as_deref() {
        None => AlertStatus::Firing,
        Some(s) => status_word(s).ok_or_else(|| {
            invalid(format!(
                "{what}: `status` must be \"firing\" or \"resolved\""
            ))
        })?,
    };
    let severity = match a.severity.as_deref() {
        None => Severity::Medium,
        Some(s) => Severity::parse(&s.trim().to_ascii_lowercase()).ok_or_else(|| {
            invalid(format!(
                "{what}: `severity` must be info, low, medium, high or critical"
            ))
        })?,
    };
    let started_at = match a.started_at.as_deref() {
        None => received_at,
        Some(s) => DateTime::parse_from_rfc3339(s.trim())
            .map_err(|_| invalid(format!("{what}: `started_at` is not an RFC 3339 time")))?
            .with_timezone(&Utc),
    };
    let service = non_empty(a.service.as_deref())
        .map(|s| cut(&s, 1024))
        .or_else(|| service_from_labels(&a.labels));
    let group = non_empty(a.group.as_deref()).map(|g| cut(&g, 256));
    let fingerprint = given_fingerprint(a.fingerprint.as_deref()).unwrap_or_else(|| {
        let identity = [
            ("\0title", Some(title.as_str())),
            ("\0service", service.as_deref()),
            ("\0group", group.as_deref()),
        ];
        let identity = identity.into_iter().filter_map(|(k, v)| Some((k, v?)));
        hashed_fingerprint(identity.chain(a.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    });
    Ok(NewAlert {
        source: Source::Generic,
        fingerprint,
        group,
        status,
        title,
        description: description(a.description.as_deref().unwrap_or_default()),
        severity,
        service,
        labels: bound_labels(a.labels),
        started_at: Some(started_at),
        raw,
    })
}
