use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aurora_actors::knowledge::KnowledgeBase;
use aurora_actors::tools::cloud_exec::CloudExec;
use aurora_actors::tools::grants::Grants;
use aurora_actors::tools::terraform::Terraform;
use aurora_actors::turn::TurnDeps;
use aurora_actors::Mailbox;
use aurora_actors::{ActorSnapshot, HealthReport};
use aurora_cluster::{Cluster, ClusterArgs};
use aurora_config::{Config, DatabaseConfig, LogFormat};
use aurora_edges::{serve_http, serve_ws, HttpServer, HttpState, WsServer, WsState};
use aurora_models::embeddings::{Embedder, EmbeddingPool, ModelSource, PoolConfig};
use aurora_models::llm::{self, HttpPolicy};
use aurora_models::pricing::PriceTable;
use aurora_storage::audit::Audit;
use aurora_storage::auth::Accounts;
use aurora_storage::cache::Cache;
use aurora_storage::credentials::Credentials;
use aurora_storage::knowledge::{DocCaps, Knowledge};
use aurora_storage::objects::{ObjectStore, S3Settings};
use aurora_storage::policies::Policies;
use aurora_storage::preferences::Preferences;
use aurora_storage::redis::RedisPool;
use aurora_storage::secrets::{SealedFile, SecretStore, VaultStore};
use aurora_storage::sessions::Sessions;
use aurora_storage::tickets::Tickets;
use aurora_storage::turns::TurnWriter;
use aurora_storage::usage::LlmUsage;
use aurora_storage::Db;
use aurora_supervisors::embeddings::EmbeddingArgs;
use aurora_supervisors::ingest::IngestArgs;
use aurora_supervisors::sessions::{SessionsArgs, SessionsMsg};
use aurora_supervisors::{Backoff, NodeArgs, NodeMsg, NodeSupervisor, Placement, SessionsHandle};
use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running node: its supervision tree and its edges.
pub struct Node {
    pub config: Arc<Config>,
    pub name: String,
    http: HttpServer,
    ws: WsServer,
    sessions: SessionsHandle,
    cluster: Cluster,
    supervisor: ActorRef<NodeMsg>,
    supervisor_task: JoinHandle<()>,
    /// Follows the cluster's token revocations (`Accounts::follow_revocations`).
    revocations: JoinHandle<()>,
    /// Follows the incident feed of every node (`Feed::follow`).
    feed: JoinHandle<()>,
    db: Db,
    health: watch::Receiver<HealthReport>,
}

/// The agent's standing instructions.
const SYSTEM_PROMPT: &str = "You are Aurora, an SRE agent. You investigate and operate the user's \
infrastructure with the tools you are given. Prefer reading before changing anything; explain \
what you found and what you intend to do. Destructive commands need the user's approval.";

