//! Shared harness: real SQLite storage, a fake `kubectl`, a scripted OpenAI-compatible server.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use aurora_actors::protocol::{Decision, Mode, ServerFrame};
use aurora_actors::tools::cloud_exec::{CloudExec, DEFAULT_CLIS};
use aurora_actors::tools::grants::Grants;
use aurora_actors::tools::sandbox::{Sandbox, SandboxConfig};
use aurora_actors::tools::terraform::{Terraform, TerraformPolicy};
use aurora_actors::turn::{run_turn, TurnDeps, TurnInput, TurnIo, TurnOutcome};
use aurora_fakes::{openai, FakeServer, Reply};
use aurora_models::llm::{ChatMessage, HttpPolicy, OpenAiProvider};
use aurora_models::pricing::PriceTable;
use aurora_storage::audit::Audit;
use aurora_storage::auth::{Accounts, Principal, Role};
use aurora_storage::cache::Cache;
use aurora_storage::objects::ObjectStore;
use aurora_storage::policies::Policies;
use aurora_storage::turns::TurnWriter;
use aurora_storage::Db;
use tokio::sync::{mpsc, watch};

pub struct Harness {
    pub _dir: tempfile::TempDir,
    pub db: Db,
    pub deps: TurnDeps,
    pub who: Principal,
    pub fake: FakeServer,
    /// A real session of `who`: a turn's steps are written to it as they happen.
    pub session_id: uuid::Uuid,
}

pub async fn harness(script: Vec<Reply>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    // Searchable by the sandbox user, which runs the tools.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let config = aurora_config::DatabaseConfig::Sqlite {
        url: format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
    };
    let db = Db::connect(&config, 4, "aurora_app").await.unwrap();
    db.migrate().await.unwrap();
    let user = Accounts::new(db.clone(), 1, 0)
        .admin_create_user("ops@acme.io", "correct horse battery", "Acme", Role::Admin)
        .await
        .unwrap();
    let who = Principal {
        user_id: user.id,
        org_id: user.org_id,
        email: user.email,
        role: Role::Admin,
    };
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let kubectl = bin.join("kubectl");
    std::fs::write(&kubectl, "#!/bin/sh\ncase \"$1\" in\n  get) echo 'web-1 0/1 CrashLoopBackOff';;\n  delete) echo \"pod \\\"$3\\\" deleted\";;\nesac\n").unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = openai::start(script).await;
    let policy = HttpPolicy {
        max_retries: 0,
        idle_timeout: Duration::from_secs(5),
        ..HttpPolicy::default()
    };
    let llm =
        Arc::new(OpenAiProvider::new(&fake.base_url().parse().unwrap(), None, policy).unwrap());
    let cloud_exec = CloudExec {
        allowed: DEFAULT_CLIS.iter().map(|s| s.to_string()).collect(),
        search_path: format!("{}:/usr/bin:/bin", bin.display()).into(),
        // Under a data directory of its own: a PATH entry beside the sessions is never shown.
        workdir_root: dir.path().join("data/work"),
        timeout: Duration::from_secs(10),
        output_limit: 64 * 1024,
        grace: Duration::from_secs(5),
        sandbox: Sandbox::new(SandboxConfig::default()),
    };
    let deps = TurnDeps {
        llm,
        prices: PriceTable::default(),
        terraform: Terraform {
            exec: cloud_exec.clone(),
            store: ObjectStore::local(dir.path().join("objects")),
            policy: TerraformPolicy {
                providers: vec!["hashicorp/aws".into()],
                mirror: None,
                allow_exec: false,
            },
        },
        knowledge: None,
        incidents: None,
        cloud_exec,
        policies: Policies::new(db.clone()),
        writer: TurnWriter::start(db.clone(), Cache::local()),
        audit: Audit::new(db.clone()),
        grants: Grants::none(),
        accounts: Accounts::new(db.clone(), 1, 0),
        max_steps: 5,
        approval_timeout: Duration::from_secs(5),
        turn_timeout: Duration::from_secs(30),
        folding: None,
        node: "test-node".into(),
    };
    let session_id = aurora_storage::sessions::Sessions::new(db.clone())
        .create(&who, None)
        .await
        .unwrap()
        .id;
    Harness {
        _dir: dir,
        db,
        deps,
        who,
        fake,
        session_id,
    }
}

impl Harness {
    pub fn input(&self, mode: Mode, interactive: bool) -> TurnInput {
        TurnInput {
            who: self.who.clone(),
            session_id: self.session_id,
            history: vec![ChatMessage::System {
                content: "You are an SRE agent.".into(),
            }],
            query: "Why is web failing?".into(),
            model: "gpt-4o".into(),
            mode,
            interactive,
            resume: false,
        }
    }

    /// Runs a turn; `answer` sees each frame and may send a decision or cancel.
    pub async fn run(
        &self,
        input: TurnInput,
        answer: impl Fn(&ServerFrame) -> Option<Action> + Send + 'static,
    ) -> (TurnOutcome, Vec<ServerFrame>) {
        let (frames_tx, mut frames_rx) = mpsc::channel(256);
        let (decisions_tx, decisions_rx) = mpsc::channel(8);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let approver = self.who.user_id;
        let collector = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(frame) = frames_rx.recv().await {
                match answer(&frame) {
                    Some(Action::Decide(id, d)) => {
                        decisions_tx.send((id, d, approver)).await.unwrap()
                    }
                    Some(Action::Cancel) => cancel_tx.send(true).unwrap(),
                    None => {}
                }
                seen.push(frame);
            }
            seen
        });
        let mut io = TurnIo {
            frames: aurora_actors::protocol::FrameSink::new(frames_tx),
            decisions: decisions_rx,
            cancel: cancel_rx,
            supervisor: None,
        };
        let mut outcome = run_turn(&self.deps, &input, &mut io).await;
        // What the run does after the turn's last write: its steps are committed by then.
        for step in std::mem::take(&mut outcome.pending) {
            if step.committed().await.is_err() {
                outcome.unsaved_steps = true;
            }
        }
        drop(io);
        (outcome, collector.await.unwrap())
    }

    pub async fn audit_actions(&self) -> Vec<String> {
        use sea_orm::QueryOrder;
        let tx = self.db.org(self.who.org_id).await.unwrap();
        let rows = tx
            .select::<aurora_storage::entities::audit_log::Entity>()
            .order_by_asc(aurora_storage::entities::audit_log::Column::CreatedAt)
            .all(tx.conn())
            .await
            .unwrap();
        rows.into_iter().map(|r| r.action).collect()
    }
}

pub enum Action {
    Decide(String, Decision),
    Cancel,
}

pub fn never(_: &ServerFrame) -> Option<Action> {
    None
}

pub fn kinds(frames: &[ServerFrame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            serde_json::to_value(f).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

pub fn decide(decision: Decision) -> impl Fn(&ServerFrame) -> Option<Action> + Send + 'static {
    move |f| match f {
        ServerFrame::ExecutionConfirmation { data, .. } => {
            Some(Action::Decide(data.confirmation_id.clone(), decision))
        }
        _ => None,
    }
}
