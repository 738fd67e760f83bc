//! The knowledge base end to end on a whole node with the real embedding model: upload a PDF and
//! a Markdown runbook, watch them become ready, search with a question worded unlike the text,
//! find it through the agent's tool in a chat turn, delete it without a trace; org isolation;
//! bad uploads; a crashing ingest actor and embedding worker; stuck documents.

mod common;

use std::time::Duration;

use aurora_fakes::seaweed::SeaweedFs;
use aurora_fakes::Reply;
use aurora_storage::auth::Principal;
use aurora_storage::knowledge::{DocStatus, Knowledge, NewDocument};
use aurora_storage::objects::{ObjectKey, ObjectStore, S3Settings};
use common::kb::{model_dir, pdf, search, settled, upload, upload_ok};
use common::ws::{chat_node_on, open, query, turn, Llm};
use common::{assert_error, Backend, TestNode};
use reqwest::StatusCode;
use serde_json::{json, Value};

const RUNBOOK: &str = "# Payments runbook

## Redis memory pressure

When the Redis cache reaches its maxmemory limit it starts evicting keys and the checkout \
service sees cache misses. Check `INFO memory`, then raise `maxmemory` in the Helm values of \
redis-payments or switch the eviction policy to allkeys-lru. Never flush the cache in production.

## Database failover

If the primary PostgreSQL instance stops answering, promote the replica with `patronictl \
failover payments-db` and update the connection string secret. Expect thirty seconds of \
write errors while the replica is promoted.

## Deploying a hotfix

Build the image, push it to the registry, and roll it out with `kubectl rollout restart \
deployment/payments -n prod`. Watch the error rate on the payments dashboard for ten minutes.
";

const PDF_LINES: &[&str] = &[
    "Ingress TLS certificates",
    "The public ingress serves a certificate issued by cert-manager from Let's Encrypt.",
    "Certificates renew automatically thirty days before they expire.",
    "To renew one by hand, delete the secret ingress-tls in namespace edge",
    "and cert-manager requests a new certificate within two minutes.",
];

/// A node with the knowledge base and a chat agent whose scripted LLM searches it once.
async fn kb_node(
    backend: Backend,
    weed: Option<&SeaweedFs>,
    search_query: &str,
) -> (TestNode, aurora_fakes::FakeServer, tempfile::TempDir) {
    let model = model_dir();
    let mut extra = vec![("EMBEDDING_MODEL_DIR", model.as_str())];
    if let Some(weed) = weed {
        extra.push(("S3_ENDPOINT", weed.s3_endpoint.as_str()));
        extra.push(("S3_BUCKET", "aurora-kb"));
    }
    let args = json!({ "query": search_query }).to_string();
    chat_node_on(
        backend,
        Llm::OpenAi,
        vec![
            Reply::tool_call("call_kb", "knowledge_base_search", &[&args], (120, 12)),
            Reply::text(&["Raise maxmemory, per the payments runbook."], (300, 10)),
        ],
        "#!/bin/sh\necho unused\n",
        &extra,
    )
    .await
}

on_both_backends!(
    upload_search_chat_and_delete,
    orgs_never_see_each_others_documents
);

