//! Shared set-up of the in-process benchmarks: a migrated database (SQLite in a temporary
//! directory, or `DATABASE_URL`), a registered user, and everything the sessions supervisor
//! needs, with a provider that answers at once so the figures are the runtime's own.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use aurora_actors::tools::cloud_exec::CloudExec;
use aurora_actors::tools::grants::Grants;
use aurora_actors::tools::sandbox::{Sandbox, SandboxConfig};
use aurora_actors::tools::terraform::{Terraform, TerraformPolicy};
use aurora_actors::turn::TurnDeps;
use aurora_actors::Mailbox;
use aurora_config::Config;
use aurora_models::llm::{
    ChatRequest, FinishReason, LlmError, LlmEvent, LlmProvider, LlmStream, Usage,
};
use aurora_models::pricing::PriceTable;
use aurora_storage::audit::Audit;
use aurora_storage::auth::{Accounts, Principal};
use aurora_storage::cache::Cache;
use aurora_storage::objects::ObjectStore;
use aurora_storage::policies::Policies;
use aurora_storage::sessions::Sessions;
use aurora_storage::turns::TurnWriter;
use aurora_storage::Db;
use aurora_supervisors::sessions::SessionsArgs;
use aurora_supervisors::Backoff;
use futures::future::BoxFuture;
use uuid::Uuid;

/// Answers every request at once with one short text and its usage.
struct InstantProvider;

impl LlmProvider for InstantProvider {
    fn name(&self) -> &'static str {
        "instant"
    }

    fn stream(&self, _request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>> {
        Box::pin(async {
            let events = vec![
                Ok(LlmEvent::Text("All good.".into())),
                Ok(LlmEvent::Done {
                    finish_reason: FinishReason::Stop,
                    usage: Some(Usage {
                        input_tokens: 20,
                        output_tokens: 3,
                    }),
                }),
            ];
            Ok(Box::pin(futures::stream::iter(events)) as LlmStream)
        })
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn register(accounts: &Accounts) -> anyhow::Result<Principal> {
    let email = format!("bench-{}@acme.io", Uuid::new_v4().simple());
    let reg = accounts
        .register(&email, "a long bench password", "Bench")
        .await?;
    Ok(accounts.authenticate(&reg.token.token).await?)
}

pub struct Bench {
    pub db: Db,
    pub who: Principal,
    pub backend: &'static str,
    accounts: Accounts,
    dir: tempfile::TempDir,
}

impl Bench {
    pub async fn start() -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let mut vars = vec![(
            "AURORA_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        )];
        if let Ok(url) = std::env::var("DATABASE_URL") {
            vars.push(("DATABASE_URL".into(), url));
        }
        let config = Config::from_sources(None, vars)?;
        let db = aurora::open_database(&config).await?;
        let backend = if config.database.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        };
        let accounts = Accounts::new(db.clone(), 24, 10);
        let who = register(&accounts).await?;
        Ok(Bench {
            db,
            who,
            backend,
            accounts,
            dir,
        })
    }

    /// Another user, in an org of their own.
    pub async fn user(&self) -> anyhow::Result<Principal> {
        register(&self.accounts).await
    }

    pub fn sessions_args(&self) -> SessionsArgs {
        let db = &self.db;
        let cloud_exec = CloudExec {
            allowed: vec![],
            search_path: "/usr/bin:/bin".into(),
            workdir_root: self.dir.path().join("work"),
            timeout: Duration::from_secs(10),
            output_limit: 64 * 1024,
            grace: Duration::from_secs(5),
            sandbox: Sandbox::new(SandboxConfig::default()),
        };
        let deps = TurnDeps {
            llm: Arc::new(InstantProvider),
            prices: PriceTable::default(),
            terraform: Terraform {
                exec: cloud_exec.clone(),
                store: ObjectStore::local(self.dir.path().join("objects")),
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
            approval_timeout: Duration::from_secs(300),
            turn_timeout: Duration::from_secs(60),
            folding: None,
            node: "test-node".into(),
        };
        SessionsArgs {
            deps: Arc::new(deps),
            sessions: Sessions::new(db.clone()),
            system_prompt: "You are an SRE agent.".into(),
            default_model: "gpt-4o".into(),
            idle_after: Duration::from_secs(3600),
            hibernate_after: Duration::from_secs(3600),
            backoff: Backoff::DEFAULT,
            mailbox: Mailbox::new(),
            placement: tokio::sync::watch::channel(aurora_supervisors::Placement::alone("bench")).1,
        }
    }
}

/// Resident memory of this process, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    rss_of("self")
}

/// Resident memory of process `pid` (`self` for this one), in bytes (Linux).
pub fn rss_of(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
