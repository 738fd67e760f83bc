//! The session and run actors: one turn at a time, persisted history, approvals and cancels
//! routed to the running turn, END always last.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aurora_actors::protocol::{Decision, ErrorCode, Mode, RunStatus, ServerFrame};
use aurora_actors::session::{SessionActor, SessionArgs, SessionMsg, SessionShared};
use aurora_actors::Mailbox;
use aurora_fakes::{Completion, Reply};
use aurora_storage::sessions::Sessions;
use common::{harness, kinds, Harness};
use ractor::{Actor, ActorRef};
use tokio::sync::mpsc;

async fn session(h: &Harness) -> (ActorRef<SessionMsg>, uuid::Uuid, Sessions) {
    let sessions = Sessions::new(h.db.clone());
    let id = sessions.create(&h.who, None).await.unwrap().id;
    let args = SessionArgs {
        session_id: id,
        who: h.who.clone(),
        shared: Arc::new(SessionShared {
            deps: Arc::new(h.deps.clone()),
            sessions: sessions.clone(),
            system_prompt: "You are an SRE agent.".into(),
            default_model: "gpt-4o".into(),
        }),
        mailbox: Mailbox::new(),
        resume: None,
    };
    let (actor, _) = Actor::spawn(None, SessionActor, args).await.unwrap();
    (actor, id, sessions)
}

fn query(actor: &ActorRef<SessionMsg>, text: &str) -> mpsc::Receiver<ServerFrame> {
    let (tx, rx) = mpsc::channel(256);
    actor
        .cast(SessionMsg::Query {
            query: text.into(),
            mode: Mode::Agent,
            model: None,
            interactive: true,
            frames: tx,
            role: None,
        })
        .unwrap();
    rx
}

