//! A session's model context, read for a session actor that starts, in batches.
//!
//! Why: a node that starts many sessions at once (a morning's first questions, a node that
//! takes over another's sessions) read each context alone: a pool checkout, a round trip to a
//! database connection (on SQLite, a wake-up of its thread and one back) and the pool's
//! return, per session. That cost a new session about as much as the rest of its first turn
//! (turn_dispatch on SQLite: 11k sessions/s with the reads, 17k with none). Here reads that
//! arrive while a query runs wait for it and then go together as the next query; one read
//! alone goes at once, as before.
//!
//! The query runs in the system context, since a batch mixes orgs, and answers each request
//! only with a session of its own org and user: anything else is "not found", exactly as
//! the org-scoped read it replaces answered.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use sea_orm::sea_query::{
    Alias, Condition, Expr, ExprTrait, JoinType, Order, Query, SelectStatement, Value,
};
use sea_orm::DbBackend;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::auth::Principal;
use crate::entities::{chat_messages, chat_sessions};
use crate::sessions::{unpack, BOTH, CONTEXT};
use crate::{Db, StorageError};

/// Most sessions in one query (a list of ids far under both databases' bound-value limits).
const MAX_BATCH: usize = 256;

type Answer = Result<Vec<serde_json::Value>, StorageError>;

#[derive(Debug)]
struct Request {
    org_id: Uuid,
    user_id: Uuid,
    session_id: Uuid,
    reply: oneshot::Sender<Answer>,
}

/// The reader of one [`crate::sessions::Sessions`] and its clones: a task started on the first
/// read, which ends when the last clone is dropped.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContextReads {
    requests: Arc<OnceLock<mpsc::UnboundedSender<Request>>>,
}

impl ContextReads {
    /// `who`'s session's model context, oldest first; `NotFound` when it is not theirs, is
    /// deleted or does not exist.
    pub(crate) async fn read(&self, db: &Db, who: &Principal, session_id: Uuid) -> Answer {
        let requests = self.requests.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(serve(db.clone(), rx));
            tx
        });
        let stopped = || StorageError::Internal("the context reader stopped".into());
        let (reply, answer) = oneshot::channel();
        requests
            .send(Request {
                org_id: who.org_id,
                user_id: who.user_id,
                session_id,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Takes what waits, up to a batch, whenever the previous query is done. One query at a time:
/// two or four at once measured slower on both backends (smaller batches for the same work).
async fn serve(db: Db, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        answer(&db, std::mem::take(&mut batch)).await;
    }
}

/// A session found by a batch's query.
struct Found {
    org_id: Uuid,
    user_id: Uuid,
    context: Vec<serde_json::Value>,
    /// The summary of the first `skip` context entries, when the conversation was folded.
    summary: Option<String>,
    skip: usize,
}

async fn answer(db: &Db, batch: Vec<Request>) {
    let mut wanted: HashMap<Uuid, usize> = HashMap::with_capacity(batch.len());
    for r in &batch {
        *wanted.entry(r.session_id).or_default() += 1;
    }
    let ids: Vec<Uuid> = wanted.keys().copied().collect();
    let mut found = match read(db, &ids).await {
        Ok(found) => found,
        Err(e) => {
            let message = e.to_string();
            for r in batch {
                let _ = r.reply.send(Err(StorageError::Internal(message.clone())));
            }
            return;
        }
    };
    for r in batch {
        let left = wanted.entry(r.session_id).or_default();
        *left = left.saturating_sub(1);
        let theirs = found
            .get(&r.session_id)
            .is_some_and(|f| f.org_id == r.org_id && f.user_id == r.user_id);
        let answer = match (theirs, *left) {
            (false, _) => Err(StorageError::NotFound("session")),
            // The last request for this session takes the context; earlier ones copy it.
            (true, 0) => Ok(found
                .remove(&r.session_id)
                .map(|f| f.context)
                .unwrap_or_default()),
            (true, _) => Ok(found
                .get(&r.session_id)
                .map(|f| f.context.clone())
                .unwrap_or_default()),
        };
        let _ = r.reply.send(answer);
    }
}

/// The live sessions among `ids`, each with its context: the session row (its owner, and its
/// legacy array, empty for sessions created since turns became rows) joined to its appended
/// rows, in order. The id list is padded with NULLs (which match nothing) to a power of two,
/// so the statement texts are few and stay prepared.
async fn read(db: &Db, ids: &[Uuid]) -> Result<HashMap<Uuid, Found>, StorageError> {
    let mut list: Vec<Value> = ids.iter().map(|&id| id.into()).collect();
    list.resize(ids.len().next_power_of_two(), Value::Uuid(None));
    let query = query(db.backend(), list);
    let rows = db.system_query(&query).await?;
    let mut found: HashMap<Uuid, Found> = HashMap::with_capacity(ids.len());
    for r in &rows {
        let id: Uuid = r.try_get("", "id")?;
        let entry = match found.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let context = match r.try_get::<serde_json::Value>("", "llm_context_history")? {
                    serde_json::Value::Array(items) => items,
                    _ => Vec::new(),
                };
                e.insert(Found {
                    org_id: r.try_get("", "org_id")?,
                    user_id: r.try_get("", "user_id")?,
                    context,
                    summary: r.try_get("", "context_summary")?,
                    skip: Ord::max(r.try_get::<i32>("", "context_skip")?, 0) as usize,
                })
            }
        };
        let Some(body) = r.try_get::<Option<serde_json::Value>>("", "body")? else {
            continue;
        };
        let both = r.try_get::<Option<String>>("", "kind")?.as_deref() == Some(BOTH);
        let start = entry.context.len();
        unpack(body, &mut entry.context);
        // The display timestamp of an entry stored for both is no part of the context.
        if both {
            for item in &mut entry.context[start..] {
                if let Some(obj) = item.as_object_mut() {
                    obj.remove("timestamp");
                }
            }
        }
    }
    for f in found.values_mut() {
        fold(f);
    }
    Ok(found)
}

