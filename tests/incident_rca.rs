//! The background root-cause analysis of an incident: a background chat session of the org's
//! agent account runs read-only tools (a read runs, a delete is declined, never asked), each
//! step is written as a thought as it happens and published on the feed, and the run ends
//! with summary, root cause, remediation and checked citations.

mod common;

use aurora_fakes::Reply;
use common::incidents::{deliver, open_feed, wait_for, webhook};
use common::kb::{model_dir, settled, upload_ok};
use common::ws::{chat_node_on, Llm};
use common::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};

const KUBECTL: &str = "#!/bin/sh\ncase \"$1\" in\n  get) echo 'web-1 0/1 CrashLoopBackOff (OOMKilled)';;\n  delete) echo 'pod \"web-1\" deleted';;\nesac\n";

const RUNBOOK: &str = "# Checkout latency runbook\n\nWhen checkout latency rises and web pods are \
OOMKilled, the memory limit of the web deployment is too low for the cart cache. Raise the \
limit to 1Gi and restart the rollout.\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_reads_declines_a_delete_cites_and_streams_its_thoughts() {
    let model = model_dir();
    let (t, fake, _dir) = chat_node_on(
        Backend::Postgres,
        Llm::OpenAi,
        vec![],
        KUBECTL,
        &[
            ("EMBEDDING_MODEL_DIR", model.as_str()),
            ("AURORA_INCIDENT_TICK_MS", "200"),
        ],
    )
    .await;
    let admin = t.register("rca@example.com", "Acme").await;
    let doc = upload_ok(
        &t,
        &admin,
        "checkout-runbook.md",
        RUNBOOK.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(settled(&t, &admin, &doc).await["status"], "ready");
    let answer = json!({
        "summary": "Checkout is slow because web pods are OOMKilled.",
        "root_cause": "The web deployment's memory limit is too low for the cart cache.",
        "remediation": "Raise the memory limit to 1Gi and restart the rollout.",
        "citations": [
            {"kind": "tool_output", "reference": "c1", "excerpt": "web-1 0/1 CrashLoopBackOff (OOMKilled)"},
            {"kind": "kb_chunk", "reference": doc, "title": "Checkout latency runbook", "excerpt": "the memory limit of the web deployment is too low"},
            {"kind": "alert", "reference": "00000000-0000-0000-0000-000000000000", "excerpt": "made up"},
            {"kind": "tool_output", "reference": "never-called", "excerpt": "made up"}
        ]
    });
    fake.push(vec![
        Reply::tool_call(
            "c1",
            "cloud_exec",
            &["{\"command\": \"kubectl get pods -n shop\"}"],
            (100, 10),
        ),
        Reply::tool_call(
            "c2",
            "cloud_exec",
            &["{\"command\": \"kubectl delete pod web-1 -n shop\"}"],
            (120, 10),
        ),
        Reply::tool_call(
            "c3",
            "knowledge_base_search",
            &["{\"query\": \"checkout latency OOMKilled\"}"],
            (140, 10),
        ),
        Reply::text(
            &["Found it.\n```json\n", &answer.to_string(), "\n```"],
            (200, 50),
        ),
    ]);
    let mut feed = open_feed(&t.base, &admin, None).await;
    let token = webhook(&t.base, &admin, None).await;
    // Grafana's documented example, with its first alert only: one incident, one analysis.
    let mut grafana: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/actors/src/incidents/intake/fixtures/grafana_firing.json"
        ))
        .unwrap(),
    )
    .unwrap();
    grafana["alerts"].as_array_mut().unwrap().truncate(1);
    let grafana = grafana.to_string();
    let (status, v) = deliver(&t.base, "grafana", &token, grafana, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let created = feed
        .until(10, "the incident", |e| {
            e.event == "incident" && e.data["data"]["change"] == "created"
        })
        .await;
    let id = created.data["incident_id"].as_str().unwrap().to_string();
    // Thoughts arrive live, before the analysis ends.
    let first = feed
        .until(30, "a thought", |e| {
            e.event == "thought" && e.data["incident_id"] == id.as_str()
        })
        .await;
    assert_eq!(first.data["incident_id"], id.as_str());
    let done = feed
        .until(30, "the analysis' end", |e| {
            e.event == "incident"
                && e.data["incident_id"] == id.as_str()
                && e.data["data"]["change"] == "analyzed"
        })
        .await;
    assert!(first.id.parse::<i64>().unwrap() < done.id.parse::<i64>().unwrap());
    let (_, d) = t.get(&format!("/api/incidents/{id}"), Some(&admin)).await;
    assert_eq!(d["rca_status"], "done", "{d:#}");
    assert_eq!(d["status"], "analyzed");
    assert_eq!(d["root_cause"], answer["root_cause"]);
    assert_eq!(d["remediation"], answer["remediation"]);
    assert_eq!(d["summary"], answer["summary"]);
    assert!(d["session_id"].is_string());
    let thoughts = d["thoughts"].as_array().unwrap();
    let step = |kind: &str, call: &str| -> Vec<&Value> {
        thoughts
            .iter()
            .filter(|t| t["kind"] == kind && t["tool_call_id"] == call)
            .collect()
    };
    assert_eq!(step("tool_call", "c1").len(), 1, "{thoughts:#?}");
    let read = step("tool_result", "c1");
    assert!(
        read[0]["content"].as_str().unwrap().contains("OOMKilled"),
        "{read:?}"
    );
    let declined = step("tool_result", "c2");
    assert_eq!(declined.len(), 1, "{thoughts:#?}");
    assert!(
        declined[0]["content"].as_str().unwrap().contains("not run"),
        "{declined:?}"
    );
    assert!(!thoughts
        .iter()
        .any(|t| t["content"].as_str().unwrap_or("").contains("deleted")));
    let search = step("tool_result", "c3");
    assert!(search[0]["content"].as_str().unwrap().contains(&doc));
    assert!(thoughts.iter().any(|t| t["kind"] == "finding"));
    let seqs: Vec<i64> = thoughts
        .iter()
        .map(|t| t["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Citations that point at what the run saw; the made-up ones are dropped.
    let citations = d["citations"].as_array().unwrap();
    assert_eq!(citations.len(), 2, "{citations:#?}");
    assert!(citations
        .iter()
        .any(|c| c["kind"] == "tool_output" && c["reference"] == "c1"));
    assert!(citations
        .iter()
        .any(|c| c["kind"] == "kb_chunk" && c["reference"] == doc.as_str()));
    // The model was asked as a background run: no approval was ever sought, and the delete
    // was refused by the gate (audited), never run.
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    let tools: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"incident_lookup") && tools.contains(&"knowledge_base_search"),
        "{tools:?}"
    );
    let brief = requests[0]["messages"].to_string();
    assert!(brief.contains(&id), "the brief names the incident");
    // The background session is the agent's: it is not in the admin's own session list, and
    // the agent account is no member.
    let (_, sessions) = t.get("/chat_api/sessions", Some(&admin)).await;
    assert!(!sessions
        .to_string()
        .contains(d["session_id"].as_str().unwrap()));
    let (_, members) = t.get("/api/org/members", Some(&admin)).await;
    assert!(
        !members.to_string().contains("agents.aurora.invalid"),
        "{members}"
    );
    // "Analyse again" runs a second analysis.
    fake.push(vec![Reply::text(
        &["{\"summary\": \"again\", \"root_cause\": \"same\", \"remediation\": \"same\"}"],
        (10, 5),
    )]);
    let (status, v) = t
        .post(&format!("/api/incidents/{id}/rca"), Some(&admin), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let again = wait_for(30, "the second analysis", || async {
        let (_, d) = t.get(&format!("/api/incidents/{id}"), Some(&admin)).await;
        (d["rca_status"] == "done" && d["summary"] == "again").then_some(d)
    })
    .await;
    let runs: Vec<i64> = again["thoughts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["run"].as_i64().unwrap())
        .collect();
    assert!(runs.contains(&1) && runs.contains(&2), "{runs:?}");
    t.stop().await;
}

/// The claim picks the oldest queued analysis of an org below its limit: an org at its limit
/// with a long queue does not hold back another org's analysis (the claim once looked only at
/// the 50 oldest queued, all of them the busy org's), and an incident closed while its
/// analysis waited is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_org_does_not_starve_the_others_of_analyses() {
    use aurora_storage::cache::Cache;
    use aurora_storage::incidents::queries::{IncidentPatch, ManualIncident};
    use aurora_storage::incidents::{Feed, Incidents, Severity};
    let t = common::TestNode::start(Backend::Postgres).await;
    let admin = t.register("busy@example.com", "Busy").await;
    let quiet = t.register("quiet@example.com", "Quiet").await;
    let (busy, quiet) = (t.principal(&admin).await, t.principal(&quiet).await);
    let store = Incidents::new(t.node().db().clone(), Feed::new(Cache::local()));
    let manual = |title: &str| ManualIncident {
        title: title.into(),
        severity: Severity::High,
        service: None,
        description: String::new(),
    };
    let mut first = None;
    for i in 0..60 {
        let inc = store
            .create_manual(&busy, manual(&format!("busy {i}")))
            .await
            .unwrap();
        first.get_or_insert(inc.id);
    }
    let closed = store
        .create_manual(&quiet, manual("closed meanwhile"))
        .await
        .unwrap();
    let patch = IncidentPatch {
        status: Some("dismissed".into()),
        ..Default::default()
    };
    store.patch(&quiet, closed.id, patch).await.unwrap();
    let waiting = store
        .create_manual(&quiet, manual("quiet one"))
        .await
        .unwrap();

    let one = store.claim_analysis("node-x", 1).await.unwrap().unwrap();
    assert_eq!(one.incident.id, first.unwrap(), "the oldest goes first");
    let two = store.claim_analysis("node-x", 1).await.unwrap().unwrap();
    assert_eq!(two.incident.id, waiting.id, "the busy org is at its limit");
    assert!(store.claim_analysis("node-x", 1).await.unwrap().is_none());
    assert_eq!(
        store
            .claim_analysis("node-x", 2)
            .await
            .unwrap()
            .unwrap()
            .incident
            .org_id,
        busy.org_id
    );
    // The agent accounts' addresses cannot be taken first by a person (which would leave the
    // org without an agent), neither at sign-up nor by invitation.
    let agent = store.agent(quiet.org_id).await.unwrap();
    assert!(agent.email.ends_with(".invalid"));
    let squat = format!("agent+{}@agents.aurora.invalid", busy.org_id);
    let (status, v) = t
        .post(
            "/api/auth/register",
            None,
            json!({ "email": squat, "password": "correct horse battery", "org_name": "Squat" }),
        )
        .await;
    common::assert_error(
        status,
        &v,
        reqwest::StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    let (status, v) = t
        .post(
            "/api/org/invitations",
            Some(&admin),
            json!({ "role": "viewer", "email": squat }),
        )
        .await;
    common::assert_error(
        status,
        &v,
        reqwest::StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    // Created at once from two places, it is one account.
    let (a, b) = tokio::join!(store.agent(busy.org_id), store.agent(busy.org_id));
    assert_eq!(a.unwrap().user_id, b.unwrap().user_id);
    t.stop().await;
}
