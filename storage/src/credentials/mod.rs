//! The orgs' cloud credentials. The database row (`org_credentials`) holds what may be shown:
//! provider, name, non-secret metadata and a reference into the secret store; the secret
//! values live only in the store, and are fetched from it for each tool call
//! ([`Credentials::materials`]), so a rotated or deleted credential takes effect at once on
//! every node.
//!
//! Order of writes, so that no row ever points at nothing: create stores the secret first, then
//! inserts the row (removing the secret again if the insert fails); delete removes the secret
//! first, then the row (a failed delete can be repeated). Audit rows name the credential and
//! its provider, never a secret.

mod input;
mod materials;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

pub use input::{NewCredential, Provider};
pub use materials::{MaterialFile, Materials, CLIS};

use crate::auth::Principal;
use crate::entities::org_credentials;
use crate::secrets::{SecretData, SecretPath, SecretStore, SecretsError};
use crate::{audit, Db, StorageError};
use materials::Resolved;

/// Most credentials one org may hold.
const MAX_PER_ORG: u64 = 100;

/// A credential as it is shown: never its secret.
#[derive(Clone, Debug, Serialize)]
pub struct Credential {
    pub id: Uuid,
    pub provider: Provider,
    pub name: String,
    pub metadata: Value,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Credentials {
    db: Db,
    store: SecretStore,
}

impl Credentials {
    pub fn new(db: Db, store: SecretStore) -> Credentials {
        Credentials { db, store }
    }

    /// The secret store the secrets live in (the health monitor probes it).
    pub fn store(&self) -> &SecretStore {
        &self.store
    }

    /// The org's credentials, oldest first. Reads only the database.
    pub async fn list(&self, org_id: Uuid) -> Result<Vec<Credential>, StorageError> {
        self.rows(org_id)
            .await?
            .into_iter()
            .map(|r| view(&r))
            .collect()
    }

    /// Stores a new credential: the secret in the store, the row (and its audit record) in
    /// the database.
    pub async fn create(
        &self,
        by: &Principal,
        new: NewCredential,
    ) -> Result<Credential, StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let count = tx
            .select::<org_credentials::Entity>()
            .count(tx.conn())
            .await?;
        let taken = tx
            .select::<org_credentials::Entity>()
            .filter(org_credentials::Column::Name.eq(&new.name))
            .one(tx.conn())
            .await?
            .is_some();
        tx.commit().await?;
        if taken {
            return Err(conflict());
        }
        if count >= MAX_PER_ORG {
            return Err(StorageError::invalid(
                "name",
                format!("an organization holds at most {MAX_PER_ORG} credentials"),
            ));
        }
        let id = Uuid::now_v7();
        let path = SecretPath::credential(by.org_id, id);
        // The store is written outside any database transaction: a slow Vault must not hold
        // a connection (SQLite has only one).
        self.store.put(&path, &new.secret).await?;
        match self.insert(by, id, &path, &new).await {
            Ok(m) => view(&m),
            Err(e) => {
                if let Err(undo) = self.store.delete(&path).await {
                    tracing::warn!(credential = %id, error = %undo, "secret left in the store after a failed create");
                }
                Err(e)
            }
        }
    }

    async fn insert(
        &self,
        by: &Principal,
        id: Uuid,
        path: &SecretPath,
        new: &NewCredential,
    ) -> Result<org_credentials::Model, StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let row = org_credentials::ActiveModel {
            id: Set(id),
            org_id: Set(by.org_id),
            provider: Set(new.provider.as_str().into()),
            name: Set(new.name.clone()),
            metadata: Set(Value::Object(new.metadata.clone())),
            secret_ref: Set(path.as_str().into()),
            created_by: Set(Some(by.user_id)),
            created_at: Set(Utc::now()),
        };
        let m = org_credentials::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await
            .map_err(|e| match StorageError::from_db_conflict(e, "") {
                StorageError::Conflict(_) => conflict(),
                other => other,
            })?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "credential.create",
            Some(&new.name),
            serde_json::json!({ "id": id, "provider": new.provider }),
        )
        .await?;
        tx.commit().await?;
        Ok(m)
    }

    /// Deletes a credential of the caller's org: its secret, then its row.
    pub async fn delete(&self, by: &Principal, id: Uuid) -> Result<(), StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let row = tx
            .select::<org_credentials::Entity>()
            .filter(org_credentials::Column::Id.eq(id))
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("credential"))?;
        tx.commit().await?;
        self.store.delete(&secret_path(&row)?).await?;
        let tx = self.db.org(by.org_id).await?;
        let res = org_credentials::Entity::delete_many()
            .filter(tx.org_filter::<org_credentials::Entity>())
            .filter(org_credentials::Column::Id.eq(id))
            .exec(tx.conn())
            .await?;
        if res.rows_affected == 0 {
            return Err(StorageError::NotFound("credential"));
        }
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "credential.delete",
            Some(&row.name),
            serde_json::json!({ "id": id, "provider": row.provider }),
        )
        .await?;
        tx.commit().await
    }

    /// Everything the org's credentials give its tools, read from the secret store now (see
    /// [`Materials::for_cli`] for one CLI's part). A secret missing from the store fails the
    /// call with an error naming the credential, rather than running a tool without it.
    pub async fn materials(&self, org_id: Uuid) -> Result<Materials, StorageError> {
        let mut resolved = Vec::new();
        for row in self.rows(org_id).await? {
            let secret = self.store.get(&secret_path(&row)?).await?.ok_or_else(|| {
                SecretsError::Missing(format!(
                    "the secret of credential '{}' ({}) is missing from the secret store; \
                     delete the credential and add it again",
                    row.name, row.provider
                ))
            })?;
            resolved.push(resolve(&row, &secret)?);
        }
        Ok(materials::build(&resolved))
    }

    async fn rows(&self, org_id: Uuid) -> Result<Vec<org_credentials::Model>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let rows = tx
            .select::<org_credentials::Entity>()
            .order_by_asc(org_credentials::Column::CreatedAt)
            .order_by_asc(org_credentials::Column::Id)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows)
    }
}

