//! Typed configuration of one Aurora node.
//!
//! A [`Config`] is loaded once at start-up from an optional TOML file and the process environment
//! (the environment wins), validated, and then passed down by value or `Arc`. Nothing else in the
//! code base reads environment variables. Every key has one name: the environment variable name
//! (`HTTP_PORT`), written in lower case in the TOML file (`http_port = 5080`). An unknown key in the
//! file, an unknown `AURORA_*` variable or a value that does not parse stops start-up with an error
//! naming the key, so a typo never silently falls back to a default.

mod error;
mod incidents;
mod keys;
mod sandbox;
mod secret;
mod sources;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use incidents::IncidentsConfig;
pub use keys::KEYS;
pub use sandbox::{SandboxSettings, DEFAULT_PROVIDERS};
pub use secret::Secret;
use sources::Sources;
use url::Url;

/// Which relational backend the node runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// The embedded default: one SQLite file under the data directory (or the given URL).
    Sqlite { url: String },
    /// The server backend, shared by every node of a cluster.
    Postgres { url: Secret },
}

impl DatabaseConfig {
    /// The connection URL (with any password in clear: only for opening the connection).
    pub fn url(&self) -> &str {
        match self {
            DatabaseConfig::Sqlite { url } => url,
            DatabaseConfig::Postgres { url } => url.expose(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseConfig::Postgres { .. })
    }
}

/// LLM providers the node can talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmProvider {
    /// OpenAI-compatible chat completions (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp server).
    OpenAi,
    /// Anthropic messages API.
    Anthropic,
}

impl std::str::FromStr for LlmProvider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "openai" | "openai-compatible" | "openrouter" | "ollama" | "vllm" => Ok(Self::OpenAi),
            "anthropic" => Ok(Self::Anthropic),
            other => Err(format!(
                "unknown provider '{other}' (expected openai or anthropic)"
            )),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format '{other}' (expected text or json)"
            )),
        }
    }
}

/// The whole, validated configuration of a node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name in the actor tree, logs and metrics (default `aurora@<http address>`).
    pub node_name: Option<String>,
    pub http_port: u16,
    pub ws_port: u16,
    pub bind_addr: IpAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub db_max_connections: u32,
    /// Non-login PostgreSQL role every org-scoped transaction switches to, so row-level security
    /// applies even when the node connects as a superuser or as the tables' owner.
    pub db_rls_role: String,
    pub redis_url: Option<Secret>,
    pub vault_addr: Option<Url>,
    pub vault_token: Option<Secret>,
    /// The KV v2 mount holding the orgs' credentials in Vault (enabled on start when missing).
    pub vault_kv_mount: String,
    /// A single-org deployment may let agent tools use the host's own cloud configuration
    /// (`~/.aws`, `~/.kube`, ...). With several orgs that would hand one org's tools another's
    /// access, so the node refuses to start, and to create a second org, while this is on.
    pub host_cloud_config: bool,
    pub s3_endpoint: Option<Url>,
    pub s3_bucket: Option<String>,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<Secret>,
    pub s3_region: String,
    pub secret_key: Option<Secret>,
    pub llm_provider: Option<LlmProvider>,
    pub llm_base_url: Option<Url>,
    pub llm_api_key: Option<Secret>,
    pub llm_model: Option<String>,
    pub embedding_model_dir: Option<PathBuf>,
    /// Whether strangers may register new orgs. Off by default: the first user of a fresh
    /// install registers (and becomes its admin), everyone after comes by invitation.
    pub allow_registration: bool,
    /// Password hashes at once on this node (each argon2 hash holds 19 MiB); default: one per
    /// core, at least two.
    pub hash_slots: usize,
    /// Sign-in attempts (login, register, accepting an invitation) allowed per window, per
    /// client address and per account, counted cluster-wide in the cache.
    pub signin_per_addr: u32,
    pub signin_per_account: u32,
    pub signin_window_secs: u64,
    /// Bearer token a Prometheus scrape of `/metrics` may use (else an admin's API token).
    pub metrics_token: Option<Secret>,
    /// Seconds a client has to send its request headers; seconds a connection may sit with
    /// nothing read or written; HTTP connections open at once on a node.
    pub http_header_secs: u64,
    pub http_idle_secs: u64,
    pub http_max_connections: usize,
    pub max_body_bytes: u64,
    pub token_ttl_hours: u32,
    /// Seconds a resolved API token is cached in process (0 = off).
    pub auth_cache_secs: u64,
    pub shutdown_timeout_secs: u64,
    pub health_interval_ms: u64,
    pub log_format: LogFormat,
    pub chat: ChatConfig,
    /// The tool sandbox.
    pub sandbox: SandboxSettings,
    pub kb: KbConfig,
    /// Alerts, correlation, background analyses, the feed, the periodic jobs.
    pub incidents: IncidentsConfig,
    pub cluster: ClusterConfig,
}

