//! `cloud_exec`: runs one allowed cloud CLI (kubectl, aws, gcloud, az, terraform, helm) found on
//! the configured PATH, as an argument vector with no shell in between, in the session's own
//! working directory, with a timeout and a cap on what it may print.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aurora_models::llm::ToolSpec;
use serde_json::{json, Value};

use super::redact::Secrets;
use super::sandbox::{Grant, GrantFile, Sandbox, Spec};
use super::{OutputCap, ToolError, ToolOutput};

pub const NAME: &str = "cloud_exec";
pub const DEFAULT_CLIS: &[&str] = &["kubectl", "aws", "gcloud", "az", "terraform", "helm"];

/// Words a shell would treat as operators: without a shell they would reach the CLI as
/// arguments, which is never what the model meant.
const SHELL_OPERATORS: &[&str] = &["|", "||", "&&", ";", ">", ">>", "<", "&", "$(", "`"];

#[derive(Clone, Debug)]
pub struct CloudExec {
    pub allowed: Vec<String>,
    /// The PATH programs are looked up in and run with.
    pub search_path: OsString,
    /// Sessions get `<root>/<user>/<session>` as their working directory.
    pub workdir_root: PathBuf,
    pub timeout: Duration,
    pub output_limit: usize,
    /// How long a tool stopped with SIGINT at its timeout may take to finish (terraform writes
    /// its state) before it is killed.
    pub grace: Duration,
    /// Where every CLI runs: see [`super::sandbox`].
    pub sandbox: Sandbox,
}

/// What one call brings besides its argument vector.
#[derive(Clone, Debug, Default)]
pub struct Call {
    /// The org's credentials for this CLI.
    pub grant: Grant,
    /// Values masked in the output wherever they appear (the org's stored secrets).
    pub secrets: Secrets,
    /// Tool configuration variables (terraform's CLI configuration file).
    pub env: Vec<(String, String)>,
    pub files: Vec<GrantFile>,
    /// At the timeout, interrupt and wait [`CloudExec::grace`] before killing.
    pub graceful: bool,
}

impl CloudExec {
    pub fn spec() -> ToolSpec {
        ToolSpec {
            name: NAME.into(),
            description:
                "Run one cloud CLI command (kubectl, aws, gcloud, az, terraform, helm). No shell: \
                          pipes, redirection and command chaining are not available."
                    .into(),
            parameters: json!({
                "type": "object",
                "properties": { "command": { "type": "string", "description": "e.g. kubectl get pods -n prod" } },
                "required": ["command"],
                "additionalProperties": false,
            }),
        }
    }

    /// The argument vector of a call, checked: a known CLI, no shell syntax.
    pub fn parse(&self, args: &Value) -> Result<Vec<String>, ToolError> {
        let command = args.get("command").and_then(Value::as_str).ok_or_else(|| {
            ToolError::InvalidArguments("expected {\"command\": \"<cli> ...\"}".into())
        })?;
        let argv = shell_words::split(command)
            .map_err(|e| ToolError::InvalidArguments(format!("cannot split the command: {e}")))?;
        let program = argv
            .first()
            .ok_or_else(|| ToolError::InvalidArguments("empty command".into()))?;
        if !self.allowed.iter().any(|a| a == program) {
            return Err(ToolError::InvalidArguments(format!(
                "'{program}' is not an allowed CLI (allowed: {})",
                self.allowed.join(", ")
            )));
        }
        if let Some(op) = argv.iter().find(|a| is_shell_syntax(a)) {
            return Err(ToolError::InvalidArguments(format!(
                "'{op}': pipes, redirection and chaining are not supported; run one command"
            )));
        }
        Ok(argv)
    }

