//! The intake's group commit and the correlator's reuse of what it read, on both backends:
//! deliveries written together keep every alert's states in order and each delivery all or
//! nothing (one the database refuses fails alone); a correlation that reuses the alerts it knew
//! of an incident reads them again once another correlation changed them.

mod common;

use std::collections::HashMap;

use aurora_storage::cache::Cache;
use aurora_storage::entities::incident_alerts;
use aurora_storage::incidents::correlate::{Known, Place};
use aurora_storage::incidents::{AlertStatus, Feed, Incidents, NewAlert, Severity, Source};
use chrono::Utc;
use common::{Backend, TestNode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

fn alert(fingerprint: &str, status: AlertStatus) -> NewAlert {
    NewAlert {
        source: Source::Generic,
        fingerprint: fingerprint.into(),
        group: Some(format!("group-{fingerprint}")),
        status,
        title: format!("alert {fingerprint}"),
        description: String::new(),
        severity: Severity::High,
        service: None,
        labels: Default::default(),
        started_at: None,
        raw: serde_json::json!({ "fingerprint": fingerprint }),
    }
}

/// A node with one org (registered as `email`), and an incident repository on its database.
async fn org_node(backend: Backend, email: &str) -> (TestNode, Uuid, Incidents) {
    let t = TestNode::start(backend).await;
    let org = t.principal(&t.register(email, "Acme").await).await.org_id;
    let incidents = Incidents::new(t.node().db().clone(), Feed::new(Cache::local()));
    (t, org, incidents)
}

/// Every stored alert row of `org`, oldest first: (fingerprint, status).
async fn rows(t: &TestNode, org: Uuid) -> Vec<(String, String)> {
    let tx = t.node().db().system().await.unwrap();
    incident_alerts::Entity::find()
        .filter(incident_alerts::Column::OrgId.eq(org))
        .order_by_asc(incident_alerts::Column::ReceivedAt)
        .order_by_asc(incident_alerts::Column::Id)
        .all(tx.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.fingerprint, a.status))
        .collect()
}

async fn deliveries_written_together(backend: Backend) {
    use AlertStatus::{Firing, Resolved};
    let (t, org, incidents) = org_node(backend, "batch@example.com").await;
    let now = Utc::now();
    // Sixty deliveries at once, so that they queue behind each other and go in batches: ten
    // alerts, each delivered three times firing; one delivery that flaps an alert within itself;
    // one whose org does not exist (the database refuses it).
    let mut calls = Vec::new();
    for n in 0..60 {
        let incidents = incidents.clone();
        let (org_id, alerts) = match n {
            7 => (
                org,
                vec![
                    alert("flap", Firing),
                    alert("flap", Resolved),
                    alert("flap", Resolved),
                    alert("flap", Firing),
                ],
            ),
            13 => (Uuid::now_v7(), vec![alert("orphan", Firing)]),
            n => (org, vec![alert(&format!("a{}", n % 10), Firing)]),
        };
        calls.push(tokio::spawn(async move {
            incidents.store_alerts(org_id, alerts, now).await
        }));
    }
    let mut stored = Vec::new();
    for c in calls {
        stored.push(c.await.unwrap());
    }
    assert!(
        stored[13].is_err(),
        "a delivery for no org is refused: {:?}",
        stored[13]
    );
    for (n, s) in stored.iter().enumerate().filter(|(n, _)| *n != 13) {
        assert!(s.is_ok(), "delivery {n} failed alone: {s:?}");
    }
    let flap = stored[7].as_ref().unwrap();
    assert_eq!((flap.received, flap.stored), (4, 3), "{flap:?}");
    let firsts: usize = stored
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != 7 && *n != 13)
        .map(|(_, s)| s.as_ref().unwrap().stored)
        .sum();
    assert_eq!(firsts, 10, "each alert stored once, its repeats not");
    let rows = rows(&t, org).await;
    let mut per: HashMap<&str, Vec<&str>> = HashMap::new();
    for (fp, status) in &rows {
        per.entry(fp).or_default().push(status);
    }
    assert_eq!(per["flap"], ["firing", "resolved", "firing"], "{rows:?}");
    for n in 0..10 {
        assert_eq!(per[format!("a{n}").as_str()], ["firing"], "{rows:?}");
    }
    assert_eq!(rows.len(), 13);
    // A repeat later stores nothing; a change of state does.
    let again = incidents
        .store_alerts(org, vec![alert("a1", Firing), alert("a2", Resolved)], now)
        .await
        .unwrap();
    assert_eq!((again.received, again.stored), (2, 1));
    t.stop().await;
}

