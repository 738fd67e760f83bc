//! Whole `aurora serve` processes on 127.0.0.1 forming one cluster over a shared PostgreSQL
//! database and Redis, their agents talking to one scripted LLM server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aurora_fakes::{openai, FakeServer, Reply};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::ws::Ws;
use super::{free_port, redis_url, TestDb};

pub const COOKIE: &str = "test-cluster-cookie-0123456789abcdef";
/// The password of every user [`TestCluster::register`] creates.
pub const PASSWORD: &str = "correct-horse-battery";

pub struct Proc {
    pub name: String,
    pub http: u16,
    pub ws: u16,
    pub cluster: u16,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// How the process ended, if it was running and has exited.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(status.to_string())
    }
}

/// Where a client reaches node: its HTTP base URL and WebSocket port.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub base: String,
    pub ws: u16,
}

pub struct TestCluster {
    pub nodes: Vec<Proc>,
    pub fake: FakeServer,
    pub db: TestDb,
    pub client: reqwest::Client,
    dir: tempfile::TempDir,
    /// The cluster's CA and the certificate every node presents.
    pub tls: super::pki::Identity,
    /// More configuration for every node (set after the defaults, so it overrides them).
    pub extra: Vec<(String, String)>,
}

impl TestCluster {
    /// `n` nodes, each given every other node as a seed, answering with `script`.
    pub async fn start(n: usize, script: Vec<Reply>) -> TestCluster {
        Self::start_with(n, script, &[]).await
    }

    /// [`TestCluster::start`] with more configuration for every node.
    pub async fn start_with(n: usize, script: Vec<Reply>, extra: &[(&str, &str)]) -> TestCluster {
        let db = TestDb::create().await;
        let fake = openai::start(script).await;
        let dir = tempfile::tempdir().unwrap();
        // Searchable by the sandbox user, which runs the tools.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let nodes = (0..n)
            .map(|i| Proc {
                name: format!("node{}", i + 1),
                http: free_port(),
                ws: free_port(),
                cluster: free_port(),
                child: None,
                log: dir.path().join(format!("node{}.log", i + 1)),
            })
            .collect();
        let tls = super::pki::identity(dir.path(), "cluster");
        let mut c = TestCluster {
            nodes,
            fake,
            db,
            client: reqwest::Client::new(),
            dir,
            tls,
            extra: super::env(extra),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_members(n).await;
        c
    }

    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.nodes
            .iter()
            .map(|p| Endpoint {
                base: p.base(),
                ws: p.ws,
            })
            .collect()
    }

