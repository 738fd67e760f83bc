//! The agent turn loop against a scripted OpenAI-compatible server, a fake `kubectl`, and real
//! storage (SQLite) for policies, usage and the audit log.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use aurora_actors::protocol::{Decision, ErrorCode, Mode, ServerFrame};
use aurora_actors::tools::cloud_exec::{CloudExec, DEFAULT_CLIS};
use aurora_actors::turn::{run_turn, TurnDeps, TurnInput, TurnIo, TurnOutcome, TurnStatus};
use aurora_fakes::{openai, Completion, FakeServer, Reply};
use aurora_models::llm::{ChatMessage, HttpPolicy, OpenAiProvider};
use aurora_models::pricing::PriceTable;
use aurora_storage::audit::Audit;
use aurora_storage::auth::{Accounts, Principal, Role};
use aurora_storage::cache::Cache;
use aurora_storage::policies::{Effect, Policies};
use aurora_storage::usage::LlmUsage;
use aurora_storage::Db;
use tokio::sync::{mpsc, watch};

struct Harness {
    _dir: tempfile::TempDir,
    db: Db,
    deps: TurnDeps,
    who: Principal,
    fake: FakeServer,
}

async fn harness(script: Vec<Reply>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
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
    let deps = TurnDeps {
        llm,
        prices: PriceTable::default(),
        cloud_exec: CloudExec {
            allowed: DEFAULT_CLIS.iter().map(|s| s.to_string()).collect(),
            search_path: format!("{}:/usr/bin:/bin", bin.display()).into(),
            workdir_root: dir.path().join("work"),
            timeout: Duration::from_secs(10),
            output_limit: 64 * 1024,
        },
        policies: Policies::new(db.clone()),
        usage: LlmUsage::new(db.clone(), Cache::local()),
        audit: Audit::new(db.clone()),
        max_steps: 5,
        approval_timeout: Duration::from_secs(5),
    };
    Harness {
        _dir: dir,
        db,
        deps,
        who,
        fake,
    }
}

impl Harness {
    fn input(&self, mode: Mode, interactive: bool) -> TurnInput {
        TurnInput {
            who: self.who.clone(),
            session_id: uuid::Uuid::now_v7(),
            history: vec![ChatMessage::System {
                content: "You are an SRE agent.".into(),
            }],
            query: "Why is web failing?".into(),
            model: "gpt-4o".into(),
            mode,
            interactive,
        }
    }

