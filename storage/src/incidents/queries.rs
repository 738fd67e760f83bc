//! What people (and the agent's `incident_lookup` tool) read and change: incident lists with
//! filters and cursor pagination, an incident's detail, edits, manual incidents, analyses run
//! again, and the feed's stored events for resuming.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

use super::correlate::incident_event;
use super::feed::{self, FeedEvent};
use super::{Incidents, Severity};
use crate::auth::Principal;
use crate::entities::{
    incident_alerts, incident_citations, incident_events, incident_thoughts, incidents,
};
use crate::{audit, StorageError};

/// Statuses a person may set.
pub const STATUSES: &[&str] = &["investigating", "analyzed", "resolved", "dismissed"];

/// Filters of an incident list.
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub status: Option<String>,
    pub severity: Option<Severity>,
    pub service: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// The last id of the previous page (ids are time-ordered): the next page starts after.
    pub before: Option<Uuid>,
    pub limit: u64,
}

/// An incident with what it rests on.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: incidents::Model,
    pub alerts: Vec<incident_alerts::Model>,
    pub thoughts: Vec<incident_thoughts::Model>,
    pub citations: Vec<incident_citations::Model>,
}

/// A person's edit of an incident; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct IncidentPatch {
    pub status: Option<String>,
    pub severity: Option<Severity>,
    pub title: Option<String>,
    pub notes: Option<String>,
}

/// A manual incident.
#[derive(Clone, Debug)]
pub struct ManualIncident {
    pub title: String,
    pub severity: Severity,
    pub service: Option<String>,
    pub description: String,
}

