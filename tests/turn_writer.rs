//! The turn writer's group commit: concurrent turns of several users land whole, with exact
//! running totals, and one bad turn in a batch fails alone. And the other side: session
//! contexts read together answer each reader with its own session only.

mod common;

use aurora_storage::cache::Cache;
use aurora_storage::sessions::Sessions;
use aurora_storage::turns::{OpenTurn, TurnMark, TurnWrite, TurnWriter};
use aurora_storage::usage::{LlmUsage, UsageRecord};
use common::{Backend, TestNode};
use serde_json::json;

fn call(cost: f64) -> UsageRecord {
    UsageRecord {
        session_id: None,
        provider: "openai".into(),
        model: "gpt-4o".into(),
        input_tokens: 10,
        output_tokens: 2,
        cost_usd: cost,
    }
}

/// A node with a turn writer and two users in two orgs.
struct TwoOrgs {
    t: TestNode,
    db: aurora_storage::Db,
    writer: TurnWriter,
    sessions: Sessions,
    a: aurora_storage::auth::Principal,
    b: aurora_storage::auth::Principal,
}

async fn two_orgs(backend: Backend) -> TwoOrgs {
    let t = TestNode::start(backend).await;
    let db = t.node().db().clone();
    let writer = TurnWriter::start(db.clone(), Cache::local());
    let sessions = Sessions::new(db.clone());
    let a = t.principal(&t.register("a@alpha.io", "Alpha").await).await;
    let b = t.principal(&t.register("b@beta.io", "Beta").await).await;
    TwoOrgs {
        t,
        db,
        writer,
        sessions,
        a,
        b,
    }
}

async fn concurrent_turns_are_written_whole(backend: Backend) {
    let TwoOrgs {
        t,
        db,
        writer,
        sessions,
        a,
        b,
    } = two_orgs(backend).await;
    let mut ids = Vec::new();
    for who in [&a, &b] {
        for _ in 0..4 {
            ids.push((who.clone(), sessions.create(who, None).await.unwrap().id));
        }
    }
    let gone = sessions.create(&a, None).await.unwrap().id;
    sessions.delete(&a, gone).await.unwrap();

    let mut jobs = Vec::new();
    for round in 0..5 {
        for (who, id) in &ids {
            let writer = writer.clone();
            let turn = TurnWrite {
                who: who.clone(),
                session_id: *id,
                messages: vec![json!({ "role": "user", "content": format!("q{round}") })],
                context: None,
                first_query: Some(format!("q{round}")),
                usage: vec![call(0.001), call(0.002)],
                mark: Default::default(),
            };
            jobs.push(tokio::spawn(async move { writer.save(turn).await }));
        }
        // A turn for a deleted session, in the middle of the others.
        let turn = TurnWrite {
            who: a.clone(),
            session_id: gone,
            messages: vec![json!({ "role": "user", "content": "lost?" })],
            context: Some(vec![]),
            first_query: None,
            usage: vec![call(0.5)],
            mark: Default::default(),
        };
        let writer = writer.clone();
        jobs.push(tokio::spawn(async move { writer.save(turn).await }));
    }
    let mut failed = 0;
    for j in jobs {
        if j.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 5, "exactly the deleted session's turns fail");
    for (who, id) in &ids {
        let context = sessions.llm_context(who, *id).await.unwrap();
        assert_eq!(context.len(), 5, "every round, once");
    }
    // 4 sessions x 5 rounds x 0.003 each; the failed turns' usage was not written.
    let usage = LlmUsage::new(db.clone(), Cache::local());
    for who in [&a, &b] {
        let total = usage.total_cost(who).await.unwrap();
        assert!((total - 0.06).abs() < 1e-9, "{total}");
        let summary = usage.summary(who).await.unwrap();
        assert_eq!(summary.calls, 40);
    }
    // Bad input never reaches the database.
    let bad = TurnWrite {
        who: a.clone(),
        session_id: ids[0].1,
        messages: vec![],
        context: Some(vec![]),
        first_query: None,
        usage: vec![call(f64::NAN)],
        mark: Default::default(),
    };
    assert!(writer.save(bad).await.is_err());
    assert_eq!(usage.summary(&a).await.unwrap().calls, 40);
    t.stop().await;
}