/// Clustering: this node's cluster listener, its peers and the shared cookie. A node with no
/// `CLUSTER_PORT` runs alone.
#[derive(Clone, Debug, Default)]
pub struct ClusterConfig {
    /// Port of this node's cluster listener (0 = any free port); `None` = not clustered.
    pub port: Option<u16>,
    /// `host:port` cluster listeners of other nodes to join (any one live seed is enough).
    pub seeds: Vec<String>,
    /// The secret every node of the cluster shares; required when clustered.
    pub cookie: Option<Secret>,
    /// This node's certificate and key and the cluster's CA (PEM): cluster links are mutual
    /// TLS; required when clustered.
    pub tls: Option<ClusterTlsPaths>,
}

/// `CLUSTER_TLS_CERT`, `CLUSTER_TLS_KEY`, `CLUSTER_TLS_CA`.
#[derive(Clone, Debug)]
pub struct ClusterTlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.port.is_some()
    }
}

/// The knowledge base: where the embedding model comes from, and ingestion limits.
#[derive(Clone, Debug)]
pub struct KbConfig {
    /// Hub repository of the embedding model (`EMBEDDING_MODEL_DIR` takes precedence).
    pub model_repo: String,
    pub model_revision: String,
    /// Never contact the hub: use `EMBEDDING_MODEL_DIR` or the hub cache only.
    pub hub_offline: bool,
    pub max_upload_bytes: u64,
    /// A document with no ingestion progress for this long is marked failed.
    pub stuck_secs: u64,
    /// The program PDFs are read by, in a child process (`<program> kb-extract pdf`); default:
    /// this binary.
    pub extractor: Option<PathBuf>,
    /// What one extraction may take: seconds, and MiB of address space.
    pub extract_secs: u64,
    pub extract_memory_mb: u64,
    /// Documents an org may keep, and process at once.
    pub max_documents: u64,
    pub max_ingestions: u64,
}

/// The chat runtime's limits.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// CLIs the `cloud_exec` tool may run.
    pub allowed_clis: Vec<String>,
    /// PATH the tools are looked up in; `None` = the node's own PATH.
    pub tool_path: Option<String>,
    /// Per-session working directories live under here.
    pub workdir_root: PathBuf,
    pub tool_timeout_secs: u64,
    pub tool_output_bytes: usize,
    pub approval_timeout_secs: u64,
    pub turn_timeout_secs: u64,
    /// After this long idle a session's actor stops and its state waits in the sessions
    /// supervisor as a small record (an idle actor costs about 10 KiB, the record a few
    /// hundred bytes); the next message wakes it without reading storage.
    pub session_hibernate_secs: u64,
    pub session_idle_secs: u64,
    pub max_steps: usize,
    pub rate_limit_queries: u32,
    pub rate_limit_window_secs: u64,
    /// `model=input:output` price overrides, USD per million tokens.
    pub llm_prices: Option<String>,
    /// `model=tokens` context-window overrides (the defaults know common models).
    pub llm_context_tokens: Option<String>,
    /// A conversation whose context passes this share of the model's window (percent) has its
    /// older turns folded into a summary before the next model call.
    pub summary_at_percent: u8,
    pub ws_max_frame_bytes: usize,
    /// Sockets open at once on the WebSocket edge of a node, and connections per user.
    pub ws_max_connections: usize,
    pub ws_max_per_user: usize,
    /// Seconds a client has to finish the WebSocket handshake.
    pub ws_handshake_secs: u64,
}

