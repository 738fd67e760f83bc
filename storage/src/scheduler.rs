//! The periodic jobs' cluster-wide record. Every node computes the same fire times from the
//! same cron expression; a node runs a job for a fire time only if one conditional update
//! moves the job's `period` to it, which exactly one node's update can do. So each job runs
//! once per period across the cluster, not once per node, with no leader to elect.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::entities::{api_tokens, invitations, scheduler_jobs};
use crate::{Db, StorageError};

/// How long a claimed run may go without saying it ended before another node may run the job.
pub const MAX_RUN: chrono::Duration = chrono::Duration::minutes(30);

#[derive(Clone)]
pub struct Schedule {
    db: Db,
}

impl Schedule {
    pub fn new(db: Db) -> Schedule {
        Schedule { db }
    }

    /// Claims fire time `period` (unix seconds) of job `name` for `node`: true for exactly one
    /// caller per period, and only once the job's last run has ended.
    pub async fn claim(&self, name: &str, period: i64, node: &str) -> Result<bool, StorageError> {
        let tx = self.db.system().await?;
        let now = Utc::now();
        let first = scheduler_jobs::ActiveModel {
            name: Set(name.into()),
            period: Set(i64::MIN),
            node: Set(String::new()),
            started_at: Set(now),
            finished_at: Set(Some(now)),
            outcome: Set(None),
            detail: Set(None),
            duration_ms: Set(None),
        };
        scheduler_jobs::Entity::insert(first)
            .on_conflict(
                OnConflict::column(scheduler_jobs::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(tx.conn())
            .await?;
        let claimed = scheduler_jobs::Entity::update_many()
            .col_expr(scheduler_jobs::Column::Period, Expr::value(period))
            .col_expr(scheduler_jobs::Column::Node, Expr::value(node))
            .col_expr(scheduler_jobs::Column::StartedAt, Expr::value(now))
            .col_expr(
                scheduler_jobs::Column::FinishedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                scheduler_jobs::Column::Outcome,
                Expr::value(Option::<String>::None),
            )
            .filter(scheduler_jobs::Column::Name.eq(name))
            .filter(scheduler_jobs::Column::Period.lt(period))
            // Not while the last run goes on (on whichever node): a job slower than its period
            // skips periods rather than running twice at once. A run whose node died without
            // saying it ended is given up after MAX_RUN.
            .filter(
                sea_orm::Condition::any()
                    .add(scheduler_jobs::Column::FinishedAt.is_not_null())
                    .add(scheduler_jobs::Column::StartedAt.lt(now - MAX_RUN)),
            )
            .exec(tx.conn())
            .await?
            .rows_affected;
        tx.commit().await?;
        Ok(claimed == 1)
    }

    /// Records how the claimed run of `name` for `period` ended.
    pub async fn finish(
        &self,
        name: &str,
        period: i64,
        outcome: &str,
        detail: &str,
        duration_ms: i64,
    ) -> Result<(), StorageError> {
        let tx = self.db.system().await?;
        scheduler_jobs::Entity::update_many()
            .col_expr(scheduler_jobs::Column::FinishedAt, Expr::value(Utc::now()))
            .col_expr(scheduler_jobs::Column::Outcome, Expr::value(outcome))
            .col_expr(
                scheduler_jobs::Column::Detail,
                Expr::value(detail.chars().take(500).collect::<String>()),
            )
            .col_expr(scheduler_jobs::Column::DurationMs, Expr::value(duration_ms))
            .filter(scheduler_jobs::Column::Name.eq(name))
            .filter(scheduler_jobs::Column::Period.eq(period))
            .exec(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every job's last run, cluster-wide.
    pub async fn last_runs(&self) -> Result<Vec<scheduler_jobs::Model>, StorageError> {
        let tx = self.db.system().await?;
        let rows = scheduler_jobs::Entity::find()
            .order_by_asc(scheduler_jobs::Column::Name)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Deletes API tokens expired before `before`, and invitations expired or used before
    /// it. Returns (tokens, invitations) deleted.
    pub async fn purge_expired(&self, before: DateTime<Utc>) -> Result<(u64, u64), StorageError> {
        let tx = self.db.system().await?;
        let tokens = api_tokens::Entity::delete_many()
            .filter(api_tokens::Column::ExpiresAt.lt(before))
            .exec(tx.conn())
            .await?
            .rows_affected;
        let invites = invitations::Entity::delete_many()
            .filter(
                invitations::Column::ExpiresAt
                    .lt(before)
                    .or(invitations::Column::AcceptedAt.lt(before)),
            )
            .exec(tx.conn())
            .await?
            .rows_affected;
        tx.commit().await?;
        Ok((tokens, invites))
    }
}
