//! The `aurora` binary as a user runs it: serve on the embedded default and on PostgreSQL,
//! signals, config check, migrate and the admin commands.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, TestDb};
use reqwest::StatusCode;
use serde_json::json;

/// The binary with an empty environment (only PATH), run in `dir`.
fn aurora(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aurora"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    aurora(dir, env).args(args).output().expect("run aurora")
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &Path, env: &[(&str, &str)]) -> (Server, Instant) {
        let port = free_port().to_string();
        let ws_port = free_port().to_string();
        let mut all = vec![
            ("HTTP_PORT", port.as_str()),
            ("WS_PORT", ws_port.as_str()),
            // Sign-in counters are shared through Redis with every other test of the run.
            ("AURORA_SIGNIN_PER_ADDR", "1000000"),
            ("AURORA_SIGNIN_PER_ACCOUNT", "1000000"),
        ];
        all.extend_from_slice(env);
        let started = Instant::now();
        let child = aurora(dir, &all)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn aurora serve");
        (
            Server {
                child,
                base: format!("http://127.0.0.1:{port}"),
            },
            started,
        )
    }

    /// Polls `/health` until it answers 200; returns how long that took from `since`.
    async fn wait_healthy(&self, since: Instant, give_up: Duration) -> Duration {
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await {
                if r.status() == StatusCode::OK {
                    return since.elapsed();
                }
            }
            assert!(
                since.elapsed() < give_up,
                "no healthy answer within {give_up:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(self) {
        self.signal("-TERM")
    }

    /// Sends `signal` (`-TERM`, `-INT`) and waits for a clean exit within the drain deadline.
    fn signal(mut self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                assert!(exit.success(), "exit status {exit}");
                return;
            }
            assert!(Instant::now() < deadline, "node did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn register_login_me(base: &str) {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/auth/register"))
        .json(&json!({ "email": "first@acme.io", "password": "correct horse battery", "org_name": "Acme" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "email": "first@acme.io", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let me: serde_json::Value = client
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "first@acme.io");
    assert_eq!(me["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_configuration_uses_embedded_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (server, started) = Server::start(dir.path(), &[]);
    // The acceptance criterion: /health answers within 2 s of start.
    let took = server.wait_healthy(started, Duration::from_secs(2)).await;
    eprintln!("healthy after {took:?}");
    register_login_me(&server.base).await;
    assert!(dir.path().join("data/aurora.db").exists());
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_via_database_url() {
    let pg = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let redis = common::redis_url();
    let (server, started) = Server::start(
        dir.path(),
        &[("DATABASE_URL", &pg.url), ("REDIS_URL", &redis)],
    );
    server.wait_healthy(started, Duration::from_secs(10)).await;
    register_login_me(&server.base).await;
    assert!(!dir.path().join("data/aurora.db").exists());
    server.terminate();
}

#[test]
fn config_check_prints_resolved_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aurora.toml");
    std::fs::write(&file, "http_port = 6000\nllm_api_key = \"sk-from-file\"\n").unwrap();
    let out = run(
        dir.path(),
        &[
            ("HTTP_PORT", "6100"),
            ("DATABASE_URL", "postgres://u:pg-secret@db:5432/aurora"),
            ("VAULT_TOKEN", "hvs.root-secret"),
        ],
        &["config", "check", "--config", file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("HTTP_PORT = 6100"), "{text}");
    assert!(
        text.contains("DATABASE_URL = postgres://u:***@db:5432/aurora"),
        "{text}"
    );
    assert!(text.contains("LLM_API_KEY = ***"), "{text}");
    for secret in ["pg-secret", "root-secret", "sk-from-file"] {
        assert!(!text.contains(secret), "{secret} printed: {text}");
    }
}

#[test]
fn bad_configuration_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (env, args, key) in [
        (vec![("HTTP_PORT", "eighty")], vec!["serve"], "HTTP_PORT"),
        (
            vec![("AURORA_TOKEN_TTL_HOUR", "5")],
            vec!["serve"],
            "AURORA_TOKEN_TTL_HOUR",
        ),
        (
            vec![("DATABASE_URL", "mysql://db/aurora")],
            vec!["config", "check"],
            "DATABASE_URL",
        ),
        (
            vec![("AURORA_MAX_BODY_BYTES", "-1")],
            vec!["migrate"],
            "AURORA_MAX_BODY_BYTES",
        ),
        // Clustered without a cookie: refused, whether the port comes from a flag or the env.
        (
            vec![],
            vec!["serve", "--cluster-port", "7999"],
            "CLUSTER_COOKIE",
        ),
        (
            vec![("CLUSTER_PORT", "7999")],
            vec!["serve"],
            "CLUSTER_COOKIE",
        ),
        (
            vec![],
            vec!["serve", "--seeds", "127.0.0.1:7998"],
            "CLUSTER_SEEDS",
        ),
        (
            vec![("CLUSTER_COOKIE", "long-enough-cookie")],
            vec!["serve", "--cluster-port", "7999", "--seeds", "nohostport"],
            "CLUSTER_SEEDS",
        ),
    ] {
        let out = run(dir.path(), &env, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key} not named in {err}");
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "http_port = 5080\nhttp_prot = 1\n").unwrap();
    let out = run(
        dir.path(),
        &[],
        &["serve", "--config", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http_prot"));
    assert!(
        !dir.path().join("data").exists(),
        "nothing created on a refused start"
    );
}

#[test]
fn help_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["config", "check", "--help"],
        vec!["admin", "create-user", "--help"],
        vec!["admin", "create-token", "--help"],
    ] {
        let out = run(dir.path(), &[], &args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_admin_commands_then_the_token_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[], &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        dir.path(),
        &[],
        &[
            "admin",
            "create-user",
            "--email",
            "Ops@Acme.io",
            "--password",
            "correct horse battery",
            "--org",
            "Acme",
            "--role",
            "editor",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "ops@acme.io");
    assert_eq!(user["role"], "editor");
    // Bad input on the CLI: clear errors, nothing created.
    let out = run(
        dir.path(),
        &[],
        &[
            "admin",
            "create-user",
            "--email",
            "ops@acme.io",
            "--password",
            "correct horse battery",
            "--org",
            "Acme",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = run(
        dir.path(),
        &[],
        &[
            "admin",
            "create-user",
            "--email",
            "x@acme.io",
            "--password",
            "correct horse battery",
            "--org",
            "Acme",
            "--role",
            "root",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("role"));
    let out = run(
        dir.path(),
        &[],
        &["admin", "create-token", "--email", "nobody@acme.io"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    let out = run(
        dir.path(),
        &[],
        &["admin", "create-token", "--email", "ops@acme.io"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("aur_"));

    let (server, started) = Server::start(dir.path(), &[]);
    server.wait_healthy(started, Duration::from_secs(10)).await;
    let client = reqwest::Client::new();
    let me: serde_json::Value = client
        .get(format!("{}/api/auth/me", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "ops@acme.io");
    assert_eq!(me["role"], "editor");
    let users = client
        .get(format!("{}/api/admin/users", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), StatusCode::FORBIDDEN);
    server.signal("-INT");
}
