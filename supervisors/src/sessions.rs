//! `SessionsSupervisor`: owns every `SessionActor` of the node. Messages for a session are routed
//! through it: it checks the session belongs to the caller, starts the actor on first use,
//! lets idle sessions hibernate (the actor stops, its state waits here as a small record until
//! the next message starts an actor from it again), forgets sessions idle past the configured
//! time, and after a session actor crashes rebuilds it
//! from storage on its next message (the history is in the database, so nothing acknowledged is
//! lost). Crashes are counted per session; a session that keeps crashing is rebuilt only after
//! an exponential backoff, and its messages wait for it meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_actors::metrics::HIBERNATED_SESSIONS;
use aurora_actors::protocol::{ErrorCode, ServerFrame};
use aurora_actors::session::{Dormant, SessionActor, SessionArgs, SessionMsg, SessionShared};
use aurora_actors::turn::TurnDeps;
use aurora_actors::{ActorSnapshot, Counted, Mailbox};
use aurora_storage::auth::Principal;
use aurora_storage::sessions::Sessions;
use chrono::{DateTime, Utc};
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, MessagingErr, RpcReplyPort,
    SupervisionEvent,
};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::{Backoff, Placement};

mod check;

/// How soon a session that must move but is running a turn is looked at again.
const REHOME_RETRY: Duration = Duration::from_millis(250);

/// Idle sessions asked to hibernate at once (the supervisor waits for their answers, so
/// routes wait too; a batch keeps that pause short).
const HIBERNATE_BATCH: usize = 256;

#[derive(Clone)]
pub struct SessionsArgs {
    pub deps: Arc<TurnDeps>,
    pub sessions: Sessions,
    pub system_prompt: String,
    pub default_model: String,
    pub idle_after: Duration,
    /// An idle session's actor stops after this long and its state is kept here instead (a
    /// record of a few hundred bytes against an actor's ~10 KiB) until the next message or
    /// `idle_after`. Not below `idle_after`: sessions are then simply stopped.
    pub hibernate_after: Duration,
    /// Delay before a crashed session is rebuilt, growing with its crashes.
    pub backoff: Backoff,
    /// Counts what the edges send here (shared with their [`Counted`] reference).
    pub mailbox: Mailbox,
    /// Which sessions this node owns in the cluster; when it changes, sessions owned elsewhere
    /// now are stopped here (a running turn first finishes) and rebuilt on their new owner.
    pub placement: watch::Receiver<Placement>,
}

