//! The SQLite writer's batch as one script (`BEGIN IMMEDIATE`, four statements, `COMMIT`),
//! sent to SQLite's connection thread as one command.
//!
//! Why: sqlx runs every SQLite statement as a round trip to the connection's own thread (a
//! wake-up there and one back, 60-150 us each on the bench machine). A batch was six of them
//! (begin, four statements, commit), about a third of its time, and the batch time is what
//! bounds turn throughput. The statements were apart because the inserts depended on the
//! first one's answer: which sessions are live and their turn's user's. Here each statement
//! checks that itself, joining its rows to `chat_sessions` by primary key, inside the same
//! transaction, so all four agree with the update's `RETURNING`, which names the turns that
//! were written.
//!
//! Rows go in as `VALUES` lists of bound parameters, padded with NULL rows (which join
//! nothing) up to a power of two: a few statement texts serve every batch, and the
//! connection's statement cache keeps them compiled.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Value, Values};
use sea_orm::sqlx::{self, Row, SqliteConnection};
use sea_query_sqlx::SqlxValues;
use uuid::Uuid;

use super::TurnWrite;
use crate::sessions::{auto_title, entry_rows, Append, UNTITLED};
use crate::StorageError;

/// Most rows in one `VALUES` list: the widest row (a usage row, ten values) stays far under
/// SQLite's 32766 bound values per statement.
const MAX_ROWS: usize = 2048;

/// Writes `turns` in one transaction, in one round trip; returns each turn's outcome as
/// `write_turns` does: a turn whose session is gone or not its user's fails alone, writing
/// nothing, the others get their user's running total. On `Err` nothing was committed, and
/// the caller must not reuse the connection (the transaction may still be open on it).
pub(super) async fn write(
    conn: &mut SqliteConnection,
    turns: &[&TurnWrite],
) -> Result<Vec<Result<f64, StorageError>>, StorageError> {
    let script = Script::build(turns, Utc::now());
    let rows = sqlx::query_with(
        sqlx::AssertSqlSafe(script.sql),
        SqlxValues(Values(script.values)),
    )
    .fetch_all(conn)
    .await
    .map_err(|e| StorageError::Internal(format!("cannot write a batch of turns: {e}")))?;
    // The update returns the sessions written (one column), the upsert every user's total
    // (two).
    let mut live = HashSet::with_capacity(turns.len());
    let mut totals = HashMap::new();
    for row in rows {
        if row.len() == 1 {
            live.insert(row.try_get::<Uuid, _>(0).map_err(decode)?);
        } else {
            let user: Uuid = row.try_get(0).map_err(decode)?;
            totals.insert(user, row.try_get::<f64, _>(1).map_err(decode)?);
        }
    }
    Ok(turns
        .iter()
        .map(|t| match live.contains(&t.session_id) {
            true => Ok(totals.get(&t.who.user_id).copied().unwrap_or(0.0)),
            false => Err(StorageError::NotFound("session")),
        })
        .collect())
}

fn decode(e: sqlx::Error) -> StorageError {
    StorageError::Internal(format!("unexpected row from the turn writer's script: {e}"))
}

/// A multi-statement script and its bound values, in the order of their `?`s.
struct Script {
    sql: String,
    values: Vec<Value>,
}

/// The join that limits a statement's rows to live sessions of their turn's user; `v.columnN`
/// are the row's session, org and user.
fn live_session(session: usize, org: usize, user: usize) -> String {
    format!(
        " JOIN chat_sessions AS s ON s.id = v.column{session} AND s.org_id = v.column{org} \
         AND s.user_id = v.column{user} AND s.deleted_at IS NULL"
    )
}

