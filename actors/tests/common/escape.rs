#![allow(dead_code)]
//! A node's data directory as the escape tests attack it: a secret key and a database file
//! next to the session directories, a hostile CLI on the tool path (it runs whatever shell code
//! it is given, as a compromised provider or plugin would), and two ways to run a command: in
//! the sandbox, and the way tools ran before it (same working directory, the node's own
//! environment), so each test first shows its attack working.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aurora_actors::tools::cloud_exec::{Call, CloudExec};
use aurora_actors::tools::sandbox::{Sandbox, SandboxConfig};
use aurora_actors::tools::ToolOutput;

pub struct Node {
    pub _dir: tempfile::TempDir,
    pub data: PathBuf,
    pub secret_key: String,
    pub db_marker: String,
    pub exec: CloudExec,
}

/// `hostile "<shell code>"`: runs the code with /bin/sh.
const HOSTILE: &str = "#!/bin/sh\nexec /bin/sh -c \"$1\"\n";

pub fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // As a node leaves it: searchable, the secret key readable by the node only.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let secret_key = format!("node-secret-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(data.join("secret_key"), &secret_key).unwrap();
    std::fs::set_permissions(
        data.join("secret_key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let db_marker = format!("sqlite-rows-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(
        data.join("aurora.db"),
        format!("SQLite format 3\0{db_marker}"),
    )
    .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hostile = bin.join("hostile");
    std::fs::write(&hostile, HOSTILE).unwrap();
    std::fs::set_permissions(&hostile, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut search = OsString::from(bin.as_os_str());
    search.push(":/usr/local/bin:/usr/bin:/bin");
    let exec = CloudExec {
        allowed: vec!["hostile".into(), "kubectl".into(), "terraform".into()],
        search_path: search,
        workdir_root: data.join("sessions"),
        timeout: Duration::from_secs(20),
        output_limit: 64 * 1024,
        grace: Duration::from_secs(5),
        sandbox: Sandbox::new(SandboxConfig::default()),
    };
    Node {
        _dir: dir,
        data,
        secret_key,
        db_marker,
        exec,
    }
}

impl Node {
    pub fn workdir(&self, user: &str, session: &str) -> PathBuf {
        self.data.join("sessions").join(user).join(session)
    }

    /// In the sandbox.
    pub async fn confined(&self, user: &str, session: &str, argv: &[&str]) -> ToolOutput {
        self.confined_with(user, session, argv, &Call::default())
            .await
    }

    pub async fn confined_with(
        &self,
        user: &str,
        session: &str,
        argv: &[&str],
        call: &Call,
    ) -> ToolOutput {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.exec
            .run_with(user, session, &argv, call)
            .await
            .expect("the sandboxed command ran")
    }

    /// As tools ran before the sandbox: the session directory as working directory and the
    /// node's whole environment.
    pub fn unconfined(&self, user: &str, session: &str, argv: &[&str]) -> String {
        let workdir = self.workdir(user, session);
        std::fs::create_dir_all(&workdir).unwrap();
        let program = which::which_in(argv[0], Some(&self.exec.search_path), &workdir).unwrap();
        let out = std::process::Command::new(program)
            .args(&argv[1..])
            .current_dir(&workdir)
            .env("PATH", &self.exec.search_path)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Whether bwrap runs here at all: the suite's set-up installs it; a machine without it must
/// fail these tests loudly rather than pass them.
pub fn require_sandbox(node: &Node) {
    let st = node.exec.sandbox.status();
    assert!(
        st.available,
        "the tool sandbox is unavailable on this machine: {:?}",
        st.error
    );
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
