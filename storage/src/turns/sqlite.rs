//! The SQLite writer's batch as one script (`BEGIN IMMEDIATE`, four statements, more only past
//! a list's row limit, `COMMIT`), sent to SQLite's connection thread as one command.
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
//! Rows go in as `VALUES` lists (see `script.rs`).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Value, Values};
use sea_orm::sqlx::{self, Row, SqliteConnection};
use sea_query_sqlx::SqlxValues;

use super::rows::{Answer, Rows};
use super::script::Script;
use super::TurnWrite;
use crate::sessions::UNTITLED;
use crate::StorageError;

/// Writes `turns` in one transaction, in one round trip; returns each turn's outcome as
/// `write_turns` does: a turn whose session is gone or not its user's fails alone, writing
/// nothing, the others get their user's running total. On `Err` from the script nothing was
/// committed, but its transaction may still be open ([`roll_back`]); an answer that cannot be
/// read (a bug) is an `Err` after the commit, which callers treat as an uncertain save.
pub(super) async fn write(
    conn: &mut SqliteConnection,
    turns: &[&TurnWrite],
) -> Result<Vec<Result<f64, StorageError>>, StorageError> {
    let script = script(turns, Utc::now());
    let rows = sqlx::query_with(
        sqlx::AssertSqlSafe(script.sql),
        SqlxValues(Values(script.values)),
    )
    .fetch_all(conn)
    .await
    .map_err(|e| StorageError::Internal(format!("cannot write a batch of turns: {e}")))?;
    let mut answer = Answer::default();
    for row in rows {
        answer.row(
            row.try_get(0).map_err(decode)?,
            row.try_get(1).map_err(decode)?,
            row.try_get(2).map_err(decode)?,
        );
    }
    Ok(answer.outcomes(turns))
}

/// Ends the transaction a failed script may have left open; `false` when the connection
/// cannot be trusted any more.
pub(super) async fn roll_back(conn: &mut SqliteConnection) -> bool {
    match sqlx::raw_sql("ROLLBACK").execute(conn).await {
        Ok(_) => true,
        // The script failed before `BEGIN` took, or at `COMMIT` after SQLite ended it.
        Err(e) => e.to_string().contains("no transaction is active"),
    }
}

fn decode(e: sqlx::Error) -> StorageError {
    StorageError::Internal(format!("unexpected row from the turn writer's script: {e}"))
}

/// The join that limits a statement's rows to live sessions of their turn's user; `v.columnN`
/// are the row's session, org and user.
fn live_session(session: usize, org: usize, user: usize) -> String {
    format!(
        " JOIN chat_sessions AS s ON s.id = v.column{session} AND s.org_id = v.column{org} \
         AND s.user_id = v.column{user} AND s.deleted_at IS NULL"
    )
}

/// The batch as one script.
fn script(turns: &[&TurnWrite], now: DateTime<Utc>) -> Script {
    let rows = Rows::of(turns, now);
    let mut script = Script::new("BEGIN IMMEDIATE;");
    let sessions = rows.sessions.into_iter().map(|r| {
        vec![
            r.id.into(),
            r.user_id.into(),
            r.org_id.into(),
            Value::String(r.title),
            // The marker: column5 says whether to write it, column6 is its new text.
            Value::Int(Some(i32::from(r.mark.is_some()))),
            Value::String(r.mark.flatten()),
        ]
    });
    script.statement(
        &format!(
            "UPDATE chat_sessions SET updated_at = ?, title = CASE WHEN title = '{UNTITLED}' \
                 AND v.column4 IS NOT NULL THEN v.column4 ELSE title END, \
                 open_turn = CASE WHEN v.column5 = 1 THEN v.column6 ELSE open_turn END FROM "
        ),
        now,
        sessions.collect(),
        " WHERE chat_sessions.id = v.column1 AND chat_sessions.user_id = v.column2 \
             AND chat_sessions.org_id = v.column3 AND chat_sessions.deleted_at IS NULL \
             RETURNING id, user_id, NULL;",
    );
    let entries = rows.entries.into_iter().map(|r| {
        vec![
            r.id.into(),
            r.org_id.into(),
            r.session_id.into(),
            r.kind.into(),
            r.body.into(),
            r.user_id.into(),
        ]
    });
    script.statement(
        "INSERT INTO chat_messages (id, org_id, session_id, kind, body, created_at) \
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, ? FROM ",
        now,
        entries.collect(),
        &(live_session(3, 2, 6) + ";"),
    );
    let usage = rows.usage.into_iter().map(|r| {
        vec![
            r.id.into(),
            r.org_id.into(),
            r.user_id.into(),
            r.session_id.into(),
            r.provider.into(),
            r.model.into(),
            r.input_tokens.into(),
            r.output_tokens.into(),
            r.cost_usd.into(),
            r.turn_session.into(),
        ]
    });
    script.statement(
        "INSERT INTO llm_usage (id, org_id, user_id, session_id, provider, model, \
             input_tokens, output_tokens, cost_usd, created_at) SELECT v.column1, v.column2, \
             v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, v.column9, ? FROM ",
        now,
        usage.collect(),
        &(live_session(10, 2, 3) + ";"),
    );
    let adds = rows.adds.into_iter().map(|r| {
        vec![
            r.user_id.into(),
            r.org_id.into(),
            r.calls.into(),
            r.cost_usd.into(),
            r.session_id.into(),
        ]
    });
    script.statement(
        "INSERT INTO llm_usage_totals (user_id, org_id, calls, cost_usd, updated_at) \
             SELECT v.column1, v.column2, sum(v.column3), sum(v.column4), ? FROM ",
        now,
        adds.collect(),
        // `WHERE true`: SQLite's documented way to keep an upsert's ON CONFLICT from
        // being read as the join's.
        &(live_session(5, 2, 1)
            + " WHERE true GROUP BY v.column1 ON CONFLICT (user_id) DO UPDATE SET \
                   calls = llm_usage_totals.calls + excluded.calls, \
                   cost_usd = llm_usage_totals.cost_usd + excluded.cost_usd, \
                   updated_at = excluded.updated_at RETURNING user_id, NULL, cost_usd;"),
    );
    script.sql.push_str("COMMIT;");
    script
}
