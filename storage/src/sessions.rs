//! Chat sessions as rows: listing and creation. The chat runtime's SessionActor owns a session's
//! history once it runs; these are the reads and writes that need no running session.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{validate_name, Principal};
use crate::contexts::ContextReads;
use crate::entities::{chat_messages, chat_sessions};
use crate::{org_select, Db, StorageError};

/// A session as listed: no message bodies.
#[derive(Clone, Debug, Serialize)]
pub struct SessionSummary {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Sessions {
    db: Db,
    contexts: ContextReads,
}

impl Sessions {
    pub fn new(db: Db) -> Sessions {
        Sessions {
            db,
            contexts: ContextReads::default(),
        }
    }

    /// The caller's live sessions, most recently updated first.
    pub async fn list(
        &self,
        who: &Principal,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<SessionSummary>, StorageError> {
        let query = org_select::<chat_sessions::Entity>(who.org_id)
            .select_only()
            .columns([
                chat_sessions::Column::Id,
                chat_sessions::Column::Title,
                chat_sessions::Column::Status,
                chat_sessions::Column::CreatedAt,
                chat_sessions::Column::UpdatedAt,
            ])
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null())
            .order_by_desc(chat_sessions::Column::UpdatedAt)
            .limit(limit)
            .offset(offset)
            .into_query();
        let rows = self.db.org_query(who.org_id, &query).await?;
        rows.iter()
            .map(|r| {
                Ok(SessionSummary {
                    id: r.try_get("", "id")?,
                    title: r.try_get("", "title")?,
                    status: r.try_get("", "status")?,
                    created_at: r.try_get("", "created_at")?,
                    updated_at: r.try_get("", "updated_at")?,
                })
            })
            .collect()
    }