impl Config {
    /// Loads the configuration from `file` (if given) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with(file, Vec::new())
    }

    /// Like [`Config::load`], with `overrides` (from command-line flags) taking precedence over
    /// the environment.
    pub fn load_with(
        file: Option<&Path>,
        overrides: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => Some((
                std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?,
                path.to_path_buf(),
            )),
            None => None,
        };
        Self::from_sources(
            text.as_ref().map(|(t, p)| (t.as_str(), p.as_path())),
            std::env::vars().chain(overrides),
        )
    }

    /// Builds a configuration from a TOML text and a set of environment variables; `load` and the
    /// tests both come through here.
    pub fn from_sources(
        file: Option<(&str, &Path)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let src = Sources::new(file, env)?;
        let data_dir: PathBuf = src
            .get("AURORA_DATA_DIR")?
            .unwrap_or_else(|| "./data".into());
        let database = database_config(&src, &data_dir)?;
        let redis_url: Option<String> = src.get("REDIS_URL")?;
        if let Some(url) = &redis_url {
            check_scheme("REDIS_URL", url, &["redis", "rediss"])?;
        }
        let s3_bucket: Option<String> = src.get("S3_BUCKET")?;
        let s3_endpoint: Option<Url> = src.get("S3_ENDPOINT")?;
        if s3_endpoint.is_some() && s3_bucket.is_none() {
            return Err(ConfigError::invalid(
                "S3_BUCKET",
                "",
                "required when S3_ENDPOINT is set",
            ));
        }
        let secret_key: Option<String> = src.get("SECRET_KEY")?;
        if let Some(key) = &secret_key {
            if key.len() < 32 {
                return Err(ConfigError::invalid(
                    "SECRET_KEY",
                    "***",
                    "must be at least 32 characters",
                ));
            }
        }
        let token_ttl_hours: u32 = src.get("AURORA_TOKEN_TTL_HOURS")?.unwrap_or(720);
        if token_ttl_hours == 0 {
            return Err(ConfigError::invalid(
                "AURORA_TOKEN_TTL_HOURS",
                "0",
                "must be at least 1",
            ));
        }
        let max_body_bytes: u64 = src.get("AURORA_MAX_BODY_BYTES")?.unwrap_or(1024 * 1024);
        if max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "AURORA_MAX_BODY_BYTES",
                &max_body_bytes.to_string(),
                "must be at least 1024",
            ));
        }
        let db_max_connections: u32 = src
            .get("AURORA_DB_MAX_CONNECTIONS")?
            .unwrap_or_else(default_pool_size);
        if db_max_connections == 0 {
            return Err(ConfigError::invalid(
                "AURORA_DB_MAX_CONNECTIONS",
                "0",
                "must be at least 1",
            ));
        }
        let health_interval_ms: u64 = src.get("AURORA_HEALTH_INTERVAL_MS")?.unwrap_or(1000);
        if health_interval_ms < 50 {
            return Err(ConfigError::invalid(
                "AURORA_HEALTH_INTERVAL_MS",
                &health_interval_ms.to_string(),
                "must be at least 50",
            ));
        }
        let db_rls_role: String = src
            .get("AURORA_DB_RLS_ROLE")?
            .unwrap_or_else(|| "aurora_app".into());
        if db_rls_role.is_empty()
            || !db_rls_role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::invalid(
                "AURORA_DB_RLS_ROLE",
                &db_rls_role,
                "must be a plain identifier ([A-Za-z0-9_]+)",
            ));
        }
        let chat = chat_config(&src, &data_dir)?;
        let sandbox = sandbox::sandbox_settings(&src, &data_dir, &chat.workdir_root)?;
        let kb = kb_config(&src)?;
        let incidents = incidents::incidents_config(&src)?;
        let cluster = cluster_config(&src)?;
        if cluster.enabled() {
            // What every node of a cluster must share; without it the nodes disagree (a
            // ticket redeemed on one node replayed on another, sessions in two databases).
            if redis_url.is_none() {
                return Err(ConfigError::invalid(
                    "REDIS_URL",
                    "",
                    "required when CLUSTER_PORT is set: the nodes share one cache",
                ));
            }
            if !matches!(database, DatabaseConfig::Postgres { .. }) {
                return Err(ConfigError::invalid(
                    "DATABASE_URL",
                    "",
                    "must be PostgreSQL when CLUSTER_PORT is set: the nodes share one database",
                ));
            }
            if secret_key.is_none() {
                return Err(ConfigError::invalid(
                    "SECRET_KEY",
                    "",
                    "required when CLUSTER_PORT is set: the nodes sign and check each other's tickets",
                ));
            }
        }
        let bind_addr: IpAddr = src
            .get("AURORA_BIND_ADDR")?
            .unwrap_or([127, 0, 0, 1].into());
        if cluster.enabled() && bind_addr.is_unspecified() {
            // The cluster listener is announced to peers at this address.
            return Err(ConfigError::invalid(
                "AURORA_BIND_ADDR",
                &bind_addr.to_string(),
                "a clustered node needs the address its peers reach it at, not a wildcard",
            ));
        }
        let vault_addr: Option<Url> = src.get("VAULT_ADDR")?;
        let vault_token: Option<String> = src.get("VAULT_TOKEN")?;
        if vault_addr.is_some() && vault_token.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(
                "VAULT_TOKEN",
                "",
                "required when VAULT_ADDR is set",
            ));
        }
        let vault_kv_mount = vault_kv_mount(&src)?;
        let llm_provider: Option<LlmProvider> = src.get("LLM_PROVIDER")?;
        let llm_model: Option<String> = src.get("LLM_MODEL")?;
        if llm_provider.is_some() && llm_model.is_none() {
            return Err(ConfigError::invalid(
                "LLM_MODEL",
                "",
                "required when LLM_PROVIDER is set",
            ));
        }
        Ok(Config {
            chat,
            sandbox,
            incidents,
            kb,
            cluster,
            node_name: node_name(&src)?,
            http_port: src.get("HTTP_PORT")?.unwrap_or(5080),
            ws_port: src.get("WS_PORT")?.unwrap_or(5006),
            bind_addr,
            data_dir,
            database,
            db_max_connections,
            db_rls_role,
            redis_url: redis_url.map(Secret::new),
            vault_addr,
            vault_token: vault_token.map(Secret::new),
            vault_kv_mount,
            host_cloud_config: src.get_bool("AURORA_HOST_CLOUD_CONFIG")?.unwrap_or(false),
            s3_endpoint,
            s3_bucket,
            s3_access_key: src.get("S3_ACCESS_KEY")?,
            s3_secret_key: src.get::<String>("S3_SECRET_KEY")?.map(Secret::new),
            s3_region: src.get("S3_REGION")?.unwrap_or_else(|| "us-east-1".into()),
            secret_key: secret_key.map(Secret::new),
            llm_provider,
            llm_base_url: src.get("LLM_BASE_URL")?,
            llm_api_key: src.get::<String>("LLM_API_KEY")?.map(Secret::new),
            llm_model,
            embedding_model_dir: src.get("EMBEDDING_MODEL_DIR")?,
            allow_registration: src.get_bool("AURORA_ALLOW_REGISTRATION")?.unwrap_or(false),
            hash_slots: match src.get::<u32>("AURORA_HASH_SLOTS")? {
                Some(_) => positive(&src, "AURORA_HASH_SLOTS", 2)? as usize,
                None => std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            },
            signin_per_addr: positive(&src, "AURORA_SIGNIN_PER_ADDR", 60)?,
            signin_per_account: positive(&src, "AURORA_SIGNIN_PER_ACCOUNT", 10)?,
            signin_window_secs: u64::from(positive(&src, "AURORA_SIGNIN_WINDOW_SECS", 300)?),
            metrics_token: metrics_token(&src)?,
            http_header_secs: u64::from(positive(&src, "AURORA_HTTP_HEADER_SECS", 10)?),
            http_idle_secs: u64::from(positive(&src, "AURORA_HTTP_IDLE_SECS", 120)?),
            http_max_connections: positive(&src, "AURORA_HTTP_MAX_CONNECTIONS", 10_000)? as usize,
            max_body_bytes,
            token_ttl_hours,
            auth_cache_secs: src.get("AURORA_AUTH_CACHE_SECS")?.unwrap_or(10),
            shutdown_timeout_secs: src.get("AURORA_SHUTDOWN_TIMEOUT_SECS")?.unwrap_or(10),
            health_interval_ms,
            log_format: src.get("AURORA_LOG_FORMAT")?.unwrap_or(LogFormat::Text),
        })
    }

    /// A configuration for tests: embedded SQLite under `data_dir`, ephemeral ports on loopback.
    pub fn for_test(data_dir: &Path) -> Config {
        let env = [
            (
                "AURORA_DATA_DIR".to_string(),
                data_dir.display().to_string(),
            ),
            ("HTTP_PORT".to_string(), "0".to_string()),
            // Tests never reach for the model hub; those that need the model name its directory.
            ("HF_HUB_OFFLINE".to_string(), "1".to_string()),
            ("WS_PORT".to_string(), "0".to_string()),
            ("AURORA_SHUTDOWN_TIMEOUT_SECS".to_string(), "5".to_string()),
            ("AURORA_HEALTH_INTERVAL_MS".to_string(), "200".to_string()),
        ];
        Config::from_sources(None, env).expect("the test configuration is valid")
    }

    /// The resolved configuration as `KEY = value` lines, secrets masked, for `aurora config check`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
            v.as_ref()
                .map_or_else(|| "(unset)".to_string(), |v| v.to_string())
        }
        fn path(v: &Option<PathBuf>) -> String {
            v.as_ref()
                .map_or_else(|| "(unset)".to_string(), |v| v.display().to_string())
        }
        let database = match &self.database {
            DatabaseConfig::Sqlite { url } => url.clone(),
            DatabaseConfig::Postgres { url } => secret::mask_url(url.expose()),
        };
        vec![
            ("NODE_NAME", opt(&self.node_name)),
            ("CLUSTER_PORT", opt(&self.cluster.port)),
            ("CLUSTER_SEEDS", self.cluster.seeds.join(",")),
            ("CLUSTER_COOKIE", opt(&self.cluster.cookie)),
            (
                "CLUSTER_TLS_CERT",
                path(&self.cluster.tls.as_ref().map(|t| t.cert.clone())),
            ),
            (
                "CLUSTER_TLS_CA",
                path(&self.cluster.tls.as_ref().map(|t| t.ca.clone())),
            ),
            ("HTTP_PORT", self.http_port.to_string()),
            ("WS_PORT", self.ws_port.to_string()),
            ("AURORA_BIND_ADDR", self.bind_addr.to_string()),
            ("AURORA_DATA_DIR", self.data_dir.display().to_string()),
            ("DATABASE_URL", database),
            (
                "AURORA_DB_MAX_CONNECTIONS",
                self.db_max_connections.to_string(),
            ),
            ("AURORA_DB_RLS_ROLE", self.db_rls_role.clone()),
            (
                "REDIS_URL",
                self.redis_url
                    .as_ref()
                    .map_or_else(|| "(unset)".into(), |u| secret::mask_url(u.expose())),
            ),
            ("VAULT_ADDR", opt(&self.vault_addr)),
            ("VAULT_TOKEN", opt(&self.vault_token)),
            ("VAULT_KV_MOUNT", self.vault_kv_mount.clone()),
            (
                "AURORA_HOST_CLOUD_CONFIG",
                self.host_cloud_config.to_string(),
            ),
            ("S3_ENDPOINT", opt(&self.s3_endpoint)),
            ("S3_BUCKET", opt(&self.s3_bucket)),
            ("S3_ACCESS_KEY", opt(&self.s3_access_key)),
            ("S3_SECRET_KEY", opt(&self.s3_secret_key)),
            ("S3_REGION", self.s3_region.clone()),
            ("SECRET_KEY", opt(&self.secret_key)),
            (
                "LLM_PROVIDER",
                self.llm_provider
                    .map_or_else(|| "(unset)".into(), |p| format!("{p:?}").to_lowercase()),
            ),
            ("LLM_BASE_URL", opt(&self.llm_base_url)),
            ("LLM_API_KEY", opt(&self.llm_api_key)),
            ("LLM_MODEL", opt(&self.llm_model)),
            ("EMBEDDING_MODEL_DIR", path(&self.embedding_model_dir)),
            (
                "AURORA_ALLOW_REGISTRATION",
                self.allow_registration.to_string(),
            ),
            ("AURORA_HASH_SLOTS", self.hash_slots.to_string()),
            ("AURORA_METRICS_TOKEN", opt(&self.metrics_token)),
            ("AURORA_HTTP_HEADER_SECS", self.http_header_secs.to_string()),
            ("AURORA_HTTP_IDLE_SECS", self.http_idle_secs.to_string()),
            (
                "AURORA_HTTP_MAX_CONNECTIONS",
                self.http_max_connections.to_string(),
            ),
            ("AURORA_SIGNIN_PER_ADDR", self.signin_per_addr.to_string()),
            (
                "AURORA_SIGNIN_PER_ACCOUNT",
                self.signin_per_account.to_string(),
            ),
            (
                "AURORA_SIGNIN_WINDOW_SECS",
                self.signin_window_secs.to_string(),
            ),
            ("AURORA_MAX_BODY_BYTES", self.max_body_bytes.to_string()),
            ("AURORA_TOKEN_TTL_HOURS", self.token_ttl_hours.to_string()),
            ("AURORA_AUTH_CACHE_SECS", self.auth_cache_secs.to_string()),
            (
                "AURORA_SHUTDOWN_TIMEOUT_SECS",
                self.shutdown_timeout_secs.to_string(),
            ),
            (
                "AURORA_HEALTH_INTERVAL_MS",
                self.health_interval_ms.to_string(),
            ),
            (
                "AURORA_LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("AURORA_ALLOWED_CLIS", self.chat.allowed_clis.join(",")),
            ("AURORA_TOOL_PATH", opt(&self.chat.tool_path)),
            (
                "AURORA_WORKDIR_ROOT",
                self.chat.workdir_root.display().to_string(),
            ),
            (
                "AURORA_TOOL_TIMEOUT_SECS",
                self.chat.tool_timeout_secs.to_string(),
            ),
            (
                "AURORA_TOOL_OUTPUT_BYTES",
                self.chat.tool_output_bytes.to_string(),
            ),
            (
                "AURORA_APPROVAL_TIMEOUT_SECS",
                self.chat.approval_timeout_secs.to_string(),
            ),
            (
                "AURORA_TURN_TIMEOUT_SECS",
                self.chat.turn_timeout_secs.to_string(),
            ),
            (
                "AURORA_SESSION_IDLE_SECS",
                self.chat.session_idle_secs.to_string(),
            ),
            (
                "AURORA_SESSION_HIBERNATE_SECS",
                self.chat.session_hibernate_secs.to_string(),
            ),
            ("AURORA_MAX_STEPS", self.chat.max_steps.to_string()),
            (
                "AURORA_RATE_LIMIT_QUERIES",
                self.chat.rate_limit_queries.to_string(),
            ),
            (
                "AURORA_RATE_LIMIT_WINDOW_SECS",
                self.chat.rate_limit_window_secs.to_string(),
            ),
            ("AURORA_LLM_PRICES", opt(&self.chat.llm_prices)),
            (
                "AURORA_LLM_CONTEXT_TOKENS",
                opt(&self.chat.llm_context_tokens),
            ),
            (
                "AURORA_SUMMARY_AT_PERCENT",
                self.chat.summary_at_percent.to_string(),
            ),
            (
                "AURORA_WS_MAX_FRAME_BYTES",
                self.chat.ws_max_frame_bytes.to_string(),
            ),
            (
                "AURORA_WS_MAX_CONNECTIONS",
                self.chat.ws_max_connections.to_string(),
            ),
            (
                "AURORA_WS_MAX_PER_USER",
                self.chat.ws_max_per_user.to_string(),
            ),
            (
                "AURORA_WS_HANDSHAKE_SECS",
                self.chat.ws_handshake_secs.to_string(),
            ),
            ("EMBEDDING_MODEL_REPO", self.kb.model_repo.clone()),
            ("EMBEDDING_MODEL_REVISION", self.kb.model_revision.clone()),
            ("HF_HUB_OFFLINE", self.kb.hub_offline.to_string()),
            (
                "AURORA_KB_MAX_UPLOAD_BYTES",
                self.kb.max_upload_bytes.to_string(),
            ),
            ("AURORA_KB_STUCK_SECS", self.kb.stuck_secs.to_string()),
            ("AURORA_KB_EXTRACTOR", path(&self.kb.extractor)),
            ("AURORA_KB_EXTRACT_SECS", self.kb.extract_secs.to_string()),
            (
                "AURORA_KB_EXTRACT_MEMORY_MB",
                self.kb.extract_memory_mb.to_string(),
            ),
            ("AURORA_KB_MAX_DOCUMENTS", self.kb.max_documents.to_string()),
            (
                "AURORA_KB_MAX_INGESTIONS",
                self.kb.max_ingestions.to_string(),
            ),
        ]
        .into_iter()
        .chain(self.incidents.describe())
        .collect()
    }
}