pub enum SessionsMsg {
    /// Deliver `msg` to `who`'s session `session_id`.
    Route {
        session_id: Uuid,
        who: Principal,
        msg: SessionMsg,
    },
    /// Hibernate sessions idle for `hibernate_after`, forget those idle for `idle_after` (sent
    /// to self periodically; again at once while idle sessions remain to be asked).
    Sweep,
    /// An org admin's action on a live session of that org.
    Admin {
        session_id: Uuid,
        org_id: Uuid,
        action: AdminAction,
        reply: RpcReplyPort<Result<(), AdminRefusal>>,
    },
    Status(RpcReplyPort<ActorSnapshot>),
    /// The placement changed, or sessions that must move were still running a turn: stop the
    /// sessions this node no longer owns.
    Rehome,
    /// The storage check of `who`'s claim on `session_id` came back (sent by the check task).
    Checked {
        session_id: Uuid,
        who: Principal,
        outcome: check::Outcome,
    },
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for SessionsMsg {}

/// What an admin may do to a session from the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AdminAction {
    /// Stop the session actor (a running turn is cancelled and saves what it has; the session
    /// is rebuilt from storage on its next message).
    StopSession,
    /// Cancel the running turn, keeping the session.
    CancelRun,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AdminRefusal {
    /// No live session with that id in the admin's org.
    NotFound,
    /// `CancelRun` on a session with no turn running.
    NotRunning,
}

struct Entry {
    actor: Counted<SessionMsg>,
    owner: Uuid,
    last_used: Instant,
    /// The latest client channel of the session, told when the session crashes.
    client: Option<mpsc::Sender<ServerFrame>>,
}

/// A hibernated session: no actor, just what its next actor starts from.
struct Sleeping {
    owner: Uuid,
    state: Dormant,
    since: Instant,
}

/// A session's crash history.
struct Crashes {
    count: u32,
    last: Instant,
}

pub struct SessionsState {
    args: SessionsArgs,
    shared: Arc<SessionShared>,
    live: HashMap<Uuid, Entry>,
    dormant: HashMap<Uuid, Sleeping>,
    /// Which session each live actor serves, for supervision events.
    by_actor: HashMap<ActorId, Uuid>,
    crashes: HashMap<Uuid, Crashes>,
    started_at: DateTime<Utc>,
    /// A `Rehome` retry is already scheduled.
    rehome_pending: bool,
    /// Messages for sessions with no actor here, waiting while storage says whose they are.
    checking: HashMap<Uuid, Vec<(Principal, SessionMsg)>>,
}

/// Tells a client that the session is not theirs, exactly as if it did not exist.
fn not_found(msg: &SessionMsg, session_id: Uuid) {
    tell(
        client_of(msg),
        ServerFrame::error(ErrorCode::NotFound, "session not found", Some(session_id)),
    );
}

pub struct SessionsSupervisor;

/// The client channel a message carries, to answer refusals on.
fn client_of(msg: &SessionMsg) -> Option<&mpsc::Sender<ServerFrame>> {
    match msg {
        SessionMsg::Query { frames, .. } | SessionMsg::Attach(frames) => Some(frames),
        SessionMsg::Resume { frames } => frames.as_ref(),
        _ => None,
    }
}

/// Tells a client something without ever making the supervisor wait on a slow client.
fn tell(client: Option<&mpsc::Sender<ServerFrame>>, frame: ServerFrame) {
    if let Some(client) = client {
        let _ = client.try_send(frame);
    }
}

impl SessionsSupervisor {
    /// Delivers `msg` to a live session actor, handing it back if that actor is gone.
    fn deliver(entry: &mut Entry, msg: SessionMsg) -> Result<(), Option<SessionMsg>> {
        // An actor that died but whose supervision event is still on its way takes no
        // messages: the caller rebuilds it instead of dropping this one.
        let alive = matches!(
            entry.actor.actor.get_status(),
            ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading
        );
        if !alive {
            return Err(Some(msg));
        }
        if let Some(client) = client_of(&msg) {
            entry.client = Some(client.clone());
        }
        match entry.actor.cast(msg) {
            Ok(()) => {
                entry.last_used = Instant::now();
                Ok(())
            }
            Err(MessagingErr::SendErr(returned)) => Err(Some(returned)),
            Err(_) => Err(None),
        }
    }

    async fn route(
        myself: &ActorRef<SessionsMsg>,
        state: &mut SessionsState,
        session_id: Uuid,
        who: Principal,
        mut msg: SessionMsg,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(entry) = state.live.get_mut(&session_id) {
            if entry.owner != who.user_id {
                not_found(&msg, session_id);
                return Ok(());
            }
            match Self::deliver(entry, msg) {
                Ok(()) => return Ok(()),
                Err(None) => return Ok(()),
                Err(Some(returned)) => msg = returned,
            }
            state.remove(session_id);
        }
        match state.dormant.get(&session_id) {
            Some(s) if s.owner != who.user_id => {
                not_found(&msg, session_id);
                return Ok(());
            }
            // Its owner was checked when its first actor started.
            Some(_) => {}
            // Nothing here says whose the session is: storage decides before any actor
            // exists. A frame with no query has nothing to act on without a running turn, so
            // it never starts one; a turn to continue does.
            None if matches!(msg, SessionMsg::Query { .. } | SessionMsg::Resume { .. }) => {
                Self::check(myself, state, session_id, who, msg);
                return Ok(());
            }
            None => return Ok(()),
        }
        Self::start(myself, state, session_id, who, msg, None).await
    }

