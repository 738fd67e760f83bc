//! `terraform`: write configuration, plan, apply and destroy in the session's working directory.
//! The state (and the configuration the agent wrote) lives in object storage, keyed by org, user
//! and session, and is restored into the working directory before every run: a session moved to
//! another node, or a node that lost its disk, carries on with the same state. `terraform` run
//! through `cloud_exec` goes through the same restore and save.

use std::collections::BTreeMap;
use std::path::Path;

use aurora_models::llm::ToolSpec;
use aurora_storage::objects::{ObjectKey, ObjectStore};
use serde_json::{json, Value};
use uuid::Uuid;

use super::cloud_exec::CloudExec;
use super::{ToolError, ToolOutput};

pub const NAME: &str = "terraform";
const STATE_FILE: &str = "terraform.tfstate";
/// At most this many files per write, each at most `MAX_FILE_BYTES`.
const MAX_FILES: usize = 20;
const MAX_FILE_BYTES: usize = 256 * 1024;

/// What the agent asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write (create or replace) configuration files, name -> content.
    Write(BTreeMap<String, String>),
    Plan,
    Apply,
    Destroy,
}

impl Action {
    /// The command the policy gate and the audit log see (`terraform apply`).
    pub fn command(&self) -> String {
        match self {
            Action::Write(files) => {
                let names: Vec<&str> = files.keys().map(String::as_str).collect();
                format!("terraform write {}", names.join(" "))
            }
            Action::Plan => "terraform plan".into(),
            Action::Apply => "terraform apply".into(),
            Action::Destroy => "terraform destroy".into(),
        }
    }

    /// Only `plan` changes nothing (ask mode allows nothing else).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Action::Plan)
    }
}

/// Who and which session a run is for: the object keys and the working directory hang off it.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
}

#[derive(Clone, Debug)]
pub struct Terraform {
    /// Runs the `terraform` binary: same PATH, working directories, timeout and output cap.
    pub exec: CloudExec,
    pub store: ObjectStore,
}

fn valid_file_name(name: &str) -> bool {
    let allowed_ext = [".tf", ".tfvars", ".tf.json", ".tfvars.json"];
    name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.contains("..")
        && allowed_ext.iter().any(|ext| name.ends_with(ext))
}

