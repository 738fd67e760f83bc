//! The embedding pool: one bounded queue of requests, drained by workers that hold the model.
//! A worker takes the first waiting request, then whatever else arrives within a short window,
//! up to a batch size, and embeds them together on the blocking pool (one forward pass for many
//! callers). When the queue is full, `embed` fails at once with `Busy` instead of letting work
//! pile up.
//!
//! The queue outlives its workers: on a node the workers are supervised actors
//! (`aurora_actors::embedding_worker`), restarted after a crash while callers keep queueing;
//! [`EmbeddingPool::start`] runs plain tasks instead, for library users without an actor system.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{EmbedError, Embedder};

#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Workers (each runs one batch at a time on the blocking pool).
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

/// The workers' end of the queue; cheap to clone (workers share it).
#[derive(Clone)]
pub struct BatchSource {
    rx: Arc<Mutex<mpsc::Receiver<Request>>>,
    config: PoolConfig,
}

/// Requests taken from the queue together.
pub struct Batch {
    requests: Vec<Request>,
    max_batch: usize,
}

impl EmbeddingPool {
    /// The pool's handle and the queue end its workers read.
    pub fn new(config: PoolConfig) -> (EmbeddingPool, BatchSource) {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let source = BatchSource {
            rx: Arc::new(Mutex::new(rx)),
            config,
        };
        (EmbeddingPool { queue }, source)
    }

    /// A pool served by `config.workers` plain tasks.
    pub fn start(embedder: Arc<Embedder>, config: PoolConfig) -> EmbeddingPool {
        let (pool, source) = EmbeddingPool::new(config);
        for _ in 0..config.workers.max(1) {
            let (embedder, source) = (embedder.clone(), source.clone());
            tokio::spawn(async move {
                while let Some(batch) = source.next_batch().await {
                    if let Err(panic) = batch.run(embedder.clone()).await {
                        tracing::error!(error = %panic, "embedding batch panicked");
                    }
                }
            });
        }
        pool
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
        // A dropped reply means the worker holding the request died mid-batch.
        answer
            .await
            .map_err(|_| PoolError::Failed("the embedding worker stopped before answering".into()))?
            .map_err(PoolError::Failed)
    }
}

impl BatchSource {
    /// Waits for the next batch; `None` once every handle is gone and the queue is empty.
    pub async fn next_batch(&self) -> Option<Batch> {
        // Collect one batch while holding the queue; other workers wait their turn to collect.
        let mut rx = self.rx.lock().await;
        let first = rx.recv().await?;
        let mut size = first.texts.len();
        let mut requests = vec![first];
        let deadline = tokio::time::Instant::now() + self.config.window;
        while size < self.config.max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(req)) => {
                    size += req.texts.len();
                    requests.push(req);
                }
                _ => break,
            }
        }
        Some(Batch {
            requests,
            max_batch: self.config.max_batch.max(1),
        })
    }
}

impl Batch {
    /// Texts in the batch.
    pub fn len(&self) -> usize {
        self.requests.iter().map(|r| r.texts.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Embeds the batch on the blocking pool and answers every caller. A panic in the model is
    /// answered as a failure to the callers and returned, for the worker to report.
    pub async fn run(self, embedder: Arc<Embedder>) -> Result<(), String> {
        let texts: Vec<String> = self.requests.iter().flat_map(|r| r.texts.clone()).collect();
        let max_batch = self.max_batch;
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
                for req in self.requests {
                    let mine: Vec<Vec<f32>> = vectors.by_ref().take(req.texts.len()).collect();
                    let _ = req.reply.send(Ok(mine));
                }
                Ok(())
            }
            Ok(Err(e)) => {
                self.fail(&e.to_string());
                Ok(())
            }
            Err(panic) => {
                self.fail("the embedding batch failed");
                Err(panic.to_string())
            }
        }
    }

    /// Answers every caller with `error`.
    pub fn fail(self, error: &str) {
        for req in self.requests {
            let _ = req.reply.send(Err(error.to_string()));
        }
    }
}