/// Deliveries past one batch's alert cap (5 000) wait for the next batch, none lost: twelve
/// deliveries of 500 distinct alerts at once.
async fn large_deliveries_span_batches(backend: Backend) {
    let (t, org, incidents) = org_node(backend, "large@example.com").await;
    let now = Utc::now();
    let calls: Vec<_> = (0..12)
        .map(|d| {
            let incidents = incidents.clone();
            let alerts = (0..500)
                .map(|n| alert(&format!("d{d}-{n}"), AlertStatus::Firing))
                .collect();
            tokio::spawn(async move { incidents.store_alerts(org, alerts, now).await })
        })
        .collect();
    for c in calls {
        let stored = tokio::time::timeout(std::time::Duration::from_secs(60), c)
            .await
            .expect("every delivery is answered")
            .unwrap()
            .unwrap();
        assert_eq!((stored.received, stored.stored), (500, 500));
    }
    assert_eq!(rows(&t, org).await.len(), 6_000);
    t.stop().await;
}

async fn correlation_rereads_alerts_changed_elsewhere(backend: Backend) {
    use AlertStatus::{Firing, Resolved};
    let (t, org, incidents) = org_node(backend, "reuse@example.com").await;
    let window = chrono::Duration::minutes(15);
    let now = Utc::now();
    let place_all = |known: Known, place: fn(usize) -> Place| {
        let incidents = incidents.clone();
        async move {
            let mut tx = incidents.correlation(org, true).await.unwrap();
            let pending = tx.pending(100).await.unwrap();
            tx.load_open(window, known).await.unwrap();
            for a in &pending {
                tx.place(a, place(tx.incidents.len())).await.unwrap();
            }
            tx.commit(pending.len()).await.unwrap()
        }
    };
    // One correlation opens the incident with `first` and keeps what it knows.
    incidents
        .store_alerts(org, vec![alert("first", Firing)], now)
        .await
        .unwrap();
    let known = place_all(Known::new(), |_| Place::Open).await.known;
    assert_eq!(known.len(), 1);
    // Another (another node's, during a placement change) puts `second` into it.
    incidents
        .store_alerts(org, vec![alert("second", Firing)], now)
        .await
        .unwrap();
    place_all(Known::new(), |_| Place::Join(0)).await;
    // The first, reusing what it knew, must see `second` in the incident: its alert count
    // changed, so its alerts are read again.
    incidents
        .store_alerts(org, vec![alert("second", Resolved)], now)
        .await
        .unwrap();
    let mut tx = incidents.correlation(org, true).await.unwrap();
    let pending = tx.pending(100).await.unwrap();
    tx.load_open(window, known).await.unwrap();
    assert_eq!(tx.incidents.len(), 1);
    assert!(
        tx.incidents[0].holds(&pending[0]),
        "the incident holds the alert another correlation placed"
    );
    assert_eq!(tx.incidents[0].row.alert_count, 2);
    tx.place(&pending[0], Place::Join(0)).await.unwrap();
    let done = tx.commit(1).await.unwrap();
    let inc = &done.known.values().next().unwrap().row;
    assert_eq!((inc.alert_count, inc.firing_count), (3, 1));
    assert_eq!(inc.status, "investigating", "`first` still fires");
    // And what it reuses unchanged is what it would read: a resolution of `first` clears it.
    incidents
        .store_alerts(org, vec![alert("first", Resolved)], now)
        .await
        .unwrap();
    let mut tx = incidents.correlation(org, true).await.unwrap();
    let pending = tx.pending(100).await.unwrap();
    tx.load_open(window, done.known).await.unwrap();
    assert!(tx.incidents[0].holds(&pending[0]));
    tx.place(&pending[0], Place::Join(0)).await.unwrap();
    let done = tx.commit(1).await.unwrap();
    assert_eq!(done.events.len(), 1);
    assert_eq!(done.events[0].data["change"], "resolved");
    t.stop().await;
}

/// Feed event ids are 64-bit: a busy installation passes 2^31 of them, and a client resumes
/// from past there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_ids_go_past_32_bits() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let (t, org, incidents) = org_node(Backend::Postgres, "ids@example.com").await;
    t.node()
        .db()
        .connection()
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT setval('incident_events_id_seq', 5000000000)",
        ))
        .await
        .unwrap();
    incidents
        .store_alerts(org, vec![alert("big", AlertStatus::Firing)], Utc::now())
        .await
        .unwrap();
    let mut tx = incidents.correlation(org, true).await.unwrap();
    let pending = tx.pending(10).await.unwrap();
    tx.load_open(chrono::Duration::minutes(15), Known::new())
        .await
        .unwrap();
    tx.place(&pending[0], Place::Open).await.unwrap();
    let done = tx.commit(1).await.unwrap();
    assert_eq!(done.events[0].id, 5_000_000_001);
    let resumed = incidents
        .events_after(org, 5_000_000_000, 10)
        .await
        .unwrap();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].id, 5_000_000_001);
    t.stop().await;
}

on_both_backends!(
    deliveries_written_together,
    large_deliveries_span_batches,
    correlation_rereads_alerts_changed_elsewhere
);
