//! Storing deliveries' alerts: durable before the webhook is answered, and a repeated delivery
//! of an alert in the state it already has stores nothing.
//!
//! With group commit, as the turn writer does for turns: deliveries that arrive while a batch
//! is being written queue up and go into the next one, so a storm costs the database one
//! transaction and a few multi-row statements per batch rather than a transaction and two
//! statements per alert, and an idle system still writes each delivery at once. A caller's
//! [`Incidents::store_alerts`] returns only once its delivery is committed. A batch that the
//! database refuses is written again delivery by delivery, so one bad delivery fails alone
//! and each stays all or nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Incidents, NewAlert};
use crate::entities::{alert_fingerprints, incident_alerts};
use crate::{Db, StorageError};

/// What a delivery stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Alerts in the delivery.
    pub received: usize,
    /// Those that changed an alert's state (the rest repeated what was known).
    pub stored: usize,
}

/// Most deliveries in one transaction.
const MAX_BATCH: usize = 256;
/// Most rows in one statement (incident_alerts has 16 columns; PostgreSQL takes 65 535
/// parameters, SQLite 32 766).
const MAX_ROWS: usize = 1_000;

struct Delivery {
    org_id: Uuid,
    alerts: Vec<NewAlert>,
    received_at: DateTime<Utc>,
}

type Job = (Delivery, oneshot::Sender<Result<Stored, StorageError>>);

/// The writer tasks, started with the first delivery (inside the runtime that serves it).
#[derive(Clone, Default)]
pub(super) struct AlertWriter {
    shards: Arc<OnceLock<Vec<mpsc::Sender<Job>>>>,
}

impl AlertWriter {
    fn shards(&self, db: &Db) -> &[mpsc::Sender<Job>] {
        self.shards.get_or_init(|| {
            // SQLite has one writer connection; PostgreSQL commits two batches at once.
            let writers = match db.backend() {
                DbBackend::Postgres => 2,
                _ => 1,
            };
            (0..writers)
                .map(|_| {
                    let (jobs, rx) = mpsc::channel(MAX_BATCH * 4);
                    tokio::spawn(run(db.clone(), rx));
                    jobs
                })
                .collect()
        })
    }
}