/// Everything the sessions supervisor and its turns need.
fn sessions_args(
    config: &Config,
    db: &Db,
    (cache, accounts): (&Cache, &Accounts),
    (llm, knowledge): (Arc<dyn llm::LlmProvider>, Option<Arc<KnowledgeBase>>),
    placement: watch::Receiver<Placement>,
    (cloud_exec, terraform, grants): (CloudExec, Terraform, Grants),
    (incidents, node): (aurora_storage::incidents::Incidents, &str),
) -> anyhow::Result<SessionsArgs> {
    let chat = &config.chat;
    let prices = PriceTable::with_overrides(chat.llm_prices.as_deref().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("invalid AURORA_LLM_PRICES: {e}"))?;
    let windows = aurora_models::context::ContextWindows::with_overrides(
        chat.llm_context_tokens.as_deref().unwrap_or(""),
    )
    .map_err(|e| anyhow::anyhow!("invalid AURORA_LLM_CONTEXT_TOKENS: {e}"))?;
    let deps = TurnDeps {
        llm,
        prices,
        terraform,
        knowledge,
        incidents: Some(incidents),
        cloud_exec,
        policies: Policies::new(db.clone()),
        writer: TurnWriter::start(db.clone(), cache.clone()),
        audit: Audit::new(db.clone()),
        grants,
        accounts: accounts.clone(),
        max_steps: chat.max_steps,
        approval_timeout: Duration::from_secs(chat.approval_timeout_secs),
        turn_timeout: Duration::from_secs(chat.turn_timeout_secs),
        folding: Some(aurora_actors::summary::Folding {
            windows,
            at_percent: chat.summary_at_percent,
            sessions: Sessions::new(db.clone()),
        }),
        node: node.to_string(),
    };
    let args = SessionsArgs {
        deps: Arc::new(deps),
        sessions: Sessions::new(db.clone()),
        system_prompt: SYSTEM_PROMPT.into(),
        default_model: config.llm_model.clone().unwrap_or_default(),
        idle_after: Duration::from_secs(chat.session_idle_secs),
        hibernate_after: Duration::from_secs(chat.session_hibernate_secs),
        backoff: Backoff::DEFAULT,
        mailbox: Mailbox::new(),
        placement,
    };
    Ok(args)
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

/// The secret store holding the orgs' credentials: Vault (KV v2 at `VAULT_KV_MOUNT`) when
/// `VAULT_ADDR` is set, which is what nodes of a cluster share; else a sealed file in the data
/// directory, sealed with a key derived from `key` (`SECRET_KEY`, or the generated key kept
/// beside it). A token Vault refuses, or a sealed file that does not open with the key, stops
/// the node here.
async fn open_secrets(config: &Config, key: &[u8]) -> anyhow::Result<SecretStore> {
    if let Some(addr) = &config.vault_addr {
        let Some(token) = &config.vault_token else {
            anyhow::bail!("VAULT_TOKEN is required when VAULT_ADDR is set");
        };
        let store = VaultStore::connect(addr, token.expose(), &config.vault_kv_mount)
            .await
            .with_context(|| format!("cannot use Vault at {addr}"))?;
        return Ok(SecretStore::Vault(store));
    }
    if config.cluster.enabled() {
        tracing::warn!(
            "VAULT_ADDR is not set: credentials are kept in this node's sealed file, which other nodes cannot read"
        );
    }
    let file = SealedFile::open(config.data_dir.join("secrets.sealed"), key)
        .await
        .context("cannot open the sealed secrets file")?;
    Ok(SecretStore::Sealed(file))
}

/// `AURORA_HOST_CLOUD_CONFIG` lets tools use the host's own cloud configuration, which is
/// only safe while the deployment serves one org: with more, the node does not start.
async fn check_single_org(config: &Config, db: &Db) -> anyhow::Result<()> {
    if !config.host_cloud_config {
        return Ok(());
    }
    let orgs = Accounts::new(db.clone(), 1, 0).organization_count().await?;
    if orgs > 1 {
        anyhow::bail!(
            "AURORA_HOST_CLOUD_CONFIG is on but {orgs} organizations exist: the host's cloud \
             configuration would serve all of them; turn it off (and give each org its own \
             credentials)"
        );
    }
    Ok(())
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

/// Object storage: the S3 bucket the config names (shared by the nodes of a cluster), else a
/// directory under the data directory.
async fn open_objects(config: &Config) -> anyhow::Result<ObjectStore> {
    match (&config.s3_endpoint, &config.s3_bucket) {
        (Some(endpoint), Some(bucket)) => {
            let settings = S3Settings {
                endpoint: endpoint.to_string(),
                bucket: bucket.clone(),
                region: config.s3_region.clone(),
                access_key: config.s3_access_key.clone(),
                secret_key: config
                    .s3_secret_key
                    .as_ref()
                    .map(|s| s.expose().to_string()),
            };
            ObjectStore::s3(&settings)
                .await
                .context("cannot open the S3 bucket")
        }
        _ => Ok(ObjectStore::local(config.data_dir.join("objects"))),
    }
}

/// The knowledge base, when an embedding model can be had: a bad `EMBEDDING_MODEL_DIR` stops
/// the node (it was asked for explicitly); a model missing from the hub cache with no way to
/// download it only disables the knowledge base, with a warning. Returns the knowledge base
/// and what the embedding pool's supervised workers are started with.
async fn open_knowledge(
    config: &Config,
    db: &Db,
    objects: &ObjectStore,
) -> anyhow::Result<Option<(Arc<KnowledgeBase>, EmbeddingArgs)>> {
    let source = ModelSource {
        dir: config.embedding_model_dir.clone(),
        repo: config.kb.model_repo.clone(),
        revision: config.kb.model_revision.clone(),
        offline: config.kb.hub_offline,
        cache: None,
    };
    let dir = match source.resolve().await {
        Ok(dir) => dir,
        Err(e) if config.embedding_model_dir.is_some() => {
            return Err(e).context("cannot load the embedding model")
        }
        Err(e) => {
            tracing::warn!(error = %e, "no embedding model: the knowledge base is disabled");
            return Ok(None);
        }
    };
    let started = Instant::now();
    let embedder = tokio::task::spawn_blocking(move || Embedder::load(&dir))
        .await
        .context("embedding model loader panicked")?
        .context("cannot load the embedding model")?;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "embedding model loaded"
    );
    let pool_config = PoolConfig::default();
    let (pool, source) = EmbeddingPool::new(pool_config);
    let workers = EmbeddingArgs {
        embedder: Arc::new(embedder),
        source,
        workers: pool_config.workers,
        backoff: Backoff::DEFAULT,
    };
    let extractor = aurora_actors::knowledge::child::Extractor {
        program: config
            .kb
            .extractor
            .clone()
            .or_else(|| std::env::current_exe().ok()),
        timeout: Duration::from_secs(config.kb.extract_secs),
        memory_bytes: config.kb.extract_memory_mb * 1024 * 1024,
    };
    let kb = KnowledgeBase::new(
        Knowledge::new(db.clone()).with_caps(DocCaps {
            max_documents: config.kb.max_documents,
            max_in_flight: config.kb.max_ingestions,
        }),
        pool,
        objects.clone(),
        config.kb.max_upload_bytes,
        extractor,
    );
    Ok(Some((kb, workers)))
}

impl Node {
    /// Opens storage, migrates, starts the supervision tree and binds the HTTP edge.
    pub async fn start(config: Config) -> anyhow::Result<Node> {
        raise_open_files(&config);
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
        check_single_org(&config, &db).await?;
        let mut accounts =
            Accounts::new(db.clone(), config.token_ttl_hours, config.auth_cache_secs)
                .single_org(config.host_cloud_config)
                .open_registration(config.allow_registration)
                .hash_slots(config.hash_slots);
        if redis.is_some() {
            accounts = accounts.shared_cache(cache.clone());
        }
        let secrets = open_secrets(&config, &secret).await?;
        let objects = open_objects(&config).await?;
        let llm = match config.llm_provider {
            Some(_) => Some(
                llm::from_config(&config, HttpPolicy::default())
                    .context("invalid LLM configuration")?,
            ),
            None => None,
        };
        let (knowledge, embeddings) = match open_knowledge(&config, &db, &objects).await? {
            Some((kb, workers)) => (Some(kb), Some(workers)),
            None => (None, None),
        };
        let (health_tx, health_rx) = watch::channel(HealthReport::starting());
        // The cluster publishes who owns which session here once it starts (below).
        let (placement_tx, placement_rx) = watch::channel(Placement::alone("starting"));
        let ingest_args = knowledge.as_ref().map(|kb| IngestArgs { kb: kb.clone() });
        let (ingest_tx, ingest) = watch::channel(None);
        let (sessions_tx, sessions) = watch::channel(None);
        // Bound before anything is named after them: with port 0 the name carries the port
        // the system chose, so nodes on one machine never share a name.
        let http_addr = SocketAddr::new(config.bind_addr, config.http_port);
        let http_listener = tokio::net::TcpListener::bind(http_addr)
            .await
            .with_context(|| format!("cannot listen on {http_addr}"))?;
        let ws_addr = SocketAddr::new(config.bind_addr, config.ws_port);
        let ws_listener = tokio::net::TcpListener::bind(ws_addr)
            .await
            .with_context(|| format!("cannot listen on {ws_addr}"))?;
        // The tool sandbox closes the node's own ports to tools: the ports actually bound.
        let sandbox = crate::tools::sandbox(
            &config,
            &[
                http_listener.local_addr()?.port(),
                ws_listener.local_addr()?.port(),
            ],
        );
        let incidents = aurora_storage::incidents::Incidents::new(
            db.clone(),
            aurora_storage::incidents::Feed::new(cache.clone()),
        );
        // Each tool call gets its org's credentials from the secret store.
        let grants = Grants::new(Credentials::new(db.clone(), secrets.clone()));
        let node_name = match &config.node_name {
            Some(name) => name.clone(),
            None => format!("aurora@{}", http_listener.local_addr()?),
        };
        let sessions_args = match &llm {
            Some(llm) => Some(sessions_args(
                &config,
                &db,
                (&cache, &accounts),
                (llm.clone(), knowledge.clone()),
                placement_rx.clone(),
                {
                    let (exec, tf) = crate::tools::runners(&config, sandbox.clone(), &objects);
                    (exec, tf, grants.clone())
                },
                (incidents.clone(), &node_name),
            )?),
            None => None,
        };
        let (incidents_tx, incidents_handle) = watch::channel(None);
        let pipeline = crate::incidents::parts(crate::incidents::Inputs {
            config: &config,
            db: &db,
            secrets: &secrets,
            knowledge: knowledge.as_ref(),
            sessions: llm.as_ref().map(|_| sessions.clone()),
            placement: placement_rx,
            node: &node_name,
            cloud_exec: crate::tools::runners(&config, sandbox.clone(), &objects).0,
            incidents,
        })?;
        let (supervisor, supervisor_task) = Actor::spawn(
            None,
            NodeSupervisor,
            NodeArgs {
                node_name: node_name.clone(),
                db: db.clone(),
                redis,
                secrets: Some(secrets.clone()),
                health_interval: Duration::from_millis(config.health_interval_ms),
                health: Arc::new(health_tx),
                sessions: sessions_args,
                sessions_handle: Arc::new(sessions_tx),
                embeddings,
                ingest: ingest_args,
                ingest_handle: Arc::new(ingest_tx),
                incidents: Some(pipeline.supervisor),
                incidents_handle: Arc::new(incidents_tx),
                scheduler: Some(pipeline.scheduler),
                backoff: Backoff::DEFAULT,
            },
        )
        .await
        .context("cannot start the node supervisor")?;
        let cluster = match Cluster::start(
            ClusterArgs {
                name: node_name.clone(),
                sessions: sessions.clone(),
                node: supervisor.clone(),
                placement: placement_tx,
                tickets: Tickets::new(&secret, cache.clone(), WS_TICKET_TTL),
                incidents: incidents_handle.clone(),
                store: Sessions::new(db.clone()),
            },
            &config.cluster,
            config.bind_addr,
        )
        .await
        {
            Ok(cluster) => cluster,
            Err(e) => {
                supervisor.stop(Some("the cluster failed to start".into()));
                return Err(e).context("cannot join the cluster");
            }
        };
        let state = HttpState {
            sandbox: sandbox.status().clone(),
            config: config.clone(),
            node_name: node_name.clone(),
            accounts: accounts.clone(),
            cache: cache.clone(),
            preferences: Preferences::new(db.clone()),
            sessions: Sessions::new(db.clone()),
            tickets: Tickets::new(&secret, cache.clone(), WS_TICKET_TTL),
            usage: LlmUsage::new(db.clone(), cache.clone()),
            policies: Policies::new(db.clone()),
            credentials: Credentials::new(db.clone(), secrets.clone()),
            knowledge: knowledge.clone(),
            kb_store: Knowledge::new(db.clone()),
            ingest,
            incidents: pipeline.incidents.clone(),
            webhooks: pipeline.webhooks,
            incidents_handle,
            node: supervisor.clone(),
            cluster: cluster.clone(),
            llm: llm.clone(),
            health: health_rx.clone(),
            started,
            draining: AtomicBool::new(false),
        };
        let ws_state = WsState {
            tickets: Tickets::new(&secret, cache.clone(), WS_TICKET_TTL),
            accounts: accounts.clone(),
            cache: cache.clone(),
            cluster: cluster.clone(),
            chat_enabled: llm.is_some(),
            max_frame_bytes: config.chat.ws_max_frame_bytes,
            rate_limit: (
                config.chat.rate_limit_queries,
                Duration::from_secs(config.chat.rate_limit_window_secs),
            ),
            max_connections: config.chat.ws_max_connections,
            max_per_user: config.chat.ws_max_per_user,
            handshake_wait: Duration::from_secs(config.chat.ws_handshake_secs),
            sockets: Default::default(),
            per_user: Default::default(),
        };
        let started_edges = async {
            let ws = serve_ws(ws_state, ws_listener)
                .await
                .with_context(|| format!("cannot serve on {ws_addr}"))?;
            let http = serve_http(state, http_listener)
                .await
                .with_context(|| format!("cannot serve on {http_addr}"))?;
            anyhow::Ok((ws, http))
        };
        let (ws, http) = match started_edges.await {
            Ok(edges) => edges,
            Err(e) => {
                cluster.shutdown().await;
                supervisor.stop(Some("an edge failed to start".into()));
                return Err(e);
            }
        };
        let revocations = tokio::spawn(async move { accounts.follow_revocations().await });
        let feed = pipeline.incidents.feed().clone();
        let feed = tokio::spawn(async move { feed.follow().await });
        tracing::info!(node = %node_name, http = %http.addr, ws = %ws.addr, elapsed_ms = started.elapsed().as_millis() as u64, "node started");
        Ok(Node {
            config,
            name: node_name,
            http,
            ws,
            sessions,
            cluster,
            supervisor,
            supervisor_task,
            revocations,
            feed,
            db,
            health: health_rx,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.addr
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.ws.addr
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The latest dependency health report.
    pub fn health(&self) -> HealthReport {
        self.health.borrow().clone()
    }

    /// This node's view of the cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The root of the supervision tree (tests use it to inject failures into children).
    pub fn supervisor(&self) -> ractor::ActorCell {
        self.supervisor.get_cell()
    }

    /// This node's actor tree.
    pub async fn actor_tree(&self) -> anyhow::Result<ActorSnapshot> {
        Ok(ractor::call_t!(self.supervisor, NodeMsg::Status, 3000)?)
    }

    /// The sessions supervisor as the edges see it (`None` without an LLM provider or while it
    /// restarts).
    pub fn sessions(&self) -> Option<ActorRef<SessionsMsg>> {
        self.sessions.borrow().as_ref().map(|c| c.actor.clone())
    }

    /// Drains the edges, stops the supervision tree and closes storage, all within the configured
    /// deadline; whatever is still running then is abandoned.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let deadline = Duration::from_secs(self.config.shutdown_timeout_secs);
        let start = Instant::now();
        tracing::info!(deadline_s = deadline.as_secs(), "shutting down");
        self.revocations.abort();
        self.feed.abort();
        if tokio::time::timeout(deadline, self.http.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("http edge did not drain before the deadline");
        }
        let mut ws = self.ws;
        ws.stop_accepting().await;
        if self.cluster.clustered() {
            // Hand the sessions to the other members, and let the turns running here, and
            // those elsewhere that clients connected here wait for, finish while the deadline
            // allows; each connection closes (1001) once it waits for no turn, so its client
            // moves to another node between turns.
            self.cluster.leave();
            ws.drain();
            let drain_until = deadline.saturating_sub(Duration::from_secs(2));
            loop {
                let running = self.cluster.turns_in_flight().await;
                if running == 0 && ws.open_connections() == 0 {
                    break;
                }
                if start.elapsed() >= drain_until {
                    tracing::warn!(
                        running,
                        "turns still running at the shutdown deadline are cancelled"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        ws.close_all();
        self.cluster.shutdown().await;
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
    // Whatever RUST_LOG says: vaultrs logs every non-2xx answer as an error (a missing secret,
    // the health probe's "not found"); the secret store reports its own failures instead.
    let filter = ["vaultrs=off", "rustify=off"]
        .into_iter()
        .fold(filter, |f, d| {
            f.add_directive(d.parse().expect("a valid directive"))
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

/// Raises the open-file limit to its hard maximum: each connection is a descriptor, and the
/// connection caps are meant to be what stops a flood, not EMFILE. Says so when even the
/// maximum is below the caps.
fn raise_open_files(config: &Config) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return;
        }
        if rl.rlim_cur < rl.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rl = raised;
            }
        }
    }
    let wanted = (config.http_max_connections + config.chat.ws_max_connections) as u64 + 256;
    if rl.rlim_cur < wanted {
        tracing::warn!(
            open_files = rl.rlim_cur,
            wanted,
            "the open-file limit is below the connection caps (AURORA_HTTP_MAX_CONNECTIONS + AURORA_WS_MAX_CONNECTIONS): raise it, or lower the caps"
        );
    }
}
