use aurora_storage::incidents::{AlertStatus, Severity, Source};

use super::at;
use crate::incidents::intake::parse;

const FIRING: &[u8] = include_bytes!("../fixtures/alertmanager_firing.json");
const RESOLVED: &[u8] = include_bytes!("../fixtures/alertmanager_resolved.json");

#[test]
fn firing_fixture_normalizes() {
    let alerts = parse(Source::Alertmanager, FIRING, at()).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.fingerprint, "1a30ba71cca2921f");
    assert_eq!(a.group.as_deref(), Some("ProbeFailure"));
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.service.as_deref(), Some("http_checks"));
    assert_eq!(a.title, "BlackBox Probe Failure: https://shop.example.org");
    assert!(a
        .description
        .starts_with("Instance https://shop.example.org has been down"));
    assert_eq!(
        a.labels.get("instance").map(String::as_str),
        Some("https://shop.example.org")
    );
    assert_eq!(
        a.started_at.unwrap().to_rfc3339(),
        "2023-02-06T13:08:45.828+00:00"
    );
    assert_eq!(a.raw["fingerprint"], "1a30ba71cca2921f");
    assert!(
        a.raw.get("receiver").is_none(),
        "raw is the alert, not the delivery"
    );
}

#[test]
fn resolved_fixture_normalizes() {
    let alerts = parse(Source::Alertmanager, RESOLVED, at()).unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a.status == AlertStatus::Resolved));
    assert_eq!(alerts[0].fingerprint, "1a30ba71cca2921f");
    // The second has no fingerprint, summary nor severity: hashed labels, alertname, medium.
    let b = &alerts[1];
    assert_eq!(b.fingerprint.len(), 64);
    assert_eq!(b.title, "DiskFilling");
    assert_eq!(b.group.as_deref(), Some("DiskFilling"));
    assert_eq!(b.severity, Severity::Medium);
    assert_eq!(b.service.as_deref(), Some("node"));
    assert_eq!(
        b.started_at,
        Some(at()),
        "a zero startsAt falls back to the delivery time"
    );
}

#[test]
fn hashed_fingerprint_ignores_label_order() {
    let body = |labels: &str| {
        format!(r#"{{"version":"4","alerts":[{{"status":"firing","labels":{labels}}}]}}"#)
    };
    let a = parse(
        Source::Alertmanager,
        body(r#"{"a":"1","b":"2"}"#).as_bytes(),
        at(),
    );
    let b = parse(
        Source::Alertmanager,
        body(r#"{"b":"2","a":"1"}"#).as_bytes(),
        at(),
    );
    let c = parse(
        Source::Alertmanager,
        body(r#"{"b":"3","a":"1"}"#).as_bytes(),
        at(),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a[0].fingerprint, b[0].fingerprint);
    assert_ne!(a[0].fingerprint, c[0].fingerprint);
    assert_eq!(a[0].title, "Alertmanager alert");
}

#[test]
fn bad_bodies_are_invalid() {
    for body in [
        r#"{"version":"3","alerts":[]}"#,
        r#"{"alerts":[]}"#,
        r#"{"version":"4"}"#,
        r#"{"version":4,"alerts":[]}"#,
        r#"{"version":"4","alerts":{}}"#,
        r#"{"version":"4","alerts":[{"labels":{}}]}"#,
        r#"{"version":"4","alerts":[{"status":"pending"}]}"#,
        r#"{"version":"4","alerts":[{"status":"firing","labels":{"a":1}}]}"#,
        r#"[]"#,
        "not json",
    ] {
        let err = parse(Source::Alertmanager, body.as_bytes(), at());
        assert!(err.is_err(), "{body} should be invalid");
    }
}
