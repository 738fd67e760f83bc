//! The sessions supervisor: routing with ownership, idle stop, and rebuilding from storage.

#[path = "../../actors/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use aurora_actors::protocol::{ErrorCode, Mode, RunStatus, ServerFrame};
use aurora_actors::session::SessionMsg;
use aurora_actors::Mailbox;
use aurora_fakes::Reply;
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
    let args = SessionsArgs {
        deps: Arc::new(h.deps.clone()),
        sessions: Sessions::new(h.db.clone()),
        system_prompt: "You are an SRE agent.".into(),
        default_model: "gpt-4o".into(),
        idle_after,
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
    let stranger = Principal {
        user_id: uuid::Uuid::now_v7(),
        ..h.who.clone()
    };
    let frames = ask(&sup, &stranger, id, "mine?").await;
    assert!(
        matches!(&frames[0], ServerFrame::Error { data, .. } if data.code == ErrorCode::NotFound),
        "{frames:?}"
    );
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
