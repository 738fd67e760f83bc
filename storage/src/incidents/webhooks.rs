//! Webhook tokens: the secret last segment of an org's alert webhook URLs
//! (`/api/webhooks/{flavour}/{token}`). Only a token's SHA-256 is stored; a PagerDuty signing
//! secret, which must be read back to check signatures, lives in the secret store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{new_secret, token_hash, validate_name, Principal};
use crate::entities::webhook_tokens;
use crate::secrets::{SecretData, SecretPath, SecretStore};
use crate::{audit, Db, StorageError};

/// Most live webhook tokens an org may hold.
pub const MAX_WEBHOOK_TOKENS: u64 = 50;
/// Longest signing secret accepted (PagerDuty's are 64 characters).
const MAX_SECRET: usize = 512;

/// A token as listed: never the token itself.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookInfo {
    pub id: Uuid,
    pub name: String,
    pub has_signing_secret: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token just created: shown once.
#[derive(Clone, Debug, Serialize)]
pub struct NewWebhook {
    #[serde(flatten)]
    pub info: WebhookInfo,
    pub token: String,
}

/// Who a delivery's token belongs to.
#[derive(Clone, Debug)]
pub struct WebhookOwner {
    pub org_id: Uuid,
    pub token_id: Uuid,
    /// The PagerDuty signing secret, when the token has one.
    pub signing_secret: Option<Arc<[u8]>>,
}

#[derive(Clone)]
pub struct Webhooks {
    db: Db,
    secrets: SecretStore,
    /// Resolved tokens for a few seconds: a storm of deliveries reads the row (and the secret
    /// store) once. A revoked token stops within this long on every node.
    cache: moka::sync::Cache<String, Option<WebhookOwner>>,
}

impl From<webhook_tokens::Model> for WebhookInfo {
    fn from(m: webhook_tokens::Model) -> WebhookInfo {
        WebhookInfo {
            id: m.id,
            name: m.name,
            has_signing_secret: m.secret_ref.is_some(),
            created_by: m.created_by,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
        }
    }
}

