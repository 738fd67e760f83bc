//! The tool sandbox's settings: who tools run as, their limits, extra read-only paths, and what
//! terraform may install and run. Paths are checked here so a misconfiguration that would show
//! the node's data to tools stops start-up instead.

use std::path::{Path, PathBuf};

use crate::sources::Sources;
use crate::ConfigError;

#[derive(Clone, Debug)]
pub struct SandboxSettings {
    /// `bwrap`; `None`: looked up on the node's PATH.
    pub bwrap: Option<PathBuf>,
    /// Host user (and group) tools run as when the node runs as root.
    pub uid: u32,
    pub memory_mb: u64,
    pub processes: u64,
    pub file_mb: u64,
    /// Seconds a tool interrupted at its timeout may take before it is killed.
    pub grace_secs: u64,
    /// Directories bound read-only into every sandbox (a virtualenv holding a CLI).
    pub ro_paths: Vec<PathBuf>,
    /// Terraform providers (`namespace/type`) that may be installed.
    pub terraform_providers: Vec<String>,
    /// A filesystem mirror of those providers (bound read-only); unset: the registry.
    pub terraform_mirror: Option<PathBuf>,
    /// Lets terraform's `local-exec` and `data "external"` run (single-tenant operators only).
    pub terraform_allow_exec: bool,
}

pub(crate) fn sandbox_settings(
    src: &Sources,
    data_dir: &Path,
    workdir_root: &Path,
) -> Result<SandboxSettings, ConfigError> {
    let positive = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
        let v: u64 = src.get(key)?.unwrap_or(default);
        if v == 0 {
            return Err(ConfigError::invalid(key, "0", "must be at least 1"));
        }
        Ok(v)
    };
    let list = |key: &'static str| -> Result<Option<Vec<String>>, ConfigError> {
        Ok(src.get::<String>(key)?.map(|s| {
            s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        }))
    };
    let ro_paths: Vec<PathBuf> = list("AURORA_SANDBOX_RO_PATHS")?
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let data = absolute(data_dir);
    let work = absolute(workdir_root);
    for p in &ro_paths {
        let shown = p.display().to_string();
        if !p.is_absolute() {
            return Err(ConfigError::invalid(
                "AURORA_SANDBOX_RO_PATHS",
                &shown,
                "paths must be absolute",
            ));
        }
        let p = absolute(p);
        if p == Path::new("/")
            || data.starts_with(&p)
            || p.starts_with(&data)
            || work.starts_with(&p)
            || p.starts_with(&work)
        {
            return Err(ConfigError::invalid(
                "AURORA_SANDBOX_RO_PATHS",
                &shown,
                "must not hold, or be inside, the data directory or the session directories",
            ));
        }
    }
    let terraform_providers = list("AURORA_TERRAFORM_PROVIDERS")?
        .unwrap_or_else(|| DEFAULT_PROVIDERS.iter().map(|s| s.to_string()).collect());
    if let Some(bad) = terraform_providers.iter().find(|p| {
        let parts: Vec<&str> = p.split('/').collect();
        parts.len() != 2
            || parts.iter().any(|s| {
                s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
    }) {
        return Err(ConfigError::invalid(
            "AURORA_TERRAFORM_PROVIDERS",
            bad,
            "each provider is namespace/type, e.g. hashicorp/aws",
        ));
    }
    let uid: u32 = src.get("AURORA_SANDBOX_UID")?.unwrap_or(65534);
    if uid == 0 {
        return Err(ConfigError::invalid(
            "AURORA_SANDBOX_UID",
            "0",
            "tools never run as root",
        ));
    }
    Ok(SandboxSettings {
        bwrap: src
            .get::<String>("AURORA_SANDBOX_BWRAP")?
            .map(PathBuf::from),
        uid,
        memory_mb: positive("AURORA_TOOL_MEMORY_MB", 4096)?,
        processes: positive("AURORA_TOOL_PROCESSES", 256)?,
        file_mb: positive("AURORA_TOOL_FILE_MB", 256)?,
        grace_secs: positive("AURORA_TOOL_GRACE_SECS", 30)?,
        ro_paths,
        terraform_providers,
        terraform_mirror: src
            .get::<String>("AURORA_TERRAFORM_MIRROR")?
            .map(PathBuf::from),
        terraform_allow_exec: src.get("AURORA_TERRAFORM_ALLOW_EXEC")?.unwrap_or(false),
    })
}

/// The built-in provider allowlist (the clouds the agent works with, and harmless utilities;
/// not hashicorp/external or hashicorp/local, which run programs or write host files).
pub const DEFAULT_PROVIDERS: &[&str] = &[
    "hashicorp/aws",
    "hashicorp/google",
    "hashicorp/azurerm",
    "hashicorp/kubernetes",
    "hashicorp/helm",
    "hashicorp/random",
    "hashicorp/null",
    "hashicorp/time",
    "hashicorp/tls",
];

/// `p` made absolute against the current directory, with `.` and `..` folded, without touching
/// the filesystem (the data directory may not exist yet).
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
