//! Knowledge-base search at scale: top-10 hybrid search (exact vector similarity fused with
//! BM25) over CHUNKS synthetic chunks (default 100 000) of one org, through the real path:
//! the org's generation read, the in-memory index, and the chunk rows fetched for the results.
//! Also the recall@10 of the vector ranking (int8 scan, f32 re-scoring) against an exact f64 scan, and the time to build
//! the index from the database (a node's first search after start).
//!
//!   cargo bench --bench kb_search                       # SQLite
//!   DATABASE_URL=postgres://... cargo bench --bench kb_search
//!
//! Bounded: CHUNKS chunks, QUERIES queries (default 1000).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::time::Instant;

use aurora_storage::knowledge::vectors;
use aurora_storage::knowledge::{DocStatus, Knowledge, KnowledgeIndex, NewChunk, NewDocument};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIMS: usize = 384;
const CHUNKS_PER_DOC: usize = 1000;
const TOPICS: usize = 500;
const VOCABULARY: usize = 20_000;
const WORDS_PER_CHUNK: usize = 120;

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller.
    let (u1, u2): (f32, f32) = (rng.gen_range(1e-7..1.0), rng.gen());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// Synthetic words: "w123"-style tokens drawn with a Zipf-like skew, so some are common.
fn word(rng: &mut StdRng) -> String {
    let r: f64 = rng.gen();
    format!(
        "w{}",
        ((VOCABULARY as f64).powf(r) as usize).min(VOCABULARY - 1)
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let chunks = common::env_usize("CHUNKS", 100_000);
    let queries = common::env_usize("QUERIES", 1000);
    let bench = common::Bench::start().await?;
    let knowledge = Knowledge::new(bench.db.clone());
    let mut rng = StdRng::seed_from_u64(7);
    let topics: Vec<Vec<f32>> = (0..TOPICS)
        .map(|_| unit((0..DIMS).map(|_| gaussian(&mut rng)).collect()))
        .collect();
    let mut all_vectors: Vec<Vec<f32>> = Vec::with_capacity(chunks);
    let started = Instant::now();
    let mut left = chunks;
    while left > 0 {
        let n = left.min(CHUNKS_PER_DOC);
        let doc = knowledge
            .create(
                &bench.who,
                NewDocument {
                    title: "synthetic",
                    filename: "synthetic.txt",
                    content_type: "text/plain",
                    size_bytes: 1,
                },
            )
            .await?;
        knowledge
            .mark(bench.who.org_id, doc.id, DocStatus::Processing, None)
            .await?;
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = &topics[rng.gen_range(0..TOPICS)];
            let v = unit(
                topic
                    .iter()
                    .map(|x| x + 0.08 * gaussian(&mut rng))
                    .collect(),
            );
            let text: Vec<String> = (0..WORDS_PER_CHUNK).map(|_| word(&mut rng)).collect();
            all_vectors.push(v.clone());
            batch.push(NewChunk {
                content: text.join(" "),
                vector: v,
            });
        }
        knowledge.complete(bench.who.org_id, doc.id, batch).await?;
        left -= n;
    }
    println!(
        "backend {}: {chunks} chunks stored in {:.1} s",
        bench.backend,
        started.elapsed().as_secs_f64()
    );

    let index = KnowledgeIndex::new(knowledge.clone());
    let query_vector = |rng: &mut StdRng| -> Vec<f32> {
        let topic = &topics[rng.gen_range(0..TOPICS)];
        unit(topic.iter().map(|x| x + 0.1 * gaussian(rng)).collect())
    };
    let query_text =
        |rng: &mut StdRng| -> String { (0..6).map(|_| word(rng)).collect::<Vec<_>>().join(" ") };
    let started = Instant::now();
    let first = index
        .search(
            bench.who.org_id,
            &query_text(&mut rng),
            query_vector(&mut rng),
            10,
        )
        .await?;
    assert_eq!(first.len(), 10);
    println!(
        "index build from the database (first search): {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let mut latencies = Vec::with_capacity(queries);
    for _ in 0..queries {
        let (text, vector) = (query_text(&mut rng), query_vector(&mut rng));
        let t = Instant::now();
        let hits = index.search(bench.who.org_id, &text, vector, 10).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(hits.len(), 10);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "hybrid top-10 over {chunks} chunks, {queries} queries: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );

    // Recall@10 of the vector ranking the index uses, against an exact f64 scan.
    let mut store = vectors::VectorStore::new(DIMS);
    for v in &all_vectors {
        store.push(v);
    }
    let live = vec![true; all_vectors.len()];
    let sample = 100.min(queries);
    let mut found = 0usize;
    for _ in 0..sample {
        let q = query_vector(&mut rng);
        let got: Vec<usize> = store
            .nearest(&live, &q, 10)
            .iter()
            .map(|s| s.index)
            .collect();
        let mut exact: Vec<(f64, usize)> = all_vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    v.iter().zip(&q).map(|(a, b)| *a as f64 * *b as f64).sum(),
                    i,
                )
            })
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        found += exact[..10].iter().filter(|(_, i)| got.contains(i)).count();
    }
    println!(
        "vector recall@10 against an exact f64 scan ({sample} queries): {:.3}",
        found as f64 / (sample * 10) as f64
    );
    let rss = common::rss_bytes();
    println!("process RSS: {:.0} MiB", rss as f64 / 1048576.0);
    let _ = bench.db.close().await;
    Ok(())
}
