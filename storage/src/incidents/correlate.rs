//! The correlator's transaction: one org's waiting alerts placed into its open incidents (or
//! new ones), serialized per org by a transaction-scoped lock so that two nodes (a placement
//! change in flight) never open two incidents for one storm. Which incident an alert joins is
//! the caller's decision (the correlator actor: it has the embeddings); this keeps the rows
//! and counts right and records the feed's events.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use uuid::Uuid;

use super::feed::{self, FeedEvent};
use super::placement;
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
    /// Latest status of each of its alerts, by source, then fingerprint (looked up without
    /// building a key: a pass checks each alert against every open incident).
    alerts: HashMap<String, HashMap<String, String>>,
    /// How many of them fire.
    firing: usize,
    /// Status and severity as loaded: only what this correlation changed is written back, so
    /// a person's edit made meanwhile (a dismissal) is not overwritten.
    loaded: (String, String),
}

impl OpenIncident {
    /// What text similarity compares an alert with.
    pub fn text(&self) -> String {
        OpenIncident::text_of(&self.row.title, self.row.service.as_deref())
    }

    /// The text of an incident titled `title` about `service` (what an alert would open).
    pub fn text_of(title: &str, service: Option<&str>) -> String {
        match service {
            Some(s) => format!("{title} ({s})"),
            None => title.to_string(),
        }
    }

    fn new(row: incidents::Model) -> OpenIncident {
        OpenIncident {
            loaded: (row.status.clone(), row.severity.clone()),
            row,
            groups: HashSet::new(),
            services: HashSet::new(),
            alerts: HashMap::new(),
            firing: 0,
        }
    }

    pub(super) fn loaded_status(&self) -> &str {
        &self.loaded.0
    }

    pub(super) fn loaded_severity(&self) -> &str {
        &self.loaded.1
    }

    /// Investigating or analyzed: new alerts may join it (within the window).
    pub fn takes_alerts(&self) -> bool {
        matches!(self.row.status.as_str(), "investigating" | "analyzed")
    }

    /// Resolved (not dismissed): a firing alert it holds reopens it within the window.
    pub fn is_resolved(&self) -> bool {
        self.row.status == "resolved"
    }

    pub fn holds(&self, alert: &incident_alerts::Model) -> bool {
        self.alerts
            .get(alert.source.as_str())
            .is_some_and(|m| m.contains_key(alert.fingerprint.as_str()))
    }

    /// Takes in an alert placed into it: its group, service and latest status.
    fn note(
        &mut self,
        source: &str,
        fingerprint: &str,
        group: Option<&str>,
        service: Option<&str>,
        status: &str,
    ) {
        if let Some(g) = group {
            if !self.groups.contains(g) {
                self.groups.insert(g.to_string());
            }
        }
        if let Some(s) = service {
            if !self.services.contains(s) {
                self.services.insert(s.to_string());
            }
        }
        let by_fingerprint = match self.alerts.get_mut(source) {
            Some(m) => m,
            None => self.alerts.entry(source.to_string()).or_default(),
        };
        let before = by_fingerprint.insert(fingerprint.to_string(), status.to_string());
        let was_firing = before.as_deref() == Some("firing");
        match (was_firing, status == "firing") {
            (false, true) => self.firing += 1,
            (true, false) => self.firing -= 1,
            _ => {}
        }
    }
}

/// Which open incidents hold an alert, a group or a service, kept as a pass places alerts:
/// matching an alert is a few lookups rather than a walk over every open incident.
#[derive(Default)]
struct Index {
    /// Source, then fingerprint (looked up without building a key).
    alerts: HashMap<String, HashMap<String, Vec<usize>>>,
    groups: HashMap<String, Vec<usize>>,
    services: HashMap<String, Vec<usize>>,
}

impl Index {
    fn build(open: &[OpenIncident]) -> Index {
        let mut index = Index::default();
        for (i, inc) in open.iter().enumerate() {
            for (source, fingerprints) in &inc.alerts {
                for fingerprint in fingerprints.keys() {
                    index.add_alert(i, source, fingerprint);
                }
            }
            for g in &inc.groups {
                push_unique(index.groups.entry(g.clone()).or_default(), i);
            }
            for s in &inc.services {
                push_unique(index.services.entry(s.clone()).or_default(), i);
            }
        }
        index
    }

