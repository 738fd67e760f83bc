//! Tests of the parsers through the public API, one file per flavour, plus the rules every
//! flavour shares (cuts, limits, no panics) and the PagerDuty signature check.

mod alertmanager;
mod datadog;
mod generic;
mod grafana;
mod pagerduty;

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;

/// The delivery time every test parses at.
pub(super) fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 5, 12, 0, 0).single().unwrap()
}

const FIXTURES: [(Source, &[u8]); 11] = [
    (
        Source::Grafana,
        include_bytes!("../fixtures/grafana_firing.json"),
    ),
    (
        Source::Grafana,
        include_bytes!("../fixtures/grafana_resolved.json"),
    ),
    (
        Source::Alertmanager,
        include_bytes!("../fixtures/alertmanager_firing.json"),
    ),
    (
        Source::Alertmanager,
        include_bytes!("../fixtures/alertmanager_resolved.json"),
    ),
    (
        Source::Datadog,
        include_bytes!("../fixtures/datadog_triggered.json"),
    ),
    (
        Source::Datadog,
        include_bytes!("../fixtures/datadog_recovered.json"),
    ),
    (
        Source::Pagerduty,
        include_bytes!("../fixtures/pagerduty_triggered.json"),
    ),
    (
        Source::Pagerduty,
        include_bytes!("../fixtures/pagerduty_resolved.json"),
    ),
    (
        Source::Pagerduty,
        include_bytes!("../fixtures/pagerduty_acknowledged.json"),
    ),
    (
        Source::Generic,
        include_bytes!("../fixtures/generic_single.json"),
    ),
    (
        Source::Generic,
        include_bytes!("../fixtures/generic_batch.json"),
    ),
];

const ALL: [Source; 5] = [
    Source::Grafana,
    Source::Alertmanager,
    Source::Datadog,
    Source::Pagerduty,
    Source::Generic,
];

fn invalid_msg(r: Result<Vec<NewAlert>, IntakeError>) -> String {
    match r {
        Err(IntakeError::Invalid(msg)) => msg,
        Ok(alerts) => panic!("expected Invalid, got {} alerts", alerts.len()),
    }
}

#[test]
fn every_fixture_parses_with_bounded_non_empty_fields() {
    for (source, body) in FIXTURES {
        for a in parse(source, body, at()).unwrap() {
            assert_eq!(a.source, source);
            assert!(!a.fingerprint.is_empty() && a.fingerprint.chars().count() <= 128);
            assert!(!a.title.is_empty());
            assert!(a.started_at.is_some());
            assert!(a.raw.is_object());
        }
    }
}

#[test]
fn truncated_fixtures_never_panic() {
    for (source, body) in FIXTURES {
        for len in 0..body.len() {
            let _ = parse(source, &body[..len], at());
        }
        // Every flavour also gets every other flavour's body.
        for other in ALL {
            let _ = parse(other, body, at());
        }
    }
}

