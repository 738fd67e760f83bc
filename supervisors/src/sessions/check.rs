//! Whose a session is, asked of storage before any actor exists for it. Without this a
//! stranger's frame for someone else's session id would start an actor in the stranger's name
//! and lock the owner out until it idled away.
//!
//! The check is the read a new session actor needs anyway (the session's model context,
//! which storage returns only to its owner), done off the supervisor's mailbox by a task, so
//! routing never waits on the database; the actor then starts from what was read. Messages for
//! the session wait in order meanwhile.

use aurora_actors::protocol::{ErrorCode, ServerFrame};
use aurora_actors::session::SessionMsg;
use aurora_models::llm::ChatMessage;
use aurora_storage::auth::Principal;
use aurora_storage::StorageError;
use ractor::{ActorProcessingErr, ActorRef};
use uuid::Uuid;

use super::{client_of, not_found, tell, SessionsMsg, SessionsState, SessionsSupervisor};

/// Sessions whose owner is being checked at once, at most; beyond it a query is refused as
/// busy (frames with made-up ids must not grow the node's memory without bound).
const MAX_CHECKING: usize = 10_000;

/// What storage said about a claim on a session.
#[derive(Debug)]
pub enum Outcome {
    /// The caller's session, with its model context.
    Owner(Box<[ChatMessage]>),
    /// Not the caller's, deleted, or never made: the same answer for all three.
    NotFound,
    /// Storage failed; the message is for the log only.
    Failed(String),
}

impl SessionsSupervisor {
    /// Queues `msg` behind the check of `who`'s claim on `session_id`, starting the check if
    /// none is running.
    pub(super) fn check(
        myself: &ActorRef<SessionsMsg>,
        state: &mut SessionsState,
        session_id: Uuid,
        who: Principal,
        msg: SessionMsg,
    ) {
        if let Some(waiting) = state.checking.get_mut(&session_id) {
            waiting.push((who, msg));
            return;
        }
        if state.checking.len() >= MAX_CHECKING {
            let text = "the node is busy; try again shortly";
            refuse(&msg, session_id, text);
            return;
        }
        state.checking.insert(session_id, vec![(who.clone(), msg)]);
        let sessions = state.args.sessions.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            let outcome = match sessions.llm_context(&who, session_id).await {
                Ok(values) => Outcome::Owner(
                    values
                        .into_iter()
                        .filter_map(|m| serde_json::from_value::<ChatMessage>(m).ok())
                        .collect(),
                ),
                Err(StorageError::NotFound(_)) => Outcome::NotFound,
                Err(e) => Outcome::Failed(e.to_string()),
            };
            // The supervisor gone (shutdown): nothing is waiting any more.
            let _ = myself.cast(SessionsMsg::Checked {
                session_id,
                who,
                outcome,
            });
        });
    }

    /// Acts on the messages that waited for a check: the checked caller's go to their session
    /// (or are refused), everyone else's are routed again, to a check of their own.
    pub(super) async fn checked(
        myself: &ActorRef<SessionsMsg>,
        state: &mut SessionsState,
        session_id: Uuid,
        who: Principal,
        outcome: Outcome,
    ) -> Result<(), ActorProcessingErr> {
        let waiting = state.checking.remove(&session_id).unwrap_or_default();
        let (mine, others): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .partition(|(w, _)| w.user_id == who.user_id && w.org_id == who.org_id);
        let mut context = match outcome {
            Outcome::Owner(context) => Some(context),
            Outcome::NotFound => {
                for (_, msg) in &mine {
                    not_found(msg, session_id);
                }
                None
            }
            Outcome::Failed(e) => {
                tracing::error!(session_id = %session_id, error = %e, "session owner check failed");
                for (_, msg) in &mine {
                    refuse(
                        msg,
                        session_id,
                        "the session could not be loaded; try again",
                    );
                }
                None
            }
        };
        if context.is_some() {
            for (w, msg) in mine {
                if state.live.contains_key(&session_id) {
                    Self::route(myself, state, session_id, w, msg).await?;
                } else {
                    Self::start(myself, state, session_id, w, msg, context.take()).await?;
                }
            }
        }
        for (w, msg) in others {
            Self::route(myself, state, session_id, w, msg).await?;
        }
        Ok(())
    }
}

/// Refuses a query that never started: the error, then the END that settles it for the
/// connection (which waits for one per query).
fn refuse(msg: &SessionMsg, session_id: Uuid, text: &str) {
    tell(
        client_of(msg),
        ServerFrame::error(ErrorCode::Internal, text, Some(session_id)),
    );
    tell(client_of(msg), ServerFrame::end(session_id));
}
