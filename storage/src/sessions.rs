//! Chat sessions as rows: listing and creation. The chat runtime's SessionActor owns a session's
//! history once it runs; these are the reads and writes that need no running session.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{validate_name, Principal};
use crate::entities::chat_sessions;
use crate::{org_select, Db, StorageError};

/// A session as listed: no message bodies.
#[derive(Clone, Debug, Serialize)]
pub struct SessionSummary {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Sessions {
    db: Db,
}

impl Sessions {
    pub fn new(db: Db) -> Sessions {
        Sessions { db }
    }

    /// The caller's live sessions, most recently updated first.
    pub async fn list(
        &self,
        who: &Principal,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<SessionSummary>, StorageError> {
        let query = org_select::<chat_sessions::Entity>(who.org_id)
            .select_only()
            .columns([
                chat_sessions::Column::Id,
                chat_sessions::Column::Title,
                chat_sessions::Column::Status,
                chat_sessions::Column::CreatedAt,
                chat_sessions::Column::UpdatedAt,
            ])
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null())
            .order_by_desc(chat_sessions::Column::UpdatedAt)
            .limit(limit)
            .offset(offset)
            .into_query();
        let rows = self.db.org_query(who.org_id, &query).await?;
        rows.iter()
            .map(|r| {
                Ok(SessionSummary {
                    id: r.try_get("", "id")?,
                    title: r.try_get("", "title")?,
                    status: r.try_get("", "status")?,
                    created_at: r.try_get("", "created_at")?,
                    updated_at: r.try_get("", "updated_at")?,
                })
            })
            .collect()
    }

    /// A new, empty session owned by the caller.
    pub async fn create(
        &self,
        who: &Principal,
        title: Option<&str>,
    ) -> Result<SessionSummary, StorageError> {
        let title = match title {
            Some(t) => validate_name("title", t, 500)?,
            None => "New chat".to_string(),
        };
        let now = Utc::now();
        let row = chat_sessions::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(who.org_id),
            user_id: Set(who.user_id),
            title: Set(title),
            messages: Set(serde_json::json!([])),
            llm_context_history: Set(serde_json::json!([])),
            status: Set("active".into()),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        };
        let tx = self.db.org(who.org_id).await?;
        let m = chat_sessions::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(SessionSummary {
            id: m.id,
            title: m.title,
            status: m.status,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}
