use std::path::PathBuf;

/// Why a configuration was refused. Every variant names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("config file {path} is not valid TOML: {reason}")]
    Toml { path: PathBuf, reason: String },
    #[error("unknown config key '{key}' in {origin}")]
    UnknownKey { key: String, origin: String },
    #[error("invalid value for {key} ({value:?}): {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}