/// `VAULT_KV_MOUNT`: one path segment, since it is put into Vault API paths as is.
fn vault_kv_mount(src: &Sources) -> Result<String, ConfigError> {
    let mount: String = src
        .get("VAULT_KV_MOUNT")?
        .unwrap_or_else(|| "aurora".into());
    if mount.is_empty()
        || mount.len() > 64
        || !mount
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::invalid(
            "VAULT_KV_MOUNT",
            &mount,
            "must be 1 to 64 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(mount)
}

fn chat_config(src: &Sources, data_dir: &Path) -> Result<ChatConfig, ConfigError> {
    let positive = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
        let v: u64 = src.get(key)?.unwrap_or(default);
        if v == 0 {
            return Err(ConfigError::invalid(key, "0", "must be at least 1"));
        }
        Ok(v)
    };
    let allowed_clis: Vec<String> = src
        .get::<String>("AURORA_ALLOWED_CLIS")?
        .unwrap_or_else(|| "kubectl,aws,gcloud,az,terraform,helm".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = allowed_clis.iter().find(|c| {
        !c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    }) {
        return Err(ConfigError::invalid(
            "AURORA_ALLOWED_CLIS",
            bad,
            "a CLI is a plain program name",
        ));
    }
    let summary_at_percent: u8 = src.get("AURORA_SUMMARY_AT_PERCENT")?.unwrap_or(80);
    if !(10..=95).contains(&summary_at_percent) {
        return Err(ConfigError::invalid(
            "AURORA_SUMMARY_AT_PERCENT",
            &summary_at_percent.to_string(),
            "must be 10 to 95",
        ));
    }
    Ok(ChatConfig {
        llm_context_tokens: src.get("AURORA_LLM_CONTEXT_TOKENS")?,
        summary_at_percent,
        allowed_clis,
        tool_path: src.get("AURORA_TOOL_PATH")?,
        workdir_root: src
            .get("AURORA_WORKDIR_ROOT")?
            .unwrap_or_else(|| data_dir.join("sessions")),
        tool_timeout_secs: positive("AURORA_TOOL_TIMEOUT_SECS", 300)?,
        tool_output_bytes: positive("AURORA_TOOL_OUTPUT_BYTES", 64 * 1024)? as usize,
        approval_timeout_secs: positive("AURORA_APPROVAL_TIMEOUT_SECS", 300)?,
        turn_timeout_secs: positive("AURORA_TURN_TIMEOUT_SECS", 1800)?,
        session_idle_secs: positive("AURORA_SESSION_IDLE_SECS", 1800)?,
        session_hibernate_secs: positive("AURORA_SESSION_HIBERNATE_SECS", 60)?,
        max_steps: positive("AURORA_MAX_STEPS", 20)? as usize,
        rate_limit_queries: positive("AURORA_RATE_LIMIT_QUERIES", 5)? as u32,
        rate_limit_window_secs: positive("AURORA_RATE_LIMIT_WINDOW_SECS", 60)?,
        llm_prices: src.get("AURORA_LLM_PRICES")?,
        ws_max_frame_bytes: positive("AURORA_WS_MAX_FRAME_BYTES", 10 * 1024 * 1024)? as usize,
        ws_max_connections: positive("AURORA_WS_MAX_CONNECTIONS", 10_000)? as usize,
        ws_max_per_user: positive("AURORA_WS_MAX_PER_USER", 16)? as usize,
        ws_handshake_secs: positive("AURORA_WS_HANDSHAKE_SECS", 10)?,
    })
}

fn cluster_config(src: &Sources) -> Result<ClusterConfig, ConfigError> {
    let port: Option<u16> = src.get("CLUSTER_PORT")?;
    let seeds: Vec<String> = src
        .get::<String>("CLUSTER_SEEDS")?
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for seed in &seeds {
        let ok = seed.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(ConfigError::invalid(
                "CLUSTER_SEEDS",
                seed,
                "each seed is host:port",
            ));
        }
    }
    let cookie: Option<String> = src.get("CLUSTER_COOKIE")?;
    if port.is_none() && !seeds.is_empty() {
        return Err(ConfigError::invalid(
            "CLUSTER_SEEDS",
            &seeds.join(","),
            "needs CLUSTER_PORT: a node joins a cluster with its own cluster listener",
        ));
    }
    if port.is_some() {
        match &cookie {
            None => {
                return Err(ConfigError::invalid(
                    "CLUSTER_COOKIE",
                    "",
                    "required when CLUSTER_PORT is set: peers authenticate with it",
                ))
            }
            Some(c) if c.len() < 32 => {
                return Err(ConfigError::invalid(
                    "CLUSTER_COOKIE",
                    "(hidden)",
                    "must be at least 32 characters (a random secret, as SECRET_KEY)",
                ))
            }
            Some(_) => {}
        }
    }
    let tls = match (
        src.get::<PathBuf>("CLUSTER_TLS_CERT")?,
        src.get::<PathBuf>("CLUSTER_TLS_KEY")?,
        src.get::<PathBuf>("CLUSTER_TLS_CA")?,
    ) {
        (Some(cert), Some(key), Some(ca)) => Some(ClusterTlsPaths { cert, key, ca }),
        (None, None, None) => None,
        _ => {
            return Err(ConfigError::invalid(
                "CLUSTER_TLS_CERT",
                "",
                "CLUSTER_TLS_CERT, CLUSTER_TLS_KEY and CLUSTER_TLS_CA go together",
            ))
        }
    };
    if port.is_some() && tls.is_none() {
        return Err(ConfigError::invalid(
            "CLUSTER_TLS_CERT",
            "",
            "required when CLUSTER_PORT is set (with CLUSTER_TLS_KEY and CLUSTER_TLS_CA): nodes speak TLS to each other",
        ));
    }
    Ok(ClusterConfig {
        port,
        seeds,
        cookie: cookie.map(Secret::new),
        tls,
    })
}

