//! Org isolation: row-level security on PostgreSQL, repository scoping on SQLite, and migrations
//! that several nodes may run at once.

mod common;

use aurora_config::DatabaseConfig;
use aurora_storage::cache::Cache;
use aurora_storage::entities::{chat_sessions, ORG_SCOPED_TABLES};
use aurora_storage::knowledge::{DocStatus, Knowledge, NewChunk, NewDocument};
use aurora_storage::turns::{TurnWrite, TurnWriter};
use aurora_storage::usage::UsageRecord;
use aurora_storage::Db;
use common::{Backend, TestDb, TestNode};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use serde_json::json;
use uuid::Uuid;

/// Two orgs with a session, a preference and audit rows each; returns (org_a, org_b).
async fn two_orgs(t: &TestNode) -> (Uuid, Uuid) {
    let mut orgs = Vec::new();
    for (email, org) in [("a@alpha.io", "Alpha"), ("b@beta.io", "Beta")] {
        let token = t.register(email, org).await;
        let (_, session) = t
            .post(
                "/chat_api/sessions",
                Some(&token),
                json!({ "title": format!("{org} outage") }),
            )
            .await;
        let session_id: Uuid = session["id"].as_str().unwrap().parse().unwrap();
        t.post(
            "/api/user-preferences",
            Some(&token),
            json!({ "key": "theme", "value": org }),
        )
        .await;
        let (status, _) = t
            .post(
                "/api/org/command-policies",
                Some(&token),
                json!({ "effect": "deny", "pattern": format!("{org}-prod") }),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED);
        let (status, _) = t
            .post(
                "/api/org/credentials",
                Some(&token),
                json!({ "provider": "kubernetes", "name": format!("{org} cluster"),
                        "server": "https://10.0.0.1:6443", "token": format!("{org}-token") }),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED);
        let (status, _) = t
            .post(
                "/api/org/invitations",
                Some(&token),
                json!({ "role": "viewer", "email": format!("new@{org}.io") }),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED);
        let (_, me) = t.get("/api/auth/me", Some(&token)).await;
        let org_id: Uuid = me["org_id"].as_str().unwrap().parse().unwrap();
        // A turn as the chat runtime saves it: its messages (one row each, for history and
        // context), a usage row, the user's running total.
        let turn = vec![json!({ "role": "user", "content": format!("{org} is down") })];
        let write = TurnWrite {
            who: t.principal(&token).await,
            session_id,
            messages: turn,
            context: None,
            first_query: None,
            usage: vec![UsageRecord {
                session_id: Some(session_id),
                provider: "openai".into(),
                model: "gpt-4o".into(),
                input_tokens: 10,
                output_tokens: 20,
                cost_usd: 0.001,
            }],
            mark: Default::default(),
        };
        TurnWriter::start(t.node().db().clone(), Cache::local())
            .save(write)
            .await
            .unwrap();
        // A knowledge-base document with one chunk, and the org's memory text.
        let who = t.principal(&token).await;
        let kb = Knowledge::new(t.node().db().clone());
        let doc = kb
            .create(
                &who,
                NewDocument {
                    title: org,
                    filename: "runbook.md",
                    content_type: "text/markdown",
                    size_bytes: 10,
                },
            )
            .await
            .unwrap();
        kb.mark(org_id, doc.id, DocStatus::Processing, None)
            .await
            .unwrap();
        let chunk = NewChunk {
            content: format!("{org} runbook"),
            vector: vec![1.0, 0.0],
        };
        kb.complete(org_id, doc.id, vec![chunk]).await.unwrap();
        kb.set_memory(&who, &format!("{org} notes")).await.unwrap();
        // The incident tables: a webhook token, an alert through it (its fingerprint, then the
        // correlator's incident and feed events), a thought and a citation of a run.
        let hook = common::incidents::webhook(&t.base, &token, None).await;
        let alert = common::incidents::generic(&format!("{org} 5xx"), org, "api", org, "firing");
        let (status, _) =
            common::incidents::deliver(&t.base, "generic", &hook, alert.to_string(), &[]).await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
        let incident = common::incidents::wait_for(10, "the alert's incident", || async {
            common::incidents::incidents(t, &token)
                .await
                .into_iter()
                .next()
        })
        .await;
        let incident_id: Uuid = incident["id"].as_str().unwrap().parse().unwrap();
        let tx = t.node().db().org(org_id).await.unwrap();
        {
            use aurora_storage::entities::{incident_citations, incident_thoughts};
            use sea_orm::{ActiveModelTrait, ActiveValue::Set};
            let now = chrono::Utc::now();
            incident_thoughts::ActiveModel {
                id: Set(Uuid::now_v7()),
                org_id: Set(org_id),
                incident_id: Set(incident_id),
                run: Set(1),
                seq: Set(1),
                kind: Set("thought".into()),
                content: Set(format!("{org} looks at api")),
                tool_name: Set(None),
                tool_call_id: Set(None),
                created_at: Set(now),
            }
            .insert(tx.conn())
            .await
            .unwrap();
            incident_citations::ActiveModel {
                id: Set(Uuid::now_v7()),
                org_id: Set(org_id),
                incident_id: Set(incident_id),
                run: Set(1),
                kind: Set("alert".into()),
                reference: Set("a".into()),
                title: Set(format!("{org} alert")),
                excerpt: Set(format!("{org} 5xx")),
                created_at: Set(now),
            }
            .insert(tx.conn())
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        orgs.push(org_id);
    }
    (orgs[0], orgs[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rls_hides_other_orgs_rows_from_unfiltered_queries() {
    let t = TestNode::start(Backend::Postgres).await;
    let (org_a, org_b) = two_orgs(&t).await;
    let db = t.node().db();

    let tx = db.org(org_a).await.unwrap();
    for (table, column) in ORG_SCOPED_TABLES {
        // No WHERE clause at all: only row-level security stands between org A and org B's rows.
        let rows = tx
            .conn()
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT {column}::text AS org FROM {table}"),
            ))
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table} has org A rows");
        for row in rows {
            let org: String = row.try_get("", "org").unwrap();
            assert_eq!(
                org,
                org_a.to_string(),
                "{table} leaked a row of another org"
            );
        }
    }
    // sea-orm's plain find(), again without any filter.
    let sessions = chat_sessions::Entity::find().all(tx.conn()).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].org_id, org_a);
    // Writes into another org are refused by the policy's WITH CHECK, and updates cannot reach it.
    let insert = format!(
        "INSERT INTO chat_sessions (id, org_id, user_id, title, messages, llm_context_history, status, created_at, updated_at) \
         SELECT '{}', '{org_b}', user_id, 'planted', '[]', '[]', 'active', now(), now() FROM chat_sessions LIMIT 1",
        Uuid::now_v7()
    );
    let err = tx.conn().execute_unprepared(&insert).await.unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);
    let tx = db.org(org_a).await.unwrap();
    let updated = tx
        .conn()
        .execute_unprepared("UPDATE chat_sessions SET title = 'hijacked'")
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 1, "only org A's own session");
    drop(tx); // rolled back

    // Every org-scoped table has row-level security enabled and forced.
    for (table, _) in ORG_SCOPED_TABLES {
        let row = db
            .connection()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT relrowsecurity AND relforcerowsecurity AS ok FROM pg_class WHERE oid = 'public.{table}'::regclass"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert!(row.try_get::<bool>("", "ok").unwrap(), "{table}");
    }

    // Outside any org or system context (the RLS role without a setting) nothing is visible.
    let txn = sea_orm::TransactionTrait::begin(db.connection())
        .await
        .unwrap();
    txn.execute_unprepared("SET LOCAL ROLE aurora_app")
        .await
        .unwrap();
    let n = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM users",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.try_get::<i64>("", "n").unwrap(), 0);
    drop(txn);

    // Org B, likewise, sees only its own.
    let tx = db.org(org_b).await.unwrap();
    let sessions = chat_sessions::Entity::find().all(tx.conn()).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].title, "Beta outage");
    tx.commit().await.unwrap();
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_repository_scoping_hides_other_orgs_rows() {
    let t = TestNode::start(Backend::Sqlite).await;
    let (org_a, org_b) = two_orgs(&t).await;
    let db = t.node().db();
    let tx = db.org(org_a).await.unwrap();
    // The repository layer's select with no further filter: only org A.
    let sessions = tx
        .select::<chat_sessions::Entity>()
        .all(tx.conn())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].org_id, org_a);
    assert_eq!(sessions[0].title, "Alpha outage");
    let users = tx
        .select::<aurora_storage::entities::users::Entity>()
        .all(tx.conn())
        .await
        .unwrap();
    assert!(users.iter().all(|u| u.org_id == org_a) && users.len() == 1);
    let prefs = tx
        .select::<aurora_storage::entities::user_preferences::Entity>()
        .all(tx.conn())
        .await
        .unwrap();
    assert_eq!(prefs.len(), 1);
    assert_eq!(prefs[0].value, json!("Alpha"));
    let orgs = tx
        .select::<aurora_storage::entities::organizations::Entity>()
        .all(tx.conn())
        .await
        .unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0].id, org_a);
    // Deletes through the org filter cannot touch org B either.
    let deleted = chat_sessions::Entity::delete_many()
        .filter(tx.org_filter::<chat_sessions::Entity>())
        .exec(tx.conn())
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected, 1);
    drop(tx); // rolled back
    let tx = db.org(org_b).await.unwrap();
    let sessions = tx
        .select::<chat_sessions::Entity>()
        .all(tx.conn())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].org_id, org_b);
    tx.commit().await.unwrap();
    t.stop().await;
}