fn conflict() -> StorageError {
    StorageError::Conflict("a credential with this name already exists".into())
}

fn provider(row: &org_credentials::Model) -> Result<Provider, StorageError> {
    Provider::parse(&row.provider).ok_or_else(|| {
        StorageError::Internal(format!("stored credential provider '{}'", row.provider))
    })
}

fn view(row: &org_credentials::Model) -> Result<Credential, StorageError> {
    Ok(Credential {
        id: row.id,
        provider: provider(row)?,
        name: row.name.clone(),
        metadata: row.metadata.clone(),
        created_at: row.created_at,
    })
}

/// The row's secret path, which must be the one its org and id give: a row can never lead to
/// another org's secret, whatever was written into it.
fn secret_path(row: &org_credentials::Model) -> Result<SecretPath, StorageError> {
    let path = SecretPath::credential(row.org_id, row.id);
    if row.secret_ref != path.as_str() {
        return Err(StorageError::Internal(format!(
            "credential {} refers to a secret outside its place",
            row.id
        )));
    }
    Ok(path)
}

/// A row and its secret as one checked credential.
fn resolve(row: &org_credentials::Model, secret: &SecretData) -> Result<Resolved, StorageError> {
    let meta: &Map<String, Value> = row
        .metadata
        .as_object()
        .ok_or_else(|| malformed(row, "metadata"))?;
    let m = |k: &'static str| meta.get(k).and_then(Value::as_str).map(str::to_string);
    let s = |k: &'static str| secret.get(k).map(str::to_string);
    let url = |k: &'static str| m(k).map(|u| u.parse::<url::Url>()).transpose();
    let need = |v: Option<String>, k: &'static str| v.ok_or_else(|| malformed(row, k));
    Ok(match provider(row)? {
        Provider::Aws => Resolved::Aws {
            access_key_id: need(s("access_key_id"), "access_key_id")?,
            secret_access_key: need(s("secret_access_key"), "secret_access_key")?,
            session_token: s("session_token"),
            region: need(m("region"), "region")?,
            endpoint_url: url("endpoint_url").map_err(|_| malformed(row, "endpoint_url"))?,
        },
        Provider::Gcp => Resolved::Gcp {
            service_account_json: need(s("service_account_json"), "service_account_json")?,
            project: need(m("project"), "project")?,
        },
        Provider::Azure => Resolved::Azure {
            tenant_id: need(m("tenant_id"), "tenant_id")?,
            client_id: need(m("client_id"), "client_id")?,
            client_secret: need(s("client_secret"), "client_secret")?,
            subscription_id: need(m("subscription_id"), "subscription_id")?,
        },
        Provider::Kubernetes => Resolved::Kubernetes {
            name: row.name.clone(),
            server: url("server")
                .ok()
                .flatten()
                .ok_or_else(|| malformed(row, "server"))?,
            token: need(s("token"), "token")?,
            certificate_authority_data: s("certificate_authority_data"),
            namespace: m("namespace"),
            insecure_skip_tls_verify: meta
                .get("insecure_skip_tls_verify")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
    })
}

fn malformed(row: &org_credentials::Model, field: &str) -> StorageError {
    StorageError::Secrets(SecretsError::Malformed(format!(
        "credential '{}' has no valid {field}",
        row.name
    )))
}

#[cfg(test)]
mod tests;