/// Sessions written before history became rows keep their arrays as the first entries, and rows
/// of one entry each (before turns were stored whole) still read in order.
async fn legacy_arrays_come_first(backend: Backend) {
    use aurora_storage::entities::{chat_messages, chat_sessions};
    use sea_orm::sea_query::Expr;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
    let t = TestNode::start(backend).await;
    let db = t.node().db().clone();
    let sessions = Sessions::new(db.clone());
    let who = t.principal(&t.register("a@alpha.io", "Alpha").await).await;
    let id = sessions.create(&who, None).await.unwrap().id;
    let old = json!([{ "role": "user", "content": "old question" }]);
    let tx = db.system().await.unwrap();
    chat_sessions::Entity::update_many()
        .col_expr(chat_sessions::Column::Messages, Expr::value(old.clone()))
        .col_expr(chat_sessions::Column::LlmContextHistory, Expr::value(old))
        .filter(chat_sessions::Column::Id.eq(id))
        .exec(tx.conn())
        .await
        .unwrap();
    // Then a row as turns were stored before they were stored whole: one entry, not an array.
    chat_messages::Entity::insert(chat_messages::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        org_id: Set(who.org_id),
        session_id: Set(id),
        kind: Set("both".into()),
        body: Set(json!({ "role": "assistant", "content": "old answer", "timestamp": "2026-01-01T00:00:00Z" })),
        created_at: Set(chrono::Utc::now()),
    })
    .exec_without_returning(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let new = vec![json!({ "role": "user", "content": "new question" })];
    let turn = TurnWrite {
        who: who.clone(),
        session_id: id,
        messages: new,
        context: None,
        first_query: Some("new question".into()),
        usage: vec![],
        mark: Default::default(),
    };
    TurnWriter::start(db.clone(), Cache::local())
        .save(turn)
        .await
        .unwrap();
    let context = sessions.llm_context(&who, id).await.unwrap();
    let contents: Vec<&str> = context
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["old question", "old answer", "new question"]);
    assert!(
        context[1..].iter().all(|m| m.get("timestamp").is_none()),
        "an entry stored for history and context gives the model no display fields"
    );
    let detail = sessions.get(&who, id).await.unwrap();
    assert_eq!(detail.messages.as_array().unwrap().len(), 3);
    assert!(detail.messages[1]["timestamp"].is_string());
    assert!(detail.messages[2]["timestamp"].is_string());
    assert_eq!(detail.title, "new question");
    t.stop().await;
}

/// Reads outside transactions have connections of their own, so a writer holding a read-write
/// connection (on SQLite the only one, which the turn writer keeps for whole runs of batches)
/// does not stall them, and they see what was committed.
async fn reads_do_not_wait_for_the_writer(backend: Backend) {
    let t = TestNode::start(backend).await;
    let db = t.node().db().clone();
    let sessions = Sessions::new(db.clone());
    let who = t.principal(&t.register("a@alpha.io", "Alpha").await).await;
    let id = sessions.create(&who, None).await.unwrap().id;
    let writer = db.system().await.unwrap();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        sessions.llm_context(&who, id),
    )
    .await
    .expect("the read waited for the writer's connection");
    assert_eq!(read.unwrap(), Vec::<serde_json::Value>::new());
    let listed = sessions.list(&who, 10, 0).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    writer.commit().await.unwrap();
    t.stop().await;
}

