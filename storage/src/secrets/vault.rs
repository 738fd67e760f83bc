//! Vault (or OpenBao, which speaks the same API) KV version 2 through `vaultrs`: the secret
//! store a cluster shares.
//!
//! Secrets are written at `<mount>/data/<path>`; a delete removes the metadata too, which
//! destroys every version (a credential deleted in Aurora must not linger as an old version).
//! The mount (`VAULT_KV_MOUNT`) is enabled as KV v2 when missing, at start and again whenever a
//! write finds it gone (a dev server restarted empty).
//!
//! Errors are rebuilt from what `vaultrs` reports: the status code, Vault's own error strings
//! and the root cause of a connection failure. Never its response bodies, which can hold the
//! secret that was read.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use url::Url;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{SecretData, SecretPath, SecretsError};

/// How long one request to Vault may take: the health probe and the API must not hang on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A path no credential uses, read by the health probe: "not found" proves Vault answers and
/// takes the token, with the permissions credentials need (under `orgs/`).
const PROBE_PATH: &str = "orgs/health-probe";

#[derive(Clone)]
pub struct VaultStore {
    client: Arc<VaultClient>,
    mount: Arc<str>,
    addr: Arc<str>,
    /// Whether the mount is known to exist; cleared when a write finds it missing.
    mount_ready: Arc<AtomicBool>,
}

/// The client's settings hold the token: only the address and mount are shown.
impl fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStore")
            .field("addr", &self.addr)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

/// What a 404 from Vault means.
enum NotFound {
    /// The secret does not exist (Vault lists no errors).
    Secret,
    /// The mount does not exist ("no handler for route").
    Mount,
}

