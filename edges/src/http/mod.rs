//! The HTTP edge (warp). Every response is JSON; every refusal is
//! `{"error": {"code", "message"}}` with the matching status (see [`error`]).

mod error;
mod filters;
mod routes;
pub mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_actors::knowledge::KnowledgeBase;
use aurora_actors::HealthReport;
use aurora_config::Config;
use aurora_models::llm::LlmProvider;
use aurora_storage::auth::Accounts;
use aurora_storage::credentials::Credentials;
use aurora_storage::knowledge::Knowledge;
use aurora_storage::policies::Policies;
use aurora_storage::preferences::Preferences;
use aurora_storage::sessions::Sessions;
use aurora_storage::tickets::Tickets;
use aurora_storage::usage::LlmUsage;
use aurora_supervisors::{IngestHandle, NodeMsg};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use warp::Filter;

pub use error::{respond, ApiError};

/// What every HTTP handler can reach.
pub struct HttpState {
    pub config: Arc<Config>,
    /// What the agent's tool sandbox can do on this node (shown in `/health`).
    pub sandbox: aurora_actors::tools::sandbox::SandboxStatus,
    pub node_name: String,
    pub accounts: Accounts,
    /// The cache (Redis on a cluster): sign-in rate limits count here, cluster-wide.
    pub cache: aurora_storage::cache::Cache,
    pub preferences: Preferences,
    pub sessions: Sessions,
    pub tickets: Tickets,
    pub usage: LlmUsage,
    pub policies: Policies,
    /// The org's cloud credentials (rows in the database, secrets in the secret store).
    pub credentials: Credentials,
    /// The knowledge base (absent on a node without an embedding model).
    pub knowledge: Option<Arc<KnowledgeBase>>,
    /// Knowledge-base rows that need no model (the org memory text).
    pub kb_store: Knowledge,
    /// Where uploads are sent for ingestion.
    pub ingest: IngestHandle,
    /// The incident tables and the live feed.
    pub incidents: aurora_storage::incidents::Incidents,
    /// The alert webhooks' tokens.
    pub webhooks: aurora_storage::incidents::webhooks::Webhooks,
    /// This node's incidents supervisor (told when an analysis is queued).
    pub incidents_handle: aurora_supervisors::incidents::IncidentsHandle,
    /// The root of the node's supervision tree (the admin console's actor tree).
    pub node: ractor::ActorRef<NodeMsg>,
    /// This node's view of the cluster (the actor trees of all nodes, admin actions).
    pub cluster: aurora_cluster::Cluster,
    /// The configured LLM provider, if any.
    pub llm: Option<Arc<dyn LlmProvider>>,
    pub health: watch::Receiver<HealthReport>,
    pub started: Instant,
    /// Set when shutdown begins: readiness turns 503 so load balancers stop sending work.
    pub draining: AtomicBool,
}

/// A running HTTP server.
pub struct HttpServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    state: Arc<HttpState>,
}

impl HttpServer {
    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        self.state.draining.store(true, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Serves the API on `listener` until [`HttpServer::shutdown`]. The node binds first, so its
/// name can carry the port actually bound.
pub async fn serve_http(
    state: HttpState,
    listener: tokio::net::TcpListener,
) -> std::io::Result<HttpServer> {
    let state = Arc::new(state);
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let limits = server::Limits {
        header_read: Duration::from_secs(state.config.http_header_secs),
        idle: Duration::from_secs(state.config.http_idle_secs),
        max_connections: state.config.http_max_connections,
    };
    let task = tokio::spawn(server::run(state.clone(), listener, limits, rx));
    tracing::info!(%addr, "http edge listening");
    Ok(HttpServer {
        addr,
        shutdown: Some(tx),
        task,
        state,
    })
}

/// The whole API: routes, JSON errors, request ids and tracing.
pub fn api(
    state: Arc<HttpState>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    filters::request_id()
        .and(routes::all(state).recover(error::handle_rejection).unify())
        .map(filters::finish)
        .with(warp::trace(|info| {
            tracing::info_span!(
                "http",
                method = %info.method(),
                path = %loggable_path(info.path()),
                request_id = tracing::field::Empty,
            )
        }))
}

/// The request path as logged: a webhook's path carries its secret token (vendors can only
/// be given a URL), so everything after the flavour is left out of the logs.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    const HOOKS: &str = "/api/webhooks/";
    match path.strip_prefix(HOOKS) {
        Some(rest) => {
            let flavour = rest.split('/').next().unwrap_or_default();
            format!("{HOOKS}{flavour}/[token]").into()
        }
        None => path.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn webhook_tokens_stay_out_of_logged_paths() {
        assert_eq!(
            loggable_path("/api/webhooks/grafana/awh_s3cr3t"),
            "/api/webhooks/grafana/[token]"
        );
        assert_eq!(
            loggable_path("/api/webhooks/generic/awh_s3cr3t/extra"),
            "/api/webhooks/generic/[token]"
        );
        assert_eq!(loggable_path("/api/incidents"), "/api/incidents");
    }
}