    /// Starts `who`'s session actor (its owner checked) and gives it `msg`; `context` is the
    /// model context the check read, so the actor does not read it again.
    async fn start(
        myself: &ActorRef<SessionsMsg>,
        state: &mut SessionsState,
        session_id: Uuid,
        who: Principal,
        msg: SessionMsg,
        context: Option<Box<[aurora_models::llm::ChatMessage]>>,
    ) -> Result<(), ActorProcessingErr> {
        // A session that crashed is rebuilt only once its backoff has passed; its messages
        // come back here then, in the order they were sent.
        if let Some(crashes) = state.crashes.get(&session_id) {
            let ready_at = crashes.last + state.args.backoff.delay(crashes.count - 1);
            let now = Instant::now();
            if ready_at > now {
                myself.send_after(ready_at - now, move || SessionsMsg::Route {
                    session_id,
                    who,
                    msg,
                });
                return Ok(());
            }
        }
        let resume = state.wake(session_id).or_else(|| {
            context.map(|context| Dormant {
                org_id: who.org_id,
                context: Some(context),
                runs_failed: 0,
            })
        });
        let mailbox = Mailbox::new();
        let args = SessionArgs {
            session_id,
            who: who.clone(),
            shared: state.shared.clone(),
            mailbox: mailbox.clone(),
            resume,
        };
        let (actor, _) = Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await?;
        let mut entry = Entry {
            actor: Counted::new(actor, mailbox),
            owner: who.user_id,
            last_used: Instant::now(),
            client: None,
        };
        let _ = Self::deliver(&mut entry, msg);
        state
            .by_actor
            .insert(entry.actor.actor.get_id(), session_id);
        state.live.insert(session_id, entry);
        Ok(())
    }

    async fn admin(
        state: &mut SessionsState,
        session_id: Uuid,
        org_id: Uuid,
        action: AdminAction,
    ) -> Result<(), AdminRefusal> {
        // A hibernating session has no turn; stopping it forgets its record.
        if let Some(sleeping) = state.dormant.get(&session_id) {
            if sleeping.state.org_id != org_id {
                return Err(AdminRefusal::NotFound);
            }
            return match action {
                AdminAction::StopSession => {
                    state.wake(session_id);
                    tracing::info!(session = %session_id, "hibernating session stopped on request");
                    Ok(())
                }
                AdminAction::CancelRun => Err(AdminRefusal::NotRunning),
            };
        }
        let entry = state
            .live
            .get_mut(&session_id)
            .ok_or(AdminRefusal::NotFound)?;
        // The org is asked of the session itself: the supervisor keeps no copy per session.
        let snap = ractor::call_t!(entry.actor.actor, SessionMsg::Status, 500)
            .map_err(|_| AdminRefusal::NotFound)?;
        if snap.owner.map(|o| o.org_id) != Some(org_id) {
            return Err(AdminRefusal::NotFound);
        }
        match action {
            AdminAction::StopSession => {
                if let Some(entry) = state.remove(session_id) {
                    tracing::info!(session = %session_id, "session stopped on request");
                    entry.actor.actor.stop(Some("stopped by an admin".into()));
                }
            }
            AdminAction::CancelRun => {
                if snap.state != "running" {
                    return Err(AdminRefusal::NotRunning);
                }
                tracing::info!(session = %session_id, "turn cancelled by an admin");
                let _ = Self::deliver(entry, SessionMsg::Cancel);
            }
        }
        Ok(())
    }

    /// Stops the live sessions another node owns now. One with a turn running keeps it to the
    /// end (a move must not cost the user a turn) and is looked at again shortly.
    async fn rehome(myself: &ActorRef<SessionsMsg>, state: &mut SessionsState) {
        let placement = state.args.placement.borrow().clone();
        // Hibernating sessions hold nothing their owner cannot rebuild from storage.
        state.dormant.retain(|id, _| placement.is_local(*id));
        HIBERNATED_SESSIONS.set(state.dormant.len() as i64);
        let foreign: Vec<Uuid> = state
            .live
            .keys()
            .copied()
            .filter(|id| !placement.is_local(*id))
            .collect();
        let mut waiting = false;
        for id in foreign {
            let Some(entry) = state.live.get(&id) else {
                continue;
            };
            // A session too busy to answer is taken to be running: moving it would cost a turn.
            let running = ractor::call_t!(entry.actor.actor, SessionMsg::Status, 500)
                .map(|s| s.state == "running")
                .unwrap_or(true);
            if running {
                waiting = true;
            } else if let Some(entry) = state.remove(id) {
                tracing::info!(session_id = %id, owner = placement.owner(id), "session moves to its new owner");
                entry.actor.actor.stop(Some("moved to another node".into()));
            }
        }
        if waiting && !state.rehome_pending {
            state.rehome_pending = true;
            myself.send_after(REHOME_RETRY, || SessionsMsg::Rehome);
        }
    }

