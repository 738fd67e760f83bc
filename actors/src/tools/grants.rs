//! An org's credentials as a tool call gets them: fetched from the secret store when a turn
//! first runs a tool (never cached beyond the turn, so a deleted credential stops working at
//! the next turn), shaped per CLI (AWS variables, a kubeconfig file, ...), and the secret
//! values themselves, so that everything shown or stored is masked by value.

use std::sync::Arc;

use uuid::Uuid;

use super::cloud_exec::Call;
use super::redact::Secrets;
use super::sandbox::{Grant, GrantFile};

/// Where a node gets its orgs' credentials.
#[derive(Clone, Default)]
pub struct Grants {
    store: Option<aurora_storage::credentials::Credentials>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("store", &self.store.is_some())
            .finish()
    }
}

impl Grants {
    pub fn new(store: aurora_storage::credentials::Credentials) -> Grants {
        Grants { store: Some(store) }
    }

    /// No secret store: every org's tools run without credentials (tests of the chat runtime
    /// that run no cloud CLI).
    pub fn none() -> Grants {
        Grants { store: None }
    }

    /// The org's credentials, fetched now.
    pub async fn for_org(&self, org_id: Uuid) -> Result<Arc<OrgGrant>, String> {
        let Some(store) = &self.store else {
            return Ok(Arc::new(OrgGrant::default()));
        };
        let materials = store.materials(org_id).await.map_err(|e| e.to_string())?;
        let secrets = Secrets::new(materials.secret_values.iter());
        Ok(Arc::new(OrgGrant {
            secrets,
            materials: Some(materials),
        }))
    }
}

/// One org's credentials for the length of a turn.
#[derive(Default)]
pub struct OrgGrant {
    /// Every stored secret value, masked wherever it appears.
    pub secrets: Secrets,
    materials: Option<aurora_storage::credentials::Materials>,
}

impl OrgGrant {
    /// What a call of `cli` gets: only the variables and files that CLI uses.
    pub fn call_for(&self, cli: &str) -> Call {
        let grant = match &self.materials {
            Some(m) => {
                let m = m.for_cli(cli);
                Grant {
                    env: m.env,
                    files: m
                        .files
                        .into_iter()
                        .map(|f| GrantFile {
                            name: f.name,
                            contents: f.contents,
                            env: f.env,
                        })
                        .collect(),
                    endpoints: m
                        .endpoints
                        .iter()
                        .filter_map(|u| {
                            Some((u.host_str()?.to_string(), u.port_or_known_default()?))
                        })
                        .collect(),
                }
            }
            None => Grant::default(),
        };
        Call {
            grant,
            secrets: self.secrets.clone(),
            ..Call::default()
        }
    }
}
