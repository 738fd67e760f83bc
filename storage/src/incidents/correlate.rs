//! The correlator's transaction: one org's waiting alerts placed into its open incidents (or
//! new ones), serialized per org by a transaction-scoped lock so that two nodes (a placement
//! change in flight) never open two incidents for one storm. Which incident an alert joins is
//! the caller's decision (the correlator actor: it has the embeddings); this keeps the rows
//! and counts right and records the feed's events.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use uuid::Uuid;

use super::feed::{self, FeedEvent};
use super::{Incidents, Severity};
use crate::entities::{incident_alerts, incidents};
use crate::{OrgTx, StorageError};

/// An open incident as the correlator matches against it.
#[derive(Clone, Debug)]
pub struct OpenIncident {
    pub row: incidents::Model,
    /// Group keys of its alerts.
    pub groups: HashSet<String>,
    /// Services of its alerts.
    pub services: HashSet<String>,
    /// Latest status of each of its alerts, by (source, fingerprint).
    pub alerts: HashMap<(String, String), String>,
    /// Status and severity as loaded: only what this correlation changed is written back, so
    /// a person's edit made meanwhile (a dismissal) is not overwritten.
    loaded: (String, String),
}

impl OpenIncident {
    /// What text similarity compares an alert with.
    pub fn text(&self) -> String {
        match &self.row.service {
            Some(s) => format!("{} ({s})", self.row.title),
            None => self.row.title.clone(),
        }
    }

    fn new(row: incidents::Model) -> OpenIncident {
        OpenIncident {
            loaded: (row.status.clone(), row.severity.clone()),
            row,
            groups: HashSet::new(),
            services: HashSet::new(),
            alerts: HashMap::new(),
        }
    }

    /// Resolved (not dismissed): a firing alert it holds reopens it within the window.
    pub fn is_resolved(&self) -> bool {
        self.row.status == "resolved"
    }

    pub fn holds(&self, alert: &incident_alerts::Model) -> bool {
        self.alerts
            .contains_key(&(alert.source.clone(), alert.fingerprint.clone()))
    }
}

/// Where an alert goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Into the open incident at this index of [`CorrelationTx::incidents`].
    Join(usize),
    /// Into a new incident.
    Open,
    /// Nowhere: a resolution of an alert that no open incident holds.
    Nowhere,
}

pub struct CorrelationTx {
    tx: OrgTx,
    pub incidents: Vec<OpenIncident>,
    /// Indexes of incidents changed in this transaction, and whether each is new.
    dirty: HashMap<usize, bool>,
    resolve_when_clear: bool,
    /// Most analyses of the org waiting at once, and how many wait now (read when first needed).
    max_queued: u32,
    queued: Option<u64>,
}

/// What a committed correlation did.
#[derive(Debug, Default)]
pub struct Correlated {
    pub placed: usize,
    /// Incidents it opened (their analyses are queued).
    pub opened: Vec<Uuid>,
    pub events: Vec<FeedEvent>,
}

impl Incidents {
    /// Begins correlating `org_id`: waits for any other correlation of the org to finish.
    /// `resolve_when_clear`: an incident whose alerts are all resolved resolves.
    pub async fn correlation(
        &self,
        org_id: Uuid,
        resolve_when_clear: bool,
    ) -> Result<CorrelationTx, StorageError> {
        let tx = self.db.org(org_id).await?;
        if tx.conn().get_database_backend() == DbBackend::Postgres {
            tx.conn()
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    [format!("aurora:correlate:{org_id}").into()],
                ))
                .await?;
        }
        Ok(CorrelationTx {
            tx,
            incidents: Vec::new(),
            dirty: HashMap::new(),
            resolve_when_clear,
            max_queued: u32::MAX,
            queued: None,
        })
    }
}

impl CorrelationTx {
    /// At most `max` analyses of the org wait at once: an incident opened beyond that is not
    /// analysed (it says why, and "analyse again" queues it), so a storm of distinct alerts
    /// cannot run up the org's model bill.
    pub fn queue_limit(mut self, max: u32) -> CorrelationTx {
        self.max_queued = max;
        self
    }

    /// The org's alerts waiting to be placed, oldest first.
    pub async fn pending(&self, limit: u64) -> Result<Vec<incident_alerts::Model>, StorageError> {
        Ok(self
            .tx
            .select::<incident_alerts::Entity>()
            .filter(incident_alerts::Column::PlacedAt.is_null())
            .order_by_asc(incident_alerts::Column::ReceivedAt)
            .order_by_asc(incident_alerts::Column::Id)
            .limit(limit)
            .all(self.tx.conn())
            .await?)
    }

