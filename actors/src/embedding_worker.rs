//! `EmbeddingWorkerActor`: one of the embedding pool's workers. It holds the model and takes
//! batches from the pool's shared, bounded queue one after another. Embedding runs on the
//! blocking pool; a panic there (or anywhere in the handler) fails the actor after the batch's
//! callers were answered or dropped, and the embedding supervisor starts a fresh worker, while
//! callers keep queueing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use aurora_models::embeddings::{BatchSource, Embedder};
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// What the supervisor can see of a worker without asking it (it is busy while it waits).
#[derive(Clone, Default)]
pub struct WorkerGauge {
    pub busy: Arc<AtomicBool>,
    pub batches: Arc<AtomicU64>,
}

pub struct EmbeddingWorkerArgs {
    pub embedder: Arc<Embedder>,
    pub source: BatchSource,
    pub gauge: WorkerGauge,
}

pub enum EmbeddingWorkerMsg {
    /// Take the next batch (the worker sends itself this after every batch).
    Next,
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for EmbeddingWorkerMsg {}

pub struct EmbeddingWorkerActor;

impl Actor for EmbeddingWorkerActor {
    type Msg = EmbeddingWorkerMsg;
    type State = EmbeddingWorkerArgs;
    type Arguments = EmbeddingWorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<EmbeddingWorkerMsg>,
        args: EmbeddingWorkerArgs,
    ) -> Result<EmbeddingWorkerArgs, ActorProcessingErr> {
        myself.send_message(EmbeddingWorkerMsg::Next)?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<EmbeddingWorkerMsg>,
        msg: EmbeddingWorkerMsg,
        state: &mut EmbeddingWorkerArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EmbeddingWorkerMsg::Next => {
                let Some(batch) = state.source.next_batch().await else {
                    // Every pool handle is gone: the node is stopping.
                    myself.stop(None);
                    return Ok(());
                };
                state.gauge.busy.store(true, Ordering::Relaxed);
                // Tests inject a crash of a worker here (a no-op unless configured).
                fail::fail_point!("embedding-worker");
                let result = batch.run(state.embedder.clone()).await;
                state.gauge.busy.store(false, Ordering::Relaxed);
                state.gauge.batches.fetch_add(1, Ordering::Relaxed);
                if let Err(panic) = result {
                    return Err(format!("embedding batch panicked: {panic}").into());
                }
                myself.send_message(EmbeddingWorkerMsg::Next)?;
            }
        }
        Ok(())
    }
}