impl Incidents {
    /// The org's incidents, newest first.
    pub async fn list(
        &self,
        org_id: Uuid,
        f: &IncidentFilter,
    ) -> Result<Vec<incidents::Model>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let mut q = tx.select::<incidents::Entity>();
        if let Some(s) = &f.status {
            q = q.filter(incidents::Column::Status.eq(s.clone()));
        }
        if let Some(s) = f.severity {
            q = q.filter(incidents::Column::Severity.eq(s.as_str()));
        }
        if let Some(s) = &f.service {
            q = q.filter(incidents::Column::Service.eq(s.clone()));
        }
        if let Some(t) = f.since {
            q = q.filter(incidents::Column::StartedAt.gte(t));
        }
        if let Some(b) = f.before {
            q = q.filter(incidents::Column::Id.lt(b));
        }
        let rows = q
            .order_by_desc(incidents::Column::Id)
            .limit(f.limit.clamp(1, 200))
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// One incident of the org with its alerts, thoughts and citations.
    pub async fn detail(&self, org_id: Uuid, id: Uuid) -> Result<IncidentDetail, StorageError> {
        let tx = self.db.org(org_id).await?;
        let incident = tx
            .select::<incidents::Entity>()
            .filter(incidents::Column::Id.eq(id))
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("incident"))?;
        let alerts = tx
            .select::<incident_alerts::Entity>()
            .filter(incident_alerts::Column::IncidentId.eq(id))
            .order_by_asc(incident_alerts::Column::ReceivedAt)
            .limit(1000)
            .all(tx.conn())
            .await?;
        let thoughts = tx
            .select::<incident_thoughts::Entity>()
            .filter(incident_thoughts::Column::IncidentId.eq(id))
            .order_by_asc(incident_thoughts::Column::Seq)
            .limit(2000)
            .all(tx.conn())
            .await?;
        let citations = tx
            .select::<incident_citations::Entity>()
            .filter(incident_citations::Column::IncidentId.eq(id))
            .order_by_asc(incident_citations::Column::CreatedAt)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(IncidentDetail {
            incident,
            alerts,
            thoughts,
            citations,
        })
    }

    /// Applies a person's edit.
    pub async fn patch(
        &self,
        by: &Principal,
        id: Uuid,
        p: IncidentPatch,
    ) -> Result<incidents::Model, StorageError> {
        if let Some(s) = &p.status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(StorageError::invalid(
                    "status",
                    format!("must be one of {}", STATUSES.join(", ")),
                ));
            }
        }
        let title = match &p.title {
            Some(t) => Some(crate::auth::validate_name("title", t, 500)?),
            None => None,
        };
        if p.notes.as_ref().is_some_and(|n| n.chars().count() > 20_000) {
            return Err(StorageError::invalid(
                "notes",
                "longer than 20000 characters",
            ));
        }
        let tx = self.db.org(by.org_id).await?;
        let mut inc = tx
            .select::<incidents::Entity>()
            .filter(incidents::Column::Id.eq(id))
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("incident"))?;
        let now = Utc::now();
        if let Some(s) = p.status {
            if s == "resolved" && inc.status != "resolved" {
                inc.resolved_at = Some(now);
            } else if s != "resolved" && s != "dismissed" {
                inc.resolved_at = None;
            }
            inc.status = s;
        }
        if let Some(s) = p.severity {
            inc.severity = s.as_str().into();
        }
        if let Some(t) = title {
            inc.title = t;
        }
        if let Some(n) = p.notes {
            inc.notes = Some(n);
        }
        inc.updated_at = now;
        incidents::Entity::update_many()
            .col_expr(incidents::Column::Status, Expr::value(inc.status.clone()))
            .col_expr(incidents::Column::ResolvedAt, Expr::value(inc.resolved_at))
            .col_expr(
                incidents::Column::Severity,
                Expr::value(inc.severity.clone()),
            )
            .col_expr(incidents::Column::Title, Expr::value(inc.title.clone()))
            .col_expr(incidents::Column::Notes, Expr::value(inc.notes.clone()))
            .col_expr(incidents::Column::UpdatedAt, Expr::value(now))
            .filter(tx.org_filter::<incidents::Entity>())
            .filter(incidents::Column::Id.eq(id))
            .exec(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "incident.update",
            Some(&id.to_string()),
            serde_json::json!({ "status": inc.status, "severity": inc.severity }),
        )
        .await?;
        let event = feed::record(
            tx.conn(),
            by.org_id,
            id,
            "incident",
            incident_event(&inc, "updated"),
        )
        .await?;
        tx.commit().await?;
        self.feed.publish(vec![event]).await;
        Ok(inc)
    }

    /// Opens an incident by hand; its analysis is queued like any other.
    pub async fn create_manual(
        &self,
        by: &Principal,
        m: ManualIncident,
    ) -> Result<incidents::Model, StorageError> {
        let title = crate::auth::validate_name("title", &m.title, 500)?;
        if m.description.chars().count() > super::alert::MAX_DESCRIPTION {
            return Err(StorageError::invalid("description", "too long"));
        }
        let now = Utc::now();
        let id = Uuid::now_v7();
        let row = incidents::ActiveModel {
            id: Set(id),
            org_id: Set(by.org_id),
            title: Set(title.clone()),
            status: Set("investigating".into()),
            severity: Set(m.severity.as_str().into()),
            source: Set("manual".into()),
            service: Set(m.service.map(|s| s.chars().take(200).collect())),
            started_at: Set(now),
            last_alert_at: Set(now),
            resolved_at: Set(None),
            summary: Set(None),
            root_cause: Set(None),
            remediation: Set(None),
            notes: Set((!m.description.is_empty()).then_some(m.description)),
            rca_status: Set("queued".into()),
            rca_attempts: Set(0),
            rca_run: Set(0),
            rca_node: Set(None),
            rca_heartbeat_at: Set(None),
            rca_error: Set(None),
            alert_count: Set(0),
            firing_count: Set(0),
            session_id: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let tx = self.db.org(by.org_id).await?;
        let inc = incidents::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "incident.create",
            Some(&title),
            serde_json::json!({ "incident_id": id }),
        )
        .await?;
        let event = feed::record(
            tx.conn(),
            by.org_id,
            id,
            "incident",
            incident_event(&inc, "created"),
        )
        .await?;
        tx.commit().await?;
        self.feed.publish(vec![event]).await;
        Ok(inc)
    }

    /// Queues the analysis of `id` again (refused while one runs or waits).
    pub async fn rerun(&self, by: &Principal, id: Uuid) -> Result<incidents::Model, StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let mut inc = tx
            .select::<incidents::Entity>()
            .filter(incidents::Column::Id.eq(id))
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("incident"))?;
        if matches!(inc.rca_status.as_str(), "queued" | "running") {
            return Err(StorageError::Conflict(format!(
                "an analysis of this incident is already {}",
                inc.rca_status
            )));
        }
        inc.rca_status = "queued".into();
        inc.rca_attempts = 0;
        inc.summary = None;
        inc.updated_at = Utc::now();
        incidents::Entity::update_many()
            .col_expr(incidents::Column::RcaStatus, Expr::value("queued"))
            // A new analysis (attempts count from 0 again), not the continuation of one.
            .col_expr(incidents::Column::RcaAttempts, Expr::value(0))
            .col_expr(
                incidents::Column::Summary,
                Expr::value(Option::<String>::None),
            )
            .col_expr(incidents::Column::UpdatedAt, Expr::value(inc.updated_at))
            .filter(tx.org_filter::<incidents::Entity>())
            .filter(incidents::Column::Id.eq(id))
            .exec(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "incident.rca",
            Some(&id.to_string()),
            serde_json::json!({}),
        )
        .await?;
        let event = feed::record(
            tx.conn(),
            by.org_id,
            id,
            "incident",
            incident_event(&inc, "updated"),
        )
        .await?;
        tx.commit().await?;
        self.feed.publish(vec![event]).await;
        Ok(inc)
    }

    /// The org's stored events after `after`, oldest first (a resuming client's backlog).
    pub async fn events_after(
        &self,
        org_id: Uuid,
        after: i64,
        limit: u64,
    ) -> Result<Vec<FeedEvent>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let rows = tx
            .select::<incident_events::Entity>()
            .filter(incident_events::Column::Id.gt(after))
            .order_by_asc(incident_events::Column::Id)
            .limit(limit)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(FeedEvent::from).collect())
    }

    /// The alerts of `incident_id` (the agent's `incident_lookup`).
    pub async fn alerts_of(
        &self,
        org_id: Uuid,
        incident_id: Uuid,
        limit: u64,
    ) -> Result<Vec<incident_alerts::Model>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let rows = tx
            .select::<incident_alerts::Entity>()
            .filter(incident_alerts::Column::IncidentId.eq(incident_id))
            .order_by_desc(incident_alerts::Column::ReceivedAt)
            .limit(limit)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Orgs with alerts that have waited for the correlator since before `older_than`.
    pub async fn orgs_with_waiting_alerts(
        &self,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StorageError> {
        let tx = self.db.system().await?;
        let orgs = incident_alerts::Entity::find()
            .filter(incident_alerts::Column::PlacedAt.is_null())
            .filter(incident_alerts::Column::ReceivedAt.lt(older_than))
            .select_only()
            .column(incident_alerts::Column::OrgId)
            .distinct()
            .limit(1000)
            .into_tuple::<Uuid>()
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(orgs)
    }

    /// Deletes feed events older than `before` (clients resume within the retention).
    pub async fn purge_events(&self, before: DateTime<Utc>) -> Result<u64, StorageError> {
        let tx = self.db.system().await?;
        let n = incident_events::Entity::delete_many()
            .filter(incident_events::Column::CreatedAt.lt(before))
            .exec(tx.conn())
            .await?
            .rows_affected;
        tx.commit().await?;
        Ok(n)
    }
}
