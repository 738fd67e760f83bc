//! Alert webhook parsers: one delivery of a vendor's webhook into normalized [`NewAlert`]s.
//!
//! The HTTP edge authenticates the delivery (URL token; for PagerDuty also
//! [`verify_pagerduty`]) and hands the raw body to [`parse`]. Parsing is pure: no I/O, no
//! panics on any input, every problem an [`IntakeError::Invalid`] the edge can answer 400 with.
//!
//! What every flavour normalizes the same way (vendor specifics in each module):
//! - title cut to [`MAX_TITLE`] chars, description to [`MAX_DESCRIPTION`], at most
//!   [`MAX_LABELS`] labels (the first in key order), keys cut to 256 and values to 1024 chars;
//! - severity from the vendor's notion, [`Severity::Medium`] when it has none
//!   ([`severity_word`] is the shared vocabulary);
//! - fingerprint: the vendor's own identity when it has one, else a sha256 of the identifying
//!   labels; never empty, and hashed when longer than 128 chars so it stays a sane key;
//! - service: labels `service`, `service_name`, `app`, `job` in that order, unless the vendor
//!   names it elsewhere;
//! - started_at: the vendor's start time (zero times ignored), else the delivery time.
//!
//! # Generic flavour (ours)
//! One alert, or `{"alerts": [alert, ...]}` (at most [`MAX_ALERTS_PER_DELIVERY`]), where an
//! alert is:
//! ```json
//! {"title": "required, non-empty", "status": "firing|resolved (default firing)",
//!  "severity": "info|low|medium|high|critical (default medium)", "service": "checkout",
//!  "fingerprint": "stable id", "group": "rule or check name", "description": "text",
//!  "labels": {"string": "string"}, "started_at": "RFC 3339"}
//! ```
//! Unknown status or severity, a bad `started_at` or non-string labels are rejected, since the
//! sender controls this format. Without `fingerprint`, the fingerprint is a sha256 of title,
//! service, group and labels.

mod alertmanager;
mod datadog;
mod generic;
mod grafana;
mod pagerduty;

use std::collections::BTreeMap;

use aurora_storage::incidents::alert::{MAX_DESCRIPTION, MAX_LABELS, MAX_TITLE};
use aurora_storage::incidents::{AlertStatus, NewAlert, Severity, Source};
use chrono::{DateTime, Datelike, Utc};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The body is not what this flavour sends: the message says what is wrong (never echoes
    /// secrets; may quote a field name).
    #[error("{0}")]
    Invalid(String),
}

/// Most alerts one delivery may carry.
pub const MAX_ALERTS_PER_DELIVERY: usize = 500;

/// Longest label key / value kept (characters).
const MAX_LABEL_KEY: usize = 256;
const MAX_LABEL_VALUE: usize = 1024;
/// Longer fingerprints are replaced by their sha256, so a store key never grows unbounded.
const MAX_FINGERPRINT: usize = 128;
/// Cap on how much of a serde error message is returned (it may quote a bit of the body).
const MAX_ERROR: usize = 300;