#[test]
fn manual_is_not_a_webhook() {
    let msg = invalid_msg(parse(Source::Manual, br#"{"title":"x"}"#, at()));
    assert!(msg.contains("manual"), "{msg}");
}

#[test]
fn garbage_is_invalid_for_every_flavour() {
    for source in ALL {
        for body in [
            &b""[..],
            b"not json",
            b"\xff\xfe",
            b"[]",
            b"null",
            b"42",
            b"\"s\"",
            b"{\"a\":",
        ] {
            let msg = invalid_msg(parse(source, body, at()));
            assert!(!msg.is_empty());
        }
    }
}

#[test]
fn syntax_errors_do_not_echo_the_body() {
    let msg = invalid_msg(parse(Source::Generic, b"{\"title\": s3cr3t}", at()));
    assert!(msg.starts_with("body is not valid JSON"), "{msg}");
    assert!(!msg.contains("s3cr3t"), "{msg}");
}

#[test]
fn more_than_the_maximum_alerts_is_invalid() {
    let alert = r#"{"status":"firing","title":"t","labels":{"alertname":"a"}}"#;
    for (source, extra) in [
        (Source::Grafana, ""),
        (Source::Alertmanager, r#""version":"4","#),
        (Source::Generic, ""),
    ] {
        let body = |n: usize| format!(r#"{{{extra}"alerts":[{}]}}"#, vec![alert; n].join(","));
        let ok = parse(source, body(MAX_ALERTS_PER_DELIVERY).as_bytes(), at()).unwrap();
        assert_eq!(ok.len(), MAX_ALERTS_PER_DELIVERY);
        let msg = invalid_msg(parse(
            source,
            body(MAX_ALERTS_PER_DELIVERY + 1).as_bytes(),
            at(),
        ));
        assert!(msg.contains("501 alerts"), "{msg}");
    }
}

#[test]
fn long_multibyte_text_is_cut_on_char_boundaries() {
    let long = "é🚨".repeat(300); // 600 chars, 1800 bytes
    let big = "ü".repeat(MAX_DESCRIPTION + 10);
    let body =
        serde_json::json!({"title": long, "description": big, "labels": {long.clone(): long}});
    let a = &parse(Source::Generic, body.to_string().as_bytes(), at()).unwrap()[0];
    assert_eq!(a.title.chars().count(), MAX_TITLE);
    assert!(long.starts_with(&a.title));
    assert_eq!(a.description.chars().count(), MAX_DESCRIPTION);
    let (k, v) = a.labels.iter().next().unwrap();
    assert_eq!((k.chars().count(), v.chars().count()), (256, 600));
}

#[test]
fn labels_are_capped() {
    let labels: serde_json::Map<_, _> = (0..MAX_LABELS + 20)
        .map(|i| (format!("k{i:03}"), "v".into()))
        .collect();
    let body =
        serde_json::json!({"version": "4", "alerts": [{"status": "firing", "labels": labels}]});
    let a = &parse(Source::Alertmanager, body.to_string().as_bytes(), at()).unwrap()[0];
    assert_eq!(a.labels.len(), MAX_LABELS);
    assert!(a.labels.contains_key("k000") && !a.labels.contains_key("k070"));
}

#[test]
fn severity_vocabulary() {
    for (word, want) in [
        ("CRITICAL", Severity::Critical),
        ("sev-1", Severity::Critical),
        ("P2", Severity::High),
        ("error", Severity::High),
        ("warning", Severity::Medium),
        ("minor", Severity::Low),
        ("informational", Severity::Info),
    ] {
        assert_eq!(severity_word(word), Some(want), "{word}");
    }
    assert_eq!(severity_word("3"), None, "bare numbers only as priorities");
    assert_eq!(priority_word("3"), Some(Severity::Medium));
    assert_eq!(severity_word("bogus"), None);
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn pagerduty_signatures() {
    let body = include_bytes!("../fixtures/pagerduty_triggered.json");
    let good = sign(b"s3cret", body);
    assert!(verify_pagerduty(b"s3cret", body, Some(&good)));
    let rotated = format!("{}, {good}", sign(b"old-secret", body));
    assert!(
        verify_pagerduty(b"s3cret", body, Some(&rotated)),
        "one of several"
    );
    assert!(verify_pagerduty(b"old-secret", body, Some(&rotated)));
    assert!(
        !verify_pagerduty(b"wrong", body, Some(&good)),
        "wrong secret"
    );
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert!(
        !verify_pagerduty(b"s3cret", &tampered, Some(&good)),
        "tampered body"
    );
    assert!(!verify_pagerduty(b"s3cret", body, None), "missing header");
    assert!(
        !verify_pagerduty(b"", body, Some(&sign(b"", body))),
        "empty secret"
    );
    let bare = good.trim_start_matches("v1=").to_owned();
    let upper = format!("v1={}", bare.to_uppercase());
    assert!(
        verify_pagerduty(b"s3cret", body, Some(&upper)),
        "hex in any case"
    );
    for garbled in [
        "",
        ",,,",
        "v1=",
        "v1=zz",
        "v1=abc",
        bare.as_str(),
        &format!("v2={bare}"),
        &format!("v1={}", &bare[..32]),
        &format!("v1={bare}00"),
        "v1=é",
    ] {
        assert!(
            !verify_pagerduty(b"s3cret", body, Some(garbled)),
            "{garbled}"
        );
    }
}

/// NUL characters (which PostgreSQL refuses in text and jsonb), over-long service and group
/// names and a huge raw payload are made storable, for every alert of any flavour.
#[test]
fn alerts_are_made_storable() {
    let huge = "x".repeat(200_000);
    let body = serde_json::json!({
        "title": "disk\u{0} full",
        "service": format!("svc\u{0}{}", "s".repeat(1000)),
        "group": "g".repeat(1000),
        "fingerprint": "fp\u{0}1",
        "status": "firing",
        "labels": { "k\u{0}": "v\u{0}" },
        "description": huge,
    });
    let alerts = parse(Source::Generic, body.to_string().as_bytes(), at()).unwrap();
    let a = &alerts[0];
    let all = serde_json::to_string(a).unwrap();
    assert!(!all.contains("\\u0000"), "{}", &all[..200]);
    assert_eq!(a.title, "disk full");
    assert_eq!(a.service.as_ref().unwrap().chars().count(), 200);
    assert!(a.group.as_ref().unwrap().chars().count() <= 256);
    assert_eq!(a.labels.get("k").map(String::as_str), Some("v"));
    assert!(
        a.raw.to_string().len() <= MAX_RAW + 100,
        "{}",
        a.raw.to_string().len()
    );
    assert!(a.raw["truncated_from_bytes"].as_u64().unwrap() > 200_000);
}
