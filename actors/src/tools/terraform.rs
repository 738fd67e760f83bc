//! `terraform`: write configuration, plan, apply and destroy in the session's working directory.
//! The state (and the configuration the agent wrote) lives in object storage, keyed by org, user
//! and session, and is restored into the working directory before every run: a session moved to
//! another node, or a node that lost its disk, carries on with the same state. `terraform` run
//! through `cloud_exec` goes through the same restore and save.

mod guard;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aurora_models::llm::ToolSpec;
use aurora_storage::objects::{ObjectKey, ObjectStore};
use serde_json::{json, Value};
use uuid::Uuid;

pub use guard::TerraformPolicy;

use super::cloud_exec::{Call, CloudExec};
use super::sandbox::GrantFile;
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

    /// The gate's class: plan reads, write changes the session's files, apply and destroy
    /// change real infrastructure.
    pub fn classification(&self) -> aurora_storage::classify::Classification {
        use aurora_storage::classify::{Class, Classification};
        let (class, reason) = match self {
            Action::Plan => (Class::Read, "`terraform plan` only reads"),
            Action::Write(_) => (
                Class::Write,
                "`terraform write` changes this session's configuration files",
            ),
            Action::Apply => (
                Class::Destructive,
                "`terraform apply` changes real infrastructure",
            ),
            Action::Destroy => (
                Class::Destructive,
                "`terraform destroy` destroys real infrastructure",
            ),
        };
        Classification {
            class,
            reason: reason.into(),
        }
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
    /// Which providers and features terraform may use.
    pub policy: TerraformPolicy,
}

