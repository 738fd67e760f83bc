//! API tokens a user (and an admin, for the whole org) can see and revoke, and logout.
//!
//! A revoked token must stop working on every node within a second, but each node caches
//! resolved tokens for a few seconds. So every revocation bumps this node's cache epoch and
//! posts to a stream in the shared cache: the token's hash for a revocation or logout (only
//! that entry is dropped), `all` for a member's role change or removal. Each node follows the
//! stream ([`Accounts::follow_revocations`]) and drops what each entry names.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{insert_token, token_hash, Accounts, IssuedToken, Principal, Role};
use crate::entities::{api_tokens, users};
use crate::{audit, StorageError};

/// The longest a token may be issued for.
pub const MAX_TOKEN_DAYS: i64 = 365;

/// The cache stream every node follows to drop its token cache.
pub const REVOCATION_STREAM: &str = "aurora:auth:revocations";

/// A token as listed: never the token itself.
#[derive(Clone, Debug, Serialize)]
pub struct TokenInfo {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A token just issued through the API: its id, to revoke it later, and the token, once.
#[derive(Clone, Debug, Serialize)]
pub struct NewToken {
    pub id: Uuid,
    pub name: String,
    #[serde(flatten)]
    pub issued: IssuedToken,
}

impl Accounts {
    /// Unexpired tokens: the caller's own, or (`all`, for admins: the edge checks) the org's.
    pub async fn list_tokens(
        &self,
        by: &Principal,
        all: bool,
    ) -> Result<Vec<TokenInfo>, StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let mut q = tx
            .select::<api_tokens::Entity>()
            .filter(api_tokens::Column::ExpiresAt.gt(Utc::now()))
            .order_by_desc(api_tokens::Column::CreatedAt)
            .limit(1000);
        if !all {
            q = q.filter(api_tokens::Column::UserId.eq(by.user_id));
        }
        let tokens = q.all(tx.conn()).await?;
        let members = tx.select::<users::Entity>().all(tx.conn()).await?;
        tx.commit().await?;
        let email = |id: Uuid| {
            members
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.email.clone())
                .unwrap_or_default()
        };
        Ok(tokens
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                email: email(t.user_id),
                user_id: t.user_id,
                name: t.name,
                created_at: t.created_at,
                expires_at: t.expires_at,
            })
            .collect())
    }

    /// Issues a named token for the caller, valid for `days`.
    pub async fn create_token(
        &self,
        by: &Principal,
        name: &str,
        days: i64,
    ) -> Result<NewToken, StorageError> {
        let name = crate::auth::validate_name("name", name, 100)?;
        if !(1..=MAX_TOKEN_DAYS).contains(&days) {
            return Err(StorageError::invalid(
                "expires_in_days",
                format!("must be between 1 and {MAX_TOKEN_DAYS}"),
            ));
        }
        let tx = self.db.org(by.org_id).await?;
        let user = tx
            .select::<users::Entity>()
            .filter(users::Column::Id.eq(by.user_id))
            .filter(users::Column::RemovedAt.is_null())
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("user"))?;
        let issued = insert_token(tx.conn(), &user, &name, Duration::days(days)).await?;
        let id = api_tokens::Entity::find()
            .filter(api_tokens::Column::TokenHash.eq(token_hash(&issued.token)))
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("token"))?
            .id;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "token.create",
            Some(&name),
            serde_json::json!({ "token_id": id, "expires_at": issued.expires_at }),
        )
        .await?;
        tx.commit().await?;
        Ok(NewToken { id, name, issued })
    }

    /// Revokes a token: the caller's own, or any of the org's for an admin. Someone else's
    /// token is "not found" to a non-admin, as a token of another org is to everyone.
    pub async fn revoke_token(&self, by: &Principal, id: Uuid) -> Result<(), StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let mut q = tx
            .select::<api_tokens::Entity>()
            .filter(api_tokens::Column::Id.eq(id));
        if by.role < Role::Admin {
            q = q.filter(api_tokens::Column::UserId.eq(by.user_id));
        }
        let row = q
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("token"))?;
        api_tokens::Entity::delete_many()
            .filter(api_tokens::Column::OrgId.eq(by.org_id))
            .filter(api_tokens::Column::Id.eq(row.id))
            .exec(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "token.revoke",
            None,
            serde_json::json!({ "token_id": id }),
        )
        .await?;
        tx.commit().await?;
        self.invalidate_token(&row.token_hash).await;
        Ok(())
    }

    /// Logout: revokes the token the request was made with.
    pub async fn logout(&self, by: &Principal, token: &str) -> Result<(), StorageError> {
        let tx = self.db.org(by.org_id).await?;
        api_tokens::Entity::delete_many()
            .filter(api_tokens::Column::OrgId.eq(by.org_id))
            .filter(api_tokens::Column::TokenHash.eq(token_hash(token)))
            .exec(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "user.logout",
            Some(&by.email),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        self.invalidate_token(&token_hash(token)).await;
        Ok(())
    }

    /// Drops every cached token on this node and tells the other nodes to do the same (a
    /// member's role or membership changed: any of their tokens may be cached).
    pub async fn invalidate(&self) {
        self.drop_cache();
        self.announce("all").await;
    }

    /// Drops one token (by its SHA-256) from every node's cache: a revocation or logout. Only
    /// that entry goes, so revoking tokens in a loop cannot keep the caches empty.
    pub async fn invalidate_token(&self, hash: &str) {
        self.drop_cached(hash);
        self.announce(&format!("token:{hash}")).await;
    }

    async fn announce(&self, what: &str) {
        if let Some(cache) = &self.revocations {
            if let Err(e) = cache.post(REVOCATION_STREAM, what).await {
                // The other nodes' caches then hold the token until their TTL runs out.
                tracing::warn!(error = %e, "could not tell the cluster about a revocation");
            }
        }
    }

    /// This node's side of [`Accounts::invalidate_token`].
    pub(crate) fn drop_cached(&self, hash: &str) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(c) = &self.cache {
            c.invalidate(hash);
        }
    }

    /// This node's side of [`Accounts::invalidate`]: an entry resolved before the bump is
    /// never cached after it (see `authenticate`).
    pub(crate) fn drop_cache(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(c) = &self.cache {
            c.invalidate_all();
        }
    }

    /// Follows the revocation stream (until the task is aborted), dropping this node's token cache on
    /// each entry another node (or this one) posts. A gap in following (the cache down) drops
    /// the cache too: a revocation may have been missed.
    pub async fn follow_revocations(&self) {
        let Some(cache) = self.revocations.clone() else {
            return;
        };
        let mut last = "$".to_string();
        let block = std::time::Duration::from_millis(500);
        // Set while the stream cannot be read: the first read that works drops the cache
        // again (a token may have been cached and revoked meanwhile). The last id read is
        // kept across the gap, so nothing posted during it is skipped.
        let mut gap = false;
        loop {
            match cache.follow(REVOCATION_STREAM, &mut last, block).await {
                Ok(revoked) => {
                    if std::mem::take(&mut gap) {
                        self.drop_cache();
                    }
                    for what in revoked {
                        match what.strip_prefix("token:") {
                            Some(hash) => self.drop_cached(hash),
                            None => self.drop_cache(),
                        }
                    }
                }
                Err(e) => {
                    if !gap {
                        tracing::warn!(error = %e, "revocation stream unreadable; dropping the token cache");
                    }
                    gap = true;
                    self.drop_cache();
                    tokio::time::sleep(block).await;
                }
            }
        }
    }
}