fn node_name(src: &Sources) -> Result<Option<String>, ConfigError> {
    let Some(name) = src.get::<String>("NODE_NAME")? else {
        return Ok(None);
    };
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
    if !ok {
        return Err(ConfigError::invalid(
            "NODE_NAME",
            &name,
            "1 to 100 letters, digits, '-', '_', '.', '@' or ':'",
        ));
    }
    Ok(Some(name))
}

fn kb_config(src: &Sources) -> Result<KbConfig, ConfigError> {
    let positive = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
        let v: u64 = src.get(key)?.unwrap_or(default);
        if v == 0 {
            return Err(ConfigError::invalid(key, "0", "must be at least 1"));
        }
        Ok(v)
    };
    let model_repo: String = src
        .get("EMBEDDING_MODEL_REPO")?
        .unwrap_or_else(|| "sentence-transformers/all-MiniLM-L6-v2".into());
    if model_repo.split('/').count() != 2 || model_repo.contains(char::is_whitespace) {
        return Err(ConfigError::invalid(
            "EMBEDDING_MODEL_REPO",
            &model_repo,
            "expected owner/name",
        ));
    }
    Ok(KbConfig {
        model_repo,
        model_revision: src
            .get("EMBEDDING_MODEL_REVISION")?
            .unwrap_or_else(|| "main".into()),
        hub_offline: src.get_bool("HF_HUB_OFFLINE")?.unwrap_or(false),
        max_upload_bytes: positive("AURORA_KB_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)?,
        stuck_secs: positive("AURORA_KB_STUCK_SECS", 180)?,
        extractor: src.get("AURORA_KB_EXTRACTOR")?,
        extract_secs: positive("AURORA_KB_EXTRACT_SECS", 120)?,
        extract_memory_mb: positive("AURORA_KB_EXTRACT_MEMORY_MB", 1024)?,
        max_documents: positive("AURORA_KB_MAX_DOCUMENTS", 10_000)?,
        max_ingestions: positive("AURORA_KB_MAX_INGESTIONS", 4)?,
    })
}

