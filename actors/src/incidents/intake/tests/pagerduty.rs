use aurora_storage::incidents::{AlertStatus, Severity, Source};
use serde_json::json;

use super::at;
use crate::incidents::intake::parse;

const TRIGGERED: &[u8] = include_bytes!("../fixtures/pagerduty_triggered.json");
const RESOLVED: &[u8] = include_bytes!("../fixtures/pagerduty_resolved.json");
const ACKNOWLEDGED: &[u8] = include_bytes!("../fixtures/pagerduty_acknowledged.json");

#[test]
fn triggered_fixture_normalizes() {
    let alerts = parse(Source::Pagerduty, TRIGGERED, at()).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.fingerprint, "Q1ZHX5DRC0V3AB");
    assert_eq!(a.group.as_deref(), Some("PF9KMXH"));
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical, "priority P1");
    assert_eq!(a.service.as_deref(), Some("API Service"));
    assert_eq!(a.title, "Checkout API error rate above 5%");
    assert!(a.description.contains("#1234") && a.description.contains("Dana On-Call"));
    assert_eq!(a.labels.get("urgency").map(String::as_str), Some("high"));
    assert_eq!(
        a.labels.get("teams").map(String::as_str),
        Some("Engineering")
    );
    assert_eq!(
        a.started_at.unwrap().to_rfc3339(),
        "2024-03-05T18:45:21+00:00"
    );
    assert_eq!(a.raw["event"]["event_type"], "incident.triggered");
}

#[test]
fn resolved_fixture_normalizes() {
    let a = &parse(Source::Pagerduty, RESOLVED, at()).unwrap()[0];
    assert_eq!(a.fingerprint, "Q1ZHX5DRC0V3AB");
    assert_eq!(a.group.as_deref(), Some("PF9KMXH"));
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.severity, Severity::Low, "no priority, urgency low");
    assert_eq!(a.service.as_deref(), Some("API Service"));
    assert_eq!(a.title, "Checkout API error rate above 5%");
}

#[test]
fn other_event_types_carry_no_alert() {
    assert!(parse(Source::Pagerduty, ACKNOWLEDGED, at())
        .unwrap()
        .is_empty());
    let service_event = json!({"event": {"id": "x", "event_type": "service.updated",
        "resource_type": "service", "occurred_at": "2021-03-02T13:35:11.682Z",
        "agent": null, "client": null, "data": {"id": "PF9KMXH", "type": "service"}}});
    let body = service_event.to_string();
    assert!(parse(Source::Pagerduty, body.as_bytes(), at())
        .unwrap()
        .is_empty());
}

#[test]
fn reopened_fires_with_minimal_data() {
    let body = json!({"event": {"event_type": "incident.reopened", "data": {"id": "P1",
        "urgency": "high", "priority": {"summary": "SEV-2"}}}});
    let a = &parse(Source::Pagerduty, body.to_string().as_bytes(), at()).unwrap()[0];
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.title, "PagerDuty incident P1");
    assert_eq!((a.group.as_deref(), a.service.as_deref()), (None, None));
    assert_eq!(a.started_at, Some(at()));
}

#[test]
fn bad_bodies_are_invalid() {
    for body in [
        json!({}),
        json!({"event": null}),
        json!({"event": {"data": {"id": "P1"}}}),
        json!({"event": {"event_type": "incident.triggered"}}),
        json!({"event": {"event_type": "incident.triggered", "data": {"title": "no id"}}}),
        json!({"event": {"event_type": "incident.resolved", "data": {"id": ""}}}),
        json!({"event": {"event_type": "incident.resolved", "data": {"id": 5}}}),
        json!({"event": {"event_type": "incident.resolved", "data": []}}),
        json!({"event": {"event_type": 1}}),
    ] {
        assert!(
            parse(Source::Pagerduty, body.to_string().as_bytes(), at()).is_err(),
            "{body}"
        );
    }
}