    /// Starts node `i` (again).
    pub fn spawn(&mut self, i: usize) {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("127.0.0.1:{}", p.cluster))
            .collect();
        let p = &self.nodes[i];
        let data = self.dir.path().join(&p.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_aurora"))
            .args(["serve", "--node-name", &p.name])
            .args(["--cluster-port", &p.cluster.to_string()])
            .args(["--seeds", &seeds.join(",")])
            .args(["--cookie", COOKIE])
            // Only what is set here: the test runner's own AURORA_TEST_* variables are not
            // node configuration (a node refuses unknown AURORA_ keys).
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", redis_url())
            .env("SECRET_KEY", "cluster-test-secret-key-0123456789")
            .env("HTTP_PORT", p.http.to_string())
            .env("WS_PORT", p.ws.to_string())
            .env("AURORA_DATA_DIR", &data)
            .env("HF_HUB_OFFLINE", "1")
            .env("LLM_PROVIDER", "openai")
            .env("LLM_BASE_URL", self.fake.base_url())
            .env("LLM_MODEL", "gpt-4o")
            .env("LLM_API_KEY", "sk-test")
            .env("CLUSTER_TLS_CERT", &self.tls.cert)
            .env("CLUSTER_TLS_KEY", &self.tls.key)
            .env("CLUSTER_TLS_CA", &self.tls.ca)
            .env("AURORA_RATE_LIMIT_QUERIES", "100000")
            .env("AURORA_ALLOW_REGISTRATION", "true")
            .env("AURORA_SIGNIN_PER_ADDR", "1000000")
            .env("AURORA_SIGNIN_PER_ACCOUNT", "1000000")
            .env("AURORA_SHUTDOWN_TIMEOUT_SECS", "15")
            .env("AURORA_HEALTH_INTERVAL_MS", "200")
            .env("RUST_LOG", "info,ractor=warn,ractor_cluster=warn")
            .envs(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn aurora serve");
        self.nodes[i].child = Some(child);
    }

    /// The cluster's files: each node's data directory is under it.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the process to exit.
    pub async fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not stop within 30 s after SIGTERM",
                self.nodes[i].name
            );
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to node `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.nodes[i].pid().expect("running");
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Waits until each of `observers` sees exactly `want` as the members.
    pub async fn wait_seen(&self, observers: &[usize], want: &[&str]) -> Duration {
        let started = Instant::now();
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        loop {
            let mut all = true;
            for &i in observers {
                if self.members(i).await.as_ref() != Some(&want) {
                    all = false;
                }
            }
            if all {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{observers:?} did not see {want:?} within 30 s\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The members node `i` sees, if it answers.
    pub async fn members(&self, i: usize) -> Option<Vec<String>> {
        let resp = self
            .client
            .get(format!("{}/health", self.nodes[i].base()))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let body: Value = resp.json().await.ok()?;
        serde_json::from_value(body["members"].clone()).ok()
    }

    /// Waits until every running node sees exactly the `n` running nodes.
    pub async fn wait_members(&mut self, n: usize) {
        let want: Vec<String> = {
            let mut v: Vec<String> = self
                .nodes
                .iter()
                .filter(|p| p.running())
                .map(|p| p.name.clone())
                .collect();
            v.sort();
            v
        };
        assert_eq!(want.len(), n);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for i in 0..self.nodes.len() {
                if let Some(code) = self.nodes[i].exited() {
                    panic!("{} exited ({code})\n{}", self.nodes[i].name, self.logs());
                }
            }
            let mut all = true;
            for (i, p) in self.nodes.iter().enumerate() {
                if p.running() && self.members(i).await.as_ref() != Some(&want) {
                    all = false;
                }
            }
            if all {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the nodes did not all see {want:?} within 60 s\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} ---\n{}", p.name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn post(
        &self,
        i: usize,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.nodes[i].base()))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, i: usize, path: &str, token: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.nodes[i].base()))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Registers a user (an org admin) through node `i`; returns its token.
    pub async fn register(&self, i: usize, email: &str) -> String {
        let (status, body) = self
            .post(
                i,
                "/api/auth/register",
                None,
                json!({ "email": email, "password": PASSWORD, "org_name": format!("org of {email}") }),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn new_session(&self, i: usize, token: &str) -> String {
        let (_, session) = self
            .post(i, "/chat_api/sessions", Some(token), json!({}))
            .await;
        session["id"].as_str().unwrap().to_string()
    }

    /// A started WebSocket on node `i` (the ticket issued by node `ticket_from`).
    pub async fn open(&self, i: usize, ticket_from: usize, token: &str) -> Option<Ws> {
        let (status, body) = self
            .post(ticket_from, "/api/auth/ws-token", Some(token), json!({}))
            .await;
        assert!(status.is_success(), "{status} {body}");
        let ticket = body["token"].as_str()?.to_string();
        let url = format!("ws://127.0.0.1:{}/?token={ticket}", self.nodes[i].ws);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
        let start = super::ws::next(&mut ws).await?;
        assert_eq!(start["data"]["status"], "START", "{start}");
        Some(ws)
    }

    /// The session's messages as stored (through node `i`).
    pub async fn history(&self, i: usize, token: &str, sid: &str) -> Vec<Value> {
        let (status, body) = self
            .get(i, &format!("/chat_api/sessions/{sid}"), token)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A fake `kubectl` that counts its runs in its working directory (the session's), then takes
/// its time, so a test can kill the node running it between the call and its result. Returns
/// its directory (kept alive by the caller) and the `AURORA_TOOL_PATH` that finds it.
pub fn slow_kubectl() -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let tools = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = tools.path().join("kubectl");
    std::fs::write(
        &bin,
        "#!/bin/sh\necho run >> kubectl-runs\nsleep 20\necho 'web-1 0/1 CrashLoopBackOff'\n",
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", tools.path().display());
    (tools, path)
}

/// How many times [`slow_kubectl`] ran, on any node under `dir`.
pub fn kubectl_runs(dir: &std::path::Path) -> usize {
    let mut runs = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "kubectl-runs") {
                runs += std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .count();
            }
        }
    }
    runs
}

impl TestCluster {
    /// A new session of `token`'s user that node `i` owns.
    pub async fn session_owned_by(&self, i: usize, token: &str) -> String {
        let names: Vec<String> = self.nodes.iter().map(|p| p.name.clone()).collect();
        let place = aurora_supervisors::Placement::new(names[0].clone(), names);
        loop {
            let sid = self.new_session(0, token).await;
            if place.owner(uuid::Uuid::parse_str(&sid).unwrap()) == self.nodes[i].name {
                return sid;
            }
        }
    }
}