/// A long conversation as the model sees it: the summary of its first `skip` entries, then
/// the rest.
fn fold(f: &mut Found) {
    if f.skip > 0 {
        f.context.drain(..f.skip.min(f.context.len()));
    }
    if let Some(summary) = f.summary.take() {
        f.context.insert(
            0,
            serde_json::json!({ "role": "system", "content": summary }),
        );
    }
}

/// The batch's query. On PostgreSQL the messages are a `LATERAL` subquery ordered by id: the
/// ordering keeps the planner from folding it into a plain join, so each session's rows are
/// always found through `chat_messages`' session index. As a plain join the plan depended on
/// the table's statistics: planned while they still described a small `chat_messages` (a
/// young database, before autovacuum's next analyze), it scanned all of `chat_messages` for
/// each batch or even each session of one, and new sessions per second fell by half
/// (turn_dispatch with `ANALYZE=1`). SQLite has no `LATERAL`; its plan follows the indexes.
pub fn query(backend: DbBackend, ids: Vec<Value>) -> SelectStatement {
    let session = |c: chat_sessions::Column| (chat_sessions::Entity, c);
    let message = |c: chat_messages::Column| (chat_messages::Entity, c);
    let of_session = Condition::all()
        .add(
            Expr::col(message(chat_messages::Column::SessionId))
                .equals(session(chat_sessions::Column::Id)),
        )
        .add(
            Expr::col(message(chat_messages::Column::OrgId))
                .equals(session(chat_sessions::Column::OrgId)),
        )
        .add(Expr::col(message(chat_messages::Column::Kind)).is_in([CONTEXT, BOTH]));
    let mut query = Query::select();
    query
        .column(session(chat_sessions::Column::Id))
        .column(session(chat_sessions::Column::OrgId))
        .column(session(chat_sessions::Column::UserId))
        .column(session(chat_sessions::Column::LlmContextHistory))
        .column(session(chat_sessions::Column::ContextSummary))
        .column(session(chat_sessions::Column::ContextSkip))
        .from(chat_sessions::Entity)
        .and_where(Expr::col(session(chat_sessions::Column::Id)).is_in(ids))
        .and_where(Expr::col(session(chat_sessions::Column::DeletedAt)).is_null())
        .order_by(session(chat_sessions::Column::Id), Order::Asc);
    if backend == DbBackend::Postgres {
        let m = Alias::new("m");
        let rows = Query::select()
            .columns([
                chat_messages::Column::Id,
                chat_messages::Column::Body,
                chat_messages::Column::Kind,
            ])
            .from(chat_messages::Entity)
            .cond_where(of_session)
            .order_by(chat_messages::Column::Id, Order::Asc)
            .to_owned();
        query
            .column((m.clone(), chat_messages::Column::Body))
            .column((m.clone(), chat_messages::Column::Kind))
            .join_lateral(JoinType::LeftJoin, rows, m.clone(), Expr::cust("TRUE"))
            .order_by((m, chat_messages::Column::Id), Order::Asc);
    } else {
        query
            .column(message(chat_messages::Column::Body))
            .column(message(chat_messages::Column::Kind))
            .left_join(chat_messages::Entity, of_session)
            .order_by(message(chat_messages::Column::Id), Order::Asc);
    }
    query.to_owned()
}