/// Parses one delivery of `source` (never Source::Manual -> Invalid) received at `received_at`.
///
/// Returns the alerts it carries. It may be empty: a PagerDuty event type other than
/// `incident.triggered`/`reopened`/`resolved` (acknowledgements, notes, service events...), a
/// Datadog notification with no alert state (a `[TEST]` notification, or neither transition,
/// alert type nor a `[Triggered]`-style title), or a batch with no alerts.
pub fn parse(
    source: Source,
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Vec<NewAlert>, IntakeError> {
    let value = json_body(body)?;
    let alerts = match source {
        Source::Grafana => grafana::parse(value, received_at),
        Source::Alertmanager => alertmanager::parse(value, received_at),
        Source::Datadog => datadog::parse(value, received_at),
        Source::Pagerduty => pagerduty::parse(value, received_at),
        Source::Generic => generic::parse(value, received_at),
        Source::Manual => Err(invalid("manual incidents do not come through webhooks")),
    }?;
    Ok(alerts.into_iter().map(storable).collect())
}

/// Longest service and group names kept (the columns' width).
const MAX_SERVICE: usize = 200;
const MAX_GROUP: usize = 256;
/// Most bytes of an alert's raw payload kept: enough to read what the vendor sent, not so much
/// that every read of an incident's alerts drags megabytes along.
pub const MAX_RAW: usize = 64 * 1024;

/// What every flavour's alert goes through last: no NUL characters (PostgreSQL's text and
/// jsonb refuse them: a 500 and a lost delivery otherwise), names cut to their columns, the raw
/// payload bounded (a longer one keeps its first [`MAX_RAW`] bytes as text).
fn storable(mut a: NewAlert) -> NewAlert {
    let clean = |s: &str, max: usize| -> String { s.replace('\0', "").chars().take(max).collect() };
    a.fingerprint = clean(&a.fingerprint, 256);
    a.group = a
        .group
        .map(|g| clean(&g, MAX_GROUP))
        .filter(|g| !g.is_empty());
    a.service = a
        .service
        .map(|s| clean(&s, MAX_SERVICE))
        .filter(|s| !s.is_empty());
    a.title = clean(&a.title, MAX_TITLE);
    a.description = clean(&a.description, MAX_DESCRIPTION);
    a.labels = std::mem::take(&mut a.labels)
        .into_iter()
        .map(|(k, v)| (k.replace('\0', ""), v.replace('\0', "")))
        .collect();
    strip_nuls(&mut a.raw);
    let size = a.raw.to_string().len();
    if size > MAX_RAW {
        let text = a.raw.to_string();
        let mut end = MAX_RAW;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        a.raw = serde_json::json!({ "truncated_from_bytes": size, "head": &text[..end] });
    }
    a
}

/// Removes NUL characters from every string and key of a JSON value.
fn strip_nuls(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', ""),
        Value::Array(items) => items.iter_mut().for_each(strip_nuls),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                map.extend(old.into_iter().map(|(k, v)| (k.replace('\0', ""), v)));
            }
            map.values_mut().for_each(strip_nuls);
        }
        _ => {}
    }
}