/// The Done-when scenario of the knowledge base, on the embedded default (local objects) and on
/// PostgreSQL + Redis with objects in a real SeaweedFS.
async fn upload_search_chat_and_delete(backend: Backend) {
    let weed = match backend {
        Backend::Postgres => Some(tokio::task::spawn_blocking(SeaweedFs::start).await.unwrap()),
        Backend::Sqlite => None,
    };
    let (t, fake, _dir) = kb_node(backend, weed.as_ref(), "redis running out of memory").await;
    let token = t.register("sre@acme.io", "Acme").await;

    let md = upload_ok(
        &t,
        &token,
        "payments-runbook.md",
        RUNBOOK.as_bytes().to_vec(),
    )
    .await;
    let tls = upload_ok(&t, &token, "ingress-tls.pdf", pdf(PDF_LINES)).await;
    for id in [&md, &tls] {
        let doc = settled(&t, &token, id).await;
        assert_eq!(doc["status"], "ready", "{doc}");
        assert!(doc["chunks_total"].as_i64().unwrap() >= 1, "{doc}");
        assert_eq!(doc["chunks_done"], doc["chunks_total"], "{doc}");
        assert!(doc["error"].is_null(), "{doc}");
    }
    let (_, list) = t.get("/api/knowledge-base/documents", Some(&token)).await;
    assert_eq!(list["documents"].as_array().unwrap().len(), 2, "{list}");

    // Questions worded unlike the text find the right passage first.
    let hits = search(
        &t,
        &token,
        "the cache server is out of RAM and throwing away entries",
    )
    .await;
    assert_eq!(hits[0]["document_id"], md.as_str(), "{hits:?}");
    assert!(
        hits[0]["snippet"].as_str().unwrap().contains("maxmemory"),
        "{hits:?}"
    );
    assert_eq!(hits[0]["title"], "payments-runbook");
    let hits = search(
        &t,
        &token,
        "how do I get a fresh HTTPS cert for the load balancer",
    )
    .await;
    assert_eq!(hits[0]["document_id"], tls.as_str(), "{hits:?}");
    assert!(
        hits[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("cert-manager"),
        "{hits:?}"
    );

    // The agent's tool returns the passage in a chat turn, and the model is given it.
    let (_, session) = t.post("/chat_api/sessions", Some(&token), json!({})).await;
    let sid = session["id"].as_str().unwrap().to_string();
    let mut ws = open(&t, &token).await;
    query(
        &mut ws,
        &sid,
        "Checkout is slow and Redis looks full",
        "ask",
    )
    .await;
    let frames = turn(&mut ws, "cancel").await;
    let result = frames
        .iter()
        .find(|f| f["type"] == "tool_result")
        .unwrap_or_else(|| panic!("no tool_result in {frames:?}"));
    assert_eq!(result["data"]["tool_name"], "knowledge_base_search");
    let output = result["data"]["output"].as_str().unwrap();
    assert!(output.starts_with("[1] \"payments-runbook\""), "{output}");
    assert!(
        output.contains("maxmemory") && output.contains(&md),
        "{output}"
    );
    assert!(!frames.iter().any(|f| f["type"] == "execution_confirmation"));
    let second = &fake.requests()[1];
    assert!(second.to_string().contains("allkeys-lru"), "{second}");

    // Delete removes the row, the chunks, the vectors and the file.
    let who = t.principal(&token).await;
    let (_, doc) = t
        .get(&format!("/api/knowledge-base/documents/{md}"), Some(&token))
        .await;
    let path = format!("kb/{md}/{}", doc["document"]["filename"].as_str().unwrap());
    let key = ObjectKey::new(who.org_id, who.user_id, &path).unwrap();
    let store = match &weed {
        Some(weed) => ObjectStore::s3(&S3Settings {
            endpoint: weed.s3_endpoint.clone(),
            bucket: "aurora-kb".into(),
            region: "us-east-1".into(),
            access_key: None,
            secret_key: None,
        })
        .await
        .unwrap(),
        None => ObjectStore::local(t.data_dir().join("objects")),
    };
    assert!(
        store.get(&key).await.unwrap().is_some(),
        "the upload is stored"
    );
    let resp = t
        .client
        .delete(format!("{}/api/knowledge-base/documents/{md}", t.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, body) = t
        .get(&format!("/api/knowledge-base/documents/{md}"), Some(&token))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert!(store.get(&key).await.unwrap().is_none(), "the file is gone");
    let hits = search(&t, &token, "redis maxmemory eviction policy").await;
    assert!(
        hits.iter().all(|h| h["document_id"] != md.as_str()),
        "{hits:?}"
    );
    let chunks_left = chunk_count(&t, &md).await;
    assert_eq!(chunks_left, 0);
    assert!(chunk_count(&t, &tls).await > 0);
    let hits = search(&t, &token, "renew the TLS certificate").await;
    assert_eq!(hits[0]["document_id"], tls.as_str());
    t.stop().await;
}

/// Chunks stored for `document` (through the node's own connection, all orgs).
async fn chunk_count(t: &TestNode, document: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let conn = t.node().db().connection();
    let backend = conn.get_database_backend();
    let tx = conn.begin().await.unwrap();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            format!("SELECT COUNT(*) AS n FROM kb_chunks WHERE document_id = '{document}'")
        }
        _ => {
            // SQLite stores UUIDs as 16-byte blobs.
            let hex: String = document.chars().filter(|c| *c != '-').collect();
            format!("SELECT COUNT(*) AS n FROM kb_chunks WHERE document_id = x'{hex}'")
        }
    };
    if backend == sea_orm::DbBackend::Postgres {
        // Row-level security hides every row outside a system or org context.
        tx.execute_unprepared("SELECT set_config('aurora.system', 'on', true)")
            .await
            .unwrap();
    }
    let row = tx
        .query_one_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .unwrap();
    let n = row.try_get::<i64>("", "n").unwrap();
    tx.commit().await.unwrap();
    n
}

