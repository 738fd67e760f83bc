//! The audit log: append-only records of security-relevant actions, written in the same
//! transaction as the action they describe so neither exists without the other.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use uuid::Uuid;

use crate::entities::audit_log;
use crate::StorageError;

pub async fn record(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    user_id: Option<Uuid>,
    action: &str,
    target: Option<&str>,
    details: serde_json::Value,
) -> Result<(), StorageError> {
    let row = audit_log::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(org_id),
        user_id: Set(user_id),
        action: Set(action.to_string()),
        target: Set(target.map(str::to_string)),
        details: Set(details),
        created_at: Set(Utc::now()),
    };
    audit_log::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Audit writes that are not part of another transaction (tool executions, approvals).
#[derive(Clone, Debug)]
pub struct Audit {
    db: crate::Db,
}

impl Audit {
    pub fn new(db: crate::Db) -> Audit {
        Audit { db }
    }

    pub async fn log(
        &self,
        org_id: Uuid,
        user_id: Option<Uuid>,
        action: &str,
        target: Option<&str>,
        details: serde_json::Value,
    ) -> Result<(), StorageError> {
        let tx = self.db.org(org_id).await?;
        record(tx.conn(), org_id, user_id, action, target, details).await?;
        tx.commit().await
    }
}
