use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use crate::{ConfigError, KEYS};

/// Where a raw value came from, for error messages.
enum Origin {
    Env,
    File(String),
}

/// The raw values of every known key, from the file and the environment (which wins).
pub(crate) struct Sources {
    values: HashMap<&'static str, (String, Origin)>,
}

impl Sources {
    pub(crate) fn new(
        file: Option<(&str, &Path)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Sources, ConfigError> {
        let mut values = HashMap::new();
        if let Some((text, path)) = file {
            let origin = path.display().to_string();
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Toml {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
            for (key, value) in table {
                let known = KEYS
                    .iter()
                    .find(|k| k.to_ascii_lowercase() == key)
                    .ok_or_else(|| ConfigError::UnknownKey {
                        key: key.clone(),
                        origin: origin.clone(),
                    })?;
                let raw = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(ConfigError::invalid(
                            known,
                            &other.to_string(),
                            &format!("expected a string, number or boolean in {origin}"),
                        ))
                    }
                };
                values.insert(*known, (raw, Origin::File(origin.clone())));
            }
        }
        for (key, value) in env {
            if let Some(known) = KEYS.iter().find(|k| **k == key) {
                // An empty variable counts as unset, as shells and compose files often leave them.
                if !value.is_empty() {
                    values.insert(*known, (value, Origin::Env));
                }
            } else if key.starts_with("AURORA_") {
                return Err(ConfigError::UnknownKey {
                    key,
                    origin: "the environment".into(),
                });
            }
        }
        Ok(Sources { values })
    }

    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The value of `key` parsed as `T`, or `None` when unset.
    pub(crate) fn get<T: FromStr>(&self, key: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        debug_assert!(KEYS.contains(&key), "{key} is not in KEYS");
        match self.values.get(key) {
            None => Ok(None),
            Some((raw, origin)) => raw.trim().parse::<T>().map(Some).map_err(|e| {
                let shown = if is_secret(key) {
                    "***".to_string()
                } else {
                    raw.clone()
                };
                let place = match origin {
                    Origin::Env => "environment".to_string(),
                    Origin::File(f) => f.clone(),
                };
                ConfigError::invalid(key, &shown, &format!("{e} (from {place})"))
            }),
        }
    }

    pub(crate) fn get_bool(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        let Some(raw) = self.get::<String>(key)? else {
            return Ok(None);
        };
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError::invalid(key, &raw, "expected true or false")),
        }
    }
}

fn is_secret(key: &str) -> bool {
    key.ends_with("_TOKEN")
        || key.ends_with("_KEY")
        || key.ends_with("PASSWORD")
        || key == "DATABASE_URL"
        || key == "REDIS_URL"
}
