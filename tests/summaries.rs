//! Long conversations: when a session's context would pass its share of the model's window,
//! the older turns are folded by the model into a summary kept in storage; the model then sees
//! the summary and the recent turns (also after the context is read back from storage), and the
//! history a user reads keeps every message.

mod common;

use aurora_fakes::Reply;
use common::ws::{chat_node_on, new_session, open, query, turn, Llm};
use common::Backend;
use serde_json::Value;

/// A query of about 10 000 estimated tokens, recognisable by `tag`.
fn long(tag: &str) -> String {
    format!("{tag} {}", "disk usage on db-1 climbs again. ".repeat(900))
}

fn text_of(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "message" && f["data"]["is_chunk"] == true)
        .map(|f| f["data"]["text"].as_str().unwrap_or(""))
        .collect()
}

async fn folds_older_turns(backend: Backend) {
    let script = vec![
        Reply::text(&["answer one"], (10, 2)),
        Reply::text(&["answer two"], (10, 2)),
        // The third turn would pass 80 % of a 30 000-token window: first the summary...
        Reply::text(
            &["SUMMARY: db-1 disk keeps filling; first asked about it in turn one."],
            (50, 20),
        ),
        // ...then the turn itself.
        Reply::text(&["answer three"], (10, 2)),
        Reply::text(&["answer four"], (10, 2)),
    ];
    let (t, fake, _dir) = chat_node_on(
        backend,
        Llm::OpenAi,
        script,
        "#!/bin/sh\n",
        &[("AURORA_LLM_CONTEXT_TOKENS", "gpt-4o=30000")],
    )
    .await;
    let token = t.register("long@example.com", "Acme").await;
    let sid = new_session(&t, &token).await;
    let mut ws = open(&t, &token).await;
    for (q, want) in [("TURN-ONE", "answer one"), ("TURN-TWO", "answer two")] {
        query(&mut ws, &sid, &long(q), "agent").await;
        assert_eq!(text_of(&turn(&mut ws, "cancel").await), want);
    }
    assert_eq!(fake.requests().len(), 2, "no summary yet");

    query(&mut ws, &sid, &long("TURN-THREE"), "agent").await;
    let frames = turn(&mut ws, "cancel").await;
    assert_eq!(text_of(&frames), "answer three", "{frames:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    // The summary was asked for the first turn only, without tools.
    let summary_call = requests[2]["messages"].to_string();
    assert!(
        summary_call.contains("TURN-ONE") && !summary_call.contains("TURN-TWO"),
        "{summary_call:.300}"
    );
    assert!(requests[2]["tools"].as_array().is_none_or(|t| t.is_empty()));
    // The turn's call: the summary instead of turn one, then turn two and the new query.
    let call = requests[3]["messages"].to_string();
    assert!(
        call.contains("SUMMARY: db-1 disk") && !call.contains("TURN-ONE"),
        "{call:.300}"
    );
    assert!(call.contains("TURN-TWO") && call.contains("TURN-THREE"));
    // The summary call's tokens are counted like any model call's.
    let usage: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "usage_final")
        .collect();
    assert_eq!(usage.len(), 2, "{frames:?}");

    // The next turn reads the folded context back from storage: still no turn one.
    query(&mut ws, &sid, "and now?", "agent").await;
    assert_eq!(text_of(&turn(&mut ws, "cancel").await), "answer four");
    let call = fake.requests()[4]["messages"].to_string();
    assert!(
        call.contains("SUMMARY: db-1 disk") && !call.contains("TURN-ONE"),
        "{call:.300}"
    );
    assert!(
        call.contains("TURN-TWO") && call.contains("answer three") && call.contains("and now?")
    );

    // The history a person reads keeps everything, and no summary.
    let (_, detail) = t
        .get(&format!("/chat_api/sessions/{sid}"), Some(&token))
        .await;
    let shown = detail["messages"].to_string();
    assert!(
        shown.contains("TURN-ONE") && shown.contains("answer one") && shown.contains("answer four")
    );
    assert!(!shown.contains("SUMMARY: db-1"));
    assert_eq!(detail["messages"].as_array().unwrap().len(), 8);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_folds_older_turns_into_a_summary() {
    folds_older_turns(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_folds_older_turns_into_a_summary() {
    folds_older_turns(Backend::Sqlite).await;
}
