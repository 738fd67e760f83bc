//! `cloud_exec`: runs one allowed cloud CLI (kubectl, aws, gcloud, az, terraform, helm) found on
//! the configured PATH, as an argument vector with no shell in between, in the session's own
//! working directory, with a timeout and a cap on what it may print.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aurora_models::llm::ToolSpec;
use serde_json::{json, Value};

use super::redact::redact;
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

    /// Runs `argv` for `user`'s `session`. Ids become directory names, so they are checked.
    pub async fn run(
        &self,
        user: &str,
        session: &str,
        argv: &[String],
    ) -> Result<ToolOutput, ToolError> {
        for id in [user, session] {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ToolError::InvalidArguments(format!("bad id '{id}'")));
            }
        }
        let (program, rest) = argv
            .split_first()
            .ok_or_else(|| ToolError::InvalidArguments("empty command".into()))?;
        let workdir = self.workdir_root.join(user).join(session);
        tokio::fs::create_dir_all(&workdir)
            .await
            .map_err(|e| ToolError::Spawn {
                program: program.clone(),
                reason: format!("cannot create {}: {e}", workdir.display()),
            })?;
        let resolved =
            which::which_in(program, Some(&self.search_path), &workdir).map_err(|_| {
                ToolError::Spawn {
                    program: program.clone(),
                    reason: "not installed on this node".into(),
                }
            })?;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&resolved)
            .args(rest)
            .current_dir(&workdir)
            .env("PATH", &self.search_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ToolError::Spawn {
                program: program.clone(),
                reason: e.to_string(),
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let out_cap = OutputCap {
            limit: self.output_limit,
        };
        let err_cap = OutputCap {
            limit: self.output_limit / 4,
        };
        let run = async {
            let (out, err, status) =
                tokio::join!(out_cap.read(stdout), err_cap.read(stderr), child.wait());
            (out, err, status)
        };
        // On timeout the child is dropped, and `kill_on_drop` ends it.
        let (out, err, status) = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| ToolError::Timeout(self.timeout.as_secs()))?;
        let spawn_err = |e: std::io::Error| ToolError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        };
        let ((out, out_cut), (err, err_cut), status) = (
            out.map_err(spawn_err)?,
            err.map_err(spawn_err)?,
            status.map_err(spawn_err)?,
        );
        let mut text = String::from_utf8_lossy(&out).into_owned();
        if !err.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("[stderr]\n");
            text.push_str(&String::from_utf8_lossy(&err));
        }
        let truncated = out_cut || err_cut;
        let mut output = redact(&text);
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
