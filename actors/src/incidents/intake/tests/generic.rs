use aurora_storage::incidents::{AlertStatus, Severity, Source};
use serde_json::json;

use super::at;
use crate::incidents::intake::parse;

const SINGLE: &[u8] = include_bytes!("../fixtures/generic_single.json");
const BATCH: &[u8] = include_bytes!("../fixtures/generic_batch.json");

#[test]
fn single_fixture_normalizes() {
    let alerts = parse(Source::Generic, SINGLE, at()).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.fingerprint, "backup-nightly-db1");
    assert_eq!(a.group.as_deref(), Some("backup-jobs"));
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.service.as_deref(), Some("backups"));
    assert_eq!(a.title, "Nightly backup job failed");
    assert_eq!(a.description, "pg_dump exited with status 1 on db-1.");
    assert_eq!(a.labels.len(), 2);
    assert_eq!(
        a.started_at.unwrap().to_rfc3339(),
        "2024-03-05T02:00:13+00:00"
    );
    assert_eq!(a.raw["title"], "Nightly backup job failed");
}

#[test]
fn batch_fixture_normalizes() {
    let alerts = parse(Source::Generic, BATCH, at()).unwrap();
    assert_eq!(alerts.len(), 2);
    let (queue, cert) = (&alerts[0], &alerts[1]);
    assert_eq!(queue.fingerprint.len(), 64, "hashed title and labels");
    assert_eq!(queue.group, None);
    assert_eq!(queue.status, AlertStatus::Firing, "default status");
    assert_eq!(queue.severity, Severity::Critical);
    assert_eq!(queue.service.as_deref(), Some("orders-worker"), "app label");
    assert_eq!(queue.started_at, Some(at()));
    assert_eq!(
        queue.raw["title"], "Queue depth above 10k",
        "raw is the element"
    );
    assert_eq!(cert.fingerprint, "cert-api.example.com");
    assert_eq!(cert.group.as_deref(), Some("certificates"));
    assert_eq!(cert.status, AlertStatus::Resolved);
    assert_eq!(cert.severity, Severity::Low);
    assert_eq!(cert.service, None);
    assert_eq!(cert.title, "Certificate expires in 7 days");
    assert_eq!(
        cert.started_at.unwrap().to_rfc3339(),
        "2024-02-29T23:00:00+00:00"
    );
}

#[test]
fn defaults_and_hashed_fingerprints() {
    let fp = |body: serde_json::Value| {
        parse(Source::Generic, body.to_string().as_bytes(), at()).unwrap()[0]
            .fingerprint
            .clone()
    };
    let a = parse(Source::Generic, br#"{"title":"x"}"#, at()).unwrap();
    assert_eq!(
        (a[0].status, a[0].severity),
        (AlertStatus::Firing, Severity::Medium)
    );
    assert_ne!(fp(json!({"title": "x"})), fp(json!({"title": "y"})));
    assert_eq!(
        fp(json!({"title": "x", "status": "resolved"})),
        fp(json!({"title": "x"}))
    );
    assert_eq!(
        fp(json!({"title": "x", "labels": {"a": "1", "b": "2"}})),
        fp(json!({"labels": {"b": "2", "a": "1"}, "title": "x"}))
    );
    assert_ne!(
        fp(json!({"title": "x", "service": "s"})),
        fp(json!({"title": "x"}))
    );
    assert_eq!(
        fp(json!({"title": "x", "severity": "HIGH", "fingerprint": "  "})).len(),
        64
    );
    assert!(parse(Source::Generic, br#"{"alerts":[]}"#, at())
        .unwrap()
        .is_empty());
}

#[test]
fn bad_bodies_are_invalid() {
    for body in [
        json!({}),
        json!({"title": ""}),
        json!({"title": "   "}),
        json!({"title": 5}),
        json!({"title": "x", "status": "open"}),
        json!({"title": "x", "severity": "sev1"}),
        json!({"title": "x", "labels": {"a": 1}}),
        json!({"title": "x", "labels": ["a"]}),
        json!({"title": "x", "started_at": "yesterday"}),
        json!({"alerts": null}),
        json!({"alerts": {"title": "x"}}),
        json!({"alerts": [{"title": "x"}, {"status": "firing"}]}),
        json!({"alerts": ["x"]}),
    ] {
        let r = parse(Source::Generic, body.to_string().as_bytes(), at());
        assert!(r.is_err(), "{body}");
    }
}
