//! The turn writer: persists finished turns (the session's new messages and the turn's usage
//! rows, with the user's running total) with group commit. Turns that finish while a batch is
//! being written queue up and go into the next batch, one transaction for all of them, so
//! under load the database sees one commit per batch instead of several per turn, and an idle
//! system still writes each turn at once. A caller's `save` returns only after its turn is
//! committed: nothing is acknowledged before it is durable. On SQLite the writer keeps the
//! pool's connection across back-to-back batches, for a few milliseconds at most.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::Sqlite;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, RuntimeErr};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::auth::Principal;
use crate::cache::Cache;
use crate::sessions::{append_many, Append};
use crate::usage::{add_totals_in, insert_in, LlmUsage, UsageRecord};
use crate::{Db, StorageError};

mod rows;
mod script;
mod sqlite;

/// Most turns in one transaction.
const MAX_BATCH: usize = 256;

/// One finished turn.
#[derive(Clone, Debug)]
pub struct TurnWrite {
    pub who: Principal,
    pub session_id: Uuid,
    /// Display history entries to append (each gets a `timestamp`).
    pub messages: Vec<serde_json::Value>,
    /// What the model sees next time; `None`: the same entries as `messages` (the usual
    /// case), stored once.
    pub context: Option<Vec<serde_json::Value>>,
    /// The turn's query, naming a session still called "New chat".
    pub first_query: Option<String>,
    /// One row per model call of the turn.
    pub usage: Vec<UsageRecord>,
    /// What the write does to the session's open-turn marker, in the same transaction.
    pub mark: TurnMark,
}

/// A write's effect on `chat_sessions.open_turn`: a turn's first durable step opens it, its
/// last closes it, the steps between keep it. Open means "this turn has not ended": a node
/// that takes the session over after the turn's node died continues it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum TurnMark {
    #[default]
    Keep,
    Open(OpenTurn),
    Close,
}

/// The marker of a running turn, stored as JSON text.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenTurn {
    /// The node running the turn: only a node that saw it die continues the turn.
    pub node: String,
    pub model: String,
    /// `agent` or `ask`.
    pub mode: String,
    /// Started by a connected human (approvals can be asked) rather than a background run.
    pub interactive: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// How many times nodes continued it after the node running it died: a turn that keeps
    /// taking its node down is abandoned after a few, not handed from node to node forever.
    #[serde(default)]
    pub resumes: u32,
}

impl OpenTurn {
    pub fn to_text(&self) -> String {
        // A struct of strings, a bool and a timestamp always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(text: &str) -> Option<OpenTurn> {
        serde_json::from_str(text).ok()
    }
}

impl TurnMark {
    /// `None`: keep; `Some(None)`: clear; `Some(Some(text))`: set.
    pub(crate) fn column(&self) -> Option<Option<String>> {
        match self {
            TurnMark::Keep => None,
            TurnMark::Open(open) => Some(Some(open.to_text())),
            TurnMark::Close => Some(None),
        }
    }
}

type Job = (TurnWrite, oneshot::Sender<Result<f64, StorageError>>);

/// Handle to the writer tasks; cheap to clone. The tasks end when every handle is dropped.
#[derive(Clone, Debug)]
pub struct TurnWriter {
    /// One queue per writer task; a session always goes to the same one, so its turns are
    /// written in order.
    shards: std::sync::Arc<[mpsc::Sender<Job>]>,
}

impl TurnWriter {
    /// SQLite has one connection, so one writer; PostgreSQL gets two, committing in parallel
    /// on two of the pool's connections (the rest stay free for requests).
    pub fn start(db: Db, cache: Cache) -> TurnWriter {
        let writers = match db.backend() {
            sea_orm::DbBackend::Postgres => 2,
            _ => 1,
        };
        let usage = LlmUsage::new(db.clone(), cache);
        let shards: Vec<mpsc::Sender<Job>> = (0..writers)
            .map(|_| {
                let (jobs, rx) = mpsc::channel(MAX_BATCH * 4);
                tokio::spawn(run(db.clone(), usage.clone(), rx));
                jobs
            })
            .collect();
        TurnWriter {
            shards: shards.into(),
        }
    }

    /// Persists `turn` and returns the user's running total cost after it.
    pub async fn save(&self, turn: TurnWrite) -> Result<f64, StorageError> {
        self.enqueue(turn).await?.committed().await
    }

    /// Queues `turn` and returns once it is queued, not committed: a turn's steps are written
    /// in the order they are queued (a session's writes all go to one writer task), so a turn
    /// queues a step and goes on, and waits for it only before something that must not happen
    /// unrecorded (running a tool).
    pub async fn enqueue(&self, turn: TurnWrite) -> Result<Pending, StorageError> {
        for rec in &turn.usage {
            rec.check()?;
        }
        let (reply, answer) = oneshot::channel();
        let shard = (turn.session_id.as_u128() % self.shards.len() as u128) as usize;
        self.shards[shard]
            .send((turn, reply))
            .await
            .map_err(|_| StorageError::Internal("the turn writer has stopped".into()))?;
        Ok(Pending(answer))
    }
}

/// A queued write, until its batch commits.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<f64, StorageError>>);

impl Pending {
    /// The user's running total cost once the write is committed.
    pub async fn committed(self) -> Result<f64, StorageError> {
        self.0
            .await
            .map_err(|_| StorageError::Internal("the turn writer has stopped".into()))?
    }
}