    /// Runs a turn; `answer` sees each frame and may send a decision or cancel.
    async fn run(
        &self,
        input: TurnInput,
        answer: impl Fn(&ServerFrame) -> Option<Action> + Send + 'static,
    ) -> (TurnOutcome, Vec<ServerFrame>) {
        let (frames_tx, mut frames_rx) = mpsc::channel(256);
        let (decisions_tx, decisions_rx) = mpsc::channel(8);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let collector = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(frame) = frames_rx.recv().await {
                match answer(&frame) {
                    Some(Action::Decide(id, d)) => decisions_tx.send((id, d)).await.unwrap(),
                    Some(Action::Cancel) => cancel_tx.send(true).unwrap(),
                    None => {}
                }
                seen.push(frame);
            }
            seen
        });
        let mut io = TurnIo {
            frames: frames_tx,
            decisions: decisions_rx,
            cancel: cancel_rx,
        };
        let outcome = run_turn(&self.deps, &input, &mut io).await;
        drop(io);
        (outcome, collector.await.unwrap())
    }

    async fn audit_actions(&self) -> Vec<String> {
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

enum Action {
    Decide(String, Decision),
    Cancel,
}

fn never(_: &ServerFrame) -> Option<Action> {
    None
}

fn kinds(frames: &[ServerFrame]) -> Vec<String> {
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

fn decide(decision: Decision) -> impl Fn(&ServerFrame) -> Option<Action> + Send + 'static {
    move |f| match f {
        ServerFrame::ExecutionConfirmation { data, .. } => {
            Some(Action::Decide(data.confirmation_id.clone(), decision))
        }
        _ => None,
    }
}

#[tokio::test]
async fn answers_stream_and_usage_is_recorded() {
    let h = harness(vec![Reply::text(&["Web ", "is fine."], (50, 5))]).await;
    let (out, frames) = h.run(h.input(Mode::Agent, true), never).await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert_eq!(
        kinds(&frames),
        ["message", "message", "usage_final", "message"]
    );
    assert_eq!(out.messages.len(), 2);
    assert_eq!(
        out.messages[1],
        ChatMessage::Assistant {
            content: "Web is fine.".into(),
            tool_calls: vec![]
        }
    );
    assert_eq!(out.totals.input_tokens, 50);
    let summary = h.deps.usage.summary(&h.who).await.unwrap();
    assert_eq!(summary.calls, 1);
    assert!(summary.total_cost_usd > 0.0, "gpt-4o is priced");
}

#[tokio::test]
async fn a_read_runs_and_its_output_goes_back_to_the_model() {
    let h = harness(vec![
        Reply::tool_call(
            "call_1",
            "cloud_exec",
            &["{\"command\": \"kubectl get pods\"}"],
            (80, 10),
        ),
        Reply::text(&["web-1 is crash looping."], (120, 8)),
    ])
    .await;
    let (out, frames) = h.run(h.input(Mode::Ask, true), never).await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert_eq!(
        kinds(&frames),
        [
            "usage_final",
            "tool_call",
            "tool_result",
            "message",
            "usage_final",
            "message"
        ]
    );
    let sent = h.fake.requests();
    assert_eq!(sent.len(), 2);
    let tool_msg = &sent[1]["messages"][3];
    assert_eq!(tool_msg["role"], "tool");
    assert!(tool_msg["content"]
        .as_str()
        .unwrap()
        .contains("CrashLoopBackOff"));
    assert!(h.audit_actions().await.contains(&"tool.exec".to_string()));
}

#[tokio::test]
async fn destructive_commands_wait_for_approval() {
    let script = || {
        vec![
            Reply::tool_call(
                "call_d",
                "cloud_exec",
                &["{\"command\": \"kubectl delete pod web-1\"}"],
                (80, 10),
            ),
            Reply::text(&["Done."], (100, 2)),
        ]
    };
    // Approved: it runs.
    let h = harness(script()).await;
    let (out, frames) = h
        .run(h.input(Mode::Agent, true), decide(Decision::Execute))
        .await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert_eq!(
        kinds(&frames),
        [
            "usage_final",
            "tool_call",
            "execution_confirmation",
            "tool_call",
            "tool_result",
            "message",
            "usage_final",
            "message"
        ]
    );
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("deleted"))
    );
    let actions = h.audit_actions().await;
    assert!(
        actions.contains(&"approval.decision".to_string())
            && actions.contains(&"tool.exec".to_string()),
        "{actions:?}"
    );

    // Declined: it does not, and the model is told.
    let h = harness(script()).await;
    let (out, frames) = h
        .run(h.input(Mode::Agent, true), decide(Decision::Cancel))
        .await;
    assert_eq!(out.status, TurnStatus::Completed);
    assert!(kinds(&frames).contains(&"tool_error".to_string()));
    assert!(!kinds(&frames).contains(&"tool_result".to_string()));
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("declined"))
    );

    // Nobody answers: it times out and does not run.
    let mut h = harness(script()).await;
    h.deps.approval_timeout = Duration::from_millis(200);
    let (out, frames) = h.run(h.input(Mode::Agent, true), never).await;
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("no answer"))
    );
    assert!(!kinds(&frames).contains(&"tool_result".to_string()));

    // Ask mode: read-only, refused outright.
    let h = harness(script()).await;
    let (_, frames) = h.run(h.input(Mode::Ask, true), never).await;
    assert!(frames.iter().any(
        |f| matches!(f, ServerFrame::Error { data, .. } if data.code == ErrorCode::ReadOnlyMode)
    ));
    assert!(!kinds(&frames).contains(&"execution_confirmation".to_string()));

    // A background run never asks and never runs it.
    let h = harness(script()).await;
    let (out, frames) = h.run(h.input(Mode::Agent, false), never).await;
    assert!(!kinds(&frames).contains(&"execution_confirmation".to_string()));
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("background"))
    );
}

#[tokio::test]
async fn org_deny_rules_block_commands() {
    let h = harness(vec![
        Reply::tool_call(
            "call_1",
            "cloud_exec",
            &["{\"command\": \"kubectl get secrets -n prod\"}"],
            (10, 1),
        ),
        Reply::text(&["I may not look there."], (10, 1)),
    ])
    .await;
    h.deps
        .policies
        .create(&h.who, Effect::Deny, r"\bsecrets\b", None)
        .await
        .unwrap();
    let (out, frames) = h.run(h.input(Mode::Agent, true), never).await;
    assert!(
        matches!(&out.messages[2], ChatMessage::Tool { content, .. } if content.contains("not run"))
    );
    assert!(!kinds(&frames).contains(&"tool_result".to_string()));
    assert!(h.audit_actions().await.contains(&"tool.denied".to_string()));
}

#[tokio::test]
async fn cancel_mid_stream_keeps_the_partial_answer() {
    let slow = Reply::Stream(Completion {
        text: (0..50).map(|i| format!("word{i} ")).collect(),
        usage: Some((10, 50)),
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let h = harness(vec![slow]).await;
    let (out, _) = h
        .run(h.input(Mode::Agent, true), |f| match f {
            ServerFrame::Message { data, .. } if data.text == "word2 " => Some(Action::Cancel),
            _ => None,
        })
        .await;
    assert_eq!(out.status, TurnStatus::Cancelled);
    let ChatMessage::Assistant { content, .. } = &out.messages[1] else {
        panic!("{:?}", out.messages)
    };
    assert!(
        content.starts_with("word0 word1 word2 ") && !content.contains("word49"),
        "{content}"
    );
}

#[tokio::test]
async fn provider_failures_end_the_turn_with_an_error_frame() {
    let h = harness(vec![Reply::status(503, "down for maintenance")]).await;
    let (out, frames) = h.run(h.input(Mode::Agent, true), never).await;
    assert!(matches!(
        &out.status,
        TurnStatus::Failed {
            code: ErrorCode::LlmUnavailable,
            ..
        }
    ));
    assert!(frames.iter().any(
        |f| matches!(f, ServerFrame::Error { data, .. } if data.code == ErrorCode::LlmUnavailable)
    ));
    assert_eq!(out.messages.len(), 1, "the query is kept");
}