/// PagerDuty V3 webhook signature check: header `X-PagerDuty-Signature` is a comma-separated
/// list of `v1=<hex hmac-sha256 of the raw body with the secret>`; true when any matches
/// (several during a secret rotation). Constant-time comparison (hmac's verify_slice).
/// Missing/garbled header -> false; an empty secret -> false, so a misconfigured subscription
/// never accepts signatures anyone could compute.
pub fn verify_pagerduty(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    if secret.is_empty() {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    header
        .split(',')
        .filter_map(|sig| sig.trim().strip_prefix("v1="))
        .filter_map(|hex_sig| hex::decode(hex_sig.trim()).ok())
        .any(|sig| mac.clone().verify_slice(&sig).is_ok())
}

fn invalid(msg: impl Into<String>) -> IntakeError {
    IntakeError::Invalid(msg.into())
}

/// The body as JSON; syntax errors say where, not what (the edge may log the message).
fn json_body(body: &[u8]) -> Result<Value, IntakeError> {
    serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// `what` deserialized into the vendor's typed shape; the message names `what` and the field.
/// Only an object is accepted: serde would otherwise also read a struct from an array.
fn typed<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, IntakeError> {
    if !value.is_object() {
        return Err(invalid(format!("{what}: expected a JSON object")));
    }
    T::deserialize(value).map_err(|e| invalid(cut(&format!("{what}: {e}"), MAX_ERROR)))
}

fn check_count(n: usize) -> Result<(), IntakeError> {
    if n > MAX_ALERTS_PER_DELIVERY {
        return Err(invalid(format!(
            "{n} alerts in one delivery; at most {MAX_ALERTS_PER_DELIVERY} are accepted"
        )));
    }
    Ok(())
}

/// At most `max` chars of `s` (whitespace trimmed), cut on a char boundary.
fn cut(s: &str, max: usize) -> String {
    s.trim().chars().take(max).collect()
}

fn title(s: &str) -> String {
    cut(s, MAX_TITLE)
}

fn description(s: &str) -> String {
    cut(s, MAX_DESCRIPTION)
}

/// The first [`MAX_LABELS`] labels in key order, keys and values cut.
fn bound_labels(labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .into_iter()
        .take(MAX_LABELS)
        .map(|(k, v)| (cut(&k, MAX_LABEL_KEY), cut(&v, MAX_LABEL_VALUE)))
        .collect()
}

/// Trimmed, and None when empty.
fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn label<'a>(labels: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    labels.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// The service the labels name: `service`, `service_name`, `app`, `job` in that order.
fn service_from_labels(labels: &BTreeMap<String, String>) -> Option<String> {
    ["service", "service_name", "app", "job"]
        .iter()
        .find_map(|k| label(labels, k))
        .map(|s| cut(s, MAX_LABEL_VALUE))
}

/// Severity from labels: `severity` (see [`severity_word`]), then `priority` (also `1`..`5`).
fn severity_from_labels(labels: &BTreeMap<String, String>) -> Severity {
    label(labels, "severity")
        .and_then(severity_word)
        .or_else(|| label(labels, "priority").and_then(priority_word))
        .unwrap_or(Severity::Medium)
}

/// The shared severity vocabulary, case-, space-, `-` and `_`-insensitive:
/// - Critical: critical, crit, fatal, emergency, disaster, page, p0, p1, sev0, sev1
/// - High: high, error, err, major, p2, sev2
/// - Medium: medium, warning, warn, moderate, average, p3, sev3
/// - Low: low, minor, p4, sev4
/// - Info: info, informational, information, notice, debug, none, ok, p5, sev5
fn severity_word(word: &str) -> Option<Severity> {
    let w: String = word
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    Some(match w.as_str() {
        "critical" | "crit" | "fatal" | "emergency" | "emerg" | "disaster" | "page" | "p0"
        | "p1" | "sev0" | "sev1" => Severity::Critical,
        "high" | "error" | "err" | "major" | "p2" | "sev2" => Severity::High,
        "medium" | "warning" | "warn" | "moderate" | "average" | "p3" | "sev3" => Severity::Medium,
        "low" | "minor" | "p4" | "sev4" => Severity::Low,
        "info" | "informational" | "information" | "notice" | "debug" | "none" | "ok" | "p5"
        | "sev5" => Severity::Info,
        _ => return None,
    })
}

/// A priority: the [`severity_word`] vocabulary, or a bare `0`/`1` (critical) .. `5` (info).
fn priority_word(word: &str) -> Option<Severity> {
    match word.trim() {
        "0" | "1" => Some(Severity::Critical),
        "2" => Some(Severity::High),
        "3" => Some(Severity::Medium),
        "4" => Some(Severity::Low),
        "5" => Some(Severity::Info),
        w => severity_word(w),
    }
}

/// `firing` / `resolved`, any case.
fn status_word(word: &str) -> Option<AlertStatus> {
    match word.trim().to_ascii_lowercase().as_str() {
        "firing" => Some(AlertStatus::Firing),
        "resolved" => Some(AlertStatus::Resolved),
        _ => None,
    }
}

/// An RFC 3339 time from a vendor; unparsable or zero (`0001-01-01T00:00:00Z`, Go's unset
/// time) is None, never an error: a bad time is no reason to drop an alert.
fn vendor_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s?.trim()).ok()?;
    (t.year() > 1).then(|| t.with_timezone(&Utc))
}

/// The fingerprint as given, or its sha256 when longer than [`MAX_FINGERPRINT`]; None if empty.
fn given_fingerprint(s: Option<&str>) -> Option<String> {
    let s = non_empty(s)?;
    Some(if s.chars().count() > MAX_FINGERPRINT {
        sha256_hex([s.as_str()])
    } else {
        s
    })
}

/// sha256 hex of the sorted identifying `(key, value)` pairs, so the same labels in any order
/// give the same fingerprint.
fn hashed_fingerprint<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort_unstable();
    sha256_hex(pairs.into_iter().flat_map(|(k, v)| [k, "=", v, "\n"]))
}

fn sha256_hex<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// For maps and lists a vendor may send as `null`: null reads as empty.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests;