async fn run(db: Db, usage: LlmUsage, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut held: Held = None;
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let turns: Vec<&TurnWrite> = batch.iter().map(|(t, _)| t).collect();
        let written = match db.backend() {
            DbBackend::Sqlite => write_held(&db, &mut held, &turns).await,
            _ => write_batch(&db, &turns).await,
        };
        match written {
            Ok(outcomes) => {
                // Each user's new total goes to the cache once per batch, all users in one
                // round trip, and before anyone is answered, so an answered caller never reads
                // an older one.
                let mut totals: HashMap<Uuid, f64> = HashMap::new();
                for ((turn, _), outcome) in batch.iter().zip(&outcomes) {
                    if let Ok(total) = outcome {
                        totals.insert(turn.who.user_id, *total);
                    }
                }
                let totals: Vec<(Uuid, f64)> = totals.into_iter().collect();
                if let Err(e) = usage.remember_totals(&totals).await {
                    tracing::warn!(error = %e, "cannot cache running totals");
                }
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            // The database refused the batch as a whole (it is down, a constraint failed):
            // every turn of it gets the error; nothing of it was written.
            Err(e) => {
                tracing::error!(error = %e, turns = batch.len(), "cannot write a batch of turns");
                for (_, reply) in batch.drain(..) {
                    let why = format!("cannot save the turn: {e}");
                    let _ = reply.send(Err(StorageError::Internal(why)));
                }
            }
        }
        // Back to the pool when no turn waits, or after HOLD_FOR: whoever queued for the
        // connection meanwhile goes first.
        if held
            .as_ref()
            .is_some_and(|(_, since)| rx.is_empty() || since.elapsed() >= HOLD_FOR)
        {
            held = None;
        }
    }
}

/// How long the SQLite writer keeps the pool's one connection while batches keep coming.
/// Transactions that need it wait meanwhile (hot reads have their own connections), so this
/// bounds what the writer adds to their latency.
const HOLD_FOR: Duration = Duration::from_millis(5);

/// The SQLite writer's connection, checked out of the pool, and since when.
type Held = Option<(PoolConnection<Sqlite>, Instant)>;

/// SQLite: writes the batch as one script (see `sqlite.rs`) on the connection the writer
/// holds, checking it out first if it does not, so back-to-back batches also skip the pool's
/// return (sqlx pings a returned connection through its thread) and checkout.
async fn write_held(
    db: &Db,
    held: &mut Held,
    turns: &[&TurnWrite],
) -> Result<Vec<Result<f64, StorageError>>, StorageError> {
    let (conn, _) = match held {
        Some(held) => held,
        None => {
            let conn = db
                .connection()
                .get_sqlite_connection_pool()
                .acquire()
                .await
                .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?;
            held.insert((conn, Instant::now()))
        }
    };
    let mut guard = Unfinished { conn, done: false };
    let written = sqlite::write(guard.conn, turns).await;
    guard.done = true;
    drop(guard);
    if written.is_err() {
        // The script stops at its first error, possibly inside its transaction: that is rolled
        // back and the connection goes back to the pool, or, if it cannot be rolled back, is
        // closed (SQLite rolls back what it left open) and the pool opens another.
        if let Some((mut conn, _)) = held.take() {
            if !sqlite::roll_back(&mut conn).await {
                tracing::warn!("cannot roll back the turn writer's connection; closing it");
                conn.close_on_drop();
            }
        }
    }
    written
}

/// Closes the writer's connection, rather than letting it back into the pool, when a write
/// is dropped before it ends (the runtime shutting down mid-batch): its script may have left
/// a transaction open.
struct Unfinished<'a> {
    conn: &'a mut PoolConnection<Sqlite>,
    done: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}

/// PostgreSQL: writes `turns` in a system transaction of the pool (a batch spans orgs; every
/// statement names its org and user explicitly).
async fn write_batch(
    db: &Db,
    turns: &[&TurnWrite],
) -> Result<Vec<Result<f64, StorageError>>, StorageError> {
    let tx = db.system().await?;
    let outcomes = write_turns(tx.conn(), turns).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Writes `turns`, inside the caller's transaction, in four statements however many turns and
/// users the batch has (more only past a statement's row limit) (sessions touched, entries, usage rows, running totals); returns each
/// turn's outcome (a turn whose session is gone fails alone, writing nothing) with its user's
/// running total.
async fn write_turns<C: ConnectionTrait>(
    conn: &C,
    turns: &[&TurnWrite],
) -> Result<Vec<Result<f64, StorageError>>, StorageError> {
    let appends: Vec<Append> = turns
        .iter()
        .map(|t| Append {
            who: &t.who,
            session_id: t.session_id,
            messages: &t.messages,
            context: t.context.as_deref(),
            first_query: t.first_query.as_deref(),
            mark: t.mark.column(),
        })
        .collect();
    let appended = append_many(conn, &appends).await?;
    let mut per_user: HashMap<Uuid, (&Principal, i64, f64)> = HashMap::new();
    let mut usage: Vec<(&Principal, &UsageRecord)> = Vec::new();
    for (turn, ok) in turns.iter().zip(&appended) {
        if ok.is_ok() {
            let entry = per_user
                .entry(turn.who.user_id)
                .or_insert((&turn.who, 0, 0.0));
            entry.1 += turn.usage.len() as i64;
            entry.2 += turn.usage.iter().map(|u| u.cost_usd).sum::<f64>();
            usage.extend(turn.usage.iter().map(|u| (&turn.who, u)));
        }
    }
    insert_in(conn, &usage).await?;
    let adds: Vec<(&Principal, i64, f64)> = per_user.into_values().collect();
    let totals = add_totals_in(conn, &adds).await?;
    Ok(appended
        .into_iter()
        .zip(turns)
        .map(|(ok, turn)| ok.map(|()| totals.get(&turn.who.user_id).copied().unwrap_or(0.0)))
        .collect())
}
