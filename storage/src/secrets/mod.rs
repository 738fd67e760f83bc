//! The secret store: where the orgs' cloud credentials live. The relational store keeps only a
//! reference to each secret (its [`SecretPath`]), so a database dump, a backup or a query that
//! escapes row-level security never holds a credential.
//!
//! Two backends behind one type, picked by configuration:
//! - [`vault::VaultStore`]: Vault (or OpenBao) KV v2 through `vaultrs`, what a cluster shares;
//! - [`sealed::SealedFile`]: the embedded default, one file under the data directory encrypted
//!   with a key derived from `SECRET_KEY`.
//!
//! Every error of this module is written so it can go to a log or an HTTP answer: none carries
//! a secret value (nor a response body from Vault, which could).

pub mod sealed;
pub mod vault;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroize;

pub use sealed::SealedFile;
pub use vault::VaultStore;

/// Why the secret store could not do what was asked. No variant holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The store did not answer (Vault down or timing out): worth retrying later.
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with a refusal (a token without permission, a mount of another kind).
    #[error("secret store refused the request: {0}")]
    Refused(String),
    /// The sealed file cannot be opened with this key, or is not a sealed file at all.
    #[error("{0}")]
    Sealed(String),
    /// Reading or writing the sealed file failed.
    #[error("secret store i/o error: {0}")]
    Io(String),
    /// A secret a credential refers to is not in the store (a Vault dev server restarted
    /// empty, a sealed file restored from an older copy).
    #[error("{0}")]
    Missing(String),
    /// What the store holds is not a secret this code wrote (malformed, wrong shape).
    #[error("secret store holds malformed data: {0}")]
    Malformed(String),
}

impl SecretsError {
    /// Whether this means "cannot reach the store right now" rather than a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SecretsError::Unavailable(_))
    }
}

/// Where one secret lives: `orgs/<org_id>/credentials/<id>`. Only built from ids, so a path
/// never leaves its org's prefix, whatever a caller or a database row says.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretPath(String);

impl SecretPath {
    /// The path of credential `id` of `org_id`.
    pub fn credential(org_id: Uuid, id: Uuid) -> SecretPath {
        SecretPath(format!("orgs/{org_id}/credentials/{id}"))
    }

    /// The path of webhook `id`'s signing secret (PagerDuty) of `org_id`.
    pub fn webhook(org_id: Uuid, id: Uuid) -> SecretPath {
        SecretPath(format!("orgs/{org_id}/webhooks/{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One secret: field names to values (a JSON object of strings). `Debug` shows the names
/// only, and the values are wiped from memory when it is dropped.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretData(BTreeMap<String, String>);

impl SecretData {
    pub fn new() -> SecretData {
        SecretData::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        if let Some(mut old) = self.0.insert(name.into(), value.into()) {
            old.zeroize();
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SecretData {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> SecretData {
        let mut data = SecretData::new();
        for (k, v) in iter {
            data.insert(k, v);
        }
        data
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretData")
            .field("fields", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for SecretData {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            value.zeroize();
        }
    }
}

/// The node's secret store.
#[derive(Clone, Debug)]
pub enum SecretStore {
    Vault(VaultStore),
    Sealed(SealedFile),
}

impl SecretStore {
    /// The secret at `path`, or `None` when there is none.
    pub async fn get(&self, path: &SecretPath) -> Result<Option<SecretData>, SecretsError> {
        match self {
            SecretStore::Vault(v) => v.get(path).await,
            SecretStore::Sealed(s) => s.get(path).await,
        }
    }

    /// Writes (or replaces) the secret at `path`.
    pub async fn put(&self, path: &SecretPath, data: &SecretData) -> Result<(), SecretsError> {
        match self {
            SecretStore::Vault(v) => v.put(path, data).await,
            SecretStore::Sealed(s) => s.put(path, data).await,
        }
    }

    /// Removes the secret at `path` (every version, in Vault). Removing a missing one is not an
    /// error, so a delete that failed half-way can simply be repeated.
    pub async fn delete(&self, path: &SecretPath) -> Result<(), SecretsError> {
        match self {
            SecretStore::Vault(v) => v.delete(path).await,
            SecretStore::Sealed(s) => s.delete(path).await,
        }
    }

    /// A cheap check that the store can be used now: Vault answers and takes the token; the
    /// sealed file (if any) opens with the key.
    pub async fn health(&self) -> Result<(), SecretsError> {
        match self {
            SecretStore::Vault(v) => v.health().await,
            SecretStore::Sealed(s) => s.health().await,
        }
    }

    /// `vault` or `sealed_file`, for logs and the health report.
    pub fn backend(&self) -> &'static str {
        match self {
            SecretStore::Vault(_) => "vault",
            SecretStore::Sealed(_) => "sealed_file",
        }
    }

    /// Whether the node is unready while the store is down. Vault is a service of its own that
    /// can go away; the sealed file is part of the node's own disk.
    pub fn is_critical(&self) -> bool {
        matches!(self, SecretStore::Vault(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_not_values() {
        let data: SecretData = [("token", "very-secret-value")].into_iter().collect();
        let shown = format!("{data:?}");
        assert!(shown.contains("token"), "{shown}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }

    #[test]
    fn paths_are_built_from_ids_only() {
        let org = Uuid::now_v7();
        let id = Uuid::now_v7();
        assert_eq!(
            SecretPath::credential(org, id).as_str(),
            format!("orgs/{org}/credentials/{id}")
        );
    }
}
