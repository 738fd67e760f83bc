//! The agent's tools as this node runs them: the sandbox (from configuration, with the node's
//! own listeners and stores closed to tool networks), the CLI runner and terraform.

use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use aurora_actors::tools::cloud_exec::CloudExec;
use aurora_actors::tools::sandbox::{Limits, NetPolicy, Sandbox, SandboxConfig};
use aurora_actors::tools::terraform::{Terraform, TerraformPolicy};
use aurora_config::Config;
use aurora_storage::objects::ObjectStore;

/// The sandbox every tool process of this node starts in.
pub fn sandbox(config: &Config, bound_ports: &[u16]) -> Sandbox {
    let s = &config.sandbox;
    let limits = Limits {
        memory_bytes: s.memory_mb << 20,
        processes: s.processes,
        cpu_secs: config.chat.tool_timeout_secs + s.grace_secs,
        file_bytes: s.file_mb << 20,
        ..Limits::default()
    };
    let mut ro_paths = s.ro_paths.clone();
    if let Some(m) = &s.terraform_mirror {
        ro_paths.push(m.clone());
    }
    let sandbox = Sandbox::new(SandboxConfig {
        bwrap: s.bwrap.clone(),
        uid: s.uid,
        limits,
        ro_paths,
        net: net_policy(config, bound_ports),
    });
    let st = sandbox.status();
    tracing::info!(
        available = st.available,
        network = st.network,
        uid = st.uid,
        "tool sandbox"
    );
    sandbox
}

/// What tool networks must never reach: every address of this host, and the hosts of the
/// node's stores and peers; on loopback, the node's own ports and its stores'.
fn net_policy(config: &Config, bound_ports: &[u16]) -> NetPolicy {
    let mut denied_addrs: Vec<IpAddr> = aurora_actors::tools::sandbox::net::local_addresses();
    let mut denied_ports: Vec<u16> = vec![config.http_port, config.ws_port];
    denied_ports.extend(bound_ports);
    denied_ports.extend(config.cluster.port);
    let mut endpoints: Vec<(String, u16)> = Vec::new();
    let mut url = |u: Option<&url::Url>, default_port: u16| {
        if let Some(u) = u {
            if let Some(h) = u.host_str() {
                endpoints.push((h.to_string(), u.port().unwrap_or(default_port)));
            }
        }
    };
    let db = url::Url::parse(config.database.url()).ok();
    url(db.as_ref(), 5432);
    let redis = config
        .redis_url
        .as_ref()
        .and_then(|s| url::Url::parse(s.expose()).ok());
    url(redis.as_ref(), 6379);
    url(config.vault_addr.as_ref(), 8200);
    url(config.s3_endpoint.as_ref(), 443);
    for seed in &config.cluster.seeds {
        if let Some((h, p)) = seed.rsplit_once(':') {
            if let Ok(p) = p.parse() {
                endpoints.push((h.to_string(), p));
            }
        }
    }
    for (host, port) in endpoints {
        denied_ports.push(port);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        match (host.as_str(), port).to_socket_addrs() {
            Ok(addrs) => denied_addrs.extend(addrs.map(|a| a.ip())),
            Err(e) => {
                tracing::warn!(host = %host, error = %e, "cannot resolve a store's host for the tool network policy")
            }
        }
    }
    denied_addrs.sort();
    denied_addrs.dedup();
    denied_ports.sort();
    denied_ports.dedup();
    NetPolicy {
        denied_addrs,
        denied_ports,
    }
}

/// `cloud_exec` and `terraform` for this node.
pub fn runners(config: &Config, sandbox: Sandbox, objects: &ObjectStore) -> (CloudExec, Terraform) {
    let chat = &config.chat;
    let search_path = match &chat.tool_path {
        Some(p) => std::ffi::OsString::from(p),
        None => std::env::var_os("PATH").unwrap_or_default(),
    };
    let cloud_exec = CloudExec {
        allowed: chat.allowed_clis.clone(),
        search_path,
        workdir_root: chat.workdir_root.clone(),
        timeout: Duration::from_secs(chat.tool_timeout_secs),
        output_limit: chat.tool_output_bytes,
        grace: Duration::from_secs(config.sandbox.grace_secs),
        sandbox,
    };
    let terraform = Terraform {
        exec: cloud_exec.clone(),
        store: objects.clone(),
        policy: TerraformPolicy {
            providers: config.sandbox.terraform_providers.clone(),
            mirror: config.sandbox.terraform_mirror.clone(),
            allow_exec: config.sandbox.terraform_allow_exec,
        },
    };
    (cloud_exec, terraform)
}