/// Frames until END (or the channel closes).
async fn until_end(rx: &mut mpsc::Receiver<ServerFrame>) -> Vec<ServerFrame> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_persist_and_the_next_turn_sees_them() {
    let h = harness(vec![
        Reply::text(&["The DB is saturated."], (10, 5)),
        Reply::text(&["Scale it."], (20, 3)),
    ])
    .await;
    let (actor, id, sessions) = session(&h).await;
    let frames = until_end(&mut query(&actor, "Why is checkout slow?")).await;
    assert_eq!(kinds(&frames).last().unwrap(), "status");
    let detail = sessions.get(&h.who, id).await.unwrap();
    assert_eq!(detail.title, "Why is checkout slow?");
    assert_eq!(detail.messages.as_array().unwrap().len(), 2);
    until_end(&mut query(&actor, "What now?")).await;
    let second = &h.fake.requests()[1]["messages"];
    assert_eq!(second[1]["content"], "Why is checkout slow?");
    assert_eq!(second[2]["content"], "The DB is saturated.");
    assert_eq!(second[3]["content"], "What now?");
    assert_eq!(
        sessions
            .get(&h.who, id)
            .await
            .unwrap()
            .messages
            .as_array()
            .unwrap()
            .len(),
        4
    );
    actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_turn_at_a_time() {
    let slow = Reply::Stream(Completion {
        text: vec!["a".into(); 20],
        usage: Some((1, 1)),
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let h = harness(vec![slow, Reply::text(&["later"], (1, 1))]).await;
    let (actor, _, _) = session(&h).await;
    let mut first = query(&actor, "first");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = until_end(&mut query(&actor, "second")).await;
    assert!(
        matches!(&busy[0], ServerFrame::Error { data, .. } if data.code == ErrorCode::SessionBusy),
        "{busy:?}"
    );
    let frames = until_end(&mut first).await;
    assert!(matches!(frames.last(), Some(ServerFrame::Status { .. })));
    // After END the session takes the next query at once.
    let frames = until_end(&mut query(&actor, "third")).await;
    assert!(
        !frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Error { .. })),
        "{frames:?}"
    );
    actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_cancels_reach_the_running_turn() {
    let h = harness(vec![
        Reply::tool_call(
            "call_d",
            "cloud_exec",
            &["{\"command\": \"kubectl delete pod web-1\"}"],
            (5, 5),
        ),
        Reply::text(&["Deleted."], (5, 5)),
    ])
    .await;
    let (actor, _, _) = session(&h).await;
    let mut rx = query(&actor, "delete web-1");
    let mut frames = Vec::new();
    while let Some(f) = rx.recv().await {
        if let ServerFrame::ExecutionConfirmation { data, .. } = &f {
            actor
                .cast(SessionMsg::Decision {
                    confirmation_id: data.confirmation_id.clone(),
                    decision: Decision::Execute,
                    approver: h.who.user_id,
                })
                .unwrap();
        }
        let end = matches!(&f, ServerFrame::Status { .. });
        frames.push(f);
        if end {
            break;
        }
    }
    assert!(
        kinds(&frames).contains(&"tool_result".to_string()),
        "{:?}",
        kinds(&frames)
    );

    let slow = Reply::Stream(Completion {
        text: vec!["b".into(); 100],
        usage: Some((1, 1)),
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let h = harness(vec![slow]).await;
    let (actor, id, sessions) = session(&h).await;
    let mut rx = query(&actor, "long answer please");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = ractor::call_t!(actor, SessionMsg::Status, 1000).unwrap();
    assert_eq!(status.state, "running");
    assert_eq!(status.children[0].kind, "agent_run");
    actor.cast(SessionMsg::Cancel).unwrap();
    let frames = until_end(&mut rx).await;
    assert!(matches!(frames.last(), Some(ServerFrame::Status { .. })));
    let saved = sessions.get(&h.who, id).await.unwrap();
    let partial = saved.messages[1]["content"].as_str().unwrap().to_string();
    assert!(
        !partial.is_empty() && partial.len() < 100,
        "partial answer saved: {partial:?}"
    );
    let status = ractor::call_t!(actor, SessionMsg::Status, 1000).unwrap();
    assert_eq!(status.state, "idle");
    actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_session_is_not_found() {
    let h = harness(vec![]).await;
    let sessions = Sessions::new(h.db.clone());
    let args = SessionArgs {
        session_id: uuid::Uuid::now_v7(),
        who: h.who.clone(),
        shared: Arc::new(SessionShared {
            deps: Arc::new(h.deps.clone()),
            sessions,
            system_prompt: String::new(),
            default_model: "gpt-4o".into(),
        }),
        mailbox: Mailbox::new(),
        resume: None,
    };
    let (actor, _) = Actor::spawn(None, SessionActor, args).await.unwrap();
    let frames = until_end(&mut query(&actor, "hello?")).await;
    assert!(
        matches!(&frames[0], ServerFrame::Error { data, .. } if data.code == ErrorCode::NotFound),
        "{frames:?}"
    );
    assert!(
        h.fake.requests().is_empty(),
        "no model call for a session that is not there"
    );
    actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_past_its_timeout_ends_with_an_error_and_keeps_its_output() {
    let slow = Reply::Stream(Completion {
        text: vec!["c".into(); 100],
        usage: Some((1, 1)),
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let mut h = harness(vec![slow]).await;
    h.deps.turn_timeout = Duration::from_millis(300);
    let (actor, id, sessions) = session(&h).await;
    let frames = until_end(&mut query(&actor, "take your time")).await;
    assert!(
        frames.iter().any(
            |f| matches!(f, ServerFrame::Error { data, .. } if data.text.contains("timed out"))
        ),
        "{:?}",
        kinds(&frames)
    );
    assert!(matches!(frames.last(), Some(ServerFrame::Status { .. })));
    let saved = sessions.get(&h.who, id).await.unwrap();
    assert!(
        !saved.messages[1]["content"].as_str().unwrap().is_empty(),
        "partial output kept"
    );
    actor.stop(None);
}
