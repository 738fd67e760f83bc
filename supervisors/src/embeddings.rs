//! `EmbeddingSupervisor`: the embedding pool's workers, each an actor holding the model and
//! reading the pool's shared queue. A worker that fails is replaced after a backoff that grows
//! with its failures; the queue (and the callers waiting in it) is untouched by the restart.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aurora_actors::embedding_worker::{EmbeddingWorkerActor, EmbeddingWorkerArgs, WorkerGauge};
use aurora_actors::ActorSnapshot;
use aurora_models::embeddings::{BatchSource, Embedder};
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::Backoff;

#[derive(Clone)]
pub struct EmbeddingArgs {
    pub embedder: Arc<Embedder>,
    pub source: BatchSource,
    pub workers: usize,
    pub backoff: Backoff,
}

pub enum EmbeddingMsg {
    /// Start worker `n` again (sent to self after a backoff).
    Restart(usize),
    Status(RpcReplyPort<ActorSnapshot>),
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for EmbeddingMsg {}

struct Worker {
    cell: Option<ActorCell>,
    restarts: u32,
    gauge: WorkerGauge,
    started_at: DateTime<Utc>,
}

pub struct EmbeddingState {
    args: EmbeddingArgs,
    workers: Vec<Worker>,
    started_at: DateTime<Utc>,
}

pub struct EmbeddingSupervisor;

impl EmbeddingSupervisor {
    async fn spawn(
        myself: &ActorRef<EmbeddingMsg>,
        state: &mut EmbeddingState,
        n: usize,
    ) -> Result<(), ActorProcessingErr> {
        let gauge = state.workers[n].gauge.clone();
        let args = EmbeddingWorkerArgs {
            embedder: state.args.embedder.clone(),
            source: state.args.source.clone(),
            gauge,
        };
        let (worker, _) =
            Actor::spawn_linked(None, EmbeddingWorkerActor, args, myself.get_cell()).await?;
        let w = &mut state.workers[n];
        w.cell = Some(worker.get_cell());
        w.started_at = Utc::now();
        Ok(())
    }
}

impl Actor for EmbeddingSupervisor {
    type Msg = EmbeddingMsg;
    type State = EmbeddingState;
    type Arguments = EmbeddingArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<EmbeddingMsg>,
        args: EmbeddingArgs,
    ) -> Result<EmbeddingState, ActorProcessingErr> {
        let workers = (0..args.workers.max(1))
            .map(|_| Worker {
                cell: None,
                restarts: 0,
                gauge: WorkerGauge::default(),
                started_at: Utc::now(),
            })
            .collect();
        let mut state = EmbeddingState {
            args,
            workers,
            started_at: Utc::now(),
        };
        for n in 0..state.workers.len() {
            Self::spawn(&myself, &mut state, n).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<EmbeddingMsg>,
        msg: EmbeddingMsg,
        state: &mut EmbeddingState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EmbeddingMsg::Restart(n) => {
                if state.workers.get(n).is_some_and(|w| w.cell.is_none()) {
                    if let Err(e) = Self::spawn(&myself, state, n).await {
                        tracing::error!(worker = n, error = %e, "embedding worker did not start");
                        let delay = state.args.backoff.delay(state.workers[n].restarts);
                        myself.send_after(delay, move || EmbeddingMsg::Restart(n));
                    }
                }
            }
            EmbeddingMsg::Status(reply) => {
                let children = state
                    .workers
                    .iter()
                    .enumerate()
                    .map(|(n, w)| {
                        let now = match (&w.cell, w.gauge.busy.load(Ordering::Relaxed)) {
                            (None, _) => "restarting",
                            (Some(_), true) => "embedding",
                            (Some(_), false) => "idle",
                        };
                        ActorSnapshot {
                            restarts: w.restarts,
                            ..ActorSnapshot::new(
                                "embedding_worker",
                                format!("worker-{n}"),
                                now,
                                w.started_at,
                            )
                        }
                    })
                    .collect();
                let _ = reply.send(ActorSnapshot {
                    children,
                    ..ActorSnapshot::new(
                        "embedding_pool",
                        "embeddings",
                        "running",
                        state.started_at,
                    )
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<EmbeddingMsg>,
        _state: &mut EmbeddingState,
    ) -> Result<(), ActorProcessingErr> {
        myself
            .stop_children_and_wait(
                Some("shutdown".into()),
                Some(crate::node::CHILDREN_STOP_TIMEOUT),
            )
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<EmbeddingMsg>,
        evt: SupervisionEvent,
        state: &mut EmbeddingState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            // A worker stops by itself only when the queue closed (the node is stopping).
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            _ => return Ok(()),
        };
        let Some(n) = state
            .workers
            .iter()
            .position(|w| w.cell.as_ref().is_some_and(|c| c.get_id() == cell.get_id()))
        else {
            return Ok(());
        };
        let w = &mut state.workers[n];
        w.cell = None;
        w.gauge.busy.store(false, Ordering::Relaxed);
        if let Some(why) = why {
            let delay = state.args.backoff.delay(w.restarts);
            w.restarts += 1;
            tracing::warn!(worker = n, restarts = w.restarts, delay_ms = delay.as_millis() as u64, reason = %why, "restarting embedding worker");
            myself.send_after(delay, move || EmbeddingMsg::Restart(n));
        }
        Ok(())
    }
}
