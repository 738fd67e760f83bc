//! The tool sandbox: every CLI the agent runs starts inside bubblewrap (`bwrap`) with a cleared
//! environment, its own user, PID, IPC, UTS and network namespaces, a filesystem view made of
//! read-only system directories plus its own session directory, resource limits, and only the
//! credentials of its org. A tenant (or text injected into the model) can make the agent run any
//! allowed CLI with any arguments, and some CLIs run arbitrary programs (terraform providers,
//! kubeconfig `exec` plugins), so the sandbox assumes the process inside is hostile.
//!
//! Network: the namespace has only loopback. The node (when it runs as root) puts listeners into
//! it before the tool starts: one per loopback endpoint the org's credentials name (forwarded to
//! the same port on the host's loopback, never to a port of the node's own listeners or stores)
//! and an HTTP `CONNECT` proxy that reaches the outside world, refusing the node's own addresses,
//! its stores, loopback, link-local (cloud metadata) and multicast. See [`net`].
//!
//! There is no unconfined fallback: when `bwrap` is missing or refuses to start, the tool call
//! fails with an error that says so, and `/health` reports it.

mod bwrap;
mod fds;
pub mod net;
mod probe;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

pub use bwrap::SANDBOX_WORKDIR;
pub use net::NetPolicy;
pub use probe::SandboxStatus;

/// Resource limits applied to every tool process (and inherited by what it starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Address space per process, bytes (RLIMIT_AS).
    pub memory_bytes: u64,
    /// Processes and threads of the sandbox user (RLIMIT_NPROC, counted per user namespace).
    pub processes: u64,
    /// CPU seconds per process (RLIMIT_CPU).
    pub cpu_secs: u64,
    /// Largest file a tool may write (RLIMIT_FSIZE).
    pub file_bytes: u64,
    /// Open files per process (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Size of the private `/tmp` and `HOME` (tmpfs, memory-backed).
    pub tmpfs_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 4 << 30,
            processes: 256,
            cpu_secs: 600,
            file_bytes: 256 << 20,
            open_files: 1024,
            tmpfs_bytes: 256 << 20,
        }
    }
}

/// How tool processes are confined on this node.
#[derive(Clone, Debug)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bwrap: Option<PathBuf>,
    /// The host user tools run as when the node is root (`None`: the node's own user).
    uid: Option<u32>,
    limits: Limits,
    /// Host directories bound read-only at the same path besides the system ones (a virtualenv
    /// holding a CLI, say). Checked at configuration time never to hold the node's data.
    ro_paths: Vec<PathBuf>,
    net: Option<Arc<NetPolicy>>,
    status: SandboxStatus,
}

/// A file handed to one call (a kubeconfig, a service-account key): written into the
/// sandbox's private `/run/aurora` from memory, mode 0600, never onto the host's disk.
#[derive(Clone)]
pub struct GrantFile {
    pub name: String,
    pub contents: Vec<u8>,
    /// The variable that points the CLI at the file (`KUBECONFIG`).
    pub env: Option<String>,
}

impl std::fmt::Debug for GrantFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantFile")
            .field("name", &self.name)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// What one call may use beyond the bare sandbox: its org's credentials and where they point.
#[derive(Clone, Default)]
pub struct Grant {
    pub env: Vec<(String, String)>,
    pub files: Vec<GrantFile>,
    /// `host:port` endpoints the credentials name; loopback ones are forwarded into the sandbox.
    pub endpoints: Vec<(String, u16)>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Grant")
            .field("env", &names)
            .field("files", &self.files)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// One process to start in the sandbox.
pub struct Spec<'a> {
    /// The program, resolved on the host (it must be visible inside: a system path, a tool
    /// path directory or a read-only path).
    pub program: &'a Path,
    pub args: &'a [String],
    /// The session directory: the only writable host directory, mounted at [`SANDBOX_WORKDIR`].
    pub workdir: &'a Path,
    /// The tool search path: its directories are bound read-only and form the PATH inside.
    pub search_path: &'a OsString,
    pub grant: &'a Grant,
    /// Extra variables for this tool (terraform's CLI configuration, say).
    pub env: Vec<(String, String)>,
    /// Extra read-only files, as for [`Grant::files`] (not credentials: configuration).
    pub files: Vec<GrantFile>,
}

