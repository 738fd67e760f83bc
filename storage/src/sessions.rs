//! Chat sessions as rows: listing and creation. The chat runtime's SessionActor owns a session's
//! history once it runs; these are the reads and writes that need no running session.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
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

/// A session with its history.
#[derive(Clone, Debug, Serialize)]
pub struct SessionDetail {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    pub messages: serde_json::Value,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl Sessions {
    /// One of the caller's live sessions with its messages; `NotFound` for anyone else's, for a
    /// deleted one, and for one that never existed (indistinguishable on purpose).
    pub async fn get(&self, who: &Principal, id: Uuid) -> Result<SessionDetail, StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let row = tx
            .select::<chat_sessions::Entity>()
            .filter(chat_sessions::Column::Id.eq(id))
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null())
            .one(tx.conn())
            .await?;
        tx.commit().await?;
        let m = row.ok_or(StorageError::NotFound("session"))?;
        Ok(SessionDetail {
            id: m.id,
            title: m.title,
            status: m.status,
            messages: m.messages,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }

    pub async fn rename(
        &self,
        who: &Principal,
        id: Uuid,
        title: &str,
    ) -> Result<SessionSummary, StorageError> {
        let title = validate_name("title", title, 500)?;
        let now = Utc::now();
        self.update_live(who, id, |u| {
            u.col_expr(chat_sessions::Column::Title, Expr::value(title.clone()))
                .col_expr(chat_sessions::Column::UpdatedAt, Expr::value(now))
        })
        .await?;
        let s = self.get(who, id).await?;
        Ok(SessionSummary {
            id: s.id,
            title: s.title,
            status: s.status,
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
    }

    /// Soft delete: the row stays (with `deleted_at`) but no route shows it again.
    pub async fn delete(&self, who: &Principal, id: Uuid) -> Result<(), StorageError> {
        let now = Utc::now();
        self.update_live(who, id, |u| {
            u.col_expr(chat_sessions::Column::DeletedAt, Expr::value(Some(now)))
                .col_expr(chat_sessions::Column::Status, Expr::value("deleted"))
                .col_expr(chat_sessions::Column::UpdatedAt, Expr::value(now))
        })
        .await
    }

    /// Applies `set` to the caller's live session `id`, or `NotFound`.
    async fn update_live(
        &self,
        who: &Principal,
        id: Uuid,
        set: impl FnOnce(
            sea_orm::UpdateMany<chat_sessions::Entity>,
        ) -> sea_orm::UpdateMany<chat_sessions::Entity>,
    ) -> Result<(), StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let update = set(chat_sessions::Entity::update_many())
            .filter(tx.org_filter::<chat_sessions::Entity>())
            .filter(chat_sessions::Column::Id.eq(id))
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null());
        let res = update.exec(tx.conn()).await?;
        tx.commit().await?;
        if res.rows_affected == 0 {
            return Err(StorageError::NotFound("session"));
        }
        Ok(())
    }
}

/// Titles longer than this are cut when a session is named after its first question.
const AUTO_TITLE_CHARS: usize = 80;

impl Sessions {
    /// Appends one turn to the caller's live session, in one transaction: `messages` (display
    /// history; each gets a `timestamp`) and `context` (what the model sees next time) are
    /// written together, and a session still called "New chat" is named after `first_query`.
    pub async fn append_turn(
        &self,
        who: &Principal,
        id: Uuid,
        messages: Vec<serde_json::Value>,
        context: Vec<serde_json::Value>,
        first_query: Option<&str>,
    ) -> Result<(), StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let turn = (messages, context, first_query);
        append_in(tx.conn(), self.db.backend(), who, id, turn).await?;
        tx.commit().await
    }

    /// What the model has seen in this session so far, to rebuild a session's context.
    pub async fn llm_context(
        &self,
        who: &Principal,
        id: Uuid,
    ) -> Result<Vec<serde_json::Value>, StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let row = tx
            .select::<chat_sessions::Entity>()
            .filter(chat_sessions::Column::Id.eq(id))
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null())
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("session"))?;
        tx.commit().await?;
        Ok(match row.llm_context_history {
            serde_json::Value::Array(items) => items,
            _ => Vec::new(),
        })
    }
}

/// Appends a turn's messages to a session's history and model context, inside the caller's
/// transaction (an org transaction, or the turn writer's batch). The session must be `who`'s
/// and not deleted; the filters name the org and user explicitly, so this holds in a system
/// transaction too.
pub(crate) async fn append_in<C: ConnectionTrait>(
    conn: &C,
    backend: sea_orm::DbBackend,
    who: &Principal,
    id: Uuid,
    (messages, context, first_query): (
        Vec<serde_json::Value>,
        Vec<serde_json::Value>,
        Option<&str>,
    ),
) -> Result<(), StorageError> {
    let mut select = chat_sessions::Entity::find()
        .filter(chat_sessions::Column::OrgId.eq(who.org_id))
        .filter(chat_sessions::Column::Id.eq(id))
        .filter(chat_sessions::Column::UserId.eq(who.user_id))
        .filter(chat_sessions::Column::DeletedAt.is_null());
    if backend == sea_orm::DbBackend::Postgres {
        // Two turns never interleave in one session, but a rename may race with us.
        select = select.lock_exclusive();
    }
    let row = select
        .one(conn)
        .await?
        .ok_or(StorageError::NotFound("session"))?;
    let now = Utc::now();
    let mut history = match row.messages {
        serde_json::Value::Array(items) => items,
        _ => Vec::new(),
    };
    for mut m in messages {
        if let Some(obj) = m.as_object_mut() {
            obj.entry("timestamp")
                .or_insert_with(|| serde_json::json!(now));
        }
        history.push(m);
    }
    let mut llm_context = match row.llm_context_history {
        serde_json::Value::Array(items) => items,
        _ => Vec::new(),
    };
    llm_context.extend(context);
    let title = match first_query {
        Some(q) if row.title == "New chat" => {
            let t: String = q
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(AUTO_TITLE_CHARS)
                .collect();
            if t.is_empty() {
                row.title
            } else {
                t
            }
        }
        _ => row.title,
    };
    chat_sessions::Entity::update_many()
        .col_expr(
            chat_sessions::Column::Messages,
            Expr::value(serde_json::Value::Array(history)),
        )
        .col_expr(
            chat_sessions::Column::LlmContextHistory,
            Expr::value(serde_json::Value::Array(llm_context)),
        )
        .col_expr(chat_sessions::Column::Title, Expr::value(title))
        .col_expr(chat_sessions::Column::UpdatedAt, Expr::value(now))
        .filter(chat_sessions::Column::OrgId.eq(who.org_id))
        .filter(chat_sessions::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}