impl Script {
    fn build(turns: &[&TurnWrite], now: DateTime<Utc>) -> Script {
        let mut script = Script {
            sql: String::from("BEGIN IMMEDIATE;"),
            values: Vec::new(),
        };
        // Sessions: touched, named after their first question while still untitled, and
        // returned when live and their turn's user's. One row per session.
        let mut seen = HashSet::with_capacity(turns.len());
        let sessions: Vec<Vec<Value>> = turns
            .iter()
            .filter(|t| seen.insert(t.session_id))
            .map(|t| {
                let title = t
                    .first_query
                    .as_deref()
                    .map(auto_title)
                    .filter(|t| !t.is_empty());
                vec![
                    t.session_id.into(),
                    t.who.user_id.into(),
                    t.who.org_id.into(),
                    Value::String(title),
                ]
            })
            .collect();
        script.statement(
            &format!(
                "UPDATE chat_sessions SET updated_at = ?, title = CASE WHEN title = '{UNTITLED}' \
                 AND v.column4 IS NOT NULL THEN v.column4 ELSE title END FROM "
            ),
            now,
            sessions,
            " WHERE chat_sessions.id = v.column1 AND chat_sessions.user_id = v.column2 \
             AND chat_sessions.org_id = v.column3 AND chat_sessions.deleted_at IS NULL \
             RETURNING id",
        );
        // Entries: a row per turn and kind (see `sessions::entry_rows`).
        let mut entries = Vec::new();
        for t in turns {
            let append = Append {
                who: &t.who,
                session_id: t.session_id,
                messages: &t.messages,
                context: t.context.as_deref(),
                first_query: None,
            };
            for (kind, body) in entry_rows(&append, now) {
                entries.push(vec![
                    Uuid::now_v7().into(),
                    t.who.org_id.into(),
                    t.session_id.into(),
                    kind.into(),
                    body.into(),
                    t.who.user_id.into(),
                ]);
            }
        }
        script.statement(
            "INSERT INTO chat_messages (id, org_id, session_id, kind, body, created_at) \
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, ? FROM ",
            now,
            entries,
            &live_session(3, 2, 6),
        );
        // Usage: a row per model call.
        let mut usage = Vec::new();
        for t in turns {
            for rec in &t.usage {
                usage.push(vec![
                    Uuid::now_v7().into(),
                    t.who.org_id.into(),
                    t.who.user_id.into(),
                    rec.session_id.into(),
                    rec.provider.as_str().into(),
                    rec.model.as_str().into(),
                    i64::try_from(rec.input_tokens).unwrap_or(i64::MAX).into(),
                    i64::try_from(rec.output_tokens).unwrap_or(i64::MAX).into(),
                    rec.cost_usd.into(),
                    t.session_id.into(),
                ]);
            }
        }
        script.statement(
            "INSERT INTO llm_usage (id, org_id, user_id, session_id, provider, model, \
             input_tokens, output_tokens, cost_usd, created_at) SELECT v.column1, v.column2, \
             v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, v.column9, ? FROM ",
            now,
            usage,
            &live_session(10, 2, 3),
        );
        // Running totals: every written turn's calls and cost added to its user's, and every
        // such user's total returned (a turn without calls too, as `add_totals_in` does).
        let adds: Vec<Vec<Value>> = turns
            .iter()
            .map(|t| {
                vec![
                    t.who.user_id.into(),
                    t.who.org_id.into(),
                    (t.usage.len() as i64).into(),
                    t.usage.iter().map(|u| u.cost_usd).sum::<f64>().into(),
                    t.session_id.into(),
                ]
            })
            .collect();
        script.statement(
            "INSERT INTO llm_usage_totals (user_id, org_id, calls, cost_usd, updated_at) \
             SELECT v.column1, v.column2, sum(v.column3), sum(v.column4), ? FROM ",
            now,
            adds,
            // `WHERE true`: SQLite's documented way to keep an upsert's ON CONFLICT from
            // being read as the join's.
            &(live_session(5, 2, 1)
                + " WHERE true GROUP BY v.column1 ON CONFLICT (user_id) DO UPDATE SET \
                   calls = llm_usage_totals.calls + excluded.calls, \
                   cost_usd = llm_usage_totals.cost_usd + excluded.cost_usd, \
                   updated_at = excluded.updated_at RETURNING user_id, cost_usd"),
        );
        script.sql.push_str("COMMIT;");
        script
    }

    /// Appends `head (VALUES ...) AS v tail;` for every `MAX_ROWS` of `rows` (none when there
    /// are no rows). `head` has one `?`, bound to `now`; rows are padded with NULLs.
    fn statement(&mut self, head: &str, now: DateTime<Utc>, rows: Vec<Vec<Value>>, tail: &str) {
        let Some(width) = rows.first().map(Vec::len) else {
            return;
        };
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            self.sql.push_str(head);
            self.values.push(now.into());
            self.sql.push_str("(VALUES ");
            let mut n: usize = 0;
            for row in rows.by_ref().take(MAX_ROWS) {
                debug_assert_eq!(row.len(), width);
                self.values.extend(row);
                n += 1;
            }
            let padded = n.next_power_of_two().min(MAX_ROWS);
            self.values
                .extend(std::iter::repeat_n(Value::Int(None), (padded - n) * width));
            let placeholders = format!("({}?)", "?,".repeat(width - 1));
            for i in 0..padded {
                if i > 0 {
                    self.sql.push(',');
                }
                self.sql.push_str(&placeholders);
            }
            self.sql.push_str(") AS v");
            self.sql.push_str(tail);
            self.sql.push(';');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_padded_to_a_power_of_two_and_split_at_the_limit() {
        let mut s = Script {
            sql: String::new(),
            values: Vec::new(),
        };
        let row = || vec![Value::Int(Some(1)), Value::Int(Some(2))];
        s.statement("X ", Utc::now(), (0..3).map(|_| row()).collect(), " Y");
        assert_eq!(s.sql, "X (VALUES (?,?),(?,?),(?,?),(?,?)) AS v Y;");
        assert_eq!(s.values.len(), 1 + 4 * 2);
        assert_eq!(s.values[7], Value::Int(None));

        let mut s = Script {
            sql: String::new(),
            values: Vec::new(),
        };
        s.statement(
            "X ",
            Utc::now(),
            (0..MAX_ROWS + 1).map(|_| row()).collect(),
            "",
        );
        assert_eq!(s.sql.matches("X (VALUES").count(), 2);
        assert_eq!(s.values.len(), 2 + (MAX_ROWS + 1) * 2);

        let mut s = Script {
            sql: String::new(),
            values: Vec::new(),
        };
        s.statement("X ", Utc::now(), Vec::new(), "");
        assert!(s.sql.is_empty() && s.values.is_empty());
    }
}
