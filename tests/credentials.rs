//! `/api/org/credentials` on both relational backends, with the secret store as a sealed file
//! (the default) and as a real OpenBao server that goes away mid-test; and the start-up
//! refusals around the secret store and `AURORA_HOST_CLOUD_CONFIG`.
//!
//! Every secret sent is then looked for, and must not be found, in every HTTP answer, in the
//! audit rows, in the whole database and in the sealed file.

mod common;

use std::path::Path;
use std::time::Duration;

use aurora::Node;
use aurora_config::Config;
use aurora_fakes::openbao::{OpenBao, ROOT_TOKEN};
use aurora_storage::credentials::{Credentials, Materials};
use aurora_storage::secrets::{SealedFile, SecretStore, VaultStore};
use common::{assert_error, env, Backend, TestNode};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};
use uuid::Uuid;

const BASE: &str = "/api/org/credentials";
const AWS_KEY_ID: &str = "AKIAQX7EXAMPLEKEYID";
const AWS_SECRET: &str = "aws-secret-8f2c1d9e7b6a5f4e3d2c1b0a";
const AWS_SESSION: &str = "aws-session-token-FwoGZXIvYXdzEJr";
const GCP_KEY_BODY: &str = "MIIEvgIBADANgcpsecretkeybody0123456789";
const AZURE_SECRET: &str = "azure-secret-Q8xY2pLm9";
const KUBE_TOKEN: &str = "kube-token-eyJhbGciOiJSUzI1NiJ9-secret";
const SECRETS: &[&str] = &[
    AWS_KEY_ID,
    AWS_SECRET,
    AWS_SESSION,
    GCP_KEY_BODY,
    AZURE_SECRET,
    KUBE_TOKEN,
];

fn aws(name: &str) -> Value {
    json!({ "provider": "aws", "name": name, "access_key_id": AWS_KEY_ID,
            "secret_access_key": AWS_SECRET, "session_token": AWS_SESSION,
            "region": "us-east-1", "endpoint_url": "http://127.0.0.1:5000" })
}

fn gcp() -> Value {
    let key = json!({
        "type": "service_account", "project_id": "acme-prod-1", "private_key_id": "k1",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{GCP_KEY_BODY}\n-----END PRIVATE KEY-----\n"),
        "client_email": "robot@acme-prod-1.iam.gserviceaccount.com"
    });
    json!({ "provider": "gcp", "name": "gcp-prod", "service_account_json": key.to_string() })
}

fn azure() -> Value {
    json!({ "provider": "azure", "name": "azure-prod",
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "client_id": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
            "client_secret": AZURE_SECRET,
            "subscription_id": "00000000-0000-0000-0000-000000000001" })
}

fn kube() -> Value {
    json!({ "provider": "kubernetes", "name": "cluster-prod", "server": "https://10.20.30.40:6443",
            "token": KUBE_TOKEN, "namespace": "apps" })
}

/// Asserts no secret occurs in `text` (an HTTP answer, a table dump, a file).
fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{s} found in {what}: {text}");
    }
}

/// Every row of every table as text (PostgreSQL), or the database files' bytes (SQLite).
async fn database_text(t: &TestNode) -> String {
    match t.backend {
        Backend::Sqlite => {
            let mut out = String::new();
            for entry in std::fs::read_dir(t.data_dir()).unwrap() {
                let entry = entry.unwrap();
                if entry.file_name().to_string_lossy().starts_with("aurora.db") {
                    out.push_str(&String::from_utf8_lossy(
                        &std::fs::read(entry.path()).unwrap(),
                    ));
                }
            }
            out
        }
        Backend::Postgres => {
            let conn = t.node().db().connection();
            let sql = |s: &str| Statement::from_string(conn.get_database_backend(), s.to_string());
            let tables = conn
                .query_all_raw(sql(
                    "SELECT table_name::text AS t FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                ))
                .await
                .unwrap();
            let mut out = String::new();
            for table in tables {
                let table: String = table.try_get("", "t").unwrap();
                // The node connects as a superuser, which row-level security does not hide
                // rows from: this sees every org's rows.
                for row in conn
                    .query_all_raw(sql(&format!("SELECT CAST(x AS TEXT) AS r FROM {table} x")))
                    .await
                    .unwrap()
                {
                    out.push_str(&row.try_get::<String>("", "r").unwrap());
                    out.push('\n');
                }
            }
            out
        }
    }
}

/// The audit rows about credentials: (action, target, details).
async fn credential_audit(t: &TestNode) -> Vec<(String, String, String)> {
    let conn = t.node().db().connection();
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        "SELECT action, target, CAST(details AS TEXT) AS details FROM audit_log \
         WHERE action LIKE 'credential.%' ORDER BY created_at",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.try_get("", "action").unwrap(),
            r.try_get("", "target").unwrap(),
            r.try_get("", "details").unwrap(),
        )
    })
    .collect()
}

