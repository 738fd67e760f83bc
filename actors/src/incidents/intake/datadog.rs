//! Datadog Webhooks integration. The payload is a template the user writes with `$VARIABLES`,
//! so every field is optional, may arrive as a string or a number, and an unused variable
//! renders empty (read as absent). Field names read: the default template's `id`, `title`,
//! `body`, `date`, `last_updated`, `event_type`, plus `alert_id`, `alert_title`,
//! `alert_transition`, `alert_type`, `alert_priority`/`priority`, `alert_scope`, `tags`,
//! `aggreg_key`/`aggregation_key`/`aggregate`, `hostname`, `alert_metric`, `text_only_msg`.
//!
//! - status: `alert_transition` Recovered -> resolved, any other (but empty/Null) -> firing;
//!   else `alert_type` success -> resolved, other -> firing; else the title's `[Recovered]` /
//!   `[Triggered]`-style prefix. A `[TEST]` title, or no state at all, carries no alert: empty.
//! - severity: P1 critical, P2 high, P3 medium, P4 low, P5 info (`alert_priority`, then
//!   `priority`: `$PRIORITY`'s normal/low is an event priority and ignored, then a `[P1]`
//!   title tag); else a `severity:` tag; else `alert_type` error -> high, warning -> medium,
//!   info -> info; else medium.
//! - fingerprint: `alert_id:<sorted alert_scope>`, else `alert_id:<aggregation key>`, else
//!   `alert_id`, else the aggregation key, else the event `id` (one of them is required).
//! - group: `alert_id` (the monitor); labels: the tags and scope (`key:value`) plus
//!   monitor_id, host, alert_transition, alert_type, priority, metric, event_type; service:
//!   from those labels (a `service:` tag). started_at: `date`, else `last_updated` (epoch
//!   s/ms or RFC 3339). raw: the whole body.

use std::collections::BTreeMap;

use aurora_storage::incidents::{AlertStatus, NewAlert, Severity, Source};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{
    bound_labels, cut, description, given_fingerprint, invalid, label, service_from_labels,
    severity_word, title, typed, vendor_time, IntakeError,
};

/// Every field optional: the template decides which are there.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Payload {
    id: Flex,
    alert_id: Flex,
    title: Flex,
    alert_title: Flex,
    body: Flex,
    text_only_msg: Flex,
    alert_status: Flex,
    alert_transition: Flex,
    alert_type: Flex,
    alert_priority: Flex,
    priority: Flex,
    event_type: Flex,
    hostname: Flex,
    alert_metric: Flex,
    date: Flex,
    last_updated: Flex,
    aggreg_key: Flex,
    aggregation_key: Flex,
    aggregate: Flex,
    tags: Tags,
    alert_scope: Tags,
}

pub(super) fn parse(
    value: Value,
    received_at: DateTime<Utc>,
) -> Result<Vec<NewAlert>, IntakeError> {
    let p: Payload = typed(&value, "Datadog webhook")?;
    let fingerprint = fingerprint(&p)?;
    let raw_title = p.title.get().or(p.alert_title.get()).unwrap_or_default();
    let (prefixes, bare_title) = split_prefixes(raw_title);
    if prefixes.iter().any(|t| t.eq_ignore_ascii_case("test")) {
        return Ok(Vec::new());
    }
    let Some(status) = status(&p, &prefixes) else {
        return Ok(Vec::new());
    };
    let labels = labels(&p);
    let severity = [p.alert_priority.get(), p.priority.get()]
        .into_iter()
        .flatten()
        .chain(prefixes.iter().copied())
        .find_map(p_level)
        .or_else(|| label(&labels, "severity").and_then(severity_word))
        .or_else(|| p.alert_type.get().and_then(severity_word))
        .unwrap_or(Severity::Medium);
    let title = match (bare_title.trim(), p.alert_id.get()) {
        ("", Some(id)) => title(&format!("Datadog monitor {id}")),
        ("", None) => "Datadog alert".to_owned(),
        (t, _) => title(t),
    };
    let text = p
        .body
        .get()
        .or(p.text_only_msg.get())
        .or(p.alert_status.get());
    let started_at = [p.date.get(), p.last_updated.get()]
        .into_iter()
        .flatten()
        .find_map(epoch_or_rfc3339);
    Ok(vec![NewAlert {
        source: Source::Datadog,
        fingerprint,
        group: p.alert_id.get().map(|id| cut(id, 256)),
        status,
        title,
        description: description(markdown_body(text.unwrap_or_default())),
        severity,
        service: service_from_labels(&labels),
        labels: bound_labels(labels),
        started_at: started_at.or(Some(received_at)),
        raw: value,
    }])
}

fn fingerprint(p: &Payload) -> Result<String, IntakeError> {
    let aggregate = p
        .aggreg_key
        .get()
        .or(p.aggregation_key.get())
        .or(p.aggregate.get());
    let mut scope: Vec<&str> = p.alert_scope.0.iter().map(String::as_str).collect();
    scope.sort_unstable();
    let scope = scope.join(",");
    let fingerprint = match (p.alert_id.get(), aggregate) {
        (Some(id), _) if !scope.is_empty() => format!("{id}:{scope}"),
        (Some(id), Some(agg)) => format!("{id}:{agg}"),
        (Some(id), None) => id.to_owned(),
        (None, Some(agg)) => agg.to_owned(),
        (None, None) => p.id.get().map(str::to_owned).ok_or_else(|| {
            invalid("Datadog webhook: none of `alert_id`, `aggreg_key`, `id` is set")
        })?,
    };
    Ok(given_fingerprint(Some(&fingerprint)).unwrap_or(fingerprint))
}

