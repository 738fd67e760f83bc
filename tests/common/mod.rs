//! Test harness: whole nodes in-process on ephemeral ports, on SQLite or on a PostgreSQL database
//! created for the test and dropped after it.

#![allow(dead_code)]

pub mod cluster;
pub mod incidents;
pub mod kb;
pub mod pki;
pub mod ws;

use std::path::Path;
use std::time::Duration;

use aurora::Node;
use aurora_config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A free port on loopback (bound, then released for a server process to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("AURORA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("AURORA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A PostgreSQL database that exists for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("aurora_t_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(pg_admin_url())
            .await
            .expect("connect to the PostgreSQL server");
        use sea_orm::ConnectionTrait;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let base = pg_admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{}", &base[..i], name),
            None => panic!("AURORA_TEST_PG_URL has no database part"),
        };
        TestDb { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee: use a private one on a plain thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sea_orm::ConnectionTrait;
                if let Ok(admin) = sea_orm::Database::connect(pg_admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One node under test and what it needs kept alive.
pub struct TestNode {
    pub node: Option<Node>,
    pub base: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub pg: Option<TestDb>,
    _dir: tempfile::TempDir,
}

pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl TestNode {
    pub async fn start(backend: Backend) -> TestNode {
        Self::start_with(backend, &[]).await
    }

    /// Starts a node; `extra` config pairs override the test defaults.
    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> TestNode {
        let t = Self::start_unchecked(backend, extra).await;
        t.wait_healthy().await;
        t
    }

    /// Starts a node without waiting for it to be healthy (for tests of unhealthy nodes).
    pub async fn start_unchecked(backend: Backend, extra: &[(&str, &str)]) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        // Searchable by the sandbox user, which runs the tools.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let pg = match backend {
            Backend::Postgres => Some(TestDb::create().await),
            Backend::Sqlite => None,
        };
        let mut vars = env(&[
            ("AURORA_DATA_DIR", dir.path().to_str().unwrap()),
            ("HTTP_PORT", "0"),
            ("WS_PORT", "0"),
            ("AURORA_HEALTH_INTERVAL_MS", "100"),
            ("AURORA_SHUTDOWN_TIMEOUT_SECS", "5"),
            // Most tests make several orgs and sign in often from one address; the tests of
            // closed registration and of the sign-in limits set these back.
            ("AURORA_ALLOW_REGISTRATION", "true"),
            ("AURORA_SIGNIN_PER_ADDR", "1000000"),
            ("AURORA_SIGNIN_PER_ACCOUNT", "1000000"),
            // In-process nodes: this test binary is not the extractor, the aurora binary is.
            ("AURORA_KB_EXTRACTOR", env!("CARGO_BIN_EXE_aurora")),
        ]);
        if let Some(pg) = &pg {
            vars.push(("DATABASE_URL".into(), pg.url.clone()));
            vars.push(("REDIS_URL".into(), redis_url()));
        }
        vars.extend(env(extra));
        let config = Config::from_sources(None, vars).expect("valid test config");
        let node = Node::start(config).await.expect("node starts");
        let base = format!("http://{}", node.http_addr());
        TestNode {
            node: Some(node),
            base,
            client: reqwest::Client::new(),
            backend,
            pg,
            _dir: dir,
        }
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// Polls `/health` until the first probe has run.
    pub async fn wait_healthy(&self) {
        for _ in 0..100 {
            if let Ok(r) = self
                .client
                .get(format!("{}/health", self.base))
                .send()
                .await
            {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node never became healthy");
    }

    /// Sends a request with an optional JSON body and bearer token; returns status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        read(resp).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Sends raw bytes with the given content type.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        // Not kept alive: a server that refuses a body before reading it (wrong media type)
        // closes the connection after its answer, and a pooled connection would race that
        // close with the next request (a broken pipe writing its body).
        let mut req = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .header("connection", "close")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request sent")).await
    }

    /// POSTs request headers that announce a JSON body of `len` bytes and sends no body: a
    /// server refuses an oversized body from its `Content-Length` alone. (Sending the body
    /// itself raced the server's close after its answer: a broken pipe, now and then.)
    pub async fn post_announcing(
        &self,
        path: &str,
        token: Option<&str>,
        len: usize,
    ) -> (StatusCode, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
             content-length: {len}\r\n{auth}connection: close\r\n\r\n"
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("headers sent");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the server answered without waiting for the body")
            .expect("answer read");
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            unchunk(body)
        } else {
            body.to_string()
        };
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("non-JSON response ({status}): {body:?}"));
        (StatusCode::from_u16(status).expect("status"), value)
    }

    /// Registers a new org with `email` as admin; returns the token.
    pub async fn register(&self, email: &str, org: &str) -> String {
        let (status, body) = self
            .post(
                "/api/auth/register",
                None,
                json!({ "email": email, "password": "correct horse battery", "org_name": org }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Creates a user with `role` in the admin's org and logs them in; returns their token.
    pub async fn add_user(&self, admin_token: &str, email: &str, role: &str) -> String {
        let (status, body) = self
            .post(
                "/api/admin/users",
                Some(admin_token),
                json!({ "email": email, "password": "another good password", "role": role }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .post(
                "/api/auth/login",
                None,
                json!({ "email": email, "password": "another good password" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// The caller behind `token`, as the storage layer names it (from `GET /api/auth/me`).
    pub async fn principal(&self, token: &str) -> aurora_storage::auth::Principal {
        let (status, me) = self.get("/api/auth/me", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        aurora_storage::auth::Principal {
            user_id: me["id"].as_str().unwrap().parse().unwrap(),
            org_id: me["org_id"].as_str().unwrap().parse().unwrap(),
            email: me["email"].as_str().unwrap().into(),
            role: serde_json::from_value(me["role"].clone()).unwrap(),
        }
    }

    /// Row counts of every table, to prove a refused request wrote nothing.
    pub async fn row_counts(&self) -> Vec<(String, i64)> {
        use sea_orm::{ConnectionTrait, Statement};
        let conn = self.node().db().connection();
        let mut out = Vec::new();
        for (table, _) in aurora_storage::entities::ORG_SCOPED_TABLES {
            let row = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await
                .unwrap()
                .unwrap();
            out.push((table.to_string(), row.try_get::<i64>("", "n").unwrap()));
        }
        out
    }

    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.unwrap();
        }
    }
}

/// A chunked HTTP body's data.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("non-JSON response ({status}): {text:?}"));
    (status, value)
}

/// Asserts an error response of the standard shape with `code`.
pub fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Generates one test per backend from an `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}