    /// Hibernates up to [`HIBERNATE_BATCH`] idle sessions and forgets those idle past
    /// `idle_after`; returns whether idle sessions remain to be asked.
    async fn sweep(state: &mut SessionsState) -> bool {
        let now = Instant::now();
        let idle_after = state.args.idle_after;
        state
            .dormant
            .retain(|_, s| now.duration_since(s.since) < idle_after);
        let rest_after = state.args.hibernate_after.min(idle_after);
        let mut idle: Vec<(Uuid, ActorRef<SessionMsg>)> = state
            .live
            .iter()
            .filter(|(_, e)| now.duration_since(e.last_used) >= rest_after)
            .map(|(id, e)| (*id, e.actor.actor.clone()))
            .collect();
        let more = idle.len() > HIBERNATE_BATCH;
        idle.truncate(HIBERNATE_BATCH);
        // Asked together; each answers at once unless it is running a turn, which is not idle
        // however old its last message.
        let ask = |actor: ActorRef<SessionMsg>| async move {
            ractor::call_t!(actor, SessionMsg::Hibernate, 500)
        };
        let answers =
            futures::future::join_all(idle.iter().map(|(_, actor)| ask(actor.clone()))).await;
        for ((id, _), answer) in idle.into_iter().zip(answers) {
            match answer {
                // Running a turn (or with messages waiting): in use now, so not asked again
                // before it has been idle for `hibernate_after` (no sweep spins on it).
                Ok(None) => {
                    if let Some(entry) = state.live.get_mut(&id) {
                        entry.last_used = now;
                    }
                }
                Ok(Some(dormant)) => {
                    // The actor stops itself; its end is no crash.
                    let Some(entry) = state.remove(id) else {
                        continue;
                    };
                    if now.duration_since(entry.last_used) < idle_after {
                        state.dormant.insert(
                            id,
                            Sleeping {
                                owner: entry.owner,
                                state: dormant,
                                since: entry.last_used,
                            },
                        );
                    }
                }
                // No answer in time: stopped as idle, as it looks from here; its history is
                // in storage.
                Err(_) => {
                    if let Some(entry) = state.remove(id) {
                        entry.actor.actor.stop(Some("idle".into()));
                    }
                }
            }
        }
        HIBERNATED_SESSIONS.set(state.dormant.len() as i64);
        more
    }
}

impl Actor for SessionsSupervisor {
    type Msg = SessionsMsg;
    type State = SessionsState;
    type Arguments = SessionsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionsMsg>,
        args: SessionsArgs,
    ) -> Result<SessionsState, ActorProcessingErr> {
        let every = (args.idle_after.min(args.hibernate_after) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(60));
        myself.send_interval(every, || SessionsMsg::Sweep);
        // Placement changes arrive as messages, so they are handled in order with the routes.
        let mut placement = args.placement.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            while placement.changed().await.is_ok() {
                if me.cast(SessionsMsg::Rehome).is_err() {
                    break;
                }
            }
        });
        let shared = Arc::new(SessionShared {
            deps: args.deps.clone(),
            sessions: args.sessions.clone(),
            system_prompt: args.system_prompt.clone(),
            default_model: args.default_model.clone(),
        });
        Ok(SessionsState {
            args,
            shared,
            live: HashMap::new(),
            dormant: HashMap::new(),
            by_actor: HashMap::new(),
            crashes: HashMap::new(),
            started_at: Utc::now(),
            rehome_pending: false,
            checking: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionsMsg>,
        msg: SessionsMsg,
        state: &mut SessionsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionsMsg::Route {
                session_id,
                who,
                msg,
            } => {
                state.args.mailbox.taken();
                Self::route(&myself, state, session_id, who, msg).await?;
            }
            SessionsMsg::Sweep => {
                if Self::sweep(state).await {
                    // The rest after the routes that waited meanwhile.
                    let _ = myself.cast(SessionsMsg::Sweep);
                }
                // A session started here for a message sent on an out-of-date view of the
                // members is moved to its owner too.
                Self::rehome(&myself, state).await;
            }
            SessionsMsg::Rehome => {
                state.rehome_pending = false;
                Self::rehome(&myself, state).await;
            }
            SessionsMsg::Checked {
                session_id,
                who,
                outcome,
            } => {
                Self::checked(&myself, state, session_id, who, outcome).await?;
            }
            SessionsMsg::Admin {
                session_id,
                org_id,
                action,
                reply,
            } => {
                let _ = reply.send(Self::admin(state, session_id, org_id, action).await);
            }
            SessionsMsg::Status(reply) => {
                // Asked all at once, by a task: routing goes on while the sessions answer.
                let asks: Vec<_> = state
                    .live
                    .iter()
                    .map(|(id, entry)| {
                        let restarts = state.crashes.get(id).map_or(0, |c| c.count);
                        let actor = entry.actor.actor.clone();
                        async move {
                            let mut snap = ractor::call_t!(actor, SessionMsg::Status, 500).ok()?;
                            snap.restarts += restarts;
                            Some(snap)
                        }
                    })
                    .collect();
                let mut me = ActorSnapshot {
                    kind: "sessions_supervisor".into(),
                    id: "sessions".into(),
                    state: "running".into(),
                    mailbox: state.args.mailbox.len(),
                    restarts: 0,
                    started_at: state.started_at,
                    owner: None,
                    children: Vec::new(),
                };
                tokio::spawn(async move {
                    me.children = futures::future::join_all(asks)
                        .await
                        .into_iter()
                        .flatten()
                        .collect();
                    let _ = reply.send(me);
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<SessionsMsg>,
        _state: &mut SessionsState,
    ) -> Result<(), ActorProcessingErr> {
        myself
            .stop_children_and_wait(
                Some("shutdown".into()),
                Some(crate::node::CHILDREN_STOP_TIMEOUT),
            )
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SessionsMsg>,
        evt: SupervisionEvent,
        state: &mut SessionsState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(id) = state.by_actor.get(&cell.get_id()).copied() else {
                    return Ok(());
                };
                let entry = state.remove(id);
                let crashes = state.crashes.entry(id).or_insert(Crashes {
                    count: 0,
                    last: Instant::now(),
                });
                crashes.count += 1;
                crashes.last = Instant::now();
                aurora_actors::metrics::ACTOR_RESTARTS
                    .with_label_values(&["session"])
                    .inc();
                tracing::error!(session_id = %id, error = %err, crashes = crashes.count, "session actor crashed; it is rebuilt from storage on its next message");
                // A crashed actor runs no post_stop: stop its run here (the run saves what it
                // has), and tell the client its turn ended.
                cell.stop_children(Some("session crashed".into()));
                if let Some(entry) = entry {
                    let text = "the session failed; it restarts from its saved history";
                    tell(
                        entry.client.as_ref(),
                        ServerFrame::error(ErrorCode::Internal, text, Some(id)),
                    );
                    tell(entry.client.as_ref(), ServerFrame::end(id));
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = state.by_actor.get(&cell.get_id()).copied() {
                    state.remove(id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SessionsState {
    /// Takes a hibernating session's record (its next actor starts from it).
    fn wake(&mut self, session_id: Uuid) -> Option<Dormant> {
        let sleeping = self.dormant.remove(&session_id)?;
        HIBERNATED_SESSIONS.set(self.dormant.len() as i64);
        Some(sleeping.state)
    }

    fn remove(&mut self, session_id: Uuid) -> Option<Entry> {
        let entry = self.live.remove(&session_id)?;
        self.by_actor.remove(&entry.actor.actor.get_id());
        Some(entry)
    }
}