/// Twice the cores, at least 4: past that, more connections only add context switches on the
/// node and the database (measured in BENCHMARKS.md: 4 beat 16 by 14% on 2 cores).
fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    (2 * cores).max(4)
}

/// Resolves `DATABASE_URL`, the seed's `POSTGRES_*` variables, or the embedded SQLite default.
fn database_config(src: &Sources, data_dir: &Path) -> Result<DatabaseConfig, ConfigError> {
    let url: Option<String> = src.get("DATABASE_URL")?;
    let host: Option<String> = src.get("POSTGRES_HOST")?;
    match (url, host) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "POSTGRES_HOST",
            "",
            "set either DATABASE_URL or POSTGRES_HOST/PORT/USER/PASSWORD/DB, not both",
        )),
        (Some(url), None) => {
            let scheme = check_scheme("DATABASE_URL", &url, &["postgres", "postgresql", "sqlite"])?;
            if scheme == "sqlite" {
                Ok(DatabaseConfig::Sqlite { url })
            } else {
                Ok(DatabaseConfig::Postgres {
                    url: Secret::new(url),
                })
            }
        }
        (None, Some(host)) => {
            let port: u16 = src.get("POSTGRES_PORT")?.unwrap_or(5432);
            let user: String = src
                .get("POSTGRES_USER")?
                .unwrap_or_else(|| "postgres".into());
            let password: Option<String> = src.get("POSTGRES_PASSWORD")?;
            let db: String = src.get("POSTGRES_DB")?.unwrap_or_else(|| "aurora".into());
            let mut url = Url::parse("postgres://localhost")
                .map_err(|e| ConfigError::invalid("POSTGRES_HOST", &host, &e.to_string()))?;
            url.set_host(Some(&host))
                .map_err(|e| ConfigError::invalid("POSTGRES_HOST", &host, &e.to_string()))?;
            let _ = url.set_port(Some(port));
            let _ = url.set_username(&user);
            let _ = url.set_password(password.as_deref());
            url.set_path(&db);
            Ok(DatabaseConfig::Postgres {
                url: Secret::new(url.to_string()),
            })
        }
        (None, None) => {
            for key in [
                "POSTGRES_PORT",
                "POSTGRES_USER",
                "POSTGRES_PASSWORD",
                "POSTGRES_DB",
            ] {
                if src.is_set(key) {
                    return Err(ConfigError::invalid(
                        key,
                        "",
                        "set POSTGRES_HOST too, or use DATABASE_URL",
                    ));
                }
            }
            let file = data_dir.join("aurora.db");
            Ok(DatabaseConfig::Sqlite {
                url: format!("sqlite://{}?mode=rwc", file.display()),
            })
        }
    }
}

