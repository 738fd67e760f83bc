//! Per-user preferences: a JSON value per key.

use std::collections::BTreeMap;

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::auth::Principal;
use crate::entities::user_preferences;
use crate::{Db, StorageError};

/// Most keys one batch may write.
pub const MAX_BATCH: usize = 100;
/// Largest serialized value accepted for one key.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(
            "key",
            "must be 1 to 128 characters of [A-Za-z0-9_.:-]",
        ))
    }
}

fn validate_value(key: &str, value: &serde_json::Value) -> Result<(), StorageError> {
    if serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
        > MAX_VALUE_BYTES
    {
        return Err(StorageError::invalid(
            "value",
            format!("value of '{key}' is over {MAX_VALUE_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Preferences {
    db: Db,
}

impl Preferences {
    pub fn new(db: Db) -> Preferences {
        Preferences { db }
    }

    /// All of the user's preferences, or only `keys` when given.
    pub async fn get(
        &self,
        who: &Principal,
        keys: Option<&[String]>,
    ) -> Result<BTreeMap<String, serde_json::Value>, StorageError> {
        if let Some(keys) = keys {
            if keys.len() > MAX_BATCH {
                return Err(StorageError::invalid(
                    "keys",
                    format!("at most {MAX_BATCH} keys"),
                ));
            }
            keys.iter().try_for_each(|k| validate_key(k))?;
        }
        let tx = self.db.org(who.org_id).await?;
        let mut query = tx
            .select::<user_preferences::Entity>()
            .filter(user_preferences::Column::UserId.eq(who.user_id));
        if let Some(keys) = keys {
            query = query.filter(user_preferences::Column::Key.is_in(keys.iter().cloned()));
        }
        let rows = query.all(tx.conn()).await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|r| (r.key, r.value)).collect())
    }

    /// Writes every pair in one transaction: all are stored or none.
    pub async fn set_many(
        &self,
        who: &Principal,
        values: BTreeMap<String, serde_json::Value>,
    ) -> Result<(), StorageError> {
        if values.is_empty() {
            return Err(StorageError::invalid(
                "preferences",
                "must contain at least one key",
            ));
        }
        if values.len() > MAX_BATCH {
            return Err(StorageError::invalid(
                "preferences",
                format!("at most {MAX_BATCH} keys"),
            ));
        }
        for (key, value) in &values {
            validate_key(key)?;
            validate_value(key, value)?;
        }
        let now = Utc::now();
        let rows = values
            .into_iter()
            .map(|(key, value)| user_preferences::ActiveModel {
                user_id: Set(who.user_id),
                key: Set(key),
                org_id: Set(who.org_id),
                value: Set(value),
                updated_at: Set(now),
            });
        let tx = self.db.org(who.org_id).await?;
        user_preferences::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    user_preferences::Column::UserId,
                    user_preferences::Column::Key,
                ])
                .update_columns([
                    user_preferences::Column::Value,
                    user_preferences::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes one key; `NotFound` when it was not set.
    pub async fn delete(&self, who: &Principal, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        let tx = self.db.org(who.org_id).await?;
        let res = user_preferences::Entity::delete_many()
            .filter(tx.org_filter::<user_preferences::Entity>())
            .filter(user_preferences::Column::UserId.eq(who.user_id))
            .filter(user_preferences::Column::Key.eq(key))
            .exec(tx.conn())
            .await?;
        tx.commit().await?;
        if res.rows_affected == 0 {
            return Err(StorageError::NotFound("preference"));
        }
        Ok(())
    }
}