    /// Loads the org's open incidents (the 500 with the latest alerts), those resolved within
    /// `reopen` (a flapping alert reopens its incident rather than opening one each time), and
    /// their alerts.
    pub async fn load_open(&mut self, reopen: chrono::Duration) -> Result<(), StorageError> {
        let since = Utc::now()
            .checked_sub_signed(reopen)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let rows = self
            .tx
            .select::<incidents::Entity>()
            .filter(
                sea_orm::Condition::any()
                    .add(incidents::Column::Status.is_in(["investigating", "analyzed"]))
                    .add(
                        sea_orm::Condition::all()
                            .add(incidents::Column::Status.eq("resolved"))
                            .add(incidents::Column::ResolvedAt.gte(since)),
                    ),
            )
            .order_by_desc(incidents::Column::LastAlertAt)
            .limit(500)
            .all(self.tx.conn())
            .await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let alerts = self
            .tx
            .select::<incident_alerts::Entity>()
            .filter(incident_alerts::Column::IncidentId.is_in(ids))
            .order_by_asc(incident_alerts::Column::ReceivedAt)
            .all(self.tx.conn())
            .await?;
        let mut open: Vec<OpenIncident> = rows.into_iter().map(OpenIncident::new).collect();
        let index: HashMap<Uuid, usize> = open
            .iter()
            .enumerate()
            .map(|(i, o)| (o.row.id, i))
            .collect();
        for a in alerts {
            if let Some(&i) = a.incident_id.as_ref().and_then(|id| index.get(id)) {
                remember(&mut open[i], &a);
            }
        }
        self.incidents = open;
        Ok(())
    }

    /// Places `alert` as decided.
    pub async fn place(
        &mut self,
        alert: &incident_alerts::Model,
        place: Place,
    ) -> Result<(), StorageError> {
        let now = Utc::now();
        let target = match place {
            Place::Nowhere => None,
            Place::Join(i) if i < self.incidents.len() => Some(i),
            Place::Join(_) => {
                return Err(StorageError::Internal(
                    "correlation chose an incident it was not given".into(),
                ))
            }
            Place::Open => {
                let mut row = new_incident(alert, now);
                let queued = match self.queued {
                    Some(n) => n,
                    None => {
                        self.tx
                            .select::<incidents::Entity>()
                            .filter(incidents::Column::RcaStatus.eq("queued"))
                            .count(self.tx.conn())
                            .await?
                    }
                };
                if queued >= u64::from(self.max_queued) {
                    row.rca_status = "failed".into();
                    row.rca_error = Some(format!(
                        "not analysed: {queued} analyses of this org were already waiting \
                         (AURORA_RCA_MAX_QUEUED_PER_ORG); analyse it again when they are done"
                    ));
                    self.queued = Some(queued);
                } else {
                    self.queued = Some(queued + 1);
                }
                let row = incidents::Entity::insert(incidents::ActiveModel::from(row))
                    .exec_with_returning(self.tx.conn())
                    .await?;
                self.incidents.push(OpenIncident::new(row));
                let i = self.incidents.len() - 1;
                self.dirty.insert(i, true);
                Some(i)
            }
        };
        let incident_id = target.map(|i| self.incidents[i].row.id);
        let placed = incident_alerts::Entity::update_many()
            .col_expr(
                incident_alerts::Column::IncidentId,
                Expr::value(incident_id),
            )
            .col_expr(incident_alerts::Column::PlacedAt, Expr::value(now))
            .filter(self.tx.org_filter::<incident_alerts::Entity>())
            .filter(incident_alerts::Column::Id.eq(alert.id))
            .filter(incident_alerts::Column::PlacedAt.is_null())
            .exec(self.tx.conn())
            .await?
            .rows_affected;
        if placed == 0 {
            // Placed by another correlation meanwhile (the org lock rules this out on
            // PostgreSQL): refused, so that no count is ever taken twice.
            return Err(StorageError::Conflict(
                "the alert was placed meanwhile".into(),
            ));
        }
        if let Some(i) = target {
            let resolve_when_clear = self.resolve_when_clear;
            let inc = &mut self.incidents[i];
            remember(inc, alert);
            let row = &mut inc.row;
            row.alert_count += 1;
            row.firing_count = inc.alerts.values().filter(|s| *s == "firing").count() as i32;
            row.last_alert_at = row.last_alert_at.max(alert.received_at);
            if alert.status == "firing" {
                let current = Severity::parse(&row.severity).unwrap_or(Severity::Medium);
                let new = Severity::parse(&alert.severity).unwrap_or(Severity::Medium);
                row.severity = current.max(new).as_str().into();
            }
            if row.status == "resolved" && alert.status == "firing" {
                // Flapping: the incident it was part of opens again.
                row.status = "investigating".into();
                row.resolved_at = None;
            } else if resolve_when_clear && row.firing_count == 0 && row.status != "resolved" {
                row.status = "resolved".into();
                row.resolved_at = Some(now);
            }
            row.updated_at = now;
            self.dirty.entry(i).or_insert(false);
        }
        Ok(())
    }

