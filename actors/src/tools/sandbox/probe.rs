//! What this machine lets the sandbox do, found once at start-up by starting a real one: a
//! node whose kernel refuses user namespaces, or without bwrap, runs no tools at all (and says
//! so in `/health`) rather than running them unconfined.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

pub const NETWORK_PROXIED: &str = "proxied";
pub const NETWORK_NONE: &str = "none";

#[derive(Clone, Debug, Serialize)]
pub struct SandboxStatus {
    /// `bwrap` and the namespaces it needs work here.
    pub available: bool,
    /// Why tools cannot run, when they cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `proxied`: tools reach the outside through the node's filtering proxy and their org's
    /// loopback endpoints; `none`: loopback only (the node is not root, so it cannot bind
    /// listeners inside a tool's namespace).
    pub network: &'static str,
    /// The host user tools run as.
    pub uid: u32,
}

pub fn probe(bwrap: Option<&Path>, uid: Option<u32>, root: bool) -> SandboxStatus {
    let run_uid = uid.unwrap_or_else(|| unsafe { libc::geteuid() });
    let network = if root { NETWORK_PROXIED } else { NETWORK_NONE };
    let Some(bwrap) = bwrap else {
        return SandboxStatus {
            available: false,
            error: Some("bubblewrap (bwrap) is not installed on this node".into()),
            network,
            uid: run_uid,
        };
    };
    let mut cmd = Command::new(bwrap);
    cmd.args([
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--disable-userns",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--",
        "/usr/bin/true",
    ])
    .env_clear()
    .current_dir("/")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(u) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(u).gid(u);
    }
    let error = match cmd.output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "bwrap cannot create the sandbox's namespaces: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run {}: {e}", bwrap.display())),
    };
    if let Some(e) = &error {
        tracing::error!(error = %e, "tool sandbox unavailable: agent tools will not run");
    }
    SandboxStatus {
        available: error.is_none(),
        error,
        network,
        uid: run_uid,
    }
}
