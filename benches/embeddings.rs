//! Embedding throughput on the CPU: the sentences in `SENTENCES` (one per line), batch 32,
//! best of three passes; then the cosine of every vector against the Python anchor's vectors
//! in `REFERENCE` (JSON), if given. Run through `benches/embeddings.sh`, which makes the
//! sentences and runs the anchor in the same session.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use aurora_models::embeddings::Embedder;

fn main() -> anyhow::Result<()> {
    // Built and listed as a test target too (`--all-targets`): run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let dir = std::env::var("EMBEDDING_MODEL_DIR")?;
    let sentences = std::fs::read_to_string(std::env::var("SENTENCES")?)?;
    let sentences: Vec<&str> = sentences.lines().collect();
    let embedder = Embedder::load(std::path::Path::new(&dir))?;
    embedder.embed(&sentences[..64.min(sentences.len())])?; // warm-up
                                                            // WORKERS threads each embed whole batches (the pool's workers); candle's own threads per
                                                            // operation come from RAYON_NUM_THREADS.
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let batches: Vec<&[&str]> = sentences.chunks(32).collect();
    let mut best = 0.0f64;
    let mut vectors = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut done: Vec<(usize, Vec<Vec<f32>>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(batch) = batches.get(i) else {
                                return Ok::<_, anyhow::Error>(mine);
                            };
                            mine.push((i, embedder.embed(batch)?));
                        }
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.join().expect("worker panicked")?);
            }
            Ok::<_, anyhow::Error>(all)
        })?;
        done.sort_by_key(|(i, _)| *i);
        vectors = done.into_iter().flat_map(|(_, v)| v).collect();
        best = best.max(sentences.len() as f64 / start.elapsed().as_secs_f64());
    }
    println!(
        "rust candle: {} sentences, batch 32, {workers} worker(s), RAYON_NUM_THREADS={}: {best:.0} sentences/s (best of 3)",
        sentences.len(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "(cores)".into())
    );
    if let Ok(path) = std::env::var("REFERENCE") {
        let reference: Vec<Vec<f32>> = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let min = vectors
            .iter()
            .zip(&reference)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
            .fold(f32::MAX, f32::min);
        println!("lowest cosine against the Python vectors: {min:.7}");
    }
    Ok(())
}
