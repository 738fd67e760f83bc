use aurora_storage::incidents::{AlertStatus, Severity, Source};
use serde_json::json;

use super::at;
use crate::incidents::intake::parse;

const TRIGGERED: &[u8] = include_bytes!("../fixtures/datadog_triggered.json");
const RECOVERED: &[u8] = include_bytes!("../fixtures/datadog_recovered.json");

fn one(body: serde_json::Value) -> Vec<aurora_storage::incidents::NewAlert> {
    parse(Source::Datadog, body.to_string().as_bytes(), at()).unwrap()
}

#[test]
fn triggered_fixture_normalizes() {
    let alerts = parse(Source::Datadog, TRIGGERED, at()).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.fingerprint, "98765432:host:web-1");
    assert_eq!(a.group.as_deref(), Some("98765432"));
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::High, "P2");
    assert_eq!(a.service.as_deref(), Some("checkout"));
    assert_eq!(a.title, "High 5xx rate on checkout");
    assert!(
        a.description
            .starts_with("5xx rate on checkout is above 5%"),
        "{}",
        a.description
    );
    assert!(!a.description.contains("%%%"));
    assert_eq!(a.labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(
        a.labels.get("monitor").map(String::as_str),
        Some(""),
        "a tag without value"
    );
    assert_eq!(a.labels.get("host").map(String::as_str), Some("web-1"));
    assert_eq!(
        a.started_at.unwrap().to_rfc3339(),
        "2023-11-14T22:13:20+00:00"
    );
    assert_eq!(a.raw["org"]["name"], "Acme");
}

#[test]
fn recovered_fixture_resolves_the_same_alert() {
    let alerts = parse(Source::Datadog, RECOVERED, at()).unwrap();
    let a = &alerts[0];
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(
        a.fingerprint, "98765432:host:web-1",
        "numbers and strings read alike"
    );
    assert_eq!(a.group.as_deref(), Some("98765432"));
    assert_eq!(a.service.as_deref(), Some("checkout"), "tags as an array");
    assert_eq!(a.title, "High 5xx rate on checkout");
    assert_eq!(a.severity, Severity::High);
}

#[test]
fn default_template_reads_state_from_the_title() {
    let body = |title: &str| {
        json!({"id": "1234", "last_updated": "1406662672000", "event_type": "metric_alert_monitor",
               "title": title, "date": 1406662672000u64, "org": {"id": 1, "name": "A"}, "body": "b"})
    };
    let a = &one(body("[Triggered] [Memory Alert]"))[0];
    assert_eq!(
        (a.status, a.title.as_str(), a.fingerprint.as_str()),
        (AlertStatus::Firing, "[Memory Alert]", "1234")
    );
    assert_eq!(a.severity, Severity::Medium);
    assert_eq!(a.group, None);
    let a = &one(body("[P1] [Recovered on {host:a}] Disk full"))[0];
    assert_eq!(
        (a.status, a.title.as_str()),
        (AlertStatus::Resolved, "Disk full")
    );
    assert_eq!(a.severity, Severity::Critical, "the title's [P1]");
    assert!(
        one(body("Just an event")).is_empty(),
        "no alert state: nothing to store"
    );
    assert!(
        one(body("[TEST] [Triggered] Disk full")).is_empty(),
        "test notification"
    );
}

#[test]
fn severity_mapping() {
    for (fields, want) in [
        (
            json!({"alert_priority": "P1", "alert_type": "info"}),
            Severity::Critical,
        ),
        (json!({"priority": 4}), Severity::Low),
        (
            json!({"priority": "normal", "alert_type": "warning"}),
            Severity::Medium,
        ),
        (
            json!({"priority": "low", "alert_type": "error"}),
            Severity::High,
        ),
        (json!({"alert_type": "info"}), Severity::Info),
        (
            json!({"alert_type": "error", "tags": "severity:critical"}),
            Severity::Critical,
        ),
        (json!({"alert_transition": "Warn"}), Severity::Medium),
    ] {
        let mut body = json!({"alert_id": 7, "title": "t", "alert_transition": "Triggered"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        assert_eq!(one(body.clone())[0].severity, want, "{body}");
    }
}

#[test]
fn fingerprint_prefers_monitor_and_scope() {
    let fp = |body: serde_json::Value| one(body)[0].fingerprint.clone();
    let base = json!({"alert_type": "error", "title": "t"});
    let with = |extra: serde_json::Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    assert_eq!(
        fp(with(json!({"alert_id": 1, "alert_scope": "b:2, a:1"}))),
        "1:a:1,b:2"
    );
    assert_eq!(
        fp(with(json!({"alert_id": 1, "aggregation_key": "k"}))),
        "1:k"
    );
    assert_eq!(fp(with(json!({"alert_id": "1", "alert_scope": ""}))), "1");
    assert_eq!(fp(with(json!({"aggregate": "k", "id": 9}))), "k");
    assert_eq!(
        fp(with(json!({"alert_id": 1, "alert_scope": "x".repeat(300)}))).len(),
        64
    );
}

#[test]
fn bad_bodies_are_invalid() {
    for body in [
        json!({"title": "[Triggered] no identity", "alert_type": "error"}),
        json!({"alert_id": {"nested": 1}, "alert_type": "error"}),
        json!({"alert_id": 1, "tags": 5, "alert_type": "error"}),
        json!({"alert_id": 1, "tags": [1, 2], "alert_type": "error"}),
        json!([{"alert_id": 1}]),
    ] {
        assert!(
            parse(Source::Datadog, body.to_string().as_bytes(), at()).is_err(),
            "{body}"
        );
    }
}