    /// Writes the changed incidents and their feed events, and commits.
    pub async fn commit(self, placed: usize) -> Result<Correlated, StorageError> {
        let mut out = Correlated {
            placed,
            ..Default::default()
        };
        let org_id = self.tx.org_id();
        let mut dirty: Vec<(usize, bool)> = self.dirty.into_iter().collect();
        dirty.sort();
        for (i, new) in dirty {
            let inc = &self.incidents[i];
            let row = &inc.row;
            // The counts are the correlator's alone (one at a time per org); status and
            // severity are written only when this correlation changed them, and a status only
            // over the one it was loaded with.
            let mut update = incidents::Entity::update_many()
                .col_expr(incidents::Column::AlertCount, Expr::value(row.alert_count))
                .col_expr(
                    incidents::Column::FiringCount,
                    Expr::value(row.firing_count),
                )
                .col_expr(
                    incidents::Column::LastAlertAt,
                    Expr::value(row.last_alert_at),
                )
                .col_expr(incidents::Column::UpdatedAt, Expr::value(row.updated_at))
                .filter(self.tx.org_filter::<incidents::Entity>())
                .filter(incidents::Column::Id.eq(row.id));
            if row.severity != inc.loaded.1 {
                update = update.col_expr(
                    incidents::Column::Severity,
                    Expr::value(row.severity.clone()),
                );
            }
            update.exec(self.tx.conn()).await?;
            if row.status != inc.loaded.0 {
                incidents::Entity::update_many()
                    .col_expr(incidents::Column::Status, Expr::value(row.status.clone()))
                    .col_expr(incidents::Column::ResolvedAt, Expr::value(row.resolved_at))
                    .filter(self.tx.org_filter::<incidents::Entity>())
                    .filter(incidents::Column::Id.eq(row.id))
                    .filter(incidents::Column::Status.eq(inc.loaded.0.clone()))
                    .exec(self.tx.conn())
                    .await?;
            }
            if new {
                out.opened.push(row.id);
            }
            let change = match (new, row.status.as_str()) {
                (true, _) => "created",
                (false, "resolved") if inc.loaded.0 != "resolved" => "resolved",
                (false, _) if inc.loaded.0 == "resolved" && row.status != "resolved" => "reopened",
                _ => "updated",
            };
            let event = feed::record(
                self.tx.conn(),
                org_id,
                row.id,
                "incident",
                incident_event(row, change),
            )
            .await?;
            out.events.push(event);
        }
        self.tx.commit().await?;
        Ok(out)
    }
}

/// An incident as the feed carries it.
pub fn incident_event(row: &incidents::Model, change: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(row).unwrap_or_default();
    v["change"] = serde_json::json!(change);
    v
}

fn remember(inc: &mut OpenIncident, a: &incident_alerts::Model) {
    if let Some(g) = &a.group_key {
        inc.groups.insert(g.clone());
    }
    if let Some(s) = &a.service {
        inc.services.insert(s.clone());
    }
    inc.alerts
        .insert((a.source.clone(), a.fingerprint.clone()), a.status.clone());
}

fn new_incident(alert: &incident_alerts::Model, now: DateTime<Utc>) -> incidents::Model {
    incidents::Model {
        id: Uuid::now_v7(),
        org_id: alert.org_id,
        title: alert.title.clone(),
        status: "investigating".into(),
        severity: alert.severity.clone(),
        source: alert.source.clone(),
        service: alert.service.clone(),
        started_at: alert.started_at.min(alert.received_at),
        last_alert_at: alert.received_at,
        resolved_at: None,
        summary: None,
        root_cause: None,
        remediation: None,
        notes: None,
        rca_status: "queued".into(),
        rca_attempts: 0,
        rca_run: 0,
        rca_node: None,
        rca_heartbeat_at: None,
        rca_error: None,
        alert_count: 0,
        firing_count: 0,
        session_id: None,
        created_at: now,
        updated_at: now,
    }
}
