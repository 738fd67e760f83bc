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
    let mut best = 0.0f64;
    let mut vectors = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        vectors = Vec::with_capacity(sentences.len());
        for batch in sentences.chunks(32) {
            vectors.extend(embedder.embed(batch)?);
        }
        best = best.max(sentences.len() as f64 / start.elapsed().as_secs_f64());
    }
    println!(
        "rust candle: {} sentences, batch 32: {best:.0} sentences/s (best of 3)",
        sentences.len()
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
