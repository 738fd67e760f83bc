use aurora_storage::incidents::{AlertStatus, Severity, Source};

use super::at;
use crate::incidents::intake::parse;

const FIRING: &[u8] = include_bytes!("../fixtures/grafana_firing.json");
const RESOLVED: &[u8] = include_bytes!("../fixtures/grafana_resolved.json");

#[test]
fn firing_fixture_normalizes_both_alerts() {
    let alerts = parse(Source::Grafana, FIRING, at()).unwrap();
    assert_eq!(alerts.len(), 2);
    let (mem, cpu) = (&alerts[0], &alerts[1]);
    assert_eq!(mem.fingerprint, "c6eadffa33fcdf37");
    assert_eq!(mem.group.as_deref(), Some("High memory usage"));
    assert_eq!(mem.status, AlertStatus::Firing);
    assert_eq!(mem.severity, Severity::Critical);
    assert_eq!(mem.service.as_deref(), Some("checkout"));
    assert_eq!(mem.title, "Memory above 90% in zone us-1");
    assert_eq!(mem.description, "The system has high memory usage");
    assert_eq!(
        mem.started_at.unwrap().to_rfc3339(),
        "2021-10-12T07:51:03.157076+00:00"
    );
    assert_eq!(mem.raw["values"]["B"], 44.23943737541908);
    assert!(
        mem.raw.get("receiver").is_none(),
        "raw is the alert, not the delivery"
    );

    assert_eq!(cpu.fingerprint, "bc97ff14869b13e3");
    assert_eq!(cpu.group.as_deref(), Some("High CPU usage"));
    assert_eq!(cpu.severity, Severity::Medium, "severity=warning");
    assert_eq!(cpu.service.as_deref(), Some("payments"), "app label");
    assert_eq!(cpu.labels.get("zone").map(String::as_str), Some("eu-1"));
}

#[test]
fn resolved_fixture_normalizes() {
    let alerts = parse(Source::Grafana, RESOLVED, at()).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.fingerprint, "c6eadffa33fcdf37");
    assert_eq!(a.group.as_deref(), Some("High memory usage"));
    assert_eq!(a.title, "Memory above 90% in zone us-1");
    assert_eq!(a.severity, Severity::Critical);
}

#[test]
fn falls_back_to_rule_uid_and_delivery_title() {
    let body = br#"{"title":"[FIRING:1] rules","groupKey":"{}:{}","alerts":[{"status":"firing",
        "labels":{"team":"blue"},"generatorURL":"https://g/alerting/grafana/u1d/view"}]}"#;
    let alerts = parse(Source::Grafana, body, at()).unwrap();
    assert_eq!(alerts[0].group.as_deref(), Some("u1d"));
    assert_eq!(alerts[0].title, "[FIRING:1] rules");
    assert_eq!(alerts[0].fingerprint.len(), 64, "hashed labels");
    let body = br#"{"groupKey":"{}:{team=\"blue\"}","alerts":[{"status":"resolved"}]}"#;
    let alerts = parse(Source::Grafana, body, at()).unwrap();
    assert_eq!(alerts[0].group.as_deref(), Some("{}:{team=\"blue\"}"));
    assert_eq!(alerts[0].title, "Grafana alert");
}

#[test]
fn bad_bodies_are_invalid() {
    for body in [
        "",
        "{",
        "[]",
        "{}",
        r#"{"alerts":null}"#,
        r#"{"alerts":"x"}"#,
        r#"{"alerts":[1]}"#,
        r#"{"alerts":[{"status":"alerting"}]}"#,
        r#"{"alerts":[{"status":"firing","startsAt":5}]}"#,
        r#"{"ruleName":"legacy","state":"alerting","evalMatches":[]}"#,
    ] {
        assert!(
            parse(Source::Grafana, body.as_bytes(), at()).is_err(),
            "{body}"
        );
    }
}