    /// A new, empty session owned by the caller.
    pub async fn create(
        &self,
        who: &Principal,
        title: Option<&str>,
    ) -> Result<SessionSummary, StorageError> {
        let title = match title {
            Some(t) => validate_name("title", t, 500)?,
            None => UNTITLED.to_string(),
        };
        let now = Utc::now();
        let row = chat_sessions::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(who.org_id),
            user_id: Set(who.user_id),
            title: Set(title),
            messages: Set(serde_json::json!([])),
            llm_context_history: Set(serde_json::json!([])),
            status: Set("active".into()),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
            context_summary: Set(None),
            context_skip: Set(0),
            open_turn: Set(None),
        };
        let tx = self.db.org(who.org_id).await?;
        let m = chat_sessions::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(SessionSummary {
            id: m.id,
            title: m.title,
            status: m.status,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// A session with its history.
#[derive(Clone, Debug, Serialize)]
pub struct SessionDetail {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    pub messages: serde_json::Value,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl Sessions {
    /// One of the caller's live sessions with its messages; `NotFound` for anyone else's, for a
    /// deleted one, and for one that never existed (indistinguishable on purpose).
    pub async fn get(&self, who: &Principal, id: Uuid) -> Result<SessionDetail, StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let row = tx
            .select::<chat_sessions::Entity>()
            .filter(chat_sessions::Column::Id.eq(id))
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null())
            .one(tx.conn())
            .await?;
        let m = row.ok_or(StorageError::NotFound("session"))?;
        let messages = entries(tx.conn(), who.org_id, id, m.messages, HISTORY).await?;
        tx.commit().await?;
        Ok(SessionDetail {
            id: m.id,
            title: m.title,
            status: m.status,
            messages: serde_json::Value::Array(messages),
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }

    pub async fn rename(
        &self,
        who: &Principal,
        id: Uuid,
        title: &str,
    ) -> Result<SessionSummary, StorageError> {
        let title = validate_name("title", title, 500)?;
        let now = Utc::now();
        self.update_live(who, id, |u| {
            u.col_expr(chat_sessions::Column::Title, Expr::value(title.clone()))
                .col_expr(chat_sessions::Column::UpdatedAt, Expr::value(now))
        })
        .await?;
        let s = self.get(who, id).await?;
        Ok(SessionSummary {
            id: s.id,
            title: s.title,
            status: s.status,
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
    }

    /// Soft delete: the row stays (with `deleted_at`) but no route shows it again.
    pub async fn delete(&self, who: &Principal, id: Uuid) -> Result<(), StorageError> {
        let now = Utc::now();
        self.update_live(who, id, |u| {
            u.col_expr(chat_sessions::Column::DeletedAt, Expr::value(Some(now)))
                .col_expr(chat_sessions::Column::Status, Expr::value("deleted"))
                .col_expr(chat_sessions::Column::UpdatedAt, Expr::value(now))
        })
        .await
    }

    /// Applies `set` to the caller's live session `id`, or `NotFound`.
    async fn update_live(
        &self,
        who: &Principal,
        id: Uuid,
        set: impl FnOnce(
            sea_orm::UpdateMany<chat_sessions::Entity>,
        ) -> sea_orm::UpdateMany<chat_sessions::Entity>,
    ) -> Result<(), StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let update = set(chat_sessions::Entity::update_many())
            .filter(tx.org_filter::<chat_sessions::Entity>())
            .filter(chat_sessions::Column::Id.eq(id))
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null());
        let res = update.exec(tx.conn()).await?;
        tx.commit().await?;
        if res.rows_affected == 0 {
            return Err(StorageError::NotFound("session"));
        }
        Ok(())
    }
}

impl Sessions {
    /// Folds a long conversation: from now on the model sees `summary` instead of the summary
    /// it saw before (if any) and the `more` context entries after it. Only the model's view
    /// changes: the history a user reads keeps every message.
    pub async fn fold_context(
        &self,
        who: &Principal,
        id: Uuid,
        summary: &str,
        more: usize,
    ) -> Result<(), StorageError> {
        let more = i32::try_from(more).map_err(|_| StorageError::invalid("more", "too many"))?;
        self.update_live(who, id, |u| {
            u.col_expr(
                chat_sessions::Column::ContextSummary,
                Expr::value(Some(summary.to_string())),
            )
            .col_expr(
                chat_sessions::Column::ContextSkip,
                Expr::col(chat_sessions::Column::ContextSkip).add(more),
            )
        })
        .await
    }
}

/// Titles longer than this are cut when a session is named after its first question.
const AUTO_TITLE_CHARS: usize = 80;

impl Sessions {
    /// What the model has seen in this session so far, to rebuild a session's context.
    pub async fn llm_context(
        &self,
        who: &Principal,
        id: Uuid,
    ) -> Result<Vec<serde_json::Value>, StorageError> {
        // No transaction: only this session's actor appends to it, and it is the one reading
        // (a new session actor loads its context once, then keeps it). Batched with other
        // sessions' reads (crate::contexts).
        self.contexts.read(&self.db, who, id).await
    }
}

/// One turn's additions to a session, for [`append_many`].
pub(crate) struct Append<'a> {
    pub who: &'a Principal,
    pub session_id: Uuid,
    /// Display history entries (each gets a `timestamp`).
    pub messages: &'a [serde_json::Value],
    /// Model context entries; `None`: the same as `messages`, stored once for both.
    pub context: Option<&'a [serde_json::Value]>,
    /// Names a session still called "New chat".
    pub first_query: Option<&'a str>,
    /// The session's open-turn marker: `None` keep, `Some(None)` clear, `Some(Some)` set.
    pub mark: Option<Option<String>>,
}

/// A new session's title until its first question names it.
pub(crate) const UNTITLED: &str = "New chat";

pub(crate) const HISTORY: &str = "history";
pub(crate) const CONTEXT: &str = "context";
/// An entry both shown and given to the model (a turn's usual case), stored once.
pub(crate) const BOTH: &str = "both";

/// Appends several turns, inside the caller's transaction, in two statements whatever the
/// number of turns and users (more only past a statement's row limit): one update that touches every session of the batch that is live
/// and its turn's user's (naming those still called "New chat") and returns which they are,
/// and one multi-row insert of the new entries: a row per turn and kind, holding the turn's
/// entries as an array (written together, always read together; half the rows and index
/// entries of a row per entry). A turn whose session is not its user's live
/// session gets `NotFound` and writes nothing; the filter names org and user per session, so
/// this holds in a system transaction too. PostgreSQL's turn writer; SQLite's writes the same
/// rows in one script (`turns::sqlite`).
pub(crate) async fn append_many<C: ConnectionTrait>(
    conn: &C,
    turns: &[Append<'_>],
) -> Result<Vec<Result<(), StorageError>>, StorageError> {
    let now = Utc::now();
    let live = touch_owned(conn, turns, now).await?;
    let mut results = Vec::with_capacity(turns.len());
    let mut rows = Vec::new();
    for turn in turns {
        // Written only if its session was touched for this very user: another user's turn
        // on the same session in the batch fails (and, coming first, fails the owner's too).
        if live.get(&turn.session_id) != Some(&turn.who.user_id) {
            results.push(Err(StorageError::NotFound("session")));
            continue;
        }
        results.push(Ok(()));
        for (kind, body) in entry_rows(turn.messages, turn.context, now) {
            rows.push(chat_messages::ActiveModel {
                id: Set(Uuid::now_v7()),
                org_id: Set(turn.who.org_id),
                session_id: Set(turn.session_id),
                kind: Set(kind.to_string()),
                body: Set(body),
                created_at: Set(now),
            });
        }
    }
    // Bounded statements: SQLite takes at most 32766 bound values (six per row here).
    for chunk in rows.chunks(2000) {
        chat_messages::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(results)
}

/// A turn's `chat_messages` rows as (kind, body): its display entries, each stamped with `now`
/// unless it has a timestamp, as one array, and its model context as another when it differs.
pub(crate) fn entry_rows(
    messages: &[serde_json::Value],
    context: Option<&[serde_json::Value]>,
    now: DateTime<Utc>,
) -> Vec<(&'static str, serde_json::Value)> {
    let mut rows = Vec::with_capacity(2);
    let shown = if context.is_some() { HISTORY } else { BOTH };
    let stamp = serde_json::json!(now);
    let messages: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(obj) = m.as_object_mut() {
                obj.entry("timestamp").or_insert_with(|| stamp.clone());
            }
            m
        })
        .collect();
    if !messages.is_empty() {
        rows.push((shown, serde_json::Value::Array(messages)));
    }
    if let Some(context) = context.filter(|c| !c.is_empty()) {
        rows.push((CONTEXT, serde_json::Value::Array(context.to_vec())));
    }
    rows
}

/// Most sessions in one touch (seven bound values each, under SQLite's 32766).
const TOUCH_CHUNK: usize = 1000;

/// Sets `updated_at` of the turns' sessions that are live and their turn's user's, names the
/// ones still called "New chat" after their turn's query, and returns them with the user each
/// was tested against. The owner test is per session (`user_id = CASE id WHEN .. THEN ..`, the
/// session's first turn's user), so the statement's text depends only on how many sessions
/// there are and stays prepared. (Testing every turn's user instead, with
/// `(id, user_id, org_id) IN (...)`, cost PostgreSQL a third of its turns per second.)
async fn touch_owned<C: ConnectionTrait>(
    conn: &C,
    turns: &[Append<'_>],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Uuid>, StorageError> {
    // One entry per session: its owner and the title its first turn of the batch proposes.
    let mut sessions: Vec<(Uuid, &Principal, Option<String>)> = Vec::new();
    // Each session's open-turn marker as its last write of the batch leaves it.
    let mut marks: HashMap<Uuid, Option<String>> = HashMap::new();
    let mut seen = HashSet::new();
    for turn in turns {
        if seen.insert(turn.session_id) {
            let title = turn.first_query.map(auto_title).filter(|t| !t.is_empty());
            sessions.push((turn.session_id, turn.who, title));
        }
        // Only the session's owner's writes (the user it is tested against) move its marker.
        let owner = sessions
            .iter()
            .find(|(id, _, _)| *id == turn.session_id)
            .map(|(_, who, _)| who.user_id);
        if let (Some(mark), Some(owner)) = (&turn.mark, owner) {
            if owner == turn.who.user_id {
                marks.insert(turn.session_id, mark.clone());
            }
        }
    }
    let mut live = HashMap::with_capacity(sessions.len());
    for chunk in sessions.chunks(TOUCH_CHUNK) {
        let col = |c: chat_sessions::Column| Expr::col((chat_sessions::Entity, c));
        let owner_of = |pick: fn(&Principal) -> Uuid| {
            let mut case = CaseStatement::new();
            for (id, who, _) in chunk {
                case = case.case(col(chat_sessions::Column::Id).eq(*id), pick(who));
            }
            case
        };
        let mut rename = CaseStatement::new().case(
            col(chat_sessions::Column::Title).ne(UNTITLED),
            col(chat_sessions::Column::Title),
        );
        for (id, _, title) in chunk {
            if let Some(title) = title {
                rename = rename.case(col(chat_sessions::Column::Id).eq(*id), title.as_str());
            }
        }
        let rename = rename.finally(col(chat_sessions::Column::Title));
        let mut stmt = Query::update();
        stmt.table(chat_sessions::Entity)
            .value(chat_sessions::Column::UpdatedAt, now)
            .value(chat_sessions::Column::Title, rename);
        // Only batches that open or close a turn name the marker. Every session of the chunk
        // gets a branch, with a bound flag saying whether it writes: the statement's text then
        // depends on the chunk's size alone and stays prepared.
        if chunk.iter().any(|(id, _, _)| marks.contains_key(id)) {
            let mut mark = CaseStatement::new();
            for (id, _, _) in chunk {
                let (writes, text) = match marks.get(id) {
                    Some(text) => (true, text.clone()),
                    None => (false, None),
                };
                mark = mark.case(
                    col(chat_sessions::Column::Id)
                        .eq(*id)
                        .and(Expr::val(writes)),
                    text,
                );
            }
            stmt.value(
                chat_sessions::Column::OpenTurn,
                mark.finally(col(chat_sessions::Column::OpenTurn)),
            );
        }
        let stmt = stmt
            .and_where(col(chat_sessions::Column::Id).is_in(chunk.iter().map(|(id, _, _)| *id)))
            .and_where(col(chat_sessions::Column::DeletedAt).is_null())
            .and_where(col(chat_sessions::Column::UserId).eq(owner_of(|w| w.user_id)))
            .and_where(col(chat_sessions::Column::OrgId).eq(owner_of(|w| w.org_id)))
            .returning_col(chat_sessions::Column::Id)
            .to_owned();
        let tested: HashMap<Uuid, Uuid> = chunk
            .iter()
            .map(|(id, who, _)| (*id, who.user_id))
            .collect();
        for row in conn.query_all(&stmt).await? {
            let id = row.try_get_by_index::<Uuid>(0)?;
            if let Some(user) = tested.get(&id) {
                live.insert(id, *user);
            }
        }
    }
    Ok(live)
}

/// A session's title from its first question: whitespace folded, cut at a length.
pub(crate) fn auto_title(query: &str) -> String {
    query
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(AUTO_TITLE_CHARS)
        .collect()
}

/// A session's entries of one kind: the legacy array in its row, then its appended rows.
async fn entries<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    session_id: Uuid,
    legacy: serde_json::Value,
    kind: &str,
) -> Result<Vec<serde_json::Value>, StorageError> {
    let mut out = match legacy {
        serde_json::Value::Array(items) => items,
        _ => Vec::new(),
    };
    let rows: Vec<serde_json::Value> = chat_messages::Entity::find()
        .select_only()
        .column(chat_messages::Column::Body)
        .filter(chat_messages::Column::OrgId.eq(org_id))
        .filter(chat_messages::Column::SessionId.eq(session_id))
        .filter(chat_messages::Column::Kind.is_in([kind, BOTH]))
        .order_by_asc(chat_messages::Column::Id)
        .into_tuple::<serde_json::Value>()
        .all(conn)
        .await?;
    for body in rows {
        unpack(body, &mut out);
    }
    Ok(out)
}

/// A stored row's entries: a turn's row holds them as an array; a row written before turns were
/// stored whole holds one entry.
pub(crate) fn unpack(body: serde_json::Value, out: &mut Vec<serde_json::Value>) {
    match body {
        serde_json::Value::Array(entries) => out.extend(entries),
        entry => out.push(entry),
    }
}

/// A turn left open by a node, as the sweep for orphaned turns finds it.
#[derive(Clone, Debug)]
pub struct OrphanCandidate {
    pub session_id: Uuid,
    /// The session's user, as the turn acts (role read now: a demotion since holds).
    pub who: Principal,
    pub open: crate::turns::OpenTurn,
}

impl Sessions {
    /// The marker of the turn running in `who`'s session `id` (JSON text, see
    /// [`crate::turns::OpenTurn`]), or `None` between turns. `NotFound` when the session is
    /// not theirs or deleted.
    pub async fn open_turn(
        &self,
        who: &Principal,
        id: Uuid,
    ) -> Result<Option<String>, StorageError> {
        let stmt = org_select::<chat_sessions::Entity>(who.org_id)
            .select_only()
            .column(chat_sessions::Column::OpenTurn)
            .filter(chat_sessions::Column::Id.eq(id))
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null())
            .into_query();
        let rows = self.db.org_query(who.org_id, &stmt).await?;
        let row = rows.first().ok_or(StorageError::NotFound("session"))?;
        Ok(row.try_get_by_index::<Option<String>>(0)?)
    }

    /// Takes over the open turn whose marker reads `seen`, naming `next` (its new node), or
    /// closes it (`None`): `false` when the marker changed meanwhile (the turn ended, or
    /// another node took it), so of two nodes trying, one continues the turn.
    pub async fn claim_turn(
        &self,
        who: &Principal,
        id: Uuid,
        seen: &str,
        next: Option<&crate::turns::OpenTurn>,
    ) -> Result<bool, StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let res = chat_sessions::Entity::update_many()
            .col_expr(
                chat_sessions::Column::OpenTurn,
                Expr::value(next.map(crate::turns::OpenTurn::to_text)),
            )
            .filter(tx.org_filter::<chat_sessions::Entity>())
            .filter(chat_sessions::Column::Id.eq(id))
            .filter(chat_sessions::Column::UserId.eq(who.user_id))
            .filter(chat_sessions::Column::DeletedAt.is_null())
            .filter(chat_sessions::Column::OpenTurn.eq(seen))
            .exec(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected == 1)
    }

    /// Every open turn of every org (the system context: a node sweeping for turns that a
    /// dead node left reads them all, then continues only those it owns). A partial index
    /// keeps this to the few open ones.
    pub async fn open_turns(&self) -> Result<Vec<OrphanCandidate>, StorageError> {
        use crate::entities::users;
        let stmt = Query::select()
            .columns([
                (chat_sessions::Entity, chat_sessions::Column::Id),
                (chat_sessions::Entity, chat_sessions::Column::OrgId),
                (chat_sessions::Entity, chat_sessions::Column::UserId),
                (chat_sessions::Entity, chat_sessions::Column::OpenTurn),
            ])
            .columns([
                (users::Entity, users::Column::Email),
                (users::Entity, users::Column::Role),
            ])
            .from(chat_sessions::Entity)
            .inner_join(
                users::Entity,
                Expr::col((users::Entity, users::Column::Id))
                    .equals((chat_sessions::Entity, chat_sessions::Column::UserId)),
            )
            .and_where(
                Expr::col((chat_sessions::Entity, chat_sessions::Column::OpenTurn)).is_not_null(),
            )
            .and_where(
                Expr::col((chat_sessions::Entity, chat_sessions::Column::DeletedAt)).is_null(),
            )
            .and_where(Expr::col((users::Entity, users::Column::RemovedAt)).is_null())
            .to_owned();
        let mut found = Vec::new();
        for row in self.db.system_query(&stmt).await? {
            let text: String = row.try_get_by_index(3)?;
            let role: String = row.try_get_by_index(5)?;
            // A marker or role this build cannot read is left alone (and logged), not guessed.
            let (Some(open), Ok(role)) = (crate::turns::OpenTurn::parse(&text), role.parse())
            else {
                tracing::warn!(session_id = ?row.try_get_by_index::<Uuid>(0).ok(), "unreadable open-turn marker left alone");
                continue;
            };
            found.push(OrphanCandidate {
                session_id: row.try_get_by_index(0)?,
                who: Principal {
                    org_id: row.try_get_by_index(1)?,
                    user_id: row.try_get_by_index(2)?,
                    email: row.try_get_by_index(4)?,
                    role,
                },
                open,
            });
        }
        Ok(found)
    }
}
