//! Ingestion end to end: one text file of MB megabytes (default 5) uploaded and ingested by the
//! real pipeline (object store, extraction, splitting, embedding with the in-process model in
//! batches, one transaction storing chunks and vectors, index update). Reports chunks per second
//! and where the time went.
//!
//!   EMBEDDING_MODEL_DIR=.models/all-MiniLM-L6-v2 cargo bench --bench kb_ingest
//!   DATABASE_URL=postgres://... EMBEDDING_MODEL_DIR=... cargo bench --bench kb_ingest

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use aurora_actors::knowledge::{split, FileKind, KnowledgeBase};
use aurora_models::embeddings::{Embedder, EmbeddingPool, PoolConfig};
use aurora_storage::knowledge::Knowledge;
use aurora_storage::objects::ObjectStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SUBJECTS: &[&str] = &[
    "the payments service",
    "the checkout pod",
    "the primary database",
    "the Redis cache",
    "the ingress controller",
    "the batch worker",
    "the Kafka consumer",
    "the DNS resolver",
];
const VERBS: &[&str] = &[
    "restarts",
    "times out",
    "runs out of memory",
    "loses its connection",
    "returns errors",
    "falls behind",
    "fails its health check",
    "is throttled",
];
const ACTIONS: &[&str] = &[
    "check the logs with kubectl logs",
    "scale the deployment up",
    "raise the memory limit",
    "fail over to the replica",
    "roll back the last release",
    "page the owning team",
    "clear the stuck jobs",
    "rotate the credentials",
];

/// Runbook-like English prose of about `bytes` bytes, in Markdown sections.
fn runbook(bytes: usize, rng: &mut StdRng) -> String {
    let mut out = String::with_capacity(bytes + 1024);
    let mut section = 0;
    while out.len() < bytes {
        section += 1;
        out.push_str(&format!("\n## Incident pattern {section}\n\n"));
        for _ in 0..rng.gen_range(3..8) {
            let s = SUBJECTS[rng.gen_range(0..SUBJECTS.len())];
            let v = VERBS[rng.gen_range(0..VERBS.len())];
            let a = ACTIONS[rng.gen_range(0..ACTIONS.len())];
            out.push_str(&format!(
                "When {s} {v} during peak traffic, first {a}, then confirm the error rate drops \
                 within ten minutes. "
            ));
        }
        out.push('\n');
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let mb = common::env_usize("MB", 5);
    let model = PathBuf::from(
        std::env::var("EMBEDDING_MODEL_DIR")
            .map_err(|_| anyhow::anyhow!("set EMBEDDING_MODEL_DIR to the model directory"))?,
    );
    let bench = common::Bench::start().await?;
    let objects_dir = tempfile::tempdir()?;
    let embedder = Arc::new(Embedder::load(&model)?);
    let pool = EmbeddingPool::start(embedder, PoolConfig::default());
    let kb = KnowledgeBase::new(
        Knowledge::new(bench.db.clone()),
        pool,
        ObjectStore::local(objects_dir.path()),
        u64::MAX,
        // Markdown only here: read in process, no child.
        aurora_actors::knowledge::child::Extractor {
            program: None,
            timeout: std::time::Duration::from_secs(60),
            memory_bytes: 1 << 30,
        },
    );
    let text = runbook(mb * 1024 * 1024, &mut StdRng::seed_from_u64(3));
    let t = Instant::now();
    let chunks = split(FileKind::Markdown, &text).len();
    let split_s = t.elapsed().as_secs_f64();

    let started = Instant::now();
    let doc = kb
        .accept(&bench.who, "runbook.md", None, text.into_bytes())
        .await?;
    let accepted = started.elapsed().as_secs_f64();
    let n = kb.ingest(bench.who.org_id, doc.id).await?;
    let total = started.elapsed().as_secs_f64();
    assert_eq!(n, chunks);
    println!(
        "backend {}: {mb} MB Markdown -> {n} chunks in {total:.1} s end to end: {:.1} chunks/s \
         (upload {accepted:.2} s, splitting alone {split_s:.2} s)",
        bench.backend,
        n as f64 / total
    );
    let _ = bench.db.close().await;
    Ok(())
}
