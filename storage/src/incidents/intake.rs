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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

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
/// Most alerts in one transaction (past the first delivery): a batch holds its connection,
/// on SQLite the only writer's, for as long as it takes.
const MAX_ALERTS: usize = 5_000;
/// Most rows in one statement (incident_alerts has 16 columns; PostgreSQL takes 65 535
/// parameters, SQLite 32 766).
const MAX_ROWS: usize = 1_000;

struct Delivery {
    org_id: Uuid,
    alerts: Vec<NewAlert>,
    received_at: DateTime<Utc>,
}

type Job = (Delivery, oneshot::Sender<Result<Stored, StorageError>>);

/// The writer tasks, started with the first delivery (inside the runtime that serves it), and
/// again should one have ended (a panic): intake never stays down for the node's life.
#[derive(Clone, Default)]
pub(super) struct AlertWriter {
    shards: Arc<Mutex<Vec<mpsc::Sender<Job>>>>,
}

impl AlertWriter {
    /// The queue of the writer that takes `org_id`'s deliveries: one org's go to one writer, so
    /// its rows are locked by one transaction at a time, in the order they came.
    fn queue(&self, db: &Db, org_id: Uuid) -> mpsc::Sender<Job> {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        if shards.is_empty() {
            // SQLite has one writer connection; PostgreSQL commits two batches at once.
            let writers = match db.backend() {
                DbBackend::Postgres => 2,
                _ => 1,
            };
            shards.extend((0..writers).map(|_| spawn(db)));
        }
        let n = (org_id.as_u128() % shards.len() as u128) as usize;
        if shards[n].is_closed() {
            tracing::error!(
                writer = n,
                "the alert writer had stopped; starting it again"
            );
            shards[n] = spawn(db);
        }
        shards[n].clone()
    }
}

fn spawn(db: &Db) -> mpsc::Sender<Job> {
    let (jobs, rx) = mpsc::channel(MAX_BATCH * 4);
    tokio::spawn(run(db.clone(), rx));
    jobs
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
        let queue = self.writer.queue(&self.db, org_id);
        let (reply, answer) = oneshot::channel();
        let delivery = Delivery {
            org_id,
            alerts,
            received_at,
        };
        let stopped = || StorageError::Internal("the alert writer has stopped".into());
        queue.send((delivery, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut alerts = first.0.alerts.len();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) if alerts + job.0.alerts.len() > MAX_ALERTS => {
                    next = Some(job);
                    break;
                }
                Ok(job) => {
                    alerts += job.0.alerts.len();
                    batch.push(job);
                }
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
            // The database is out of reach, or it is one delivery: each gets the error.
            Err(e) if batch.len() == 1 || e.is_unavailable() => {
                tracing::error!(error = %e, deliveries = batch.len(), "cannot store alerts");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StorageError::Internal(format!(
                        "cannot store the alerts: {e}"
                    ))));
                }
            }
            // The database refused something in the batch (nothing of it was written): each
            // delivery on its own, so only the one it refuses fails.
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

/// Writes `deliveries` in one transaction, each org's alerts under its own row-level-security
/// context (the database refuses a row of another org); returns what each stored.
async fn write(db: &Db, deliveries: &[&Delivery]) -> Result<Vec<Stored>, StorageError> {
    let mut stored: Vec<Stored> = deliveries
        .iter()
        .map(|d| Stored {
            received: d.alerts.len(),
            stored: 0,
        })
        .collect();
    // By org; within it, an alert's k-th delivery in this batch goes in round k: one
    // multi-row upsert may touch a row once only, and the rounds keep each alert's states in
    // the order they came. Row ids are taken in delivery order, which is the order the
    // correlator places alerts received together.
    let mut orgs: BTreeMap<Uuid, Vec<Vec<Item>>> = BTreeMap::new();
    let mut seen: HashMap<(Uuid, &str, &str), usize> = HashMap::new();
    for (n, d) in deliveries.iter().enumerate() {
        let rounds = orgs.entry(d.org_id).or_default();
        for alert in &d.alerts {
            let key = (d.org_id, alert.source.as_str(), alert.fingerprint.as_str());
            let round = seen.entry(key).or_insert(0);
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(Item {
                id: Uuid::now_v7(),
                delivery: n,
                org_id: d.org_id,
                alert,
                received_at: d.received_at,
            });
            *round += 1;
        }
    }
    let Some(first) = orgs.keys().next().copied() else {
        return Ok(stored);
    };
    let mut tx = db.org(first).await?;
    for (org_id, rounds) in orgs {
        tx.switch_org(org_id).await?;
        for mut round in rounds {
            // The same lock order in every transaction: no two batches wait on each other.
            round.sort_by(|a, b| {
                (a.alert.source.as_str(), &a.alert.fingerprint)
                    .cmp(&(b.alert.source.as_str(), &b.alert.fingerprint))
            });
            for chunk in round.chunks(MAX_ROWS) {
                let changed = changed_states(tx.conn(), chunk).await?;
                let rows: Vec<incident_alerts::ActiveModel> = chunk
                    .iter()
                    .filter(|i| {
                        changed.contains(&(
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
                        .exec_without_returning(tx.conn())
                        .await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(stored)
}

struct Item<'a> {
    id: Uuid,
    delivery: usize,
    org_id: Uuid,
    alert: &'a NewAlert,
    received_at: DateTime<Utc>,
}

impl Item<'_> {
    fn row(&self) -> incident_alerts::ActiveModel {
        let a = self.alert;
        incident_alerts::ActiveModel {
            id: Set(self.id),
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

/// Records each item's state (distinct alerts of one org, sorted), changing a known alert only
/// when its status differs; returns the alerts whose state this changed (new ones included):
/// only those are stored as alerts, the rest repeat what was known.
async fn changed_states(
    conn: &impl ConnectionTrait,
    items: &[Item<'_>],
) -> Result<HashSet<(String, String)>, StorageError> {
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
        .returning(Query::returning().columns([C::Source, C::Fingerprint]));
    let stmt = conn.get_database_backend().build(&insert);
    let mut changed = HashSet::new();
    for row in conn.query_all_raw(stmt).await? {
        let source: String = row.try_get("", "source")?;
        let fingerprint: String = row.try_get("", "fingerprint")?;
        changed.insert((source, fingerprint));
    }
    Ok(changed)
}