/// In one batch: a turn on another user's session fails alone, a session is named after its
/// first question only while untitled, a turn without model calls still gets its user's total,
/// and a turn with more calls than one statement takes is written whole. A batch the database
/// refuses writes nothing of any of its turns, and the writer goes on with the next.
async fn batches_check_owners_and_fail_whole(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let TwoOrgs {
        t,
        db,
        writer,
        sessions,
        a,
        b,
    } = two_orgs(backend).await;
    let usage = LlmUsage::new(db.clone(), Cache::local());
    let untitled = sessions.create(&a, None).await.unwrap().id;
    let named = sessions.create(&a, Some("Mine")).await.unwrap().id;
    let quiet = sessions.create(&a, None).await.unwrap().id;
    let theirs = sessions.create(&b, None).await.unwrap().id;
    let turn = |session_id, first: &str, calls: usize| TurnWrite {
        who: a.clone(),
        session_id,
        messages: vec![json!({ "role": "user", "content": first })],
        context: None,
        first_query: Some(first.to_string()),
        usage: (0..calls).map(|_| call(0.001)).collect(),
        mark: Default::default(),
    };
    let jobs: Vec<_> = [
        turn(untitled, "  why is\n the   api slow ", 1),
        turn(named, "rename me?", 1),
        turn(quiet, "no model call", 0),
        turn(theirs, "not mine", 1),
        turn(named, "a long agent loop", 2100),
    ]
    .into_iter()
    .map(|turn| {
        let writer = writer.clone();
        tokio::spawn(async move { writer.save(turn).await })
    })
    .collect();
    let mut outcomes = Vec::new();
    for j in jobs {
        outcomes.push(j.await.unwrap());
    }
    assert!(matches!(
        outcomes[3],
        Err(aurora_storage::StorageError::NotFound(_))
    ));
    for ok in [&outcomes[0], &outcomes[1], &outcomes[4]] {
        let total = ok.as_ref().expect("the user's own sessions are written");
        assert!(*total > 0.0, "{total}");
    }
    assert!(outcomes[2].is_ok(), "a turn without calls is written");
    assert_eq!(usage.summary(&a).await.unwrap().calls, 2102);
    assert!((usage.total_cost(&a).await.unwrap() - 2.102).abs() < 1e-9);
    assert_eq!(usage.summary(&b).await.unwrap().calls, 0);
    assert!(sessions.llm_context(&b, theirs).await.unwrap().is_empty());
    assert_eq!(sessions.get(&b, theirs).await.unwrap().title, "New chat");
    assert_eq!(
        sessions.get(&a, untitled).await.unwrap().title,
        "why is the api slow"
    );
    assert_eq!(sessions.get(&a, named).await.unwrap().title, "Mine");
    assert_eq!(sessions.llm_context(&a, untitled).await.unwrap().len(), 1);

    // Another user's turn on a session of `a`, next to `a`'s own turn on it: it never lands.
    // (`a`'s lands too, except on PostgreSQL when the stranger's turn comes first in the
    // batch: then both fail, whole.)
    let shared = sessions.create(&a, None).await.unwrap().id;
    let theirs_on_mine = TurnWrite {
        who: b.clone(),
        ..turn(shared, "mine now", 1)
    };
    let (own, stranger) = tokio::join!(
        writer.save(turn(shared, "still mine", 1)),
        writer.save(theirs_on_mine)
    );
    assert!(matches!(
        stranger,
        Err(aurora_storage::StorageError::NotFound(_))
    ));
    let context = sessions.llm_context(&a, shared).await.unwrap();
    assert_eq!(context.len(), usize::from(own.is_ok()));
    assert!(context.iter().all(|m| m["content"] == "still mine"));
    if backend == Backend::Sqlite {
        assert!(own.is_ok());
    }
    assert_eq!(usage.summary(&b).await.unwrap().calls, 0);
    let calls = usage.summary(&a).await.unwrap().calls;
    assert_eq!(sessions.llm_context(&a, named).await.unwrap().len(), 2);
    assert_eq!(
        sessions.get(&a, quiet).await.unwrap().title,
        "no model call"
    );

    // The database refuses the next batch at its last statement (the totals table is away).
    assert_eq!(calls, 2102 + i64::from(own.is_ok()));
    let before = sessions.get(&a, quiet).await.unwrap();
    let conn = db.connection();
    conn.execute_unprepared("ALTER TABLE llm_usage_totals RENAME TO llm_usage_totals_away")
        .await
        .unwrap();
    assert!(writer.save(turn(quiet, "lost", 1)).await.is_err());
    conn.execute_unprepared("ALTER TABLE llm_usage_totals_away RENAME TO llm_usage_totals")
        .await
        .unwrap();
    let after = sessions.get(&a, quiet).await.unwrap();
    assert_eq!(
        after.messages, before.messages,
        "nothing of the failed batch"
    );
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(usage.summary(&a).await.unwrap().calls, calls);
    let total = writer.save(turn(quiet, "again", 1)).await.unwrap();
    let expected = (calls + 1) as f64 * 0.001;
    assert!((total - expected).abs() < 1e-9, "{total}");
    assert_eq!(sessions.llm_context(&a, quiet).await.unwrap().len(), 2);
    t.stop().await;
}

