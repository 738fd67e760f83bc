//! The sessions supervisor: routing with ownership, hibernation and idle stop, and rebuilding
//! from storage.

#[path = "../../actors/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use aurora_actors::metrics::HIBERNATED_SESSIONS;
use aurora_actors::protocol::{ErrorCode, Mode, RunStatus, ServerFrame};
use aurora_actors::session::SessionMsg;
use aurora_actors::Mailbox;
use aurora_fakes::{Completion, Reply};
use aurora_storage::auth::Principal;
use aurora_storage::sessions::Sessions;
use aurora_supervisors::sessions::{SessionsArgs, SessionsMsg, SessionsSupervisor};
use aurora_supervisors::{Backoff, Placement};
use common::{harness, Harness};
use ractor::{Actor, ActorRef};
use tokio::sync::{mpsc, watch};

async fn supervisor(h: &Harness, idle_after: Duration) -> ActorRef<SessionsMsg> {
    let (_, placement) = watch::channel(Placement::alone("test"));
    placed_supervisor(h, idle_after, placement).await
}

async fn placed_supervisor(
    h: &Harness,
    idle_after: Duration,
    placement: watch::Receiver<Placement>,
) -> ActorRef<SessionsMsg> {
    resting_supervisor(h, idle_after, idle_after, placement).await
}

async fn resting_supervisor(
    h: &Harness,
    idle_after: Duration,
    hibernate_after: Duration,
    placement: watch::Receiver<Placement>,
) -> ActorRef<SessionsMsg> {
    let args = SessionsArgs {
        deps: Arc::new(h.deps.clone()),
        sessions: Sessions::new(h.db.clone()),
        system_prompt: "You are an SRE agent.".into(),
        default_model: "gpt-4o".into(),
        idle_after,
        hibernate_after,
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
        },
        mailbox: Mailbox::new(),
        placement,
    };
    Actor::spawn(None, SessionsSupervisor, args)
        .await
        .unwrap()
        .0
}

async fn ask(
    sup: &ActorRef<SessionsMsg>,
    who: &Principal,
    session_id: uuid::Uuid,
    text: &str,
) -> Vec<ServerFrame> {
    let (tx, mut rx) = mpsc::channel(256);
    let msg = SessionMsg::Query {
        query: text.into(),
        mode: Mode::Agent,
        model: None,
        interactive: true,
        frames: tx,
        role: None,
    };
    sup.cast(SessionsMsg::Route {
        session_id,
        who: who.clone(),
        msg,
    })
    .unwrap();
    let mut frames = Vec::new();
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        let end = matches!(&f, ServerFrame::Status { data, .. } if data.status == RunStatus::End);
        frames.push(f);
        if end {
            break;
        }
    }
    frames
}

/// Another user of the same org asking in session `id` gets NOT_FOUND, as if it did not exist.
async fn stranger_is_refused(sup: &ActorRef<SessionsMsg>, h: &Harness, id: uuid::Uuid) {
    let stranger = Principal {
        user_id: uuid::Uuid::now_v7(),
        ..h.who.clone()
    };
    let frames = ask(sup, &stranger, id, "mine?").await;
    assert!(
        matches!(&frames[0], ServerFrame::Error { data, .. } if data.code == ErrorCode::NotFound),
        "{frames:?}"
    );
}

