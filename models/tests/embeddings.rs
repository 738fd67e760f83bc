//! The in-process embeddings against vectors from the Python sentence-transformers package
//! (`scripts/reference_vectors.py`), with the real model files.

use std::path::PathBuf;

use aurora_models::embeddings::{Embedder, DIMENSIONS};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

/// `EMBEDDING_MODEL_DIR` (set by scripts/test.sh), else the workspace's `.models` copy.
fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EMBEDDING_MODEL_DIR") {
        return dir.into();
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.models/all-MiniLM-L6-v2");
    assert!(
        local.join("model.safetensors").exists(),
        "the embedding model is missing: run scripts/test.sh (it fetches it), or set EMBEDDING_MODEL_DIR"
    );
    local
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn vectors_match_sentence_transformers() {
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let embedder = Embedder::load(&model_dir()).unwrap();
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    // In batches of mixed lengths, as the pool runs them.
    let mut ours = Vec::new();
    for chunk in texts.chunks(7) {
        ours.extend(embedder.embed(chunk).unwrap());
    }
    assert_eq!(ours.len(), reference.vectors.len());
    for ((text, mine), theirs) in texts.iter().zip(&ours).zip(&reference.vectors) {
        assert_eq!(mine.len(), DIMENSIONS);
        let norm: f32 = mine.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");
        let c = cosine(mine, theirs);
        assert!(c >= 0.999, "cosine {c} for {text:?}");
    }
    // A sentence alone gives the same vector as in a padded batch.
    let alone = embedder.embed(&[texts[16]]).unwrap().remove(0);
    assert!(cosine(&alone, &ours[16]) > 0.99999);
    assert!(embedder.embed(&[]).unwrap().is_empty());
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Embedder::load(dir.path()).err().expect("no model there");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_batches_concurrent_callers_and_pushes_back_when_full() {
    use aurora_models::embeddings::{EmbeddingPool, PoolConfig, PoolError};
    use std::sync::Arc;
    use std::time::Duration;
    let embedder = Arc::new(Embedder::load(&model_dir()).unwrap());
    let direct = embedder
        .embed(&["disk full on db-1", "pods pending"])
        .unwrap();
    let pool = EmbeddingPool::start(
        embedder,
        PoolConfig {
            workers: 1,
            max_batch: 16,
            window: Duration::from_millis(20),
            queue: 4,
        },
    );
    // Concurrent callers get their own vectors back, in order, whatever they were batched with.
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let texts = if i % 2 == 0 {
                    vec!["disk full on db-1".to_string(), "pods pending".to_string()]
                } else {
                    vec!["pods pending".to_string()]
                };
                (i, pool.embed(texts).await)
            })
        })
        .collect();
    for c in calls {
        let (i, got) = c.await.unwrap();
        let got = got.unwrap();
        if i % 2 == 0 {
            assert!(cosine(&got[0], &direct[0]) > 0.99999 && cosine(&got[1], &direct[1]) > 0.99999);
        } else {
            assert_eq!(got.len(), 1);
            assert!(cosine(&got[0], &direct[1]) > 0.99999);
        }
    }
    // A flood beyond the queue is refused at once, never queued without bound.
    let flood: Vec<_> = (0..64)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.embed(vec!["x".repeat(400)]).await })
        })
        .collect();
    let mut busy = 0;
    for f in flood {
        match f.await.unwrap() {
            Ok(v) => assert_eq!(v.len(), 1),
            Err(PoolError::Busy) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy > 0, "a queue of 4 cannot take 64 requests at once");
    assert!(pool.embed(vec![]).await.unwrap().is_empty());
}