/// Many session actors starting at once: their context reads go to the database together, and
/// each gets its own session's context; another user's or org's session, a deleted one or an
/// unknown id is "not found" to its reader whatever else was in the batch.
async fn context_reads_go_together(backend: Backend) {
    let TwoOrgs {
        t,
        db: _,
        writer,
        sessions,
        a,
        b,
    } = two_orgs(backend).await;
    let mut owned = Vec::new();
    for (who, n) in [(&a, 6), (&b, 5)] {
        for i in 0..n {
            let id = sessions.create(who, None).await.unwrap().id;
            // Session i holds i turns, each naming its session and place.
            for k in 0..i {
                let turn = TurnWrite {
                    who: who.clone(),
                    session_id: id,
                    messages: vec![json!({ "role": "user", "content": format!("{id}/{k}") })],
                    context: None,
                    first_query: None,
                    usage: vec![],
                    mark: Default::default(),
                };
                writer.save(turn).await.unwrap();
            }
            owned.push((who.clone(), id, i));
        }
    }
    let gone = sessions.create(&a, None).await.unwrap().id;
    sessions.delete(&a, gone).await.unwrap();
    let mut reads = Vec::new();
    for round in 0..20 {
        for (i, (who, id, turns)) in owned.iter().enumerate() {
            reads.push((who.clone(), *id, Some(*turns)));
            // Someone else asking for the same session, in the same batch.
            let other = if who.user_id == a.user_id { &b } else { &a };
            if (i + round) % 3 == 0 {
                reads.push((other.clone(), *id, None));
            }
        }
        reads.push((a.clone(), gone, None));
        reads.push((b.clone(), uuid::Uuid::now_v7(), None));
    }
    let answers = futures::future::join_all(
        reads
            .iter()
            .map(|(who, id, _)| sessions.llm_context(who, *id)),
    )
    .await;
    for ((who, id, expected), answer) in reads.iter().zip(answers) {
        match expected {
            Some(turns) => {
                let context = answer.unwrap_or_else(|e| panic!("{} on {id}: {e}", who.email));
                let contents: Vec<String> = context
                    .iter()
                    .map(|m| m["content"].as_str().unwrap().to_string())
                    .collect();
                let want: Vec<String> = (0..*turns).map(|k| format!("{id}/{k}")).collect();
                assert_eq!(contents, want);
            }
            None => assert!(
                matches!(answer, Err(aurora_storage::StorageError::NotFound(_))),
                "{} read {id}: {answer:?}",
                who.email
            ),
        }
    }
    // A query the database refuses fails every reader of its batch with an error that is not
    // "not found", and the reads after it work again.
    use sea_orm::ConnectionTrait;
    let conn = t.node().db().connection();
    conn.execute_unprepared("ALTER TABLE chat_messages RENAME TO chat_messages_away")
        .await
        .unwrap();
    let (who, id, _) = &owned[3];
    let failed = futures::future::join_all((0..4).map(|_| sessions.llm_context(who, *id))).await;
    for answer in failed {
        assert!(
            matches!(answer, Err(ref e) if !matches!(e, aurora_storage::StorageError::NotFound(_))),
            "{answer:?}"
        );
    }
    conn.execute_unprepared("ALTER TABLE chat_messages_away RENAME TO chat_messages")
        .await
        .unwrap();
    assert_eq!(sessions.llm_context(who, *id).await.unwrap().len(), 3);
    t.stop().await;
}