impl Terraform {
    pub fn spec() -> ToolSpec {
        ToolSpec {
            name: NAME.into(),
            description: "Terraform in this chat session's own directory. `write` creates or \
                replaces configuration files; `plan` shows what would change; `apply` and \
                `destroy` change real infrastructure (the user approves them). State is kept \
                for the session."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "action": { "type": "string", "enum": ["write", "plan", "apply", "destroy"] },
                    "files": {
                        "type": "object",
                        "description": "for write: file name (main.tf, vars.tfvars) -> content",
                        "additionalProperties": { "type": "string" }
                    }
                },
                "required": ["action"],
                "additionalProperties": false,
            }),
        }
    }

    pub fn parse(args: &Value) -> Result<Action, ToolError> {
        let invalid = |m: String| ToolError::InvalidArguments(m);
        let action = args
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("expected {\"action\": \"write|plan|apply|destroy\"}".into()))?;
        Ok(match action {
            "plan" => Action::Plan,
            "apply" => Action::Apply,
            "destroy" => Action::Destroy,
            "write" => {
                let files = args
                    .get("files")
                    .and_then(Value::as_object)
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| invalid("write needs \"files\": {name: content}".into()))?;
                if files.len() > MAX_FILES {
                    return Err(invalid(format!("at most {MAX_FILES} files per write")));
                }
                let mut out = BTreeMap::new();
                for (name, content) in files {
                    if !valid_file_name(name) {
                        return Err(invalid(format!(
                            "'{name}' is not a terraform file name (e.g. main.tf, prod.tfvars)"
                        )));
                    }
                    let content = content.as_str().ok_or_else(|| {
                        invalid(format!("the content of {name} must be a string"))
                    })?;
                    if content.len() > MAX_FILE_BYTES {
                        return Err(invalid(format!("{name} is over {MAX_FILE_BYTES} bytes")));
                    }
                    out.insert(name.clone(), content.to_string());
                }
                Action::Write(out)
            }
            other => return Err(invalid(format!("unknown action '{other}'"))),
        })
    }

    fn key(owner: &Owner, name: &str) -> Result<ObjectKey, ToolError> {
        let path = format!("terraform/{}/{name}", owner.session_id);
        ObjectKey::new(owner.org_id, owner.user_id, &path)
            .map_err(|e| ToolError::Storage(e.to_string()))
    }

    fn workdir(&self, owner: &Owner) -> std::path::PathBuf {
        self.exec
            .workdir_root
            .join(owner.user_id.to_string())
            .join(owner.session_id.to_string())
    }

    pub async fn run(&self, owner: &Owner, action: &Action) -> Result<ToolOutput, ToolError> {
        let argv: Vec<String> = match action {
            Action::Write(files) => return self.write(owner, files).await,
            Action::Plan => vec!["terraform", "plan", "-input=false", "-no-color"],
            Action::Apply => vec![
                "terraform",
                "apply",
                "-auto-approve",
                "-input=false",
                "-no-color",
            ],
            Action::Destroy => {
                vec![
                    "terraform",
                    "destroy",
                    "-auto-approve",
                    "-input=false",
                    "-no-color",
                ]
            }
        }
        .into_iter()
        .map(String::from)
        .collect();
        let workdir = self.workdir(owner);
        self.restore(owner, &workdir).await?;
        let mut init_output = String::new();
        if !workdir.join(".terraform").exists() {
            let init = ["terraform", "init", "-input=false", "-no-color"].map(String::from);
            let out = self.run_synced(owner, &workdir, &init).await?;
            if out.exit_code != Some(0) {
                return Ok(out);
            }
            init_output = out.output;
        }
        let mut out = self.run_synced(owner, &workdir, &argv).await?;
        if !init_output.is_empty() {
            out.output = format!("{init_output}\n{}", out.output);
        }
        Ok(out)
    }

    /// Runs any `terraform` command line (from `cloud_exec`) with the state restored first and
    /// saved after.
    pub async fn run_cli(&self, owner: &Owner, argv: &[String]) -> Result<ToolOutput, ToolError> {
        let workdir = self.workdir(owner);
        self.restore(owner, &workdir).await?;
        self.run_synced(owner, &workdir, argv).await
    }

    /// Runs `argv` and saves the state if the run changed it (even a failed apply can have).
    async fn run_synced(
        &self,
        owner: &Owner,
        workdir: &Path,
        argv: &[String],
    ) -> Result<ToolOutput, ToolError> {
        let state_path = workdir.join(STATE_FILE);
        let before = tokio::fs::read(&state_path).await.ok();
        let (user, session) = (owner.user_id.to_string(), owner.session_id.to_string());
        let out = self.exec.run(&user, &session, argv).await?;
        let after = tokio::fs::read(&state_path).await.ok();
        if let Some(state) = after.filter(|a| Some(a) != before.as_ref()) {
            self.store
                .put(&Self::key(owner, STATE_FILE)?, state)
                .await
                .map_err(|e| ToolError::Storage(format!("the state could not be saved: {e}")))?;
        }
        Ok(out)
    }

    /// Brings the working directory in line with object storage: the saved state replaces the
    /// local one, and saved configuration files missing here are written back.
    async fn restore(&self, owner: &Owner, workdir: &Path) -> Result<(), ToolError> {
        let storage = |e: aurora_storage::StorageError| ToolError::Storage(e.to_string());
        let local = |e: std::io::Error| ToolError::Storage(format!("{}: {e}", workdir.display()));
        tokio::fs::create_dir_all(workdir).await.map_err(local)?;
        if let Some(state) = self
            .store
            .get(&Self::key(owner, STATE_FILE)?)
            .await
            .map_err(storage)?
        {
            tokio::fs::write(workdir.join(STATE_FILE), state)
                .await
                .map_err(local)?;
        }
        for (name, content) in self.saved_files(owner).await? {
            let path = workdir.join(&name);
            if !path.exists() {
                tokio::fs::write(path, content).await.map_err(local)?;
            }
        }
        Ok(())
    }

    async fn saved_files(&self, owner: &Owner) -> Result<BTreeMap<String, String>, ToolError> {
        let key = Self::key(owner, "files.json")?;
        match self.store.get(&key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| ToolError::Storage(format!("saved configuration is unreadable: {e}"))),
            Ok(None) => Ok(BTreeMap::new()),
            Err(e) => Err(ToolError::Storage(e.to_string())),
        }
    }

    async fn write(
        &self,
        owner: &Owner,
        files: &BTreeMap<String, String>,
    ) -> Result<ToolOutput, ToolError> {
        let started = std::time::Instant::now();
        let workdir = self.workdir(owner);
        self.restore(owner, &workdir).await?;
        let mut saved = self.saved_files(owner).await?;
        saved.extend(files.iter().map(|(k, v)| (k.clone(), v.clone())));
        let manifest = serde_json::to_vec(&saved).expect("strings serialize");
        self.store
            .put(&Self::key(owner, "files.json")?, manifest)
            .await
            .map_err(|e| ToolError::Storage(e.to_string()))?;
        let mut lines = Vec::new();
        for (name, content) in files {
            tokio::fs::write(workdir.join(name), content)
                .await
                .map_err(|e| ToolError::Storage(format!("{name}: {e}")))?;
            lines.push(format!("wrote {name} ({} bytes)", content.len()));
        }
        Ok(ToolOutput {
            output: lines.join("\n"),
            exit_code: Some(0),
            truncated: false,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

#[cfg(test)]
mod tests;