async fn live_sessions(sup: &ActorRef<SessionsMsg>) -> usize {
    ractor::call_t!(sup, SessionsMsg::Status, 2000)
        .unwrap()
        .children
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_checks_ownership_and_stops_idle_sessions() {
    let h = harness(vec![
        Reply::text(&["first answer"], (1, 1)),
        Reply::text(&["second answer"], (1, 1)),
    ])
    .await;
    let sup = supervisor(&h, Duration::from_millis(300)).await;
    let id = Sessions::new(h.db.clone())
        .create(&h.who, None)
        .await
        .unwrap()
        .id;

    let frames = ask(&sup, &h.who, id, "hello").await;
    assert!(matches!(frames.last(), Some(ServerFrame::Status { .. })));
    assert_eq!(live_sessions(&sup).await, 1);

    // Another user routing to this session id gets NOT_FOUND, and no model call happens.
    stranger_is_refused(&sup, &h, id).await;
    assert_eq!(h.fake.requests().len(), 1);

    // Idle: the actor goes away, and the next message rebuilds it from storage.
    let mut gone = false;
    for _ in 0..50 {
        if live_sessions(&sup).await == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "idle session stopped");
    ask(&sup, &h.who, id, "again").await;
    let second = &h.fake.requests()[1]["messages"];
    assert_eq!(
        second[2]["content"], "first answer",
        "history came back from storage"
    );
    sup.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_session_is_rebuilt_on_its_next_message() {
    let h = harness(vec![
        Reply::text(&["one"], (1, 1)),
        Reply::text(&["two"], (1, 1)),
    ])
    .await;
    let sup = supervisor(&h, Duration::from_secs(600)).await;
    let id = Sessions::new(h.db.clone())
        .create(&h.who, None)
        .await
        .unwrap()
        .id;
    ask(&sup, &h.who, id, "q1").await;
    let children = sup.get_cell().get_children();
    assert_eq!(children.len(), 1);
    children[0].kill();
    for _ in 0..50 {
        if live_sessions(&sup).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frames = ask(&sup, &h.who, id, "q2").await;
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Message { data, .. } if data.text == "two")),
        "{frames:?}"
    );
    assert_eq!(h.fake.requests()[1]["messages"][2]["content"], "one");
    sup.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_owned_elsewhere_stop_when_the_placement_changes() {
    let h = harness(vec![
        Reply::text(&["one"], (1, 1)),
        Reply::text(&["two"], (1, 1)),
    ])
    .await;
    let (placement_tx, placement) = watch::channel(Placement::alone("me"));
    let sup = placed_supervisor(&h, Duration::from_secs(600), placement).await;
    let sessions = Sessions::new(h.db.clone());
    // Two sessions: with a second node, one of them is (with overwhelming odds among a few
    // tries) owned there and the other here.
    let two = Placement::new("me", ["other".to_string()]);
    let mut mine = None;
    let mut theirs = None;
    while mine.is_none() || theirs.is_none() {
        let id = sessions.create(&h.who, None).await.unwrap().id;
        if two.is_local(id) {
            mine.get_or_insert(id);
        } else {
            theirs.get_or_insert(id);
        }
    }
    let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
    ask(&sup, &h.who, mine, "q1").await;
    ask(&sup, &h.who, theirs, "q2").await;
    assert_eq!(live_sessions(&sup).await, 2);

    placement_tx.send(two).unwrap();
    let mut left = Vec::new();
    for _ in 0..50 {
        left = ractor::call_t!(sup, SessionsMsg::Status, 2000)
            .unwrap()
            .children
            .into_iter()
            .map(|c| c.id)
            .collect();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        left,
        vec![mine.to_string()],
        "only the session owned here stays"
    );
    sup.stop(None);
}

/// A supervisor of one node that lets sessions hibernate, and a new session.
async fn resting_session(
    h: &Harness,
    idle_after: Duration,
    hibernate_after: Duration,
) -> (ActorRef<SessionsMsg>, uuid::Uuid) {
    let (_, placement) = watch::channel(Placement::alone("test"));
    let sup = resting_supervisor(h, idle_after, hibernate_after, placement).await;
    let id = Sessions::new(h.db.clone())
        .create(&h.who, None)
        .await
        .unwrap()
        .id;
    (sup, id)
}

/// Waits (up to 5 s) until `cond` holds.
async fn eventually<F: std::future::Future<Output = bool>>(mut cond: impl FnMut() -> F) -> bool {
    for _ in 0..100 {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Removes every session's stored messages (the model context with them): a session that
/// answers with its earlier turns afterwards had them from its hibernation record.
async fn forget_stored_context(h: &Harness) {
    use sea_orm::ConnectionTrait;
    h.db.connection()
        .execute_unprepared("DELETE FROM chat_messages")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_hibernate_and_wake_with_their_context() {
    let h = harness(vec![
        Reply::text(&["first answer"], (1, 1)),
        Reply::text(&["second answer"], (1, 1)),
        Reply::text(&["third answer"], (1, 1)),
    ])
    .await;
    let (sup, id) =
        resting_session(&h, Duration::from_millis(1500), Duration::from_millis(100)).await;
    ask(&sup, &h.who, id, "hello").await;
    assert!(
        eventually(|| async { live_sessions(&sup).await == 0 }).await,
        "the idle session's actor stopped"
    );
    assert_eq!(HIBERNATED_SESSIONS.get(), 1);

    // A stranger gets NOT_FOUND from a hibernating session too, and wakes nothing.
    stranger_is_refused(&sup, &h, id).await;
    assert_eq!(live_sessions(&sup).await, 0);
    assert_eq!(HIBERNATED_SESSIONS.get(), 1);

    // The owner wakes it; its context comes from the record, not from storage.
    forget_stored_context(&h).await;
    let frames = ask(&sup, &h.who, id, "again").await;
    assert!(
        !frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Error { .. })),
        "{frames:?}"
    );
    assert_eq!(HIBERNATED_SESSIONS.get(), 0);
    let second = &h.fake.requests()[1]["messages"];
    assert_eq!(second[2]["content"], "first answer", "{second}");
    assert_eq!(
        h.fake.requests().len(),
        2,
        "the stranger caused no model call"
    );

    // Idle past idle_after, the record is forgotten too: the next turn reads storage (where
    // the context was removed above, apart from the second turn's).
    assert!(
        eventually(|| async { live_sessions(&sup).await == 0 }).await,
        "hibernated again"
    );
    assert!(
        eventually(|| async { HIBERNATED_SESSIONS.get() == 0 }).await,
        "record forgotten after idle_after"
    );
    ask(&sup, &h.who, id, "third").await;
    let third = &h.fake.requests()[2]["messages"];
    assert_eq!(third[1]["content"], "again", "{third}");
    sup.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_running_a_turn_does_not_hibernate() {
    let slow = Reply::Stream(Completion {
        text: vec!["b".into(); 40],
        usage: Some((1, 1)),
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let h = harness(vec![slow]).await;
    let (sup, id) = resting_session(&h, Duration::from_secs(600), Duration::from_millis(50)).await;
    let asking = {
        let (sup, who) = (sup.clone(), h.who.clone());
        tokio::spawn(async move { ask(&sup, &who, id, "long answer").await })
    };
    // Several sweeps pass while the answer streams (800 ms): the session stays.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(live_sessions(&sup).await, 1);
    }
    let frames = asking.await.unwrap();
    let chunks = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::Message { data, .. } if data.is_chunk))
        .count();
    assert_eq!(chunks, 40, "the whole answer streamed");
    assert!(matches!(frames.last(), Some(ServerFrame::Status { .. })));
    // Then it rests.
    assert!(eventually(|| async { live_sessions(&sup).await == 0 }).await);
    sup.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_and_stop_hibernating_sessions_of_their_org_only() {
    use aurora_supervisors::sessions::{AdminAction, AdminRefusal};
    let h = harness(vec![Reply::text(&["hi"], (1, 1))]).await;
    let (sup, id) = resting_session(&h, Duration::from_secs(600), Duration::from_millis(50)).await;
    ask(&sup, &h.who, id, "hello").await;
    assert!(eventually(|| async { HIBERNATED_SESSIONS.get() == 1 }).await);
    let admin = |org_id, action| {
        let sup = sup.clone();
        async move {
            ractor::call_t!(
                sup,
                |reply| SessionsMsg::Admin {
                    session_id: id,
                    org_id,
                    action,
                    reply
                },
                2000
            )
            .unwrap()
        }
    };
    let other_org = uuid::Uuid::now_v7();
    assert_eq!(
        admin(other_org, AdminAction::StopSession).await,
        Err(AdminRefusal::NotFound)
    );
    assert_eq!(
        admin(h.who.org_id, AdminAction::CancelRun).await,
        Err(AdminRefusal::NotRunning)
    );
    assert_eq!(HIBERNATED_SESSIONS.get(), 1);
    assert_eq!(admin(h.who.org_id, AdminAction::StopSession).await, Ok(()));
    assert_eq!(HIBERNATED_SESSIONS.get(), 0);
    sup.stop(None);
}