/// Why a sandboxed process could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the tool sandbox is unavailable: {0}")]
    Unavailable(String),
    #[error("cannot start the sandbox: {0}")]
    Start(String),
}

/// A started sandbox: the `bwrap` child (its stdout and stderr are the tool's) and the network
/// listeners that live as long as it does.
pub struct Running {
    pub child: tokio::process::Child,
    /// The PID (on the host) of the sandbox's init process; the tool is its child.
    pub init_pid: Option<u32>,
    _net: Option<net::Attached>,
}

impl Running {
    /// Asks the tool to stop (SIGINT to every process in the sandbox, as Ctrl-C would), so a
    /// tool like terraform can write its state before it goes.
    pub fn interrupt(&self) {
        if let Some(pid) = self.init_pid {
            for p in descendants(pid) {
                // SAFETY: kill(2) with a pid read from /proc; at worst the process is gone.
                unsafe {
                    libc::kill(p as i32, libc::SIGINT);
                }
            }
        }
    }
}

/// Every process below `pid`, read from /proc (children lists).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let path = format!("/proc/{p}/task/{p}/children");
        if let Ok(list) = std::fs::read_to_string(path) {
            for c in list.split_whitespace().filter_map(|c| c.parse().ok()) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// How the sandbox is built, from configuration.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// `bwrap`'s path; `None`: looked up on the node's PATH.
    pub bwrap: Option<PathBuf>,
    /// The host user tools run as when the node runs as root.
    pub uid: u32,
    pub limits: Limits,
    pub ro_paths: Vec<PathBuf>,
    /// What the network of a tool may reach.
    pub net: NetPolicy,
}

/// The user tools run as when the node is root: `nobody`.
pub const DEFAULT_UID: u32 = 65534;

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            bwrap: None,
            uid: DEFAULT_UID,
            limits: Limits::default(),
            ro_paths: Vec::new(),
            net: NetPolicy::default(),
        }
    }
}

impl Sandbox {
    /// Checks what this machine allows (bwrap present, namespaces permitted, root for the
    /// network) once, at start-up; [`Sandbox::status`] says what was found.
    pub fn new(config: SandboxConfig) -> Sandbox {
        let root = unsafe { libc::geteuid() } == 0;
        let bwrap = config.bwrap.clone().or_else(|| which::which("bwrap").ok());
        let uid = root.then_some(config.uid);
        let mut status = probe::probe(bwrap.as_deref(), uid, root);
        if uid == Some(0) {
            // bwrap run by root maps the sandbox's root to the host's: never.
            status.available = false;
            status.error = Some("tools must not run as root: set AURORA_SANDBOX_UID".into());
        }
        let net = (status.network == probe::NETWORK_PROXIED).then(|| Arc::new(config.net));
        Sandbox {
            inner: Arc::new(Inner {
                bwrap,
                uid,
                limits: config.limits,
                ro_paths: config.ro_paths,
                net,
                status,
            }),
        }
    }