/// The session directory's state file, read without following a link the tool put there.
async fn read_state(workdir: &Path) -> Result<Option<Vec<u8>>, ToolError> {
    let dir = workdir.to_path_buf();
    tokio::task::spawn_blocking(move || state::read_file(&dir, STATE_FILE))
        .await
        .map_err(|e| ToolError::Crashed(e.to_string()))?
        .map_err(|e| ToolError::Storage(format!("{}: {e}", workdir.display())))
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

    fn ids(owner: &Owner) -> (String, String) {
        (owner.user_id.to_string(), owner.session_id.to_string())
    }

    pub async fn run(&self, owner: &Owner, action: &Action) -> Result<ToolOutput, ToolError> {
        self.run_granted(owner, action, &Call::default()).await
    }

    /// Runs `action` with the org's credentials in `call`.
    pub async fn run_granted(
        &self,
        owner: &Owner,
        action: &Action,
        call: &Call,
    ) -> Result<ToolOutput, ToolError> {
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
        let workdir = self.prepare(owner).await?;
        let call = self.call(call);
        let mut init_output = String::new();
        if !workdir.join(".terraform").is_dir() {
            let init = ["terraform", "init", "-input=false", "-no-color"].map(String::from);
            let out = self.run_synced(owner, &workdir, &init, &call).await?;
            if out.exit_code != Some(0) {
                return Ok(out);
            }
            init_output = out.output;
        }
        let mut out = self.run_synced(owner, &workdir, &argv, &call).await?;
        if !init_output.is_empty() {
            out.output = format!("{init_output}\n{}", out.output);
        }
        Ok(out)
    }

    /// Runs any `terraform` command line (from `cloud_exec`) with the state restored first and
    /// saved after.
    pub async fn run_cli(
        &self,
        owner: &Owner,
        argv: &[String],
        call: &Call,
    ) -> Result<ToolOutput, ToolError> {
        let workdir = self.prepare(owner).await?;
        let call = self.call(call);
        self.run_synced(owner, &workdir, argv, &call).await
    }

    /// The session directory with the stored state and files in it, and its configuration
    /// checked against the node's terraform policy.
    async fn prepare(&self, owner: &Owner) -> Result<PathBuf, ToolError> {
        let (user, session) = Self::ids(owner);
        let workdir = self.exec.workdir(&user, &session).await?;
        self.restore(owner, &workdir).await?;
        let policy = self.policy.clone();
        let dir = workdir.clone();
        tokio::task::spawn_blocking(move || policy.check_dir(&dir))
            .await
            .map_err(|e| ToolError::Crashed(e.to_string()))?
            .map_err(|why| ToolError::InvalidArguments(format!("terraform refused: {why}")))?;
        Ok(workdir)
    }

    /// The caller's grant plus terraform's CLI configuration; interrupted (not killed) at the
    /// timeout, so it can write its state.
    fn call(&self, call: &Call) -> Call {
        let mut call = call.clone();
        call.graceful = true;
        call.files.push(GrantFile {
            name: "terraformrc".into(),
            contents: self.policy.cli_config().into_bytes(),
            env: Some("TF_CLI_CONFIG_FILE".into()),
        });
        call
    }

    /// Runs `argv` and saves the state if the run changed it: even a failed, timed-out or
    /// cancelled apply can have, and losing that state would orphan real resources.
    async fn run_synced(
        &self,
        owner: &Owner,
        workdir: &Path,
        argv: &[String],
        call: &Call,
    ) -> Result<ToolOutput, ToolError> {
        let before = read_state(workdir).await?;
        let (user, session) = Self::ids(owner);
        let result = self.exec.run_with(&user, &session, argv, call).await;
        let after = read_state(workdir).await?;
        if let Some(state) = after.filter(|a| Some(a) != before.as_ref()) {
            self.save_state(owner, state).await?;
        }
        result
    }

    /// Stores `state` as the current one (unless the stored one is newer in the same lineage)
    /// and as a version in the history.
    async fn save_state(&self, owner: &Owner, state: Vec<u8>) -> Result<(), ToolError> {
        let storage = |e: aurora_storage::StorageError| {
            ToolError::Storage(format!("the state could not be saved: {e}"))
        };
        let key = Self::key(owner, STATE_FILE)?;
        if let Some(current) = self.store.get(&key).await.map_err(storage)? {
            if !state::may_replace(&current, &state) {
                tracing::warn!(session_id = %owner.session_id, "older terraform state not saved over a newer one");
                return Ok(());
            }
        }
        let version = state::Version::of(&state)
            .map(|v| format!("{}-{:020}", v.lineage, v.serial))
            .unwrap_or_else(|| "unversioned".into());
        let history = format!(
            "history/{}-{version}.tfstate",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
        );
        self.store
            .put(&Self::key(owner, &history)?, state.clone())
            .await
            .map_err(storage)?;
        self.store.put(&key, state).await.map_err(storage)
    }

    /// Brings the working directory in line with object storage: the saved state replaces the
    /// local one unless the local one is newer (then it is saved), and saved configuration
    /// files missing here are written back.
    async fn restore(&self, owner: &Owner, workdir: &Path) -> Result<(), ToolError> {
        let storage = |e: aurora_storage::StorageError| ToolError::Storage(e.to_string());
        let stored = self
            .store
            .get(&Self::key(owner, STATE_FILE)?)
            .await
            .map_err(storage)?;
        let local = read_state(workdir).await?;
        match state::restore_choice(local.as_deref(), stored.as_deref()) {
            state::Restore::Stored => {
                let bytes = stored.expect("a stored state to restore");
                self.put_local(workdir, STATE_FILE, bytes).await?;
            }
            state::Restore::Local => {
                self.save_state(owner, local.expect("a local state"))
                    .await?;
            }
            state::Restore::Nothing => {}
        }
        for (name, content) in self.saved_files(owner).await? {
            let missing = tokio::fs::symlink_metadata(workdir.join(&name))
                .await
                .is_err();
            if missing {
                self.put_local(workdir, &name, content.into_bytes()).await?;
            }
        }
        Ok(())
    }

    /// Writes a file into the session directory without following links, owned by the sandbox.
    async fn put_local(&self, workdir: &Path, name: &str, bytes: Vec<u8>) -> Result<(), ToolError> {
        let (dir, name_owned, owner) = (
            workdir.to_path_buf(),
            name.to_string(),
            self.exec.sandbox.owner_uid(),
        );
        tokio::task::spawn_blocking(move || state::write_file(&dir, &name_owned, &bytes, owner))
            .await
            .map_err(|e| ToolError::Crashed(e.to_string()))?
            .map_err(|e| ToolError::Storage(format!("{name}: {e}")))
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
        let (user, session) = Self::ids(owner);
        let workdir = self.exec.workdir(&user, &session).await?;
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
            self.put_local(&workdir, name, content.clone().into_bytes())
                .await?;
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
