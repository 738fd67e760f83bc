//! The `aurora` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aurora_config::Config;
use aurora_storage::auth::{Accounts, Role};
use clap::{Parser, Subcommand};

use crate::node::open_database;
use crate::{init_tracing, Node};

#[derive(Parser)]
#[command(
    name = "aurora",
    version,
    about = "AI SRE platform node: a supervised, clustered actor runtime"
)]
struct Cli {
    /// TOML config file; environment variables override its keys.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: migrate storage, start the supervision tree, the edges and (with a cluster
    /// port) the cluster listener.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Administrative tasks against the database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Internal: the knowledge base's text extractor, run by a node as a child process under
    /// limits (the file on stdin, its text on stdout).
    #[command(hide = true)]
    KbExtract { kind: String },
}

/// Flags of `serve`; each overrides its environment variable.
#[derive(clap::Args, Default)]
struct ServeArgs {
    /// This node's name in the cluster, logs and metrics (NODE_NAME).
    #[arg(long)]
    node_name: Option<String>,
    /// Port of the cluster listener; setting it makes the node join a cluster (CLUSTER_PORT).
    #[arg(long)]
    cluster_port: Option<u16>,
    /// Cluster listeners of other nodes, host:port,... (CLUSTER_SEEDS).
    #[arg(long)]
    seeds: Option<String>,
    /// The secret shared by the nodes of the cluster (CLUSTER_COOKIE).
    #[arg(long)]
    cookie: Option<String>,
}

impl ServeArgs {
    fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push((key.to_string(), v));
            }
        };
        put("NODE_NAME", self.node_name.clone());
        put("CLUSTER_PORT", self.cluster_port.map(|p| p.to_string()));
        put("CLUSTER_SEEDS", self.seeds.clone());
        put("CLUSTER_COOKIE", self.cookie.clone());
        out
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it, secrets masked.
    Check,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user, and its organization when no org of that name exists.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        /// Organization name.
        #[arg(long)]
        org: String,
        /// viewer, editor or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Issue an API token for an existing user and print it.
    CreateToken {
        #[arg(long)]
        email: String,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The extractor child reads no configuration and logs nothing: its stdout is the text.
    if let Command::KbExtract { kind } = &cli.command {
        let code = aurora_actors::knowledge::child::child_main(kind, crate::alloc::refused);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let overrides = match &cli.command {
        Command::Serve(args) => args.overrides(),
        _ => Vec::new(),
    };
    let config = match Config::load_with(cli.config.as_deref(), overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => serve(config).await,
        Command::Migrate => {
            let db = open_database(&config).await?;
            db.close().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            for (key, value) in config.describe() {
                println!("{key} = {value}");
            }
            Ok(())
        }
        Command::Admin(cmd) => {
            let db = open_database(&config).await?;
            let accounts =
                Accounts::new(db.clone(), config.token_ttl_hours, config.auth_cache_secs)
                    .single_org(config.host_cloud_config);
            let result = admin(cmd, &accounts).await;
            db.close().await?;
            result
        }
        // Handled in `main`, before any configuration is read.
        Command::KbExtract { .. } => Ok(()),
    }
}

async fn admin(cmd: AdminCommand, accounts: &Accounts) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::CreateUser {
            email,
            password,
            org,
            role,
        } => {
            let role: Role = role.parse()?;
            let user = accounts
                .admin_create_user(&email, &password, &org, role)
                .await?;
            println!("{}", serde_json::to_string(&user)?);
        }
        AdminCommand::CreateToken { email } => {
            let token = accounts.admin_create_token(&email).await?;
            println!("{}", token.token);
        }
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    wait_for_signal()
        .await
        .context("cannot listen for signals")?;
    node.shutdown().await
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "sigterm", "signal received"),
        _ = int.recv() => tracing::info!(signal = "sigint", "signal received"),
    }
    Ok(())
}
