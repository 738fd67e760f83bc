//! The SQLite turn writer on an in-memory database, which lives only as long as its one
//! connection: a batch the database refuses is rolled back on that connection, so the database
//! (and everything in it) survives the failure, and the writer goes on.

mod common;

use aurora_config::DatabaseConfig;
use aurora_storage::cache::Cache;
use aurora_storage::sessions::Sessions;
use aurora_storage::turns::{TurnWrite, TurnWriter};
use aurora_storage::usage::UsageRecord;
use aurora_storage::Db;
use common::principal;
use sea_orm::ConnectionTrait;
use serde_json::json;

#[tokio::test]
async fn a_refused_batch_keeps_an_in_memory_database() {
    let config = DatabaseConfig::Sqlite {
        url: "sqlite::memory:".into(),
    };
    let db = Db::connect(&config, 1, "aurora_app").await.unwrap();
    db.migrate().await.unwrap();
    let who = principal(&db, "a@alpha.io", "Alpha").await;
    let sessions = Sessions::new(db.clone());
    let id = sessions.create(&who, None).await.unwrap().id;
    let writer = TurnWriter::start(db.clone(), Cache::local());
    let turn = |text: &str| TurnWrite {
        who: who.clone(),
        session_id: id,
        messages: vec![json!({ "role": "user", "content": text })],
        context: None,
        first_query: Some(text.to_string()),
        usage: vec![UsageRecord {
            session_id: Some(id),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            input_tokens: 10,
            output_tokens: 2,
            cost_usd: 0.5,
        }],
        mark: Default::default(),
    };
    assert_eq!(writer.save(turn("first")).await.unwrap(), 0.5);

    // The script fails at its last statement, inside its transaction.
    let conn = db.connection();
    conn.execute_unprepared("ALTER TABLE llm_usage_totals RENAME TO llm_usage_totals_away")
        .await
        .unwrap();
    assert!(writer.save(turn("lost")).await.is_err());
    conn.execute_unprepared("ALTER TABLE llm_usage_totals_away RENAME TO llm_usage_totals")
        .await
        .unwrap();

    let context = sessions.llm_context(&who, id).await.unwrap();
    assert_eq!(
        context.len(),
        1,
        "the first turn is still there, the failed one is not"
    );
    assert_eq!(writer.save(turn("again")).await.unwrap(), 1.0);
    assert_eq!(sessions.llm_context(&who, id).await.unwrap().len(), 2);
    assert_eq!(sessions.get(&who, id).await.unwrap().title, "first");
}