    /// The session's working directory on the host (created, and owned by the sandbox user).
    pub async fn workdir(&self, user: &str, session: &str) -> Result<PathBuf, ToolError> {
        for id in [user, session] {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ToolError::InvalidArguments(format!("bad id '{id}'")));
            }
        }
        let workdir = self.workdir_root.join(user).join(session);
        let sandbox = self.sandbox.clone();
        let root = self.workdir_root.clone();
        let dir = workdir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            // Missing ancestors too are made searchable only: the sandbox user must pass
            // through them to its own directory, and list none of them.
            if let Some(user_dir) = dir.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o711)
                    .create(user_dir)?;
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            // The root and the users' directories: searchable (so the sandbox user's bwrap
            // reaches its own session directory), never listable; each session directory is
            // its sandbox's alone.
            let search_only = std::fs::Permissions::from_mode(0o711);
            std::fs::set_permissions(&root, search_only.clone())?;
            if let Some(user_dir) = dir.parent() {
                std::fs::set_permissions(user_dir, search_only)?;
            }
            // In use now: the idle-directory job judges by modification times, and a session
            // that only reads changes none.
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.set_modified(std::time::SystemTime::now());
            }
            sandbox.adopt(&dir)
        })
        .await
        .map_err(|e| ToolError::Crashed(e.to_string()))?
        .map_err(|e| ToolError::Spawn {
            program: "sandbox".into(),
            reason: format!("cannot prepare the session directory: {e}"),
        })?;
        Ok(workdir)
    }

    /// Removes the session directories nothing was written to for `idle` (the directory and
    /// its direct entries unmodified), and users' directories left empty. Terraform keeps its
    /// state in object storage, so a later turn of the session starts from a fresh directory
    /// without losing anything. Returns how many session directories went.
    pub async fn prune_idle(&self, idle: std::time::Duration) -> Result<usize, String> {
        let (root, dir) = (self.workdir_root.clone(), self.workdir_root.clone());
        tokio::task::spawn_blocking(move || prune(&dir, idle))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot prune {}: {e}", root.display()))
    }

    /// Runs `argv` for `user`'s `session` in the sandbox, with no credentials.
    pub async fn run(
        &self,
        user: &str,
        session: &str,
        argv: &[String],
    ) -> Result<ToolOutput, ToolError> {
        self.run_with(user, session, argv, &Call::default()).await
    }

    /// Runs `argv` for `user`'s `session` in the sandbox with what `call` grants. Ids become
    /// directory names, so they are checked.
    pub async fn run_with(
        &self,
        user: &str,
        session: &str,
        argv: &[String],
        call: &Call,
    ) -> Result<ToolOutput, ToolError> {
        let (program, rest) = argv
            .split_first()
            .ok_or_else(|| ToolError::InvalidArguments("empty command".into()))?;
        let workdir = self.workdir(user, session).await?;
        let resolved = which::which_in(program, Some(&self.search_path), "/").map_err(|_| {
            ToolError::Spawn {
                program: program.clone(),
                reason: "not installed on this node".into(),
            }
        })?;
        let started = Instant::now();
        let spec = Spec {
            program: &resolved,
            args: rest,
            workdir: &workdir,
            search_path: &self.search_path,
            grant: &call.grant,
            env: call.env.clone(),
            files: call.files.clone(),
        };
        let mut running = self
            .sandbox
            .start(spec)
            .await
            .map_err(|e| ToolError::Spawn {
                program: program.clone(),
                reason: e.to_string(),
            })?;
        let stdout = running.child.stdout.take().expect("stdout is piped");
        let stderr = running.child.stderr.take().expect("stderr is piped");
        let out_cap = OutputCap {
            limit: self.output_limit,
        };
        let err_cap = OutputCap {
            limit: self.output_limit / 4,
        };
        let (timeout, grace) = (self.timeout, self.grace);
        let graceful = call.graceful;
        let waited = async {
            match tokio::time::timeout(timeout, running.child.wait()).await {
                Ok(s) => (s, false),
                Err(_) => {
                    if graceful {
                        // Ctrl-C first: terraform stops cleanly and writes its state.
                        running.interrupt();
                        if let Ok(s) = tokio::time::timeout(grace, running.child.wait()).await {
                            return (s, true);
                        }
                    }
                    let _ = running.child.start_kill();
                    (running.child.wait().await, true)
                }
            }
        };
        let (out, err, (status, timed_out)) =
            tokio::join!(out_cap.read(stdout), err_cap.read(stderr), waited);
        let spawn_err = |e: std::io::Error| ToolError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        };
        let ((out, out_cut), (err, err_cut), status) = (
            out.map_err(spawn_err)?,
            err.map_err(spawn_err)?,
            status.map_err(spawn_err)?,
        );
        if timed_out {
            return Err(ToolError::Timeout(self.timeout.as_secs()));
        }
        let mut text = String::from_utf8_lossy(&out).into_owned();
        if !err.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("[stderr]\n");
            text.push_str(&String::from_utf8_lossy(&err));
        }
        let truncated = out_cut || err_cut;
        let mut output = call.secrets.redact(&text);
        if truncated {
            output.push_str(&format!(
                "\n[output truncated: more than {} bytes]",
                self.output_limit
            ));
        }
        Ok(ToolOutput {
            output,
            exit_code: status.code(),
            truncated,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// An operator on its own, a word ending in one (`pods;`), or a substitution.
fn is_shell_syntax(arg: &str) -> bool {
    SHELL_OPERATORS.contains(&arg)
        || arg.ends_with(';')
        || arg.ends_with('|')
        || (arg.ends_with('&') && !arg.contains('='))
        || ["&&", "||", "$(", "`"].iter().any(|op| arg.contains(op))
}

#[cfg(test)]
mod tests;

fn prune(root: &std::path::Path, idle: std::time::Duration) -> std::io::Result<usize> {
    let newest = |dir: &std::path::Path| -> std::io::Result<std::time::SystemTime> {
        let mut t = std::fs::symlink_metadata(dir)?.modified()?;
        for e in std::fs::read_dir(dir)? {
            if let Ok(m) = e?.metadata().and_then(|m| m.modified()) {
                t = t.max(m);
            }
        }
        Ok(t)
    };
    let users = match std::fs::read_dir(root) {
        Ok(u) => u,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    // One unreadable or busy directory does not stop the rest from being pruned.
    let dirs = |path: &std::path::Path| -> Vec<std::path::PathBuf> {
        match std::fs::read_dir(path) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
                .collect(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot list a sandbox directory");
                Vec::new()
            }
        }
    };
    for user in users.filter_map(Result::ok).map(|e| e.path()) {
        if !std::fs::symlink_metadata(&user).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        for session in dirs(&user) {
            let Ok(last) = newest(&session) else { continue };
            if now.duration_since(last).unwrap_or_default() < idle {
                continue;
            }
            match std::fs::remove_dir_all(&session) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %session.display(), error = %e, "cannot remove an idle sandbox directory")
                }
            }
        }
        if std::fs::read_dir(&user).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(&user);
        }
    }
    Ok(removed)
}