impl VaultStore {
    /// A client for Vault at `addr` with `token`, using the KV v2 mount `mount`. Vault that
    /// refuses the token stops the node here, with a clear error. Vault that cannot be reached
    /// yet does not: the node starts, `/health` reports the store down, and the mount is
    /// enabled on the first write.
    pub async fn connect(addr: &Url, token: &str, mount: &str) -> Result<VaultStore, SecretsError> {
        let settings = VaultClientSettingsBuilder::default()
            .address(addr.as_str())
            .token(token)
            .timeout(Some(REQUEST_TIMEOUT))
            .verify(true)
            .build()
            .map_err(|e| SecretsError::Refused(format!("invalid Vault settings: {e}")))?;
        let client = VaultClient::new(settings)
            .map_err(|_| SecretsError::Refused("cannot build the Vault client".into()))?;
        let store = VaultStore {
            client: Arc::new(client),
            mount: mount.into(),
            addr: addr.as_str().trim_end_matches('/').into(),
            mount_ready: Arc::new(AtomicBool::new(false)),
        };
        // The probe proves the token works: a mount already in place, or a token not allowed to
        // manage mounts, leaves `ensure_mount` no way to tell.
        let checked = match store.ensure_mount().await {
            Ok(()) => store.health().await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(()) => {}
            Err(e) if e.is_unavailable() => {
                tracing::warn!(addr = %store.addr, error = %e, "vault is not reachable yet");
            }
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    pub async fn get(&self, path: &SecretPath) -> Result<Option<SecretData>, SecretsError> {
        let read = vaultrs::kv2::read::<std::collections::BTreeMap<String, serde_json::Value>>(
            self.client.as_ref(),
            &self.mount,
            path.as_str(),
        )
        .await;
        let fields = match read {
            Ok(fields) => fields,
            Err(e) => {
                return match self.not_found(&e) {
                    Some(_) => Ok(None),
                    None => Err(self.error(e)),
                }
            }
        };
        let mut data = SecretData::new();
        for (name, value) in fields {
            match value {
                serde_json::Value::String(v) => data.insert(name, v),
                _ => {
                    return Err(SecretsError::Malformed(format!(
                        "{path}: field '{name}' is not a string"
                    )))
                }
            }
        }
        Ok(Some(data))
    }

    pub async fn put(&self, path: &SecretPath, data: &SecretData) -> Result<(), SecretsError> {
        if !self.mount_ready.load(Ordering::Acquire) {
            self.ensure_mount().await?;
        }
        match self.write(path, data).await {
            Err(e) if matches!(self.not_found(&e), Some(NotFound::Mount)) => {
                // The mount went away under us (a Vault dev server restarted empty).
                self.mount_ready.store(false, Ordering::Release);
                self.ensure_mount().await?;
                self.write(path, data).await.map_err(|e| self.error(e))
            }
            other => other.map_err(|e| self.error(e)),
        }
    }

    pub async fn delete(&self, path: &SecretPath) -> Result<(), SecretsError> {
        match vaultrs::kv2::delete_metadata(self.client.as_ref(), &self.mount, path.as_str()).await
        {
            Ok(()) => Ok(()),
            Err(e) if self.not_found(&e).is_some() => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    pub async fn health(&self) -> Result<(), SecretsError> {
        match vaultrs::kv2::read::<serde_json::Value>(self.client.as_ref(), &self.mount, PROBE_PATH)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if self.not_found(&e).is_some() => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn write(&self, path: &SecretPath, data: &SecretData) -> Result<(), ClientError> {
        vaultrs::kv2::set(self.client.as_ref(), &self.mount, path.as_str(), data)
            .await
            .map(|_| ())
    }

    /// Enables the mount as KV v2 unless it exists. A token not allowed to manage mounts
    /// (403) is fine as long as an operator created the mount: its first write says if not.
    async fn ensure_mount(&self) -> Result<(), SecretsError> {
        let mut options = vaultrs::api::sys::requests::EnableEngineRequest::builder();
        options
            .description("Aurora: organizations' cloud credentials")
            .options(std::collections::HashMap::from([(
                "version".to_string(),
                "2".to_string(),
            )]));
        match vaultrs::sys::mount::enable(
            self.client.as_ref(),
            &self.mount,
            "kv",
            Some(&mut options),
        )
        .await
        {
            Ok(()) => {
                tracing::info!(mount = %self.mount, "vault kv v2 mount enabled");
            }
            Err(ClientError::APIError { code: 400, errors })
                if errors.iter().any(|e| e.contains("already in use")) => {}
            Err(ClientError::APIError { code: 403, .. }) => {
                tracing::debug!(mount = %self.mount, "not allowed to manage mounts; assuming it exists");
            }
            Err(e) => return Err(self.error(e)),
        }
        self.mount_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn not_found(&self, e: &ClientError) -> Option<NotFound> {
        match e {
            ClientError::APIError { code: 404, errors } if errors.is_empty() => {
                Some(NotFound::Secret)
            }
            ClientError::APIError { code: 404, errors }
                if errors.iter().any(|e| e.contains("no handler for route")) =>
            {
                Some(NotFound::Mount)
            }
            _ => None,
        }
    }

    /// `e` as this module's error, with nothing of a response body in it.
    fn error(&self, e: ClientError) -> SecretsError {
        let addr = &self.addr;
        match e {
            ClientError::APIError { code, errors } => {
                let said: Vec<String> = errors
                    .iter()
                    .map(|e| e.chars().take(200).collect())
                    .collect();
                let said = if said.is_empty() {
                    String::new()
                } else {
                    format!(": {}", said.join("; "))
                };
                match code {
                    401 | 403 => SecretsError::Refused(format!(
                        "vault at {addr} refused the token (HTTP {code}){said}"
                    )),
                    429 | 500..=599 => SecretsError::Unavailable(format!(
                        "vault at {addr} answered HTTP {code}{said}"
                    )),
                    _ => {
                        SecretsError::Refused(format!("vault at {addr} answered HTTP {code}{said}"))
                    }
                }
            }
            ClientError::RestClientError { source } => rest_error(addr, source),
            ClientError::ResponseEmptyError
            | ClientError::ResponseDataEmptyError
            | ClientError::JsonParseError { .. } => {
                SecretsError::Malformed(format!("unexpected answer from vault at {addr}"))
            }
            other => SecretsError::Refused(format!("vault client error: {other}")),
        }
    }
}

/// A transport-level failure: the root cause only (a refused connection, a timeout), never
/// the body of an answer that could not be parsed.
fn rest_error(addr: &str, e: rustify::errors::ClientError) -> SecretsError {
    use rustify::errors::ClientError as R;
    match e {
        R::RequestError { source, .. } | R::ResponseError { source } => SecretsError::Unavailable(
            format!("cannot reach vault at {addr}: {}", source.root_cause()),
        ),
        R::ServerResponseError { code, .. } if code == 429 || code >= 500 => {
            SecretsError::Unavailable(format!("vault at {addr} answered HTTP {code}"))
        }
        R::ServerResponseError { code, .. } => {
            SecretsError::Refused(format!("vault at {addr} answered HTTP {code}"))
        }
        R::ResponseParseError { .. } | R::ResponseConversionError { .. } => {
            SecretsError::Malformed(format!("unexpected answer from vault at {addr}"))
        }
        other => SecretsError::Refused(format!("vault request failed: {other}")),
    }
}
