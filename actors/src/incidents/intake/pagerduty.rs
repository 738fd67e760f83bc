//! PagerDuty V3 webhooks (webhook subscriptions): one `event` per delivery, signed with
//! `X-PagerDuty-Signature` (see [`super::verify_pagerduty`]).
//!
//! - `incident.triggered` and `incident.reopened` -> firing; `incident.resolved` -> resolved;
//!   every other event type (acknowledged, annotated, escalated, priority_updated, service.*,
//!   ...) is accepted and carries no alert: an empty Vec. The incident's state changes that
//!   matter to us are the ones that open or close it.
//! - fingerprint: the incident id (`data.id`); group: the service id; service: the service's
//!   `summary` (its name).
//! - severity: the incident priority's `summary` (P1 critical .. P5 info, or any word of the
//!   shared vocabulary such as SEV-1), else urgency high -> high, low -> low, else medium.
//! - started_at: `data.created_at`, else `occurred_at`. raw: the whole body.

use std::collections::BTreeMap;

use aurora_storage::incidents::{AlertStatus, NewAlert, Severity, Source};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{
    bound_labels, cut, description, given_fingerprint, invalid, non_empty, null_default,
    priority_word, title, typed, vendor_time, IntakeError,
};

#[derive(Deserialize)]
struct Delivery {
    event: Event,
}

#[derive(Deserialize)]
struct Event {
    event_type: String,
    #[serde(default)]
    occurred_at: Option<String>,
    /// Its shape depends on `event_type`, so it is only read once that is known.
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct Incident {
    id: String,
    #[serde(default)]
    number: Option<Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    incident_key: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    service: Option<Reference>,
    #[serde(default, deserialize_with = "null_default")]
    assignees: Vec<Reference>,
    #[serde(default)]
    escalation_policy: Option<Reference>,
    #[serde(default, deserialize_with = "null_default")]
    teams: Vec<Reference>,
    #[serde(default)]
    priority: Option<Reference>,
    #[serde(default)]
    urgency: Option<String>,
}

/// `{id, summary, type, self, html_url}`: how PagerDuty points at another object.
#[derive(Deserialize)]
struct Reference {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

pub(super) fn parse(
    value: Value,
    received_at: DateTime<Utc>,
) -> Result<Vec<NewAlert>, IntakeError> {
    let Delivery { event } = typed(&value, "PagerDuty webhook")?;
    let status = match event.event_type.as_str() {
        "incident.triggered" | "incident.reopened" => AlertStatus::Firing,
        "incident.resolved" => AlertStatus::Resolved,
        _ => return Ok(Vec::new()),
    };
    let data = event
        .data
        .as_ref()
        .ok_or_else(|| invalid("PagerDuty webhook: missing field `event.data`"))?;
    let incident: Incident = typed(data, "PagerDuty webhook `event.data`")?;
    let fingerprint = given_fingerprint(Some(&incident.id))
        .ok_or_else(|| invalid("PagerDuty webhook: `event.data.id` is empty"))?;

    let service_id = incident
        .service
        .as_ref()
        .and_then(|s| non_empty(s.id.as_deref()));
    let service_name = incident
        .service
        .as_ref()
        .and_then(|s| non_empty(s.summary.as_deref()));
    let priority = incident
        .priority
        .as_ref()
        .and_then(|p| non_empty(p.summary.as_deref()));
    let urgency = non_empty(incident.urgency.as_deref());
    let severity = priority
        .as_deref()
        .and_then(priority_word)
        .or(match urgency.as_deref() {
            Some("high") => Some(Severity::High),
            Some("low") => Some(Severity::Low),
            _ => None,
        })
        .unwrap_or(Severity::Medium);
    let number = match &incident.number {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => non_empty(Some(s)),
        _ => None,
    };
    let summaries = |refs: &[Reference]| {
        let names: Vec<&str> = refs.iter().filter_map(|r| r.summary.as_deref()).collect();
        (!names.is_empty()).then(|| names.join(", "))
    };
    let assignees = summaries(&incident.assignees);
    let teams = summaries(&incident.teams);
    let policy = incident
        .escalation_policy
        .as_ref()
        .and_then(|p| p.summary.clone());

    let mut labels = BTreeMap::new();
    for (k, v) in [
        ("incident_number", number.clone()),
        ("incident_key", non_empty(incident.incident_key.as_deref())),
        ("urgency", urgency),
        ("priority", priority),
        ("service_id", service_id.clone()),
        ("escalation_policy", policy.clone()),
        ("teams", teams),
    ] {
        if let Some(v) = v {
            labels.insert(k.to_owned(), v);
        }
    }
    let lines = [
        number.map(|n| format!("PagerDuty incident #{n}")),
        non_empty(incident.html_url.as_deref()),
        assignees.map(|a| format!("Assigned to: {a}")),
        policy.map(|p| format!("Escalation policy: {p}")),
    ];
    let text: Vec<String> = lines.into_iter().flatten().collect();
    let started_at = vendor_time(incident.created_at.as_deref())
        .or_else(|| vendor_time(event.occurred_at.as_deref()));
    Ok(vec![NewAlert {
        source: Source::Pagerduty,
        title: match non_empty(incident.title.as_deref()) {
            Some(t) => title(&t),
            None => format!("PagerDuty incident {fingerprint}"),
        },
        fingerprint,
        group: service_id.map(|s| cut(&s, 256)),
        status,
        description: description(&text.join("\n")),
        severity,
        service: service_name.map(|s| cut(&s, 1024)),
        labels: bound_labels(labels),
        started_at: started_at.or(Some(received_at)),
        raw: value,
    }])
}