/// The tags and scope as `key:value` labels (the first value of a key wins), then the
/// notification's own fields where no tag of that name exists.
fn labels(p: &Payload) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for tag in p.tags.0.iter().chain(&p.alert_scope.0) {
        let (k, v) = tag.split_once(':').unwrap_or((tag, ""));
        labels
            .entry(k.trim().to_owned())
            .or_insert_with(|| v.trim().to_owned());
    }
    for (k, v) in [
        ("monitor_id", p.alert_id.get()),
        ("host", p.hostname.get()),
        ("alert_transition", p.alert_transition.get()),
        ("alert_type", p.alert_type.get()),
        ("priority", p.alert_priority.get().or(p.priority.get())),
        ("metric", p.alert_metric.get()),
        ("event_type", p.event_type.get()),
    ] {
        if let Some(v) = v {
            labels.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
    }
    labels
}

/// `$EVENT_MSG` wraps its markdown in `%%%` lines.
fn markdown_body(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix("%%%").unwrap_or(s);
    s.strip_suffix("%%%").unwrap_or(s)
}

/// The alert state, or None when the notification carries none (see the module doc).
fn status(p: &Payload, title_tags: &[&str]) -> Option<AlertStatus> {
    let word = |f: &Flex| f.get().map(str::to_ascii_lowercase).filter(|s| s != "null");
    let (resolved, firing) = (AlertStatus::Resolved, AlertStatus::Firing);
    if let Some(t) = word(&p.alert_transition) {
        return Some(if t == "recovered" { resolved } else { firing });
    }
    if let Some(t) = word(&p.alert_type) {
        return Some(if t == "success" { resolved } else { firing });
    }
    title_tags.iter().find_map(|tag| tag_state(tag))
}

/// The state a title tag names: `[Recovered...]`, `[Triggered on {host:a}]`, `[Warn]`...
fn tag_state(tag: &str) -> Option<AlertStatus> {
    let tag = tag.trim().to_ascii_lowercase();
    if tag.starts_with("recovered") {
        return Some(AlertStatus::Resolved);
    }
    const FIRING: [&str; 7] = [
        "triggered",
        "re-triggered",
        "warn",
        "re-warn",
        "no data",
        "re-no data",
        "renotify",
    ];
    FIRING
        .iter()
        .any(|w| tag.starts_with(w))
        .then_some(AlertStatus::Firing)
}

/// Splits the leading state, `[TEST]` and `[P1]` tags off a title; other brackets
/// (`[Memory Alert]`, part of a monitor's own name) stay.
fn split_prefixes(title: &str) -> (Vec<&str>, &str) {
    let mut rest = title.trim_start();
    let mut tags = Vec::new();
    while let Some((tag, after)) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        let tag = tag.trim();
        let known =
            tag.eq_ignore_ascii_case("test") || tag_state(tag).is_some() || p_level(tag).is_some();
        if !known || tags.len() >= 4 {
            break;
        }
        tags.push(tag);
        rest = after.trim_start();
    }
    (tags, rest)
}

/// A monitor priority `P1`..`P5` (or a bare digit) as a severity.
fn p_level(s: &str) -> Option<Severity> {
    let s = s.trim();
    let digits = s.strip_prefix(['p', 'P']).unwrap_or(s);
    Some(match digits {
        "0" | "1" => Severity::Critical,
        "2" => Severity::High,
        "3" => Severity::Medium,
        "4" => Severity::Low,
        "5" => Severity::Info,
        _ => return None,
    })
}

/// `$DATE` is epoch milliseconds; also accepts seconds and RFC 3339. Zero is no time.
fn epoch_or_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    match s.parse::<i64>() {
        Ok(n) if n > 100_000_000_000 => DateTime::from_timestamp_millis(n),
        Ok(n) if n > 0 => DateTime::from_timestamp(n, 0),
        Ok(_) => None,
        Err(_) => vendor_time(Some(s)),
    }
}

/// A string, number or bool as trimmed text; null or empty as absent.
#[derive(Default)]
struct Flex(Option<String>);

impl Flex {
    fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de> Deserialize<'de> for Flex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Flex(match Value::deserialize(d)? {
            Value::Null => None,
            Value::String(s) => super::non_empty(Some(&s)),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => return Err(serde::de::Error::custom("expected a string or a number")),
        }))
    }
}

/// Tags: a comma-separated string (`$TAGS`, `$ALERT_SCOPE`) or an array of strings.
#[derive(Default)]
struct Tags(Vec<String>);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items: Vec<String> = match Value::deserialize(d)? {
            Value::Null => Vec::new(),
            Value::String(s) => s.split(',').map(str::to_owned).collect(),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(serde::de::Error::custom("expected an array of strings")),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(serde::de::Error::custom(
                    "expected a comma-separated string",
                ))
            }
        };
        let items = items.into_iter().map(|s| s.trim().to_owned());
        Ok(Tags(items.filter(|s| !s.is_empty()).collect()))
    }
}
