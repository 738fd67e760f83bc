//! The embedding pool: workers holding the model, fed by one bounded queue. A worker takes the
//! first waiting request, then whatever else arrives within a short window, up to a batch size,
//! and embeds them together on the blocking pool (one forward pass for many callers). When the
//! queue is full, `embed` fails at once with `Busy` instead of letting work pile up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{EmbedError, Embedder};

#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Worker tasks (each runs one batch at a time on the blocking pool).
    pub workers: usize,
    /// Most texts in one forward pass.
    pub max_batch: usize,
    /// How long a worker waits for more requests after the first.
    pub window: Duration,
    /// Requests that may wait; beyond this, callers are refused.
    pub queue: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 1,
            max_batch: 32,
            window: Duration::from_millis(2),
            queue: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the embedding queue is full; try again shortly")]
    Busy,
    #[error("the embedding pool has stopped")]
    Stopped,
    /// The batch this request was in failed (the error is shared by its whole batch).
    #[error("embedding failed: {0}")]
    Failed(String),
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, String>>;

struct Request {
    texts: Vec<String>,
    reply: Reply,
}

/// Handle to the pool; cheap to clone.
#[derive(Clone)]
pub struct EmbeddingPool {
    queue: mpsc::Sender<Request>,
}

impl EmbeddingPool {
    pub fn start(embedder: Arc<Embedder>, config: PoolConfig) -> EmbeddingPool {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.workers.max(1) {
            tokio::spawn(worker(embedder.clone(), rx.clone(), config));
        }
        EmbeddingPool { queue }
    }

    /// One unit vector per text, in order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, PoolError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Request { texts, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PoolError::Busy,
                mpsc::error::TrySendError::Closed(_) => PoolError::Stopped,
            })?;
        answer
            .await
            .map_err(|_| PoolError::Stopped)?
            .map_err(PoolError::Failed)
    }
}

async fn worker(
    embedder: Arc<Embedder>,
    rx: Arc<Mutex<mpsc::Receiver<Request>>>,
    config: PoolConfig,
) {
    loop {
        // Collect one batch while holding the queue; other workers wait their turn to collect.
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut size = first.texts.len();
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + config.window;
            while size < config.max_batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(req)) => {
                        size += req.texts.len();
                        batch.push(req);
                    }
                    _ => break,
                }
            }
            batch
        };
        let embedder = embedder.clone();
        let texts: Vec<String> = batch.iter().flat_map(|r| r.texts.clone()).collect();
        let max_batch = config.max_batch.max(1);
        let result = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(max_batch) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                out.extend(embedder.embed(&refs)?);
            }
            Ok::<_, EmbedError>(out)
        })
        .await;
        match result {
            Ok(Ok(vectors)) => {
                let mut vectors = vectors.into_iter();
                for req in batch {
                    let mine: Vec<Vec<f32>> = vectors.by_ref().take(req.texts.len()).collect();
                    let _ = req.reply.send(Ok(mine));
                }
            }
            Ok(Err(e)) => {
                for req in batch {
                    let _ = req.reply.send(Err(e.to_string()));
                }
            }
            Err(panic) => {
                tracing::error!(error = %panic, "embedding batch panicked");
                for req in batch {
                    let _ = req.reply.send(Err("the embedding batch failed".into()));
                }
            }
        }
    }
}
