//! One alert as every webhook flavour and poller hands it to the intake: the vendor's payload
//! normalized, with the vendor's own part of it kept raw for the incident's detail view.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an alert came from (the webhook flavour, or later a poller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Grafana,
    Datadog,
    Pagerduty,
    Alertmanager,
    Generic,
    /// An incident a person opened by hand (`POST /api/incidents`).
    Manual,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Grafana => "grafana",
            Source::Datadog => "datadog",
            Source::Pagerduty => "pagerduty",
            Source::Alertmanager => "alertmanager",
            Source::Generic => "generic",
            Source::Manual => "manual",
        }
    }

    /// The webhook flavours (`/api/webhooks/{flavour}/{token}`); `manual` is not one.
    pub fn webhook(name: &str) -> Option<Source> {
        Some(match name {
            "grafana" => Source::Grafana,
            "datadog" => Source::Datadog,
            "pagerduty" => Source::Pagerduty,
            "alertmanager" => Source::Alertmanager,
            "generic" => Source::Generic,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// Ordered from least to most severe, so an incident takes the highest of its alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// Longest title kept (characters); longer ones are cut.
pub const MAX_TITLE: usize = 500;
/// Longest description kept (characters).
pub const MAX_DESCRIPTION: usize = 8_000;
/// Most labels kept per alert.
pub const MAX_LABELS: usize = 64;

/// A normalized alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAlert {
    pub source: Source,
    /// Identifies this alert across deliveries (the vendor's fingerprint, incident id or
    /// monitor+scope; else a hash of its identifying labels). With `status`, what makes a
    /// repeated delivery a no-op.
    pub fingerprint: String,
    /// Alerts of one rule or monitor share it (alertname, rule uid, monitor id, PagerDuty
    /// service): the correlator's "same group" match.
    pub group: Option<String>,
    pub status: AlertStatus,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    /// The affected service when the payload names one.
    pub service: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// When the vendor says the alert began (the delivery time when it does not).
    pub started_at: Option<DateTime<Utc>>,
    /// This alert's part of the vendor payload, as received.
    pub raw: serde_json::Value,
}