/// The node's own sealed-file store, opened with the key it generated in its data directory.
async fn sealed_credentials(t: &TestNode) -> Credentials {
    let key = std::fs::read_to_string(t.data_dir().join("secret_key")).unwrap();
    let file = SealedFile::open(t.data_dir().join("secrets.sealed"), key.trim().as_bytes())
        .await
        .unwrap();
    Credentials::new(t.node().db().clone(), SecretStore::Sealed(file))
}

fn env_of<'a>(m: &'a Materials, name: &str) -> Option<&'a str> {
    m.env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn admin_manages_credentials(backend: Backend) {
    let t = TestNode::start(backend).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let editor = t.add_user(&admin, "editor@acme.io", "editor").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;
    let mut answers = Vec::new();

    let mut ids = Vec::new();
    for body in [aws("prod-aws"), gcp(), azure(), kube()] {
        let (status, created) = t.post(BASE, Some(&admin), body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let mut keys: Vec<_> = created.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["created_at", "id", "metadata", "name", "provider"]);
        ids.push(created["id"].as_str().unwrap().to_string());
        answers.push(created.to_string());
    }
    let (status, list) = t.get(BASE, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    answers.push(list.to_string());
    let list = list["credentials"].as_array().unwrap().clone();
    assert_eq!(list.len(), 4);
    assert_eq!(
        list[0]["metadata"],
        json!({ "region": "us-east-1", "endpoint_url": "http://127.0.0.1:5000/" })
    );
    assert_eq!(list[1]["metadata"]["project"], "acme-prod-1");
    assert_eq!(
        list[3]["metadata"],
        json!({ "server": "https://10.20.30.40:6443/", "namespace": "apps" })
    );

    // The same name twice is a conflict; nothing is written for it.
    let (status, body) = t.post(BASE, Some(&admin), aws("prod-aws")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    answers.push(body.to_string());

    // Admins only.
    for token in [&editor, &viewer] {
        let (status, body) = t.get(BASE, Some(token)).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
        let (status, body) = t.post(BASE, Some(token), kube()).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
        let (status, body) = t
            .call(
                Method::DELETE,
                &format!("{BASE}/{}", ids[0]),
                Some(token),
                None,
            )
            .await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    }
    let (status, body) = t.get(BASE, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // Another org sees none of them and cannot delete them.
    let other = t.register("admin@globex.io", "Globex").await;
    let (_, theirs) = t.get(BASE, Some(&other)).await;
    assert_eq!(theirs["credentials"], json!([]));
    let (status, body) = t
        .call(
            Method::DELETE,
            &format!("{BASE}/{}", ids[0]),
            Some(&other),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    // The same name in another org is fine.
    let (status, body) = t.post(BASE, Some(&other), aws("prod-aws")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    answers.push(body.to_string());

    // The secrets reached the store: the node's sealed file gives each CLI its part.
    let org = t.principal(&admin).await.org_id;
    let creds = sealed_credentials(&t).await;
    let all = creds.materials(org).await.unwrap();
    assert_eq!(
        env_of(&all.for_cli("aws"), "AWS_SECRET_ACCESS_KEY"),
        Some(AWS_SECRET)
    );
    assert_eq!(
        env_of(&all.for_cli("az"), "AZURE_CLIENT_SECRET"),
        Some(AZURE_SECRET)
    );
    let kubeconfig = String::from_utf8(all.for_cli("kubectl").files[0].contents.clone()).unwrap();
    assert!(kubeconfig.contains(KUBE_TOKEN));
    for s in SECRETS {
        assert!(
            all.secret_values.iter().any(|v| v.contains(s)),
            "{s} not listed for redaction"
        );
    }

    // Deleting: gone from the list, the store and the materials; a second delete is a 404.
    let (status, body) = t
        .call(
            Method::DELETE,
            &format!("{BASE}/{}", ids[3]),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = t
        .call(
            Method::DELETE,
            &format!("{BASE}/{}", ids[3]),
            Some(&admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (_, list) = t.get(BASE, Some(&admin)).await;
    assert_eq!(list["credentials"].as_array().unwrap().len(), 3);
    let after = creds.materials(org).await.unwrap();
    assert!(after.for_cli("kubectl").files.is_empty());
    assert!(!after.secret_values.iter().any(|v| v == KUBE_TOKEN));

    // Audit rows say who did what to which credential, never with a secret.
    let audit = credential_audit(&t).await;
    let actions: Vec<_> = audit.iter().map(|(a, t, _)| format!("{a} {t}")).collect();
    assert!(
        actions.contains(&"credential.create prod-aws".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"credential.delete cluster-prod".to_string()),
        "{actions:?}"
    );
    assert_clean("the audit rows", &format!("{audit:?}"));

    // No secret in any answer, anywhere in the database, or readable in the sealed file.
    for answer in &answers {
        assert_clean("an HTTP answer", answer);
    }
    let db = database_text(&t).await;
    assert!(
        db.contains("cluster-prod") && db.contains("acme-prod-1"),
        "the dump sees the rows"
    );
    assert_clean("the database", &db);
    let sealed = std::fs::read(t.data_dir().join("secrets.sealed")).unwrap();
    assert!(!sealed.is_empty());
    assert_clean("the sealed file", &String::from_utf8_lossy(&sealed));

    // The sealed file is reported, not critical.
    let (_, health) = t.get("/health", None).await;
    assert_eq!(
        health["dependencies"]["secret_store"]["status"], "up",
        "{health}"
    );
    assert_eq!(health["dependencies"]["secret_store"]["critical"], false);
    t.stop().await;
}

async fn bad_input_is_refused_and_writes_nothing(backend: Backend) {
    let t = TestNode::start(backend).await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let before = t.row_counts().await;
    let with = |mut body: Value, k: &str, v: Value| {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v;
        }
        body
    };
    let cases = [
        (
            json!({ "provider": "digitalocean", "name": "x", "token": KUBE_TOKEN }),
            "provider",
        ),
        (json!({ "name": "x" }), "provider"),
        (
            with(aws("a"), "secret_access_key", Value::Null),
            "secret_access_key",
        ),
        (with(aws("a"), "name", Value::Null), "name"),
        (with(aws("a"), "region", Value::Null), "region"),
        (
            with(aws("a"), "endpoint_url", json!("not a url")),
            "endpoint_url",
        ),
        (
            with(aws("a"), "endpoint_url", json!("file:///etc/passwd")),
            "endpoint_url",
        ),
        (with(kube(), "server", json!("10.0.0.1:6443")), "server"),
        (
            with(
                kube(),
                "kubeconfig",
                json!("apiVersion: v1\nusers:\n- user:\n    exec:\n      command: sh"),
            ),
            "kubeconfig",
        ),
        (with(kube(), "token", Value::Null), "token"),
        (
            with(
                gcp(),
                "service_account_json",
                json!("{\"type\": \"authorized_user\"}"),
            ),
            "service_account_json",
        ),
        (
            with(azure(), "subscription_id", json!("not-a-guid")),
            "subscription_id",
        ),
        // Oversized values: far under the body limit, over the field's.
        (
            with(
                aws("a"),
                "secret_access_key",
                json!(format!("{AWS_SECRET}{}", "x".repeat(5000))),
            ),
            "secret_access_key",
        ),
        (
            with(
                kube(),
                "token",
                json!(format!("{KUBE_TOKEN}{}", "y".repeat(20_000))),
            ),
            "token",
        ),
        (with(aws("a"), "name", json!("n".repeat(101))), "name"),
        (
            with(aws("a"), "extra_field", json!(AWS_SECRET)),
            "extra_field",
        ),
        (json!([AWS_SECRET]), "JSON object"),
    ];
    for (body, field) in cases {
        let (status, resp) = t.post(BASE, Some(&admin), body.clone()).await;
        assert_error(status, &resp, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        let message = resp["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
        assert_clean("a refusal", &resp.to_string());
    }
    let (status, resp) = t
        .post_raw(
            BASE,
            Some(&admin),
            "application/json",
            format!("{{\"provider\": \"aws\", \"secret_access_key\": \"{AWS_SECRET}\"")
                .into_bytes(),
        )
        .await;
    assert_error(status, &resp, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert_clean("a refusal", &resp.to_string());
    let (status, resp) = t
        .call(
            Method::DELETE,
            &format!("{BASE}/not-a-uuid"),
            Some(&admin),
            None,
        )
        .await;
    assert_error(status, &resp, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let (status, resp) = t
        .call(
            Method::DELETE,
            &format!("{BASE}/{}", Uuid::now_v7()),
            Some(&admin),
            None,
        )
        .await;
    assert_error(status, &resp, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(
        t.row_counts().await,
        before,
        "a refused request wrote nothing"
    );
    assert!(
        !t.data_dir().join("secrets.sealed").exists(),
        "nor any secret"
    );
    t.stop().await;
}

async fn poll_health(t: &TestNode, want: StatusCode) -> Value {
    for _ in 0..100 {
        let (status, body) = t.get("/health", None).await;
        if status == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health never answered {want}");
}

async fn vault_outage_and_recovery(backend: Backend) {
    let mut bao = tokio::task::spawn_blocking(OpenBao::start).await.unwrap();
    let t = TestNode::start_with(
        backend,
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", ROOT_TOKEN)],
    )
    .await;
    let (_, health) = t.get("/health", None).await;
    assert_eq!(
        health["dependencies"]["secret_store"]["status"], "up",
        "{health}"
    );
    assert_eq!(health["dependencies"]["secret_store"]["critical"], true);
    let admin = t.register("admin@acme.io", "Acme").await;
    let org = t.principal(&admin).await.org_id;
    let (status, created) = t.post(BASE, Some(&admin), aws("prod-aws")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(
        !t.data_dir().join("secrets.sealed").exists(),
        "Vault holds the secrets"
    );
    let vault = VaultStore::connect(&bao.addr.parse().unwrap(), ROOT_TOKEN, "aurora")
        .await
        .unwrap();
    let creds = Credentials::new(t.node().db().clone(), SecretStore::Vault(vault));
    let m = creds.materials(org).await.unwrap();
    assert_eq!(
        env_of(&m.for_cli("aws"), "AWS_SECRET_ACCESS_KEY"),
        Some(AWS_SECRET)
    );

    // Vault goes away: writes and deletes answer 503 with nothing written, listing still
    // works (it reads the database only), the node turns unready.
    tokio::task::block_in_place(|| bao.stop());
    let before = t.row_counts().await;
    let (status, body) = t.post(BASE, Some(&admin), kube()).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "SECRET_STORE_UNAVAILABLE",
    );
    assert_clean("a 503", &body.to_string());
    let (status, body) = t
        .call(Method::DELETE, &format!("{BASE}/{id}"), Some(&admin), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "SECRET_STORE_UNAVAILABLE",
    );
    let (status, list) = t.get(BASE, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["credentials"].as_array().unwrap().len(), 1);
    assert_eq!(t.row_counts().await, before);
    let err = creds.materials(org).await.unwrap_err();
    assert!(err.to_string().contains("cannot reach vault"), "{err}");
    assert_clean("an error", &err.to_string());
    let health = poll_health(&t, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        health["dependencies"]["secret_store"]["status"], "down",
        "{health}"
    );
    assert_clean("/health", &health.to_string());

    // A new (dev, so empty) server on the same address: the node is ready again and writes
    // work at once. The old secret went with the old server: the credential's materials say
    // so by name, and the credential can be deleted and added again.
    tokio::task::block_in_place(|| bao.restart());
    poll_health(&t, StatusCode::OK).await;
    let (status, body) = t.post(BASE, Some(&admin), kube()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let err = creds.materials(org).await.unwrap_err();
    assert!(
        err.to_string().contains("'prod-aws' (aws) is missing"),
        "{err}"
    );
    let (status, body) = t
        .call(Method::DELETE, &format!("{BASE}/{id}"), Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = t.post(BASE, Some(&admin), aws("prod-aws")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let m = creds.materials(org).await.unwrap();
    assert_eq!(
        env_of(&m.for_cli("aws"), "AWS_SECRET_ACCESS_KEY"),
        Some(AWS_SECRET)
    );
    assert!(String::from_utf8_lossy(&m.for_cli("helm").files[0].contents).contains(KUBE_TOKEN));
    assert_clean("the database", &database_text(&t).await);
    t.stop().await;
}

/// With the host's cloud configuration on, registrations racing for the first org leave
/// exactly one org (on PostgreSQL an advisory lock makes them take turns).
async fn host_cloud_config_allows_one_org(backend: Backend) {
    let t = TestNode::start_with(backend, &[("AURORA_HOST_CLOUD_CONFIG", "true")]).await;
    let attempts = (0..6).map(|i| {
        t.post(
            "/api/auth/register",
            None,
            json!({ "email": format!("admin{i}@org{i}.io"), "password": "correct horse battery",
                    "org_name": format!("Org {i}") }),
        )
    });
    let answers = futures::future::join_all(attempts).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_error(*status, body, StatusCode::CONFLICT, "CONFLICT");
    }
    let conn = t.node().db().connection();
    let n = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM organizations",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(n, 1);
    t.stop().await;
}

/// Shows the lock is what makes racing registrations take turns: while another registration
/// holds it with its org inserted but not committed, a registration waits, then sees that org.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_registration_waits_for_one_in_flight() {
    let t = TestNode::start_with(Backend::Postgres, &[("AURORA_HOST_CLOUD_CONFIG", "true")]).await;
    let tx = t.node().db().system().await.unwrap();
    tx.conn()
        .execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({})",
            aurora_storage::auth::SINGLE_ORG_LOCK_KEY
        ))
        .await
        .unwrap();
    tx.conn()
        .execute_unprepared(
            "INSERT INTO organizations (id, name, created_at) VALUES (gen_random_uuid(), 'First', now())",
        )
        .await
        .unwrap();
    let url = format!("{}/api/auth/register", t.base);
    let racing = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(url)
            .json(&json!({ "email": "b@second.io", "password": "correct horse battery", "org_name": "Second" }))
            .send()
            .await
            .unwrap();
        common::read(resp).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !racing.is_finished(),
        "the registration waits for the one in flight"
    );
    tx.commit().await.unwrap();
    let (status, body) = racing.await.unwrap();
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    t.stop().await;
}

on_both_backends!(
    admin_manages_credentials,
    bad_input_is_refused_and_writes_nothing,
    vault_outage_and_recovery,
    host_cloud_config_allows_one_org,
);

/// A node on SQLite in `dir` (kept across starts), with `extra` settings.
async fn start_in(dir: &Path, extra: &[(&str, &str)]) -> anyhow::Result<Node> {
    let mut vars = env(&[
        ("AURORA_DATA_DIR", dir.to_str().unwrap()),
        ("HTTP_PORT", "0"),
        ("WS_PORT", "0"),
        ("AURORA_HEALTH_INTERVAL_MS", "100"),
        ("AURORA_ALLOW_REGISTRATION", "true"),
    ]);
    vars.extend(env(extra));
    Node::start(Config::from_sources(None, vars)?).await
}

async fn register(node: &Node, email: &str, org: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/auth/register", node.http_addr()))
        .json(&json!({ "email": email, "password": "correct horse battery", "org_name": org }))
        .send()
        .await
        .unwrap();
    common::read(resp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_what_would_leak_or_fail_later() {
    // Vault without a token: the binary stops at once, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aurora"))
        .env_clear()
        .env("AURORA_DATA_DIR", dir.path())
        .env("VAULT_ADDR", "http://127.0.0.1:8200")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VAULT_TOKEN"), "{stderr}");

    // A token Vault refuses.
    let bao = tokio::task::spawn_blocking(OpenBao::start).await.unwrap();
    let err = start_in(
        dir.path(),
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", "s.wrong-token")],
    )
    .await
    .err()
    .expect("refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("refused the token") && !err.contains("wrong-token"),
        "{err}"
    );
    drop(bao);

    // The sealed file opens only with the key it was sealed with.
    let key_a = "a".repeat(40);
    let node = start_in(dir.path(), &[("SECRET_KEY", &key_a)])
        .await
        .unwrap();
    let (status, body) = register(&node, "admin@acme.io", "Acme").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}{BASE}", node.http_addr()))
        .bearer_auth(token)
        .json(&kube())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    node.shutdown().await.unwrap();
    let err = start_in(dir.path(), &[("SECRET_KEY", &"b".repeat(40))])
        .await
        .err()
        .expect("a wrong key is refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("SECRET_KEY is not the key it was sealed with"),
        "{err}"
    );
    assert_clean("the error", &err);
    // With the right key it starts, and the secret is there.
    start_in(dir.path(), &[("SECRET_KEY", &key_a)])
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();

    // The host's cloud configuration serves one org only: a second org is refused while it is
    // on, and a node with two orgs does not start with it.
    let node = start_in(
        dir.path(),
        &[("SECRET_KEY", &key_a), ("AURORA_HOST_CLOUD_CONFIG", "true")],
    )
    .await
    .unwrap();
    let (status, body) = register(&node, "admin@globex.io", "Globex").await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    assert!(
        body.to_string().contains("AURORA_HOST_CLOUD_CONFIG"),
        "{body}"
    );
    node.shutdown().await.unwrap();
    let node = start_in(dir.path(), &[("SECRET_KEY", &key_a)])
        .await
        .unwrap();
    let (status, _) = register(&node, "admin@globex.io", "Globex").await;
    assert_eq!(status, StatusCode::CREATED);
    node.shutdown().await.unwrap();
    let err = start_in(
        dir.path(),
        &[("SECRET_KEY", &key_a), ("AURORA_HOST_CLOUD_CONFIG", "1")],
    )
    .await
    .err()
    .expect("two orgs refuse the host's configuration");
    assert!(
        format!("{err:#}").contains("AURORA_HOST_CLOUD_CONFIG"),
        "{err:#}"
    );
}