/// A turn's marker: opened by its first write, kept by the steps between, closed by its last,
/// also when several of them go in one batch; found by the sweep for orphaned turns with its
/// user; taken over by one node only (the second claim of the same marker fails).
async fn turn_markers_open_keep_close_and_are_claimed_once(backend: Backend) {
    let TwoOrgs {
        t,
        writer,
        sessions,
        a,
        b,
        ..
    } = two_orgs(backend).await;
    let sa = sessions.create(&a, None).await.unwrap().id;
    let sb = sessions.create(&b, None).await.unwrap().id;
    let open = |node: &str| OpenTurn {
        node: node.into(),
        model: "gpt-4o".into(),
        mode: "agent".into(),
        interactive: true,
        started_at: chrono::Utc::now(),
        resumes: 0,
    };
    let step = |who: &aurora_storage::auth::Principal, id, text: &str, mark| TurnWrite {
        who: who.clone(),
        session_id: id,
        messages: vec![json!({ "role": "user", "content": text })],
        context: None,
        first_query: None,
        usage: vec![],
        mark,
    };
    writer
        .save(step(&a, sa, "q", TurnMark::Open(open("node-a"))))
        .await
        .unwrap();
    writer
        .save(step(&a, sa, "s1", TurnMark::Keep))
        .await
        .unwrap();
    let seen = sessions.open_turn(&a, sa).await.unwrap().expect("open");
    assert_eq!(OpenTurn::parse(&seen).unwrap().node, "node-a");
    assert_eq!(sessions.open_turn(&b, sb).await.unwrap(), None);
    // Another org's user cannot read it.
    assert!(sessions.open_turn(&b, sa).await.is_err());
    // The sweep sees it, with its user.
    let found = sessions.open_turns().await.unwrap();
    let mine: Vec<_> = found.iter().filter(|o| o.session_id == sa).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].who.user_id, a.user_id);
    assert_eq!(mine[0].who.org_id, a.org_id);
    assert_eq!(mine[0].open.node, "node-a");
    // Two nodes claim it: one wins.
    let next = OpenTurn {
        resumes: 1,
        ..open("node-b")
    };
    assert!(sessions
        .claim_turn(&a, sa, &seen, Some(&next))
        .await
        .unwrap());
    assert!(!sessions
        .claim_turn(&a, sa, &seen, Some(&open("node-c")))
        .await
        .unwrap());
    // Nor can another org's user take it.
    let now = sessions.open_turn(&a, sa).await.unwrap().unwrap();
    assert!(!sessions.claim_turn(&b, sa, &now, None).await.unwrap());
    assert_eq!(OpenTurn::parse(&now).unwrap().node, "node-b");
    // Open, step and close of two sessions in one batch: each ends as its last write says.
    let jobs = vec![
        writer
            .enqueue(step(&b, sb, "q", TurnMark::Open(open("node-b"))))
            .await
            .unwrap(),
        writer
            .enqueue(step(&a, sa, "s2", TurnMark::Keep))
            .await
            .unwrap(),
        writer
            .enqueue(step(&a, sa, "end", TurnMark::Close))
            .await
            .unwrap(),
        writer
            .enqueue(step(&b, sb, "s1", TurnMark::Keep))
            .await
            .unwrap(),
    ];
    for job in jobs {
        job.committed().await.unwrap();
    }
    assert_eq!(sessions.open_turn(&a, sa).await.unwrap(), None);
    assert!(sessions.open_turn(&b, sb).await.unwrap().is_some());
    assert_eq!(sessions.llm_context(&a, sa).await.unwrap().len(), 4);
    assert!(!sessions
        .open_turns()
        .await
        .unwrap()
        .iter()
        .any(|o| o.session_id == sa));
    t.stop().await;
}

on_both_backends!(
    turn_markers_open_keep_close_and_are_claimed_once,
    concurrent_turns_are_written_whole,
    batches_check_owners_and_fail_whole,
    context_reads_go_together,
    legacy_arrays_come_first,
    reads_do_not_wait_for_the_writer
);

/// PostgreSQL plans the batched context read through `chat_messages`' session index even when
/// the table's statistics are older than its rows (a young database, before autovacuum's next
/// analyze). Planned as a plain join, the read then scanned all of `chat_messages`, once per
/// batch or once per session of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_read_plan_follows_the_session_index() {
    use sea_orm::sea_query::PostgresQueryBuilder;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let TwoOrgs {
        t, db, sessions, a, ..
    } = two_orgs(Backend::Postgres).await;
    let mut ids = Vec::new();
    for _ in 0..256 {
        ids.push(sessions.create(&a, None).await.unwrap().id);
    }
    let conn = db.connection();
    // Statistics taken with the sessions there and `chat_messages` still empty, then rows: 40
    // per session.
    conn.execute_unprepared("ANALYZE chat_sessions, chat_messages")
        .await
        .unwrap();
    conn.execute_unprepared(
        "INSERT INTO chat_messages (id, org_id, session_id, kind, body, created_at) \
         SELECT gen_random_uuid(), s.org_id, s.id, 'both', '[]'::jsonb, now() \
         FROM chat_sessions s, generate_series(1, 40)",
    )
    .await
    .unwrap();
    let list = ids.iter().map(|&id| id.into()).collect();
    let (sql, values) =
        aurora_storage::context_query(DbBackend::Postgres, list).build(PostgresQueryBuilder);
    // Planned as the reader runs it: in the system context, as the application's role.
    let tx = db.system().await.unwrap();
    let explain =
        Statement::from_sql_and_values(DbBackend::Postgres, format!("EXPLAIN {sql}"), values);
    let plan: Vec<String> = tx
        .conn()
        .query_all_raw(explain)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect();
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan on chat_messages"), "{plan}");
    assert!(plan.contains("chat_messages_session_idx"), "{plan}");
    drop(tx);
    t.stop().await;
}
