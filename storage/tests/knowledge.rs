//! The knowledge index across nodes: two indexes over one database (two nodes) stay current
//! through the org's generation, whichever of them ingests or deletes; a search sees only
//! ready documents of its own org.

mod common;

use aurora_config::DatabaseConfig;
use aurora_storage::auth::Principal;
use aurora_storage::knowledge::{DocStatus, Knowledge, KnowledgeIndex, NewChunk, NewDocument};
use aurora_storage::Db;
use common::principal;
use uuid::Uuid;

async fn db() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        url: format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
    };
    let db = Db::connect(&config, 1, "aurora_app").await.unwrap();
    db.migrate().await.unwrap();
    (db, dir)
}

/// A unit vector pointing mostly along axis `i` of 8.
fn axis(i: usize) -> Vec<f32> {
    let mut v = vec![0.05f32; 8];
    v[i] = 1.0;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// Ingests a document with one chunk per `(text, axis)` through `index` (as its node would).
async fn ingest(index: &KnowledgeIndex, who: &Principal, chunks: &[(&str, usize)]) -> Uuid {
    let store = index.knowledge();
    let doc = store
        .create(
            who,
            NewDocument {
                title: "doc",
                filename: "doc.md",
                content_type: "text/markdown",
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
    assert!(store
        .mark(who.org_id, doc.id, DocStatus::Processing, None)
        .await
        .unwrap());
    let new = chunks
        .iter()
        .map(|(text, i)| NewChunk {
            content: text.to_string(),
            vector: axis(*i),
        })
        .collect();
    let (generation, stored) = store
        .complete(who.org_id, doc.id, new)
        .await
        .unwrap()
        .unwrap();
    index.added(who.org_id, generation, stored);
    doc.id
}

#[tokio::test]
async fn two_nodes_indexes_stay_current() {
    let (db, _dir) = db().await;
    let who = principal(&db, "a@one.io", "One").await;
    let other = principal(&db, "b@two.io", "Two").await;
    let node_a = KnowledgeIndex::new(Knowledge::new(db.clone()));
    let node_b = KnowledgeIndex::new(Knowledge::new(db.clone()));

    // B builds its (empty) index first, then A ingests: B must notice.
    assert!(node_b
        .search(who.org_id, "disk", axis(0), 5)
        .await
        .unwrap()
        .is_empty());
    let d1 = ingest(
        &node_a,
        &who,
        &[("disk full on the database host", 0), ("restart nginx", 1)],
    )
    .await;
    let hits = node_b
        .search(who.org_id, "disk full", axis(0), 5)
        .await
        .unwrap();
    assert_eq!(hits[0].document_id, d1);
    assert!(hits[0].content.contains("disk full"));
    assert!(hits[0].similarity > 0.99);

    // A's own index was updated in place and agrees.
    let hits = node_a
        .search(who.org_id, "nginx", axis(1), 5)
        .await
        .unwrap();
    assert_eq!(hits[0].content, "restart nginx");

    // Another org's search sees none of it, by vector or by keyword.
    assert!(node_b
        .search(other.org_id, "disk full", axis(0), 5)
        .await
        .unwrap()
        .is_empty());

    // B deletes; A stops returning the chunks.
    let d2 = ingest(&node_b, &who, &[("certificate renewal", 2)]).await;
    let (_, generation) = node_b.knowledge().delete(&who, d1).await.unwrap();
    node_b.removed(who.org_id, generation, d1);
    let hits = node_a
        .search(who.org_id, "disk full nginx", axis(0), 5)
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.document_id != d1), "{hits:?}");
    assert_eq!(hits[0].document_id, d2);

    // A document still processing is never searchable.
    let pending = node_a
        .knowledge()
        .create(
            &who,
            NewDocument {
                title: "pending",
                filename: "p.md",
                content_type: "text/markdown",
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
    assert!(node_a
        .search(who.org_id, "pending", axis(3), 5)
        .await
        .unwrap()
        .iter()
        .all(|h| h.document_id != pending.id));

    // Completing a document that was deleted meanwhile stores nothing.
    node_a.knowledge().delete(&who, pending.id).await.unwrap();
    let late = node_a
        .knowledge()
        .complete(
            who.org_id,
            pending.id,
            vec![NewChunk {
                content: "late".into(),
                vector: axis(4),
            }],
        )
        .await
        .unwrap();
    assert!(late.is_none());
}
