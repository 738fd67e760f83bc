//! The background root-cause analyses' rows: claiming queued analyses (within a per-org limit,
//! cluster-wide), heartbeats, re-queueing those whose node went quiet, the agent account they
//! act as, their thoughts (written as they happen) and their result.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::correlate::incident_event;
use super::feed::{self, FeedEvent};
use super::Incidents;
use crate::auth::{Principal, Role};
use crate::entities::{incident_citations, incident_thoughts, incidents, users};
use crate::StorageError;

/// Longest thought content kept (characters): tool outputs can be long.
pub const MAX_THOUGHT: usize = 16_000;

/// A claimed analysis.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub incident: incidents::Model,
    /// Which analysis of the incident this is (1 for the first).
    pub run: i32,
}

/// One step of an analysis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewThought {
    /// thought | tool_call | tool_result | finding
    pub kind: String,
    pub content: String,
    pub tool_name: Option<String>,
    pub tool_call_id: Option<String>,
}

/// What a finding rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCitation {
    /// kb_chunk | tool_output | alert
    pub kind: String,
    pub reference: String,
    pub title: String,
    pub excerpt: String,
}

/// An analysis' conclusion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcaResult {
    pub summary: String,
    pub root_cause: String,
    pub remediation: String,
    pub citations: Vec<NewCitation>,
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Incidents {
    /// Claims the oldest queued analysis whose org runs fewer than `org_limit` now, for
    /// `node`. Claims are serialized cluster-wide (a transaction lock) so the org limit holds
    /// across nodes.
    pub async fn claim_analysis(
        &self,
        node: &str,
        org_limit: u32,
    ) -> Result<Option<Claimed>, StorageError> {
        let tx = self.db.system().await?;
        let conn = tx.conn();
        if conn.get_database_backend() == DbBackend::Postgres {
            conn.execute_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended('aurora:rca-claim', 0))",
            ))
            .await?;
        }
        // The oldest queued analysis of an org below its limit, in one query: an org at its
        // limit with many queued analyses does not hide the others' behind its own. An
        // incident closed while its analysis waited is not worth a model's time.
        let busy_orgs = Query::select()
            .column(incidents::Column::OrgId)
            .from(incidents::Entity)
            .and_where(incidents::Column::RcaStatus.eq("running"))
            .group_by_col(incidents::Column::OrgId)
            .and_having(ExprTrait::gte(
                ExprTrait::count(Expr::col(incidents::Column::Id)),
                i64::from(org_limit),
            ))
            .to_owned();
        let chosen = incidents::Entity::find()
            .filter(incidents::Column::RcaStatus.eq("queued"))
            .filter(incidents::Column::Status.is_in(["investigating", "analyzed"]))
            .filter(incidents::Column::OrgId.not_in_subquery(busy_orgs))
            .order_by_asc(incidents::Column::CreatedAt)
            .one(conn)
            .await?;
        let Some(mut inc) = chosen else {
            tx.commit().await?;
            return Ok(None);
        };
        let now = Utc::now();
        inc.rca_status = "running".into();
        inc.rca_attempts += 1;
        inc.rca_node = Some(node.into());
        inc.rca_heartbeat_at = Some(now);
        inc.rca_error = None;
        inc.updated_at = now;
        // A re-queued analysis (its node went away: attempts go on counting) continues its
        // run; a new one (attempts counted from 0, by an incident's creation or "analyse
        // again") starts the next. The run is kept on the row: a new analysis that died
        // before its first thought still continues its own run, not the one before.
        if inc.rca_attempts == 1 || inc.rca_run == 0 {
            inc.rca_run += 1;
        }
        let run = inc.rca_run;
        incidents::Entity::update_many()
            .col_expr(incidents::Column::RcaStatus, Expr::value("running"))
            .col_expr(
                incidents::Column::RcaAttempts,
                Expr::value(inc.rca_attempts),
            )
            .col_expr(incidents::Column::RcaNode, Expr::value(node))
            .col_expr(incidents::Column::RcaRun, Expr::value(inc.rca_run))
            .col_expr(incidents::Column::RcaHeartbeatAt, Expr::value(now))
            .col_expr(
                incidents::Column::RcaError,
                Expr::value(Option::<String>::None),
            )
            .col_expr(incidents::Column::UpdatedAt, Expr::value(now))
            .filter(incidents::Column::Id.eq(inc.id))
            .exec(conn)
            .await?;
        let event = feed::record(
            conn,
            inc.org_id,
            inc.id,
            "incident",
            incident_event(&inc, "updated"),
        )
        .await?;
        tx.commit().await?;
        self.feed.publish(vec![event]).await;
        Ok(Some(Claimed { incident: inc, run }))
    }

    /// `node` is still running these analyses. Returns those it still holds: one it lost (it
    /// went quiet too long and another node claimed the analysis) must stop running here.
    pub async fn heartbeat(&self, node: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.db.system().await?;
        incidents::Entity::update_many()
            .col_expr(incidents::Column::RcaHeartbeatAt, Expr::value(Utc::now()))
            .filter(incidents::Column::Id.is_in(ids.to_vec()))
            .filter(incidents::Column::RcaNode.eq(node))
            .filter(incidents::Column::RcaStatus.eq("running"))
            .exec(tx.conn())
            .await?;
        let held = incidents::Entity::find()
            .select_only()
            .column(incidents::Column::Id)
            .filter(incidents::Column::Id.is_in(ids.to_vec()))
            .filter(incidents::Column::RcaNode.eq(node))
            .filter(incidents::Column::RcaStatus.eq("running"))
            .into_tuple::<Uuid>()
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(held)
    }

    /// Queues again the analyses whose node has not said it runs them for `stale` (it died or
    /// left), or that `gone` (nodes that left the cluster) were running. Returns how many.
    pub async fn requeue_stale(
        &self,
        stale: Option<Duration>,
        gone: &[String],
    ) -> Result<u64, StorageError> {
        let mut cond = sea_orm::Condition::any();
        if let Some(stale) = stale {
            cond = cond.add(incidents::Column::RcaHeartbeatAt.lt(Utc::now() - stale));
        }
        if !gone.is_empty() {
            cond = cond.add(incidents::Column::RcaNode.is_in(gone.to_vec()));
        }
        if cond.is_empty() {
            return Ok(0);
        }
        let tx = self.db.system().await?;
        let rows = incidents::Entity::find()
            .filter(incidents::Column::RcaStatus.eq("running"))
            .filter(cond)
            .all(tx.conn())
            .await?;
        let mut events = Vec::new();
        for mut inc in rows {
            inc.rca_status = "queued".into();
            inc.updated_at = Utc::now();
            incidents::Entity::update_many()
                .col_expr(incidents::Column::RcaStatus, Expr::value("queued"))
                .col_expr(incidents::Column::UpdatedAt, Expr::value(inc.updated_at))
                .filter(incidents::Column::Id.eq(inc.id))
                .filter(incidents::Column::RcaStatus.eq("running"))
                .exec(tx.conn())
                .await?;
            events.push(
                feed::record(
                    tx.conn(),
                    inc.org_id,
                    inc.id,
                    "incident",
                    incident_event(&inc, "updated"),
                )
                .await?,
            );
        }
        tx.commit().await?;
        let n = events.len() as u64;
        self.feed.publish(events).await;
        Ok(n)
    }

    /// The org's agent account, created on first use: background runs act as it. It cannot
    /// sign in (sign-in, tokens and the member list skip agent accounts).
    pub async fn agent(&self, org_id: Uuid) -> Result<Principal, StorageError> {
        let email = format!("agent+{org_id}@agents.aurora.invalid");
        let tx = self.db.org(org_id).await?;
        let found = tx
            .select::<users::Entity>()
            .filter(users::Column::Agent.eq(true))
            .one(tx.conn())
            .await?;
        let user = match found {
            Some(u) => u,
            None => {
                let row = users::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    org_id: Set(org_id),
                    email: Set(email),
                    // Never read: sign-in skips agent accounts before it checks a password.
                    password_hash: Set("!agent-account-cannot-sign-in".into()),
                    role: Set(Role::Editor.as_str().into()),
                    created_at: Set(Utc::now()),
                    removed_at: Set(None),
                    agent: Set(true),
                };
                // Two nodes may create it at once: the second finds the first's.
                users::Entity::insert(row)
                    .on_conflict(
                        sea_orm::sea_query::OnConflict::column(users::Column::Email)
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(tx.conn())
                    .await?;
                tx.select::<users::Entity>()
                    .filter(users::Column::Agent.eq(true))
                    .one(tx.conn())
                    .await?
                    .ok_or_else(|| {
                        StorageError::Internal("the org's agent account was not created".into())
                    })?
            }
        };
        tx.commit().await?;
        Ok(Principal {
            user_id: user.id,
            org_id,
            email: user.email,
            role: Role::Editor,
        })
    }

    /// Records the background session that investigates `incident_id`.
    pub async fn set_session(
        &self,
        org_id: Uuid,
        incident_id: Uuid,
        session_id: Uuid,
    ) -> Result<(), StorageError> {
        let tx = self.db.org(org_id).await?;
        incidents::Entity::update_many()
            .col_expr(incidents::Column::SessionId, Expr::value(session_id))
            .filter(tx.org_filter::<incidents::Entity>())
            .filter(incidents::Column::Id.eq(incident_id))
            .exec(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends a step of run `run` of `incident_id` and publishes it.
    pub async fn add_thought(
        &self,
        org_id: Uuid,
        incident_id: Uuid,
        run: i32,
        thought: NewThought,
    ) -> Result<FeedEvent, StorageError> {
        let tx = self.db.org(org_id).await?;
        let seq = tx
            .select::<incident_thoughts::Entity>()
            .filter(incident_thoughts::Column::IncidentId.eq(incident_id))
            .select_only()
            .column_as(incident_thoughts::Column::Seq.max(), "seq")
            .into_tuple::<Option<i32>>()
            .one(tx.conn())
            .await?
            .flatten()
            .unwrap_or(0)
            + 1;
        let row = incident_thoughts::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(org_id),
            incident_id: Set(incident_id),
            run: Set(run),
            seq: Set(seq),
            kind: Set(thought.kind),
            content: Set(cut(&thought.content, MAX_THOUGHT)),
            tool_name: Set(thought.tool_name.map(|s| cut(&s, 64))),
            tool_call_id: Set(thought.tool_call_id.map(|s| cut(&s, 128))),
            created_at: Set(Utc::now()),
        };
        let row = incident_thoughts::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await?;
        let data = serde_json::to_value(&row).unwrap_or_default();
        let event = feed::record(tx.conn(), org_id, incident_id, "thought", data).await?;
        tx.commit().await?;
        self.feed.publish(vec![event.clone()]).await;
        Ok(event)
    }

    /// The steps of `incident_id` so far, in order.
    pub async fn thoughts(
        &self,
        org_id: Uuid,
        incident_id: Uuid,
    ) -> Result<Vec<incident_thoughts::Model>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let rows = tx
            .select::<incident_thoughts::Entity>()
            .filter(incident_thoughts::Column::IncidentId.eq(incident_id))
            .order_by_asc(incident_thoughts::Column::Seq)
            .limit(2000)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Ends run `run` of `incident_id`: with its result (`Ok`) or why it failed (`Err`). A
    /// finished analysis moves an investigating incident to `analyzed`. Does nothing when the
    /// analysis is no longer this node's (re-queued meanwhile).
    pub async fn finish_analysis(
        &self,
        org_id: Uuid,
        incident_id: Uuid,
        run: i32,
        node: &str,
        result: Result<RcaResult, String>,
    ) -> Result<bool, StorageError> {
        let tx = self.db.org(org_id).await?;
        let Some(mut inc) = tx
            .select::<incidents::Entity>()
            .filter(incidents::Column::Id.eq(incident_id))
            .filter(incidents::Column::RcaStatus.eq("running"))
            .filter(incidents::Column::RcaNode.eq(node))
            .one(tx.conn())
            .await?
        else {
            return Ok(false);
        };
        let now = Utc::now();
        inc.updated_at = now;
        match result {
            Ok(r) => {
                inc.rca_status = "done".into();
                inc.summary = Some(cut(&r.summary, 8000));
                inc.root_cause = Some(cut(&r.root_cause, 8000));
                inc.remediation = Some(cut(&r.remediation, 8000));
                if inc.status == "investigating" {
                    inc.status = "analyzed".into();
                }
                for c in r.citations.into_iter().take(50) {
                    let row = incident_citations::ActiveModel {
                        id: Set(Uuid::now_v7()),
                        org_id: Set(org_id),
                        incident_id: Set(incident_id),
                        run: Set(run),
                        kind: Set(cut(&c.kind, 16)),
                        reference: Set(cut(&c.reference, 200)),
                        title: Set(cut(&c.title, 300)),
                        excerpt: Set(cut(&c.excerpt, 2000)),
                        created_at: Set(now),
                    };
                    incident_citations::Entity::insert(row)
                        .exec_without_returning(tx.conn())
                        .await?;
                }
            }
            Err(e) => {
                inc.rca_status = "failed".into();
                inc.rca_error = Some(cut(&e, 2000));
            }
        }
        incidents::Entity::update_many()
            .col_expr(
                incidents::Column::RcaStatus,
                Expr::value(inc.rca_status.clone()),
            )
            .col_expr(
                incidents::Column::RcaError,
                Expr::value(inc.rca_error.clone()),
            )
            .col_expr(incidents::Column::Summary, Expr::value(inc.summary.clone()))
            .col_expr(
                incidents::Column::RootCause,
                Expr::value(inc.root_cause.clone()),
            )
            .col_expr(
                incidents::Column::Remediation,
                Expr::value(inc.remediation.clone()),
            )
            .col_expr(incidents::Column::Status, Expr::value(inc.status.clone()))
            .col_expr(incidents::Column::UpdatedAt, Expr::value(now))
            .filter(tx.org_filter::<incidents::Entity>())
            .filter(incidents::Column::Id.eq(incident_id))
            .exec(tx.conn())
            .await?;
        let event = feed::record(
            tx.conn(),
            org_id,
            incident_id,
            "incident",
            incident_event(&inc, "analyzed"),
        )
        .await?;
        tx.commit().await?;
        self.feed.publish(vec![event]).await;
        Ok(true)
    }

    /// When the analyses running on `node` last said so, for the admin tree.
    pub async fn running_on(
        &self,
        node: &str,
    ) -> Result<Vec<(Uuid, Option<DateTime<Utc>>)>, StorageError> {
        let tx = self.db.system().await?;
        let rows = incidents::Entity::find()
            .filter(incidents::Column::RcaStatus.eq("running"))
            .filter(incidents::Column::RcaNode.eq(node))
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.id, r.rca_heartbeat_at))
            .collect())
    }
}