use sea_orm::QueryFilter;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_on_postgres_are_safe() {
    let pg = TestDb::create().await;
    let config = DatabaseConfig::Postgres {
        url: aurora_config::Secret::new(pg.url.clone()),
    };
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let db = Db::connect(&config, 2, "aurora_app").await.unwrap();
            db.migrate().await.unwrap();
            db.close().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let db = Db::connect(&config, 1, "aurora_app").await.unwrap();
    let row = db
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    use aurora_storage::migration::MigratorTrait;
    let expected = aurora_storage::migration::Migrator::migrations().len() as i64;
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), expected);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fast_reads_never_inherit_a_previous_context() {
    let t = TestNode::start(Backend::Postgres).await;
    let (org_a, org_b) = two_orgs(&t).await;
    // One connection in each pool: every read below reuses the same session, so a context left
    // over by the previous read would show immediately.
    let config = DatabaseConfig::Postgres {
        url: aurora_config::Secret::new(t.pg.as_ref().unwrap().url.clone()),
    };
    let db = Db::connect(&config, 1, "aurora_app").await.unwrap();
    // No org filter at all in the statement: only row-level security scopes it.
    let unfiltered = || sea_orm::QueryTrait::into_query(chat_sessions::Entity::find());
    for round in 0..3 {
        for (org, title) in [(org_a, "Alpha outage"), (org_b, "Beta outage")] {
            let rows = db.org_query(org, &unfiltered()).await.unwrap();
            assert_eq!(rows.len(), 1, "round {round}");
            assert_eq!(rows[0].try_get::<String>("", "title").unwrap(), title);
        }
        let all = db.system_query(&unfiltered()).await.unwrap();
        assert_eq!(all.len(), 2, "system context sees both orgs");
        // After a system read, an org read must not keep the system bypass.
        let rows = db.org_query(org_b, &unfiltered()).await.unwrap();
        assert_eq!(rows.len(), 1);
        // An org nobody belongs to sees nothing.
        assert!(db
            .org_query(Uuid::now_v7(), &unfiltered())
            .await
            .unwrap()
            .is_empty());
    }
    db.close().await.unwrap();
    t.stop().await;
}
