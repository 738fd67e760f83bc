//! A batch of turns as the rows SQLite's script writes (`sqlite.rs`), and how the database's
//! answer becomes each turn's outcome. (PostgreSQL's writer writes the same rows with sea-orm:
//! `sessions::append_many`, `usage::insert_in`, `usage::add_totals_in`.)
//!
//! - sessions: touched (`updated_at`), named after their first question while still "New
//!   chat", and returned when live and their turn's user's; one row per session and user;
//! - entries: a `chat_messages` row per turn and kind (see `sessions::entry_rows`);
//! - usage: an `llm_usage` row per model call;
//! - adds: every turn's calls and cost, summed per user into `llm_usage_totals`, which returns
//!   every such user's total (a turn without calls too).
//!
//! Every row names its turn's session and user, and is written only if that session is live and
//! that user's, so a turn whose session is gone or someone else's writes nothing and fails
//! alone.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::TurnWrite;
use crate::sessions::{auto_title, entry_rows};
use crate::StorageError;

#[derive(Serialize)]
pub(super) struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub title: Option<String>,
    /// The open-turn marker as the session's last write of the batch leaves it: `None`
    /// keep, `Some(None)` clear, `Some(Some)` set.
    pub mark: Option<Option<String>>,
}

#[derive(Serialize)]
pub(super) struct EntryRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub kind: &'static str,
    pub body: serde_json::Value,
}

#[derive(Serialize)]
pub(super) struct UsageRow<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Uuid,
    /// The session the call was for, as the caller recorded it.
    pub session_id: Option<Uuid>,
    pub provider: &'a str,
    pub model: &'a str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    /// The turn's session, which decides whether the row is written.
    pub turn_session: Uuid,
}

#[derive(Serialize)]
pub(super) struct AddRow {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub calls: i64,
    pub cost_usd: f64,
    pub session_id: Uuid,
}

pub(super) struct Rows<'a> {
    pub sessions: Vec<SessionRow>,
    pub entries: Vec<EntryRow>,
    pub usage: Vec<UsageRow<'a>>,
    pub adds: Vec<AddRow>,
}

impl<'a> Rows<'a> {
    pub(super) fn of(turns: &[&'a TurnWrite], now: DateTime<Utc>) -> Rows<'a> {
        // Where each (session, user) row is, for the marker of a later write of the session.
        let mut seen: HashMap<(Uuid, Uuid), usize> = HashMap::with_capacity(turns.len());
        let mut rows = Rows {
            sessions: Vec::with_capacity(turns.len()),
            entries: Vec::with_capacity(turns.len()),
            usage: Vec::with_capacity(turns.len()),
            adds: Vec::with_capacity(turns.len()),
        };
        for t in turns {
            let (user_id, org_id) = (t.who.user_id, t.who.org_id);
            let mark = t.mark.column();
            if let Some(&at) = seen.get(&(t.session_id, user_id)) {
                if mark.is_some() {
                    rows.sessions[at].mark = mark;
                }
            } else {
                seen.insert((t.session_id, user_id), rows.sessions.len());
                rows.sessions.push(SessionRow {
                    mark,
                    id: t.session_id,
                    user_id,
                    org_id,
                    title: t
                        .first_query
                        .as_deref()
                        .map(auto_title)
                        .filter(|t| !t.is_empty()),
                });
            }
            for (kind, body) in entry_rows(&t.messages, t.context.as_deref(), now) {
                rows.entries.push(EntryRow {
                    id: Uuid::now_v7(),
                    org_id,
                    user_id,
                    session_id: t.session_id,
                    kind,
                    body,
                });
            }
            for rec in &t.usage {
                rows.usage.push(UsageRow {
                    id: Uuid::now_v7(),
                    org_id,
                    user_id,
                    session_id: rec.session_id,
                    provider: &rec.provider,
                    model: &rec.model,
                    input_tokens: i64::try_from(rec.input_tokens).unwrap_or(i64::MAX),
                    output_tokens: i64::try_from(rec.output_tokens).unwrap_or(i64::MAX),
                    cost_usd: rec.cost_usd,
                    turn_session: t.session_id,
                });
            }
            rows.adds.push(AddRow {
                user_id,
                org_id,
                calls: t.usage.len() as i64,
                cost_usd: t.usage.iter().map(|u| u.cost_usd).sum(),
                session_id: t.session_id,
            });
        }
        rows
    }
}

/// What the database answered: the (session, user) pairs it touched, and every such user's
/// running total. The statements return both as rows of three columns: `(session, user,
/// NULL)` and `(user, NULL, total)`.
#[derive(Default)]
pub(super) struct Answer {
    live: HashSet<(Uuid, Uuid)>,
    totals: HashMap<Uuid, f64>,
}

impl Answer {
    pub(super) fn row(&mut self, first: Uuid, user: Option<Uuid>, total: Option<f64>) {
        match (user, total) {
            (_, Some(total)) => {
                self.totals.insert(first, total);
            }
            (Some(user), None) => {
                self.live.insert((first, user));
            }
            (None, None) => {}
        }
    }

    /// Each turn's outcome: its user's total, or `NotFound` when nothing of it was written.
    pub(super) fn outcomes(&self, turns: &[&TurnWrite]) -> Vec<Result<f64, StorageError>> {
        turns
            .iter()
            .map(|t| {
                if self.live.contains(&(t.session_id, t.who.user_id)) {
                    Ok(self.totals.get(&t.who.user_id).copied().unwrap_or(0.0))
                } else {
                    Err(StorageError::NotFound("session"))
                }
            })
            .collect()
    }
}