impl Webhooks {
    pub fn new(db: Db, secrets: SecretStore) -> Webhooks {
        Webhooks {
            db,
            secrets,
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(2))
                .build(),
        }
    }

    /// Creates a token named `name`; `signing_secret` is PagerDuty's for its subscription.
    pub async fn create(
        &self,
        by: &Principal,
        name: &str,
        signing_secret: Option<&str>,
    ) -> Result<NewWebhook, StorageError> {
        let name = validate_name("name", name, 100)?;
        let secret = match signing_secret.map(str::trim) {
            None => None,
            Some("") => return Err(StorageError::invalid("signing_secret", "is empty")),
            Some(s) if s.len() > MAX_SECRET => {
                return Err(StorageError::invalid(
                    "signing_secret",
                    format!("longer than {MAX_SECRET} characters"),
                ))
            }
            Some(s) => Some(s.to_string()),
        };
        let id = Uuid::now_v7();
        let token = new_secret("awh_");
        let secret_ref = match &secret {
            Some(s) => {
                let path = SecretPath::webhook(by.org_id, id);
                let mut data = SecretData::new();
                data.insert("signing_secret", s.clone());
                self.secrets.put(&path, &data).await?;
                Some(path.as_str().to_string())
            }
            None => None,
        };
        let tx = self.db.org(by.org_id).await?;
        let live = tx
            .select::<webhook_tokens::Entity>()
            .filter(webhook_tokens::Column::RevokedAt.is_null())
            .count(tx.conn())
            .await?;
        if live >= MAX_WEBHOOK_TOKENS {
            drop(tx);
            self.forget_secret(by.org_id, id, secret_ref.is_some())
                .await;
            return Err(StorageError::LimitReached(format!(
                "an organization holds at most {MAX_WEBHOOK_TOKENS} webhook tokens; revoke one first"
            )));
        }
        let row = webhook_tokens::ActiveModel {
            id: Set(id),
            org_id: Set(by.org_id),
            name: Set(name.clone()),
            token_hash: Set(token_hash(&token)),
            secret_ref: Set(secret_ref),
            created_by: Set(Some(by.user_id)),
            created_at: Set(Utc::now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
        };
        let row = webhook_tokens::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "webhook.create",
            Some(&name),
            serde_json::json!({ "webhook_id": id, "signed": secret.is_some() }),
        )
        .await?;
        tx.commit().await?;
        Ok(NewWebhook {
            info: row.into(),
            token,
        })
    }

    async fn forget_secret(&self, org_id: Uuid, id: Uuid, had: bool) {
        if had {
            if let Err(e) = self.secrets.delete(&SecretPath::webhook(org_id, id)).await {
                tracing::warn!(error = %e, webhook_id = %id, "cannot delete a webhook secret");
            }
        }
    }

    /// The org's live tokens, newest first.
    pub async fn list(&self, by: &Principal) -> Result<Vec<WebhookInfo>, StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let rows = tx
            .select::<webhook_tokens::Entity>()
            .filter(webhook_tokens::Column::RevokedAt.is_null())
            .order_by_desc(webhook_tokens::Column::CreatedAt)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(WebhookInfo::from).collect())
    }

    /// Revokes token `id`: deliveries with it are refused from now on (within the cache's
    /// two seconds on other nodes) and its signing secret is deleted.
    pub async fn revoke(&self, by: &Principal, id: Uuid) -> Result<(), StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let row = tx
            .select::<webhook_tokens::Entity>()
            .filter(webhook_tokens::Column::Id.eq(id))
            .filter(webhook_tokens::Column::RevokedAt.is_null())
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("webhook"))?;
        webhook_tokens::Entity::update_many()
            .col_expr(webhook_tokens::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(tx.org_filter::<webhook_tokens::Entity>())
            .filter(webhook_tokens::Column::Id.eq(id))
            .exec(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "webhook.revoke",
            Some(&row.name),
            serde_json::json!({ "webhook_id": id }),
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(&row.token_hash);
        self.forget_secret(by.org_id, id, row.secret_ref.is_some())
            .await;
        Ok(())
    }

    /// Whose token this is; `None` for an unknown or revoked one.
    pub async fn resolve(&self, token: &str) -> Result<Option<WebhookOwner>, StorageError> {
        // Tokens we issue are short; anything longer is not one (and is not hashed).
        if token.len() > 100 || !token.starts_with("awh_") {
            return Ok(None);
        }
        let hash = token_hash(token);
        if let Some(hit) = self.cache.get(&hash) {
            return Ok(hit);
        }
        let tx = self.db.system().await?;
        let row = webhook_tokens::Entity::find()
            .filter(webhook_tokens::Column::TokenHash.eq(&hash))
            .filter(webhook_tokens::Column::RevokedAt.is_null())
            .one(tx.conn())
            .await?;
        if let Some(row) = &row {
            webhook_tokens::Entity::update_many()
                .col_expr(webhook_tokens::Column::LastUsedAt, Expr::value(Utc::now()))
                .filter(webhook_tokens::Column::Id.eq(row.id))
                .exec(tx.conn())
                .await?;
        }
        tx.commit().await?;
        let owner = match row {
            None => None,
            Some(row) => {
                let signing_secret = match &row.secret_ref {
                    None => None,
                    Some(_) => {
                        let path = SecretPath::webhook(row.org_id, row.id);
                        let data = self.secrets.get(&path).await?;
                        let secret = data
                            .as_ref()
                            .and_then(|d| d.get("signing_secret"))
                            .ok_or_else(|| {
                                StorageError::Internal(
                                    "the webhook's signing secret is missing from the secret store"
                                        .into(),
                                )
                            })?;
                        Some(Arc::from(secret.as_bytes()))
                    }
                };
                Some(WebhookOwner {
                    org_id: row.org_id,
                    token_id: row.id,
                    signing_secret,
                })
            }
        };
        self.cache.insert(hash, owner.clone());
        Ok(owner)
    }
}