impl Incidents {
    /// Stores `alerts` of `org_id`, all or none, and returns once they are committed.
    pub async fn store_alerts(
        &self,
        org_id: Uuid,
        alerts: Vec<NewAlert>,
        received_at: DateTime<Utc>,
    ) -> Result<Stored, StorageError> {
        if alerts.is_empty() {
            return Ok(Stored::default());
        }
        let shards = self.writer.shards(&self.db);
        // One org's deliveries go to one writer: its rows are locked by one transaction at a
        // time, and in the order they came.
        let shard = (org_id.as_u128() % shards.len() as u128) as usize;
        let (reply, answer) = oneshot::channel();
        let delivery = Delivery {
            org_id,
            alerts,
            received_at,
        };
        let stopped = || StorageError::Internal("the alert writer has stopped".into());
        shards[shard]
            .send((delivery, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let deliveries: Vec<&Delivery> = batch.iter().map(|(d, _)| d).collect();
        match write(&db, &deliveries).await {
            Ok(stored) => {
                for ((_, reply), stored) in batch.drain(..).zip(stored) {
                    let _ = reply.send(Ok(stored));
                }
            }
            Err(e) if batch.len() == 1 => {
                let _ = batch.remove(0).1.send(Err(e));
            }
            // Refused as a whole (nothing of it was written): each delivery on its own, so
            // only the one the database refuses fails.
            Err(e) => {
                tracing::warn!(error = %e, deliveries = batch.len(), "alert batch refused; writing each delivery alone");
                for (delivery, reply) in batch.drain(..) {
                    let _ = reply.send(
                        write(&db, &[&delivery])
                            .await
                            .map(|mut s| s.pop().unwrap_or_default()),
                    );
                }
            }
        }
    }
}

/// Writes `deliveries` in one transaction (a system one: a batch spans orgs, and every row
/// names its org); returns what each stored.
async fn write(db: &Db, deliveries: &[&Delivery]) -> Result<Vec<Stored>, StorageError> {
    let tx = db.system().await?;
    let conn = tx.conn();
    let mut stored: Vec<Stored> = deliveries
        .iter()
        .map(|d| Stored {
            received: d.alerts.len(),
            stored: 0,
        })
        .collect();
    // An alert's k-th delivery in this batch goes in round k: one multi-row upsert may touch
    // a row once only, and the rounds keep each alert's states in the order they came.
    let mut seen: HashMap<(Uuid, &str, &str), usize> = HashMap::new();
    let mut rounds: Vec<Vec<Item>> = Vec::new();
    for (n, d) in deliveries.iter().enumerate() {
        for alert in &d.alerts {
            let key = (d.org_id, alert.source.as_str(), alert.fingerprint.as_str());
            let round = seen.entry(key).or_insert(0);
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(Item {
                delivery: n,
                org_id: d.org_id,
                alert,
                received_at: d.received_at,
            });
            *round += 1;
        }
    }
    for mut round in rounds {
        // The same lock order in every transaction: no two batches wait on each other.
        round.sort_by(|a, b| {
            (a.org_id, a.alert.source.as_str(), &a.alert.fingerprint).cmp(&(
                b.org_id,
                b.alert.source.as_str(),
                &b.alert.fingerprint,
            ))
        });
        for chunk in round.chunks(MAX_ROWS) {
            let changed = changed_states(conn, chunk).await?;
            let rows: Vec<incident_alerts::ActiveModel> = chunk
                .iter()
                .filter(|i| {
                    changed.contains(&(
                        i.org_id,
                        i.alert.source.as_str().to_string(),
                        i.alert.fingerprint.clone(),
                    ))
                })
                .map(|i| {
                    stored[i.delivery].stored += 1;
                    i.row()
                })
                .collect();
            if !rows.is_empty() {
                incident_alerts::Entity::insert_many(rows)
                    .exec_without_returning(conn)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(stored)
}

struct Item<'a> {
    delivery: usize,
    org_id: Uuid,
    alert: &'a NewAlert,
    received_at: DateTime<Utc>,
}

impl Item<'_> {
    fn row(&self) -> incident_alerts::ActiveModel {
        let a = self.alert;
        incident_alerts::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(self.org_id),
            incident_id: Set(None),
            source: Set(a.source.as_str().into()),
            fingerprint: Set(a.fingerprint.clone()),
            group_key: Set(a.group.clone()),
            status: Set(a.status.as_str().into()),
            title: Set(a.title.clone()),
            description: Set(a.description.clone()),
            severity: Set(a.severity.as_str().into()),
            service: Set(a.service.clone()),
            labels: Set(serde_json::to_value(&a.labels).unwrap_or_default()),
            raw: Set(a.raw.clone()),
            started_at: Set(a.started_at.unwrap_or(self.received_at)),
            received_at: Set(self.received_at),
            placed_at: Set(None),
        }
    }
}

/// Records each item's state (distinct alerts, sorted), changing a known alert only when its
/// status differs; returns the alerts whose state this changed (new ones included): only those
/// are stored as alerts, the rest repeat what was known.
async fn changed_states(
    conn: &impl ConnectionTrait,
    items: &[Item<'_>],
) -> Result<HashSet<(Uuid, String, String)>, StorageError> {
    use alert_fingerprints::Column as C;
    let mut insert = Query::insert();
    insert.into_table(alert_fingerprints::Entity).columns([
        C::OrgId,
        C::Source,
        C::Fingerprint,
        C::Status,
        C::UpdatedAt,
    ]);
    for i in items {
        insert.values_panic([
            i.org_id.into(),
            i.alert.source.as_str().into(),
            i.alert.fingerprint.clone().into(),
            i.alert.status.as_str().into(),
            i.received_at.into(),
        ]);
    }
    insert
        .on_conflict(
            OnConflict::columns([C::OrgId, C::Source, C::Fingerprint])
                .update_columns([C::Status, C::UpdatedAt])
                .action_and_where(
                    Expr::col((alert_fingerprints::Entity, C::Status))
                        .ne(Expr::col((Alias::new("excluded"), C::Status))),
                )
                .to_owned(),
        )
        .returning(Query::returning().columns([C::OrgId, C::Source, C::Fingerprint]));
    let stmt = conn.get_database_backend().build(&insert);
    let mut changed = HashSet::new();
    for row in conn.query_all_raw(stmt).await? {
        let org_id: Uuid = row.try_get("", "org_id")?;
        let source: String = row.try_get("", "source")?;
        let fingerprint: String = row.try_get("", "fingerprint")?;
        changed.insert((org_id, source, fingerprint));
    }
    Ok(changed)
}