    fn add_alert(&mut self, i: usize, source: &str, fingerprint: &str) {
        let by_fingerprint = match self.alerts.get_mut(source) {
            Some(m) => m,
            None => self.alerts.entry(source.to_string()).or_default(),
        };
        match by_fingerprint.get_mut(fingerprint) {
            Some(v) => push_unique(v, i),
            None => {
                by_fingerprint.insert(fingerprint.to_string(), vec![i]);
            }
        }
    }

    fn add(&mut self, i: usize, a: &incident_alerts::Model) {
        self.add_alert(i, &a.source, &a.fingerprint);
        for (key, map) in [
            (&a.group_key, &mut self.groups),
            (&a.service, &mut self.services),
        ] {
            if let Some(key) = key {
                match map.get_mut(key.as_str()) {
                    Some(v) => push_unique(v, i),
                    None => {
                        map.insert(key.clone(), vec![i]);
                    }
                }
            }
        }
    }
}

fn push_unique(v: &mut Vec<usize>, i: usize) {
    if !v.contains(&i) {
        v.push(i);
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
    index: Index,
    /// Indexes of incidents changed in this transaction, and whether each is new.
    dirty: HashMap<usize, bool>,
    /// Alerts placed, by where they went (an index of `incidents`, or nowhere): written at
    /// the commit, one statement per incident.
    moves: HashMap<Option<usize>, Vec<Uuid>>,
    resolve_when_clear: bool,
    /// Most analyses of the org waiting at once, and how many wait now (read when first needed).
    max_queued: u32,
    queued: Option<u64>,
}

/// An alert as matching needs it: incident, source, fingerprint, group, service, status.
type AlertKey = (
    Option<Uuid>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

/// What a committed correlation did.
#[derive(Debug, Default)]
pub struct Correlated {
    pub placed: usize,
    /// Incidents it opened (their analyses are queued).
    pub opened: Vec<Uuid>,
    pub events: Vec<FeedEvent>,
    /// The open incidents as this correlation left them, by id: what the next one may reuse
    /// (see [`CorrelationTx::load_open`]).
    pub known: Known,
}

/// Open incidents from an earlier correlation of the org, by id.
pub type Known = HashMap<Uuid, OpenIncident>;

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
            index: Index::default(),
            dirty: HashMap::new(),
            moves: HashMap::new(),
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

    /// The open incidents (indexes of [`CorrelationTx::incidents`]) that hold `alert`.
    pub fn holders(&self, alert: &incident_alerts::Model) -> &[usize] {
        self.index
            .alerts
            .get(alert.source.as_str())
            .and_then(|m| m.get(alert.fingerprint.as_str()))
            .map_or(&[], Vec::as_slice)
    }

    /// The open incidents that hold `alert`, or an alert of its group or service.
    pub fn related(&self, alert: &incident_alerts::Model) -> Vec<usize> {
        let mut out = self.holders(alert).to_vec();
        let lists = [
            alert
                .group_key
                .as_deref()
                .and_then(|g| self.index.groups.get(g)),
            alert
                .service
                .as_deref()
                .and_then(|s| self.index.services.get(s)),
        ];
        for i in lists.into_iter().flatten().flatten() {
            push_unique(&mut out, *i);
        }
        out
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
    /// what their alerts are. The alerts of an incident in `known` whose alert count is still
    /// the one loaded are not read again: only a correlation places alerts, and each one it
    /// places counts, so an unchanged count means an unchanged set (a correlation that did
    /// not commit, or one on another node, changed the count or left it as stored).
    pub async fn load_open(
        &mut self,
        reopen: chrono::Duration,
        mut known: Known,
    ) -> Result<(), StorageError> {
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
        let mut open = Vec::with_capacity(rows.len());
        let mut stale = Vec::new();
        for row in rows {
            let mut inc = OpenIncident::new(row);
            match known.remove(&inc.row.id) {
                Some(k) if k.row.alert_count == inc.row.alert_count => {
                    inc.groups = k.groups;
                    inc.services = k.services;
                    inc.alerts = k.alerts;
                    inc.firing = k.firing;
                }
                _ => stale.push(inc.row.id),
            }
            open.push(inc);
        }
        if !stale.is_empty() {
            use incident_alerts::Column as A;
            let alerts: Vec<AlertKey> = self
                .tx
                .select::<incident_alerts::Entity>()
                .select_only()
                .columns([
                    A::IncidentId,
                    A::Source,
                    A::Fingerprint,
                    A::GroupKey,
                    A::Service,
                    A::Status,
                ])
                .filter(A::IncidentId.is_in(stale))
                // The order they were placed in (by pass, then as each pass took them): an
                // alert's latest status is the one placed last, as a reused set has it.
                .order_by_asc(A::PlacedAt)
                .order_by_asc(A::ReceivedAt)
                .order_by_asc(A::Id)
                .into_tuple()
                .all(self.tx.conn())
                .await?;
            let index: HashMap<Uuid, usize> = open
                .iter()
                .enumerate()
                .map(|(i, o)| (o.row.id, i))
                .collect();
            for (incident_id, source, fingerprint, group, service, status) in alerts {
                if let Some(&i) = incident_id.as_ref().and_then(|id| index.get(id)) {
                    open[i].note(
                        &source,
                        &fingerprint,
                        group.as_deref(),
                        service.as_deref(),
                        &status,
                    );
                }
            }
        }
        self.index = Index::build(&open);
        self.incidents = open;
        Ok(())
    }

    /// Places `alert` as decided (in memory: [`CorrelationTx::commit`] writes it).
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
                self.incidents.push(OpenIncident::new(row));
                let i = self.incidents.len() - 1;
                self.dirty.insert(i, true);
                Some(i)
            }
        };
        self.moves.entry(target).or_default().push(alert.id);
        if let Some(i) = target {
            let resolve_when_clear = self.resolve_when_clear;
            self.index.add(i, alert);
            let inc = &mut self.incidents[i];
            remember(inc, alert);
            let row = &mut inc.row;
            row.alert_count += 1;
            row.firing_count = inc.firing as i32;
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

    /// Writes the new incidents, the placements, the changed incidents and their feed events
    /// (a few statements per incident touched, however many alerts), and commits.
    pub async fn commit(self, placed: usize) -> Result<Correlated, StorageError> {
        let mut out = Correlated {
            placed,
            ..Default::default()
        };
        let org_id = self.tx.org_id();
        let conn = self.tx.conn();
        let now = Utc::now();
        let mut dirty: Vec<(usize, bool)> = self.dirty.into_iter().collect();
        dirty.sort();
        // New incidents first (the placements refer to them), as this correlation left them.
        let new: Vec<usize> = dirty
            .iter()
            .filter(|(_, new)| *new)
            .map(|(i, _)| *i)
            .collect();
        for chunk in new.chunks(500) {
            let rows = chunk
                .iter()
                .map(|i| incidents::ActiveModel::from(self.incidents[*i].row.clone()));
            incidents::Entity::insert_many(rows)
                .exec_without_returning(conn)
                .await?;
        }
        let moves: Vec<(Uuid, Option<Uuid>)> = self
            .moves
            .iter()
            .flat_map(|(target, ids)| {
                let incident = target.map(|i| self.incidents[i].row.id);
                ids.iter().map(move |id| (*id, incident))
            })
            .collect();
        if placement::place_alerts(&self.tx, now, &moves).await? != moves.len() as u64 {
            // Placed by another correlation meanwhile (the org lock rules this out on
            // PostgreSQL): refused, so that no count is ever taken twice.
            return Err(StorageError::Conflict(
                "an alert was placed meanwhile".into(),
            ));
        }
        let existing: Vec<&OpenIncident> = dirty
            .iter()
            .filter(|(_, new)| !*new)
            .map(|(i, _)| &self.incidents[*i])
            .collect();
        placement::update_incidents(&self.tx, &existing).await?;
        let mut events = Vec::with_capacity(dirty.len());
        for (i, new) in dirty {
            let inc = &self.incidents[i];
            let row = &inc.row;
            if new {
                out.opened.push(row.id);
            }
            let change = match (new, row.status.as_str()) {
                (true, _) => "created",
                (false, "resolved") if inc.loaded.0 != "resolved" => "resolved",
                (false, _) if inc.loaded.0 == "resolved" && row.status != "resolved" => "reopened",
                _ => "updated",
            };
            events.push((row.id, incident_event(row, change)));
        }
        out.events = feed::record_many(conn, org_id, "incident", events).await?;
        self.tx.commit().await?;
        out.known = self
            .incidents
            .into_iter()
            .map(|mut inc| {
                // Only the alert count and sets are reused (the row is read again): the
                // long texts are not kept between passes.
                let row = &mut inc.row;
                (row.summary, row.root_cause, row.remediation, row.notes) =
                    (None, None, None, None);
                inc.loaded = (row.status.clone(), row.severity.clone());
                (inc.row.id, inc)
            })
            .collect();
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
    inc.note(
        &a.source,
        &a.fingerprint,
        a.group_key.as_deref(),
        a.service.as_deref(),
        &a.status,
    );
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