/// Checks that `value` is a URL with one of `schemes`, returning the scheme.
fn check_scheme(key: &'static str, value: &str, schemes: &[&str]) -> Result<String, ConfigError> {
    let scheme = value.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme {
        Some(s) if schemes.contains(&s.as_str()) => Ok(s),
        _ => Err(ConfigError::invalid(
            key,
            &secret::mask_url(value),
            &format!(
                "expected a URL starting with {}",
                schemes.join("://, ") + "://"
            ),
        )),
    }
}

#[cfg(test)]
mod tests;

/// A count that must be at least one (a zero limit would lock everyone out).
fn positive(src: &Sources, key: &'static str, default: u32) -> Result<u32, ConfigError> {
    let v: u32 = src.get(key)?.unwrap_or(default);
    if v == 0 {
        return Err(ConfigError::invalid(key, "0", "must be at least 1"));
    }
    Ok(v)
}

/// `AURORA_METRICS_TOKEN`: long enough not to be guessed.
fn metrics_token(src: &Sources) -> Result<Option<Secret>, ConfigError> {
    let token: Option<String> = src.get("AURORA_METRICS_TOKEN")?;
    match token {
        Some(t) if t.len() < 24 => Err(ConfigError::invalid(
            "AURORA_METRICS_TOKEN",
            "***",
            "must be at least 24 characters",
        )),
        t => Ok(t.map(Secret::new)),
    }
}
