//! Incidents across a cluster of three node processes: an alert posted to one node reaches a
//! feed client of another within a second and resumes on a third; the periodic jobs run once
//! per period across the cluster; an analysis whose node is killed mid-run keeps its thoughts
//! and finishes on another node without running its tool again.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aurora_fakes::Reply;
use common::cluster::{kubectl_runs, slow_kubectl, TestCluster};
use common::incidents::{deliver, generic, open_feed, wait_for, webhook};
use reqwest::StatusCode;
use serde_json::{json, Value};

const METRICS: &str = "metrics-token-for-the-cluster-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_on_one_node_reaches_the_feed_on_another_and_jobs_run_once_per_period() {
    let c = TestCluster::start_with(
        3,
        vec![],
        &[
            ("AURORA_CRON_EXPIRED_TOKENS", "*/2 * * * * *"),
            ("AURORA_METRICS_TOKEN", METRICS),
        ],
    )
    .await;
    let started = Instant::now();
    let admin = c.register(0, "cluster-feed@example.com").await;
    let token = webhook(&c.nodes[0].base(), &admin, None).await;
    let mut feed = open_feed(&c.nodes[1].base(), &admin, None).await;
    let grafana = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/actors/src/incidents/intake/fixtures/grafana_firing.json"
    ))
    .unwrap();
    let sent = Instant::now();
    let (status, v) = deliver(&c.nodes[0].base(), "grafana", &token, grafana, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let created = feed
        .until(5, "the incident on node 2", |e| {
            e.event == "incident" && e.data["data"]["change"] == "created"
        })
        .await;
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the feed of node 2 took {took:?}"
    );
    assert_eq!(created.data["data"]["source"], "grafana");
    // A client of node 3 resuming from before that event gets it from storage.
    let before = (created.id.parse::<i64>().unwrap() - 1).to_string();
    let mut resumed = open_feed(&c.nodes[2].base(), &admin, Some(&before)).await;
    let again = resumed
        .until(5, "the stored event on node 3", |e| e.event == "incident")
        .await;
    assert_eq!(again.id, created.id);
    assert_eq!(again.data, created.data);
    // A token of another org sees none of it, on any node.
    let stranger = c.register(2, "cluster-stranger@example.com").await;
    let mut theirs = open_feed(&c.nodes[2].base(), &stranger, Some("0")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(e) = theirs.rx.try_recv() {
        assert_ne!(e.data["incident_id"], created.data["incident_id"], "{e:?}");
    }
    // The periodic job fires every 2 s on every node's clock; each period ran once.
    let wait = Duration::from_secs(9).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let mut periods: HashMap<String, Vec<String>> = HashMap::new();
    for p in &c.nodes {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        for line in log
            .lines()
            .filter(|l| l.contains("periodic job ran") && l.contains("expired_tokens"))
        {
            let period = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("period="))
                .expect("the period is logged")
                .to_string();
            periods.entry(period).or_default().push(p.name.clone());
        }
    }
    assert!(periods.len() >= 3, "{periods:?}\n{}", c.logs());
    for (period, nodes) in &periods {
        assert_eq!(nodes.len(), 1, "period {period} ran on {nodes:?}");
    }
    // /metrics of each node counts its own runs; together they are the periods.
    let mut total = 0;
    for p in &c.nodes {
        let text = reqwest::Client::new()
            .get(format!("{}/metrics", p.base()))
            .bearer_auth(METRICS)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        total += text
            .lines()
            .filter(|l| {
                l.starts_with("aurora_scheduler_runs_total") && l.contains("job=\"expired_tokens\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    assert!(
        total as usize >= periods.len(),
        "{total} runs for {} periods",
        periods.len()
    );
    assert!(
        total as usize <= periods.len() + 1,
        "{total} runs for {} periods",
        periods.len()
    );
    // The webhook's token is its URL: no node logged it (the request span names the flavour).
    let logs = c.logs();
    assert!(logs.contains("/api/webhooks/grafana/[token]"), "{logs}");
    assert!(!logs.contains(&token[4..]), "a webhook token was logged");
    // The admin tree shows the scheduler and its jobs' last runs.
    let (_, tree) = c.get(0, "/api/admin/actors", &admin).await;
    assert!(tree.to_string().contains("expired_tokens"), "{tree}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_whose_node_dies_mid_tool_finishes_elsewhere_without_running_the_tool_again() {
    let (_tools, path) = slow_kubectl();
    let final_answer = json!({"summary": "web-1 crash loops", "root_cause": "bad image", "remediation": "roll back"});
    let mut c = TestCluster::start_with(
        3,
        vec![
            Reply::tool_call(
                "c1",
                "cloud_exec",
                &["{\"command\": \"kubectl get pods\"}"],
                (10, 5),
            ),
            Reply::text(&[&format!("```json\n{final_answer}\n```")], (10, 5)),
        ],
        &[
            ("AURORA_TOOL_PATH", path.as_str()),
            ("AURORA_INCIDENT_TICK_MS", "300"),
        ],
    )
    .await;
    let admin = c.register(0, "cluster-rca@example.com").await;
    let token = webhook(&c.nodes[0].base(), &admin, None).await;
    let alert = generic("Web crash looping", "crashloop", "web", "fp-web", "firing");
    let (status, v) = deliver(
        &c.nodes[0].base(),
        "generic",
        &token,
        alert.to_string(),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let mut feed = open_feed(&c.nodes[0].base(), &admin, None).await;
    let call = feed
        .until(30, "the tool call", |e| {
            e.event == "thought" && e.data["data"]["kind"] == "tool_call"
        })
        .await;
    let id = call.data["incident_id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    while kubectl_runs(c.dir()) == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kubectl_runs(c.dir()), 1, "the tool runs");
    // Which node runs it: the claim in storage says.
    let runner = {
        use sea_orm::{ConnectionTrait, Database, Statement};
        let db = Database::connect(&c.db.url).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT rca_node FROM incidents WHERE id = '{id}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<String>("", "rca_node").unwrap()
    };
    let i = c
        .nodes
        .iter()
        .position(|p| p.name == runner)
        .expect("a node of the cluster runs it");
    c.kill(i);
    let other = (i + 1) % 3;
    let done = wait_for(60, "the analysis to finish elsewhere", || async {
        let (_, d) = c.get(other, &format!("/api/incidents/{id}"), &admin).await;
        (d["rca_status"] == "done").then_some(d)
    })
    .await;
    assert_eq!(done["root_cause"], "bad image", "{done:#}");
    let thoughts = done["thoughts"].as_array().unwrap();
    let calls: Vec<&Value> = thoughts
        .iter()
        .filter(|t| t["kind"] == "tool_call")
        .collect();
    let results: Vec<&Value> = thoughts
        .iter()
        .filter(|t| t["kind"] == "tool_result")
        .collect();
    assert_eq!(calls.len(), 1, "the tool was called once: {thoughts:#?}");
    assert_eq!(kubectl_runs(c.dir()), 1, "the tool ran once");
    // Its result is recorded once, as interrupted.
    assert_eq!(results.len(), 1, "{thoughts:#?}");
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{thoughts:#?}"
    );
    assert!(
        thoughts.iter().all(|t| t["run"] == 1),
        "one run, continued: {thoughts:#?}"
    );
    // The model was shown what was already done, and that the call was interrupted.
    let requests = c.fake.requests();
    let last = requests.last().unwrap()["messages"].to_string();
    assert!(
        last.contains("continues here") && last.contains("interrupted"),
        "{last}"
    );
}