async fn orgs_never_see_each_others_documents(backend: Backend) {
    let (t, _fake, _dir) = kb_node(backend, None, "redis maxmemory").await;
    let a = t.register("a@one.io", "One").await;
    let b = t.register("b@two.io", "Two").await;
    let doc = upload_ok(&t, &a, "payments-runbook.md", RUNBOOK.as_bytes().to_vec()).await;
    assert_eq!(settled(&t, &a, &doc).await["status"], "ready");
    assert!(!search(&t, &a, "redis maxmemory").await.is_empty());

    // Org B sees nothing of org A: not in search, not by id, not through the agent.
    assert!(search(&t, &b, "redis maxmemory").await.is_empty());
    let (_, list) = t.get("/api/knowledge-base/documents", Some(&b)).await;
    assert_eq!(list["documents"], json!([]));
    let (status, body) = t
        .get(&format!("/api/knowledge-base/documents/{doc}"), Some(&b))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    let resp = t
        .client
        .delete(format!("{}/api/knowledge-base/documents/{doc}", t.base))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (_, session) = t.post("/chat_api/sessions", Some(&b), json!({})).await;
    let sid = session["id"].as_str().unwrap().to_string();
    let mut ws = open(&t, &b).await;
    query(
        &mut ws,
        &sid,
        "what does our runbook say about redis?",
        "agent",
    )
    .await;
    let frames = turn(&mut ws, "cancel").await;
    let result: &Value = frames
        .iter()
        .find(|f| f["type"] == "tool_result")
        .unwrap_or_else(|| panic!("no tool_result in {frames:?}"));
    let output = result["data"]["output"].as_str().unwrap();
    assert!(output.starts_with("No passages"), "{output}");
    // Still there for its own org.
    assert_eq!(settled(&t, &a, &doc).await["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_and_searches_are_refused_clearly() {
    let model = model_dir();
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("EMBEDDING_MODEL_DIR", model.as_str()),
            ("AURORA_KB_MAX_UPLOAD_BYTES", "4000"),
        ],
    )
    .await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;
    let before = t.row_counts().await;

    let (status, body) = upload(&t, &admin, "diagram.png", vec![1, 2, 3]).await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    let (status, body) = upload(&t, &admin, "big.txt", vec![b'a'; 5000]).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    let (status, body) = t
        .post_raw(
            "/api/knowledge-base/upload",
            Some(&admin),
            "text/plain",
            b"hi".to_vec(),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    let form = reqwest::multipart::Form::new().text("title", "no file");
    let resp = t
        .client
        .post(format!("{}/api/knowledge-base/upload", t.base))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(resp).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    for form in [
        reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"hi".to_vec()).file_name("a.md"),
            )
            .text("color", "red"),
        reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"hi".to_vec()).file_name("a.md"),
            )
            .text("title", "t".repeat(2000)),
        reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(b"hi".to_vec())),
    ] {
        let resp = t
            .client
            .post(format!("{}/api/knowledge-base/upload", t.base))
            .bearer_auth(&admin)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let (status, body) = common::read(resp).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    }
    let (status, body) = upload(&t, &viewer, "notes.txt", b"hello".to_vec()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let resp = t
        .client
        .post(format!("{}/api/knowledge-base/upload", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.row_counts().await,
        before,
        "refused uploads wrote nothing"
    );

    // Accepted, but nothing to index: failed, with the reason, and never searchable.
    for (name, bytes, reason) in [
        ("empty.md", Vec::new(), "empty"),
        ("blank.txt", b"  \n\n  ".to_vec(), "no text"),
        ("latin1.txt", vec![0x63, 0x61, 0x66, 0xe9], "UTF-8"),
        ("fake.pdf", b"this is not a pdf".to_vec(), "not a PDF"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage".to_vec(), "PDF"),
    ] {
        let id = upload_ok(&t, &admin, name, bytes).await;
        let doc = settled(&t, &admin, &id).await;
        assert_eq!(doc["status"], "failed", "{doc}");
        let error = doc["error"].as_str().unwrap();
        assert!(error.contains(reason), "{name}: {error}");
        assert_eq!(chunk_count(&t, &id).await, 0);
    }

    for body in [
        json!({ "query": "" }),
        json!({ "query": "x", "limit": 0 }),
        json!({ "query": "x", "limit": 51 }),
        json!({ "query": "x".repeat(2001) }),
        json!({ "limit": 3 }),
    ] {
        let (status, resp) = t
            .post("/api/knowledge-base/search", Some(&viewer), body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {resp}");
    }
    let (status, body) = t
        .get("/api/knowledge-base/documents/not-a-uuid", Some(&admin))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");

    // The org memory: read, replace, bounded, editor-only.
    let (status, body) = t.get("/api/knowledge-base/memory", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["memory"]["content"], "");
    let put = |token: &str, content: String| {
        let req = t
            .client
            .put(format!("{}/api/knowledge-base/memory", t.base))
            .bearer_auth(token)
            .json(&json!({ "content": content }));
        async move { common::read(req.send().await.unwrap()).await }
    };
    let (status, body) = put(&admin, "Prod is in eu-west-1.".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = t.get("/api/knowledge-base/memory", Some(&viewer)).await;
    assert_eq!(body["memory"]["content"], "Prod is in eu-west-1.");
    let (status, body) = put(&admin, "x".repeat(20_001)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let (status, body) = put(&viewer, "mine now".into()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_model_says_so() {
    let t = TestNode::start(Backend::Sqlite).await;
    let token = t.register("a@acme.io", "Acme").await;
    let (status, body) = t
        .post(
            "/api/knowledge-base/search",
            Some(&token),
            json!({ "query": "x" }),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "KB_UNAVAILABLE",
    );
    let (status, body) = upload(&t, &token, "a.md", b"# hi".to_vec()).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "KB_UNAVAILABLE",
    );
    // The org memory needs no model.
    let (status, _) = t.get("/api/knowledge-base/memory", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_in_ingestion_and_embedding_are_contained_and_stuck_documents_swept() {
    let model = model_dir();
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("EMBEDDING_MODEL_DIR", model.as_str()),
            ("AURORA_KB_STUCK_SECS", "1"),
            ("AURORA_CRON_STALE_UPLOADS", "* * * * * *"),
        ],
    )
    .await;
    let token = t.register("a@acme.io", "Acme").await;

    fail::cfg("kb-ingest", "1*panic(injected ingest panic)").unwrap();
    let id = upload_ok(&t, &token, "runbook.md", RUNBOOK.as_bytes().to_vec()).await;
    let doc = settled(&t, &token, &id).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert!(doc["error"].as_str().unwrap().contains("crashed"), "{doc}");
    // The next upload is ingested normally: the supervisor and the pool are intact.
    let id = upload_ok(&t, &token, "runbook.md", RUNBOOK.as_bytes().to_vec()).await;
    assert_eq!(settled(&t, &token, &id).await["status"], "ready");

    // A worker of the embedding pool that crashes mid-batch: its callers get an error, the
    // supervisor starts a new worker, and the next search works.
    fail::cfg("embedding-worker", "1*panic(injected embedding panic)").unwrap();
    let (status, body) = t
        .post(
            "/api/knowledge-base/search",
            Some(&token),
            json!({ "query": "redis" }),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "EMBEDDING_UNAVAILABLE",
    );
    let mut recovered = false;
    for _ in 0..50 {
        let (status, _) = t
            .post(
                "/api/knowledge-base/search",
                Some(&token),
                json!({ "query": "redis maxmemory" }),
            )
            .await;
        if status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "search works again after the worker restarted");
    let tree = serde_json::to_value(t.node().actor_tree().await.unwrap()).unwrap();
    let pool = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "embedding_pool")
        .unwrap_or_else(|| panic!("no embedding pool in {tree}"));
    assert_eq!(pool["children"][0]["kind"], "embedding_worker");
    assert_eq!(pool["children"][0]["restarts"], 1, "{pool}");
    assert!(tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == "ingest_supervisor"));

    // A document left `processing` by a node that died is failed by the sweep.
    let who: Principal = t.principal(&token).await;
    let store = Knowledge::new(t.node().db().clone());
    let orphan = store
        .create(
            &who,
            NewDocument {
                title: "orphan",
                filename: "orphan.md",
                content_type: "text/markdown",
                size_bytes: 10,
            },
        )
        .await
        .unwrap();
    store
        .mark(who.org_id, orphan.id, DocStatus::Processing, None)
        .await
        .unwrap();
    let mut swept = None;
    for _ in 0..100 {
        let doc = store.get(who.org_id, orphan.id).await.unwrap();
        if doc.status == DocStatus::Failed {
            swept = Some(doc);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let swept = swept.expect("the sweep failed the stuck document");
    assert!(swept.error.unwrap().contains("no progress"));
    // Ready documents are never touched by the sweep.
    assert_eq!(settled(&t, &token, &id).await["status"], "ready");
}
