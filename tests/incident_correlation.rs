//! Correlation: an alert joins an open incident of its org when it arrives within the window
//! of the incident's last alert and shares its alert, group or service, or its text is close
//! (the in-process embeddings); otherwise it opens one. Resolutions resolve. A storm from two
//! nodes at once makes one incident per related group, not more.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::incidents::{deliver, generic, incidents, wait_for, webhook};
use common::kb::model_dir;
use common::{redis_url, Backend, TestNode};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn send(t: &TestNode, token: &str, alert: Value) {
    let (status, v) = deliver(&t.base, "generic", token, alert.to_string(), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
}

/// Waits until the org's alerts are all placed and returns (incident id -> alert count).
async fn settled(t: &TestNode, token: &str, alerts: i64) -> Vec<Value> {
    wait_for(15, "every alert to be placed", || async {
        let list = incidents(t, token).await;
        let placed: i64 = list
            .iter()
            .map(|i| i["alert_count"].as_i64().unwrap())
            .sum();
        (placed == alerts).then_some(list)
    })
    .await
}

fn holding<'a>(list: &'a [Value], title: &str) -> &'a Value {
    list.iter()
        .find(|i| i["title"] == title)
        .unwrap_or_else(|| panic!("no incident titled {title:?} in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_join_by_alert_group_service_and_text_within_the_window() {
    let model = model_dir();
    let t = TestNode::start_with(
        Backend::Postgres,
        &[
            ("EMBEDDING_MODEL_DIR", model.as_str()),
            ("AURORA_CORRELATION_WINDOW_SECS", "4"),
            ("AURORA_CORRELATION_SIMILARITY", "0.6"),
        ],
    )
    .await;
    let admin = t.register("corr@example.com", "Acme").await;
    let token = webhook(&t.base, &admin, None).await;
    let first = "Checkout latency above 2 seconds";
    send(
        &t,
        &token,
        generic(first, "latency-checkout", "checkout", "a1", "firing"),
    )
    .await;
    settled(&t, &admin, 1).await;
    // Same group; same service; close text (another group and service).
    send(
        &t,
        &token,
        generic(
            "p99 over budget",
            "latency-checkout",
            "cart",
            "a2",
            "firing",
        ),
    )
    .await;
    send(
        &t,
        &token,
        generic("Pods restarting", "crashloop", "checkout", "a3", "firing"),
    )
    .await;
    send(
        &t,
        &token,
        generic(
            "Checkout request latency is above two seconds",
            "slo-burn",
            "web-frontend",
            "a4",
            "firing",
        ),
    )
    .await;
    // Unrelated: its own incident.
    let other = "Backup volume disk almost full";
    send(&t, &token, generic(other, "disk", "backup", "b1", "firing")).await;
    let list = settled(&t, &admin, 5).await;
    assert_eq!(list.len(), 2, "{list:#?}");
    let main = holding(&list, first);
    assert_eq!(main["alert_count"], 4, "{main}");
    assert_eq!(main["firing_count"], 4);
    assert_eq!(main["status"], "investigating");
    assert_eq!(holding(&list, other)["alert_count"], 1);
    // The detail holds the alerts that joined, each with its labels and raw payload.
    let id = main["id"].as_str().unwrap();
    let (_, d) = t.get(&format!("/api/incidents/{id}"), Some(&admin)).await;
    let fps: HashSet<&str> = d["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fps, HashSet::from(["a1", "a2", "a3", "a4"]));
    // A resolution of an alert no incident holds opens nothing.
    send(
        &t,
        &token,
        generic("Never seen", "ghost", "ghost", "g1", "resolved"),
    )
    .await;
    // Resolving every alert of the unrelated incident resolves it.
    send(
        &t,
        &token,
        generic(other, "disk", "backup", "b1", "resolved"),
    )
    .await;
    let resolved = wait_for(10, "the incident to resolve", || async {
        let list = incidents(&t, &admin).await;
        let i = holding(&list, other).clone();
        (i["status"] == "resolved").then_some(i)
    })
    .await;
    assert!(resolved["resolved_at"].is_string());
    assert_eq!(resolved["firing_count"], 0);
    assert_eq!(
        incidents(&t, &admin).await.len(),
        2,
        "the ghost resolution opened nothing"
    );
    // Flapping: the alert fires again within the window and its incident reopens (one
    // incident, not one per flap); it resolves again with the alert.
    send(&t, &token, generic(other, "disk", "backup", "b1", "firing")).await;
    let reopened = wait_for(10, "the incident to reopen", || async {
        let list = incidents(&t, &admin).await;
        let i = holding(&list, other).clone();
        (i["status"] == "investigating").then_some(i)
    })
    .await;
    assert_eq!(reopened["id"], resolved["id"]);
    assert_eq!(reopened["alert_count"], 3);
    assert!(reopened["resolved_at"].is_null());
    send(
        &t,
        &token,
        generic(other, "disk", "backup", "b1", "resolved"),
    )
    .await;
    wait_for(10, "the incident to resolve again", || async {
        let list = incidents(&t, &admin).await;
        (holding(&list, other)["status"] == "resolved").then_some(())
    })
    .await;
    assert_eq!(incidents(&t, &admin).await.len(), 2);
    // Past the window, the same group opens a new incident.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    send(
        &t,
        &token,
        generic(first, "latency-checkout", "checkout", "a5", "firing"),
    )
    .await;
    let list = wait_for(10, "a new incident", || async {
        let list = incidents(&t, &admin).await;
        (list.len() == 3).then_some(list)
    })
    .await;
    assert_eq!(list[0]["title"], first, "{list:#?}");
    assert_eq!(list[0]["alert_count"], 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_from_two_nodes_opens_one_incident_per_group() {
    let a = TestNode::start(Backend::Postgres).await;
    let url = a.pg.as_ref().unwrap().url.clone();
    let redis = redis_url();
    // A second node on the same database: both take deliveries for the org at once.
    let b = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", redis.as_str()),
        ],
    )
    .await;
    let admin = a.register("storm@example.com", "Acme").await;
    let token = webhook(&a.base, &admin, None).await;
    const GROUPS: usize = 8;
    const ALERTS: usize = 1000;
    let mut deliveries = Vec::new();
    for chunk in 0..(ALERTS / 10) {
        let alerts: Vec<Value> = (0..10)
            .map(|k| {
                let n = chunk * 10 + k;
                let g = n % GROUPS;
                generic(
                    &format!("group {g} alert"),
                    &format!("group-{g}"),
                    &format!("service-{g}"),
                    &format!("fp-{n}"),
                    "firing",
                )
            })
            .collect();
        deliveries.push(json!({ "alerts": alerts }).to_string());
    }
    let bases = [a.base.clone(), b.base.clone()];
    let sent = futures::stream::iter(deliveries.into_iter().enumerate())
        .map(|(i, body)| {
            let (base, token) = (bases[i % 2].clone(), token.clone());
            async move { deliver(&base, "generic", &token, body, &[]).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for (status, v) in &sent {
        assert_eq!(*status, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["stored"], 10, "{v}");
    }
    let list = wait_for(60, "the storm to be placed", || async {
        let (_, v) = a.get("/api/incidents?limit=200", Some(&admin)).await;
        let list = v["incidents"].as_array().unwrap().clone();
        let placed: i64 = list
            .iter()
            .map(|i| i["alert_count"].as_i64().unwrap())
            .sum();
        (placed == ALERTS as i64).then_some(list)
    })
    .await;
    assert_eq!(
        list.len(),
        GROUPS,
        "{:#?}",
        list.iter()
            .map(|i| (&i["title"], &i["alert_count"]))
            .collect::<Vec<_>>()
    );
    for i in &list {
        assert_eq!(i["alert_count"], (ALERTS / GROUPS) as i64, "{i}");
    }
    b.stop().await;
    a.stop().await;
}

use futures::StreamExt;

/// The defence the storm relies on: a second correlation of an org waits for the first to
/// commit (two nodes that both think they own the org, during a placement change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlations_of_one_org_are_serialized_across_connections() {
    use aurora_storage::cache::Cache;
    use aurora_storage::incidents::{Feed, Incidents};
    let t = TestNode::start(Backend::Postgres).await;
    let admin = t.register("serial@example.com", "Acme").await;
    let org = t.principal(&admin).await.org_id;
    let other = t
        .principal(&t.register("serial-b@example.com", "B").await)
        .await
        .org_id;
    let incidents = Incidents::new(t.node().db().clone(), Feed::new(Cache::local()));
    let first = incidents.correlation(org, true).await.unwrap();
    // Another org's correlation is not held up.
    let elsewhere =
        tokio::time::timeout(Duration::from_secs(2), incidents.correlation(other, true))
            .await
            .expect("another org correlates meanwhile")
            .unwrap();
    elsewhere.commit(0).await.unwrap();
    let second = {
        let incidents = incidents.clone();
        tokio::spawn(async move { incidents.correlation(org, true).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "the second correlation of the org must wait"
    );
    first.commit(0).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("it goes on once the first commits")
        .unwrap()
        .unwrap();
    t.stop().await;
}

/// A storm of distinct alerts opens an incident each, but queues at most
/// `AURORA_RCA_MAX_QUEUED_PER_ORG` analyses of the org: the rest say why they were not
/// analysed, and "analyse again" queues one by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_queues_a_bounded_number_of_analyses() {
    let t =
        TestNode::start_with(Backend::Postgres, &[("AURORA_RCA_MAX_QUEUED_PER_ORG", "2")]).await;
    let admin = t.register("storm-cap@example.com", "Acme").await;
    let token = webhook(&t.base, &admin, None).await;
    for i in 0..5 {
        let n = i.to_string();
        send(
            &t,
            &token,
            generic(&format!("Alert {i}"), &n, &n, &n, "firing"),
        )
        .await;
    }
    let list = settled(&t, &admin, 5).await;
    assert_eq!(list.len(), 5, "{list:#?}");
    let queued: Vec<&Value> = list
        .iter()
        .filter(|i| i["rca_status"] == "queued")
        .collect();
    let skipped: Vec<&Value> = list
        .iter()
        .filter(|i| i["rca_status"] == "failed")
        .collect();
    assert_eq!((queued.len(), skipped.len()), (2, 3), "{list:#?}");
    for i in &skipped {
        assert!(
            i["rca_error"].as_str().unwrap().contains("already waiting"),
            "{i}"
        );
    }
    // The oldest were queued.
    assert!(queued
        .iter()
        .all(|q| ["Alert 0", "Alert 1"].contains(&q["title"].as_str().unwrap())));
    let id = skipped[0]["id"].as_str().unwrap();
    let (status, v) = t
        .post(&format!("/api/incidents/{id}/rca"), Some(&admin), json!({}))
        .await;
    assert!(status.is_success(), "{v}");
    let (_, d) = t.get(&format!("/api/incidents/{id}"), Some(&admin)).await;
    assert_eq!(d["rca_status"], "queued", "{d}");
    t.stop().await;
}
