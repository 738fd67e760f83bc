//! The live feed of incident changes and thoughts. Every change is first an `incident_events`
//! row (numbered by the database: what a client resumes from with `Last-Event-ID`), written in
//! the transaction that made the change; after the commit it is published. With a shared cache
//! (Redis) it goes to one stream that every node follows, so a client on any node sees what
//! any node wrote; on the embedded backend (one node) it goes straight to this node's clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{ConnectionTrait, FromQueryResult, Iterable};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::cache::Cache;
use crate::entities::incident_events;
use crate::StorageError;

/// The stream in the shared cache every node follows.
pub const FEED_STREAM: &str = "aurora:incidents:feed";

/// One event of the feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedEvent {
    /// The `incident_events` row: the SSE id.
    pub id: i64,
    pub org_id: Uuid,
    pub incident_id: Uuid,
    /// `incident` (created or changed: `data` is the incident) or `thought` (`data` is it).
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<incident_events::Model> for FeedEvent {
    fn from(m: incident_events::Model) -> FeedEvent {
        FeedEvent {
            id: m.id,
            org_id: m.org_id,
            incident_id: m.incident_id,
            kind: m.kind,
            data: m.data,
            created_at: m.created_at,
        }
    }
}

/// Writes an event row in the caller's transaction; the caller publishes it after commit.
pub(crate) async fn record(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    incident_id: Uuid,
    kind: &str,
    data: serde_json::Value,
) -> Result<FeedEvent, StorageError> {
    record_many(conn, org_id, kind, vec![(incident_id, data)])
        .await?
        .pop()
        .ok_or_else(|| StorageError::Internal("the feed event was not returned".into()))
}

/// Writes one event row per `(incident, data)` in one statement, in the caller's transaction;
/// returns them numbered, in order. The caller publishes them after commit.
pub(crate) async fn record_many(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    kind: &str,
    events: Vec<(Uuid, serde_json::Value)>,
) -> Result<Vec<FeedEvent>, StorageError> {
    use incident_events::Column as C;
    let mut out = Vec::with_capacity(events.len());
    let now = Utc::now();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let mut insert = Query::insert();
        insert
            .into_table(incident_events::Entity)
            .columns([C::OrgId, C::IncidentId, C::Kind, C::Data, C::CreatedAt])
            .returning(Query::returning().columns(incident_events::Column::iter()));
        for (incident_id, data) in events.by_ref().take(1_000) {
            insert.values_panic([
                org_id.into(),
                incident_id.into(),
                kind.into(),
                data.into(),
                now.into(),
            ]);
        }
        let stmt = conn.get_database_backend().build(&insert);
        let mut rows = conn
            .query_all_raw(stmt)
            .await?
            .iter()
            .map(|r| incident_events::Model::from_query_result(r, ""))
            .collect::<Result<Vec<_>, _>>()?;
        // Numbered in the order given (the ids come from one sequence, in row order).
        rows.sort_by_key(|r| r.id);
        out.extend(rows.into_iter().map(FeedEvent::from));
    }
    Ok(out)
}

/// Publishes events to this node's subscribers, and through the shared cache to every node's.
#[derive(Clone)]
pub struct Feed {
    cache: Cache,
    /// One channel per org with clients on this node: a busy org fills its own channel only,
    /// so its storm makes no other org's clients fall behind.
    local: Arc<Mutex<HashMap<Uuid, broadcast::Sender<Arc<FeedEvent>>>>>,
}

/// Events an org's live clients may fall behind by before they are told to resume from storage.
const PER_ORG: usize = 1024;

impl Feed {
    pub fn new(cache: Cache) -> Feed {
        Feed {
            cache,
            local: Arc::default(),
        }
    }

    fn shared(&self) -> bool {
        matches!(self.cache, Cache::Redis(_))
    }

    /// Every event of `org_id` published on any node from now on.
    pub fn subscribe(&self, org_id: Uuid) -> broadcast::Receiver<Arc<FeedEvent>> {
        let mut orgs = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if orgs.len() >= 1024 {
            orgs.retain(|_, tx| tx.receiver_count() > 0);
        }
        orgs.entry(org_id)
            .or_insert_with(|| broadcast::channel(PER_ORG).0)
            .subscribe()
    }

    /// Hands events to this node's clients of their orgs; forgets orgs whose clients left.
    fn deliver(&self, events: impl IntoIterator<Item = FeedEvent>) {
        let mut orgs = self.local.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            if let Some(tx) = orgs.get(&e.org_id) {
                if tx.send(Arc::new(e)).is_err() {
                    // No receiver left (send fails only then).
                    orgs.retain(|_, tx| tx.receiver_count() > 0);
                }
            }
        }
    }

    /// Publishes committed events. A cache that is down loses them for live clients only:
    /// they are stored, and a client that reconnects resumes from its last id.
    pub async fn publish(&self, events: Vec<FeedEvent>) {
        if events.is_empty() {
            return;
        }
        if !self.shared() {
            self.deliver(events);
            return;
        }
        match serde_json::to_string(&events) {
            Ok(json) => {
                if let Err(e) = self.cache.post(FEED_STREAM, &json).await {
                    tracing::warn!(error = %e, "cannot publish incident events");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode incident events"),
        }
    }

    /// Follows the shared stream (until the task is aborted), handing what any node published
    /// to this node's subscribers. Returns at once on the embedded backend.
    pub async fn follow(&self) {
        if !self.shared() {
            return;
        }
        let mut last = "$".to_string();
        let block = Duration::from_millis(1000);
        loop {
            match self.cache.follow(FEED_STREAM, &mut last, block).await {
                Ok(batches) => {
                    for batch in batches {
                        match serde_json::from_str::<Vec<FeedEvent>>(&batch) {
                            Ok(events) => self.deliver(events),
                            Err(e) => tracing::warn!(error = %e, "undecodable feed entry"),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "incident feed unreadable");
                    tokio::time::sleep(block).await;
                }
            }
        }
    }
}
