use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aurora_actors::{ActorSnapshot, HealthReport};
use aurora_config::{Config, DatabaseConfig, LogFormat};
use aurora_edges::{serve_http, HttpServer, HttpState};
use aurora_models::llm::{self, HttpPolicy};
use aurora_storage::auth::Accounts;
use aurora_storage::cache::Cache;
use aurora_storage::policies::Policies;
use aurora_storage::preferences::Preferences;
use aurora_storage::redis::RedisPool;
use aurora_storage::sessions::Sessions;
use aurora_storage::tickets::Tickets;
use aurora_storage::usage::LlmUsage;
use aurora_storage::Db;
use aurora_supervisors::{NodeArgs, NodeMsg, NodeSupervisor};
use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running node: its supervision tree and its edges.
pub struct Node {
    pub config: Arc<Config>,
    pub name: String,
    http: HttpServer,
    supervisor: ActorRef<NodeMsg>,
    supervisor_task: JoinHandle<()>,
    db: Db,
    health: watch::Receiver<HealthReport>,
}

/// How long a WebSocket ticket is valid (PROTOCOL.md).
const WS_TICKET_TTL: Duration = Duration::from_secs(120);

/// The key that signs WebSocket tickets: `SECRET_KEY`, or on a node without one a random key
/// kept in the data directory (created on first start, readable by the owner only). Nodes of a
/// cluster must share `SECRET_KEY`, or a ticket from one is refused by the others.
fn secret_key(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(key) = &config.secret_key {
        return Ok(key.expose().as_bytes().to_vec());
    }
    if config.database.is_postgres() {
        tracing::warn!("SECRET_KEY is not set: tickets issued here are refused by other nodes");
    }
    let path = config.data_dir.join("secret_key");
    match std::fs::read_to_string(&path) {
        Ok(key) if key.trim().len() >= 32 => return Ok(key.trim().as_bytes().to_vec()),
        Ok(_) => anyhow::bail!(
            "{} is too short; delete it to have a new key made",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(key.as_bytes())?;
    Ok(key.into_bytes())
}

/// Opens the relational store the config names (creating the SQLite file's directory) and
/// applies pending migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    if let DatabaseConfig::Sqlite { .. } = config.database {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
    }
    let db = Db::connect(
        &config.database,
        config.db_max_connections,
        &config.db_rls_role,
    )
    .await
    .context("cannot connect to the database")?;
    db.migrate().await.context("database migration failed")?;
    Ok(db)
}

impl Node {
    /// Opens storage, migrates, starts the supervision tree and binds the HTTP edge.
    pub async fn start(config: Config) -> anyhow::Result<Node> {
        let config = Arc::new(config);
        let started = Instant::now();
        let db = open_database(&config).await?;
        let redis = match &config.redis_url {
            Some(url) => Some(RedisPool::new(url.expose()).context("invalid REDIS_URL")?),
            None => None,
        };
        let cache = match &redis {
            Some(pool) => Cache::Redis(pool.clone()),
            None => Cache::local(),
        };
        let secret = secret_key(&config)?;
        let llm = match config.llm_provider {
            Some(_) => Some(
                llm::from_config(&config, HttpPolicy::default())
                    .context("invalid LLM configuration")?,
            ),
            None => None,
        };
        let (health_tx, health_rx) = watch::channel(HealthReport::starting());
        let http_addr = SocketAddr::new(config.bind_addr, config.http_port);
        let node_name = format!("aurora@{http_addr}");
        let (supervisor, supervisor_task) = Actor::spawn(
            None,
            NodeSupervisor,
            NodeArgs {
                node_name: node_name.clone(),
                db: db.clone(),
                redis,
                health_interval: Duration::from_millis(config.health_interval_ms),
                health: Arc::new(health_tx),
            },
        )
        .await
        .context("cannot start the node supervisor")?;
        let state = HttpState {
            config: config.clone(),
            node_name: node_name.clone(),
            accounts: Accounts::new(db.clone(), config.token_ttl_hours, config.auth_cache_secs),
            preferences: Preferences::new(db.clone()),
            sessions: Sessions::new(db.clone()),
            tickets: Tickets::new(&secret, cache.clone(), WS_TICKET_TTL),
            usage: LlmUsage::new(db.clone(), cache),
            policies: Policies::new(db.clone()),
            llm,
            health: health_rx.clone(),
            started,
            draining: AtomicBool::new(false),
        };
        let http = match serve_http(state, http_addr).await {
            Ok(http) => http,
            Err(e) => {
                supervisor.stop(Some("http edge failed to start".into()));
                return Err(e).with_context(|| format!("cannot listen on {http_addr}"));
            }
        };
        tracing::info!(node = %node_name, http = %http.addr, elapsed_ms = started.elapsed().as_millis() as u64, "node started");
        Ok(Node {
            config,
            name: node_name,
            http,
            supervisor,
            supervisor_task,
            db,
            health: health_rx,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.addr
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The latest dependency health report.
    pub fn health(&self) -> HealthReport {
        self.health.borrow().clone()
    }

    /// The root of the supervision tree (tests use it to inject failures into children).
    pub fn supervisor(&self) -> ractor::ActorCell {
        self.supervisor.get_cell()
    }

    /// This node's actor tree.
    pub async fn actor_tree(&self) -> anyhow::Result<ActorSnapshot> {
        Ok(ractor::call_t!(self.supervisor, NodeMsg::Status, 2000)?)
    }

    /// Drains the edges, stops the supervision tree and closes storage, all within the configured
    /// deadline; whatever is still running then is abandoned.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let deadline = Duration::from_secs(self.config.shutdown_timeout_secs);
        let start = Instant::now();
        tracing::info!(deadline_s = deadline.as_secs(), "shutting down");
        if tokio::time::timeout(deadline, self.http.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("http edge did not drain before the deadline");
        }
        let left = deadline
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(100));
        if let Err(e) = self
            .supervisor
            .stop_and_wait(Some("shutdown".into()), Some(left))
            .await
        {
            tracing::warn!(error = %e, "supervision tree did not stop in time");
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), self.supervisor_task).await;
        let left = deadline
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(100));
        if tokio::time::timeout(left, self.db.close()).await.is_err() {
            tracing::warn!("database pool did not close before the deadline");
        }
        tracing::info!(
            elapsed_ms = start.elapsed().as_millis() as u64,
            "node stopped"
        );
        Ok(())
    }
}

/// Installs the global tracing subscriber: lowercase structured events, `RUST_LOG` to filter.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,warp=error,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,ractor=warn")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