    pub fn status(&self) -> &SandboxStatus {
        &self.inner.status
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The host user that owns session directories (the sandbox user, when the node is root).
    pub fn owner_uid(&self) -> Option<u32> {
        self.inner.uid
    }

    /// Makes `dir` (and everything in it) belong to the sandbox user, so the tool can write
    /// there and the node still can (root).
    pub fn adopt(&self, dir: &Path) -> std::io::Result<()> {
        let Some(uid) = self.inner.uid else {
            return Ok(());
        };
        chown_tree(dir, uid)
    }

    /// Starts `spec` in a new sandbox; the caller reads its output and waits for it.
    pub async fn start(&self, spec: Spec<'_>) -> Result<Running, SandboxError> {
        let inner = &self.inner;
        let Some(bwrap) = inner.bwrap.as_deref() else {
            return Err(SandboxError::Unavailable(
                "bubblewrap (bwrap) is not installed on this node".into(),
            ));
        };
        if let Some(why) = &inner.status.error {
            return Err(SandboxError::Unavailable(why.clone()));
        }
        let inner_uid = inner.uid.unwrap_or_else(|| unsafe { libc::geteuid() });
        let plan = bwrap::Plan::build(
            &spec,
            &inner.ro_paths,
            &inner.limits,
            inner.net.is_some(),
            inner_uid,
            inner.uid.unwrap_or(inner_uid),
        )
        .map_err(|e| SandboxError::Start(e.to_string()))?;
        let (info_read, info_write) =
            std::io::pipe().map_err(|e| SandboxError::Start(format!("pipe: {e}")))?;
        let (block_read, block_write) =
            std::io::pipe().map_err(|e| SandboxError::Start(format!("pipe: {e}")))?;
        let mut passed: Vec<OwnedFd> = plan.fds;
        passed.push(OwnedFd::from(info_write));
        passed.push(OwnedFd::from(block_read));
        let mut args = plan.args;
        let n = passed.len();
        args.push("--info-fd".into());
        args.push(fds::target(n - 2).to_string().into());
        args.push("--block-fd".into());
        args.push(fds::target(n - 1).to_string().into());
        args.push("--".into());
        args.push(spec.program.as_os_str().to_owned());
        args.extend(spec.args.iter().map(OsString::from));

        let mut cmd = tokio::process::Command::new(bwrap);
        cmd.args(&args)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(uid) = inner.uid {
            cmd.uid(uid).gid(uid);
        }
        fds::pass(&mut cmd, &passed, inner.limits.clone());
        let child = cmd
            .spawn()
            .map_err(|e| SandboxError::Start(format!("{}: {e}", bwrap.display())))?;
        // Our copies of what the child now holds: closing the info pipe's write end lets its
        // read end see EOF once bwrap has written.
        drop(passed);
        let mut child = child;
        let info = read_info(info_read).await;
        let init_pid = match info {
            Ok(pid) => pid,
            // bwrap failed before reporting its child: its stderr says why.
            Err(e) => return Err(SandboxError::Start(failure(&mut child, &e).await)),
        };
        let attached = match &inner.net {
            Some(policy) => {
                match net::attach(policy.clone(), init_pid, &spec.grant.endpoints).await {
                    Ok(a) => Some(a),
                    Err(e) => {
                        let why = failure(&mut child, &format!("network: {e}")).await;
                        return Err(SandboxError::Start(why));
                    }
                }
            }
            None => None,
        };
        // Releases the sandbox: the tool starts now, with its network in place.
        let mut block_write = block_write;
        let _ = std::io::Write::write_all(&mut block_write, b"1");
        drop(block_write);
        Ok(Running {
            child,
            init_pid: Some(init_pid),
            _net: attached,
        })
    }
}

/// Why a sandbox that did not come up failed: `what`, and bwrap's own words from its stderr.
async fn failure(child: &mut tokio::process::Child, what: &str) -> String {
    let _ = child.start_kill();
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let read = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err);
        let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    }
    let _ = child.wait().await;
    match err.trim() {
        "" => what.to_string(),
        e => format!("{what}: {e}"),
    }
}

/// The sandbox init's PID from bwrap's `--info-fd` JSON.
async fn read_info(pipe: std::io::PipeReader) -> Result<u32, String> {
    let read = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        let mut pipe = pipe;
        std::io::Read::read_to_string(&mut pipe, &mut s).map(|_| s)
    });
    let text = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| "bwrap did not report its child".to_string())?
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v.get("child-pid")
        .and_then(|p| p.as_u64())
        .map(|p| p as u32)
        .ok_or_else(|| format!("no child-pid in {text:?}"))
}

fn chown_tree(path: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}
