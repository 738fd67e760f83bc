//! LLM usage: one `llm_usage` row per model call, per-user summaries, and the user's running
//! total cost, cached (Redis on a cluster) because every finished turn reports it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Principal;
use crate::cache::Cache;
use crate::entities::{chat_sessions, llm_usage, llm_usage_totals};
use crate::{Db, StorageError};

/// How long a cached running total may be served before it is rebuilt from the rows.
const TOTAL_TTL: Duration = Duration::from_secs(300);

/// One model call to record.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageRecord {
    pub session_id: Option<Uuid>,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ModelUsage {
    pub provider: String,
    pub model: String,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct UsageSummary {
    pub total_cost_usd: f64,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub by_model: Vec<ModelUsage>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UsageCall {
    pub id: Uuid,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionUsage {
    pub session_id: Uuid,
    pub summary: UsageSummary,
    pub calls: Vec<UsageCall>,
}

#[derive(Clone, Debug)]
pub struct LlmUsage {
    db: Db,
    cache: Cache,
}

fn total_key(user_id: Uuid) -> String {
    format!("aurora:cost:{user_id}")
}

impl LlmUsage {
    pub fn new(db: Db, cache: Cache) -> LlmUsage {
        LlmUsage { db, cache }
    }

    /// Puts a total just read or written in the cache. Totals only grow, so a raise can never
    /// put back an older total written by a slower concurrent call.
    pub(crate) async fn remember_total(
        &self,
        who: &Principal,
        total: f64,
    ) -> Result<(), StorageError> {
        self.remember_totals(&[(who.user_id, total)]).await
    }

    /// [`LlmUsage::remember_total`] for several users (`(user_id, total)`), in one round trip.
    pub(crate) async fn remember_totals(&self, totals: &[(Uuid, f64)]) -> Result<(), StorageError> {
        let items: Vec<(String, f64)> = totals
            .iter()
            .map(|(user_id, total)| (total_key(*user_id), *total))
            .collect();
        self.cache.raise_f64_many(&items, TOTAL_TTL).await
    }

    /// The user's total cost over all their calls: the cache, else the stored running total.
    pub async fn total_cost(&self, who: &Principal) -> Result<f64, StorageError> {
        let key = total_key(who.user_id);
        if let Some(total) = self.cache.get_f64(&key).await? {
            return Ok(total);
        }
        let tx = self.db.org(who.org_id).await?;
        let total = total_in(tx.conn(), who).await?;
        tx.commit().await?;
        self.remember_total(who, total).await?;
        Ok(total)
    }

    /// The user's usage, in total and per model.
    pub async fn summary(&self, who: &Principal) -> Result<UsageSummary, StorageError> {
        self.summary_where(who, None).await
    }

    /// The usage of one of the user's sessions, with every call; `NotFound` when the session is
    /// not theirs.
    pub async fn for_session(
        &self,
        who: &Principal,
        session_id: Uuid,
    ) -> Result<SessionUsage, StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let owned = tx
            .select::<chat_sessions::Entity>()
            .filter(chat_sessions::Column::Id.eq(session_id))
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .one(tx.conn())
            .await?
            .is_some();
        if !owned {
            return Err(StorageError::NotFound("session"));
        }
        let calls = tx
            .select::<llm_usage::Entity>()
            .filter(llm_usage::Column::UserId.eq(who.user_id))
            .filter(llm_usage::Column::SessionId.eq(session_id))
            .order_by_asc(llm_usage::Column::CreatedAt)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        let summary = self.summary_where(who, Some(session_id)).await?;
        let calls = calls
            .into_iter()
            .map(|c| UsageCall {
                id: c.id,
                provider: c.provider,
                model: c.model,
                input_tokens: c.input_tokens,
                output_tokens: c.output_tokens,
                cost_usd: c.cost_usd,
                created_at: c.created_at,
            })
            .collect();
        Ok(SessionUsage {
            session_id,
            summary,
            calls,
        })
    }

    async fn summary_where(
        &self,
        who: &Principal,
        session: Option<Uuid>,
    ) -> Result<UsageSummary, StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let mut query = tx
            .select::<llm_usage::Entity>()
            .select_only()
            .column(llm_usage::Column::Provider)
            .column(llm_usage::Column::Model)
            .column_as(
                Expr::col(llm_usage::Column::Id).count().cast_as("bigint"),
                "calls",
            )
            .column_as(
                Expr::col(llm_usage::Column::InputTokens)
                    .sum()
                    .cast_as("bigint"),
                "input_tokens",
            )
            .column_as(
                Expr::col(llm_usage::Column::OutputTokens)
                    .sum()
                    .cast_as("bigint"),
                "output_tokens",
            )
            .column_as(Expr::col(llm_usage::Column::CostUsd).sum(), "cost_usd")
            .filter(llm_usage::Column::UserId.eq(who.user_id))
            .group_by(llm_usage::Column::Provider)
            .group_by(llm_usage::Column::Model)
            .order_by_asc(llm_usage::Column::Model);
        if let Some(session) = session {
            query = query.filter(llm_usage::Column::SessionId.eq(session));
        }
        let rows = query
            .into_tuple::<(String, String, i64, i64, i64, f64)>()
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        let by_model: Vec<ModelUsage> = rows
            .into_iter()
            .map(
                |(provider, model, calls, input_tokens, output_tokens, cost_usd)| ModelUsage {
                    provider,
                    model,
                    calls,
                    input_tokens,
                    output_tokens,
                    cost_usd,
                },
            )
            .collect();
        Ok(UsageSummary {
            total_cost_usd: by_model.iter().map(|m| m.cost_usd).sum(),
            calls: by_model.iter().map(|m| m.calls).sum(),
            input_tokens: by_model.iter().map(|m| m.input_tokens).sum(),
            output_tokens: by_model.iter().map(|m| m.output_tokens).sum(),
            by_model,
        })
    }
}

impl UsageRecord {
    /// A cost must be a finite, non-negative number.
    pub fn check(&self) -> Result<(), StorageError> {
        if !self.cost_usd.is_finite() || self.cost_usd < 0.0 {
            return Err(StorageError::invalid(
                "cost_usd",
                "must be a non-negative number",
            ));
        }
        Ok(())
    }
}

/// Inserts call rows (each with its user) inside the caller's transaction, in bounded
/// multi-row statements.
pub(crate) async fn insert_in<C: ConnectionTrait>(
    conn: &C,
    recs: &[(&Principal, &UsageRecord)],
) -> Result<(), StorageError> {
    let now = Utc::now();
    for chunk in recs.chunks(1000) {
        insert_chunk(conn, chunk, now).await?;
    }
    Ok(())
}

async fn insert_chunk<C: ConnectionTrait>(
    conn: &C,
    recs: &[(&Principal, &UsageRecord)],
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    let rows = recs.iter().map(|(who, rec)| llm_usage::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(who.org_id),
        user_id: Set(who.user_id),
        session_id: Set(rec.session_id),
        provider: Set(rec.provider.clone()),
        model: Set(rec.model.clone()),
        input_tokens: Set(i64::try_from(rec.input_tokens).unwrap_or(i64::MAX)),
        output_tokens: Set(i64::try_from(rec.output_tokens).unwrap_or(i64::MAX)),
        cost_usd: Set(rec.cost_usd),
        created_at: Set(now),
    });
    llm_usage::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Adds each user's new calls and their cost to the user's running total, inside the caller's
/// transaction (the one that inserts those calls' rows), in one statement for all of them, and
/// returns every listed user's total after it. A user listed with no calls gets their total
/// (and a zero row if they had none).
pub(crate) async fn add_totals_in<C: ConnectionTrait>(
    conn: &C,
    adds: &[(&Principal, i64, f64)],
) -> Result<HashMap<Uuid, f64>, StorageError> {
    let mut totals = HashMap::with_capacity(adds.len());
    if adds.is_empty() {
        return Ok(totals);
    }
    let now = Utc::now();
    // Users in one fixed order: two writers updating the same users' totals then take the row
    // locks in the same order and cannot deadlock.
    let mut adds = adds.to_vec();
    adds.sort_unstable_by_key(|(who, _, _)| who.user_id);
    // Bounded statements: five bound values per user, far under SQLite's 32766.
    for chunk in adds.chunks(1000) {
        let rows = chunk
            .iter()
            .map(|(who, calls, cost)| llm_usage_totals::ActiveModel {
                user_id: Set(who.user_id),
                org_id: Set(who.org_id),
                calls: Set(*calls),
                cost_usd: Set(*cost),
                updated_at: Set(now),
            });
        let upsert = llm_usage_totals::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(llm_usage_totals::Column::UserId)
                    .value(
                        llm_usage_totals::Column::Calls,
                        Expr::cust("llm_usage_totals.calls + excluded.calls"),
                    )
                    .value(
                        llm_usage_totals::Column::CostUsd,
                        Expr::cust("llm_usage_totals.cost_usd + excluded.cost_usd"),
                    )
                    .update_column(llm_usage_totals::Column::UpdatedAt)
                    .to_owned(),
            )
            .exec_with_returning(conn)
            .await?;
        totals.extend(upsert.into_iter().map(|t| (t.user_id, t.cost_usd)));
    }
    Ok(totals)
}

/// `who`'s stored running total (0 before their first call).
pub(crate) async fn total_in<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
) -> Result<f64, StorageError> {
    Ok(llm_usage_totals::Entity::find()
        .filter(llm_usage_totals::Column::OrgId.eq(who.org_id))
        .filter(llm_usage_totals::Column::UserId.eq(who.user_id))
        .one(conn)
        .await?
        .map_or(0.0, |t| t.cost_usd))
}
