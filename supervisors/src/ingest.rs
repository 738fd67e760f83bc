//! `IngestSupervisor`: owns one `KbIngestActor` per document being ingested. A crashed ingest
//! actor leaves its document `failed` with the reason, never stuck in `processing`; documents
//! whose ingestion died with a node (no progress for `AURORA_KB_STUCK_SECS`) are failed by the
//! scheduler's `stale_uploads` job, once per period across the cluster.

use std::collections::HashMap;
use std::sync::Arc;

use aurora_actors::kb_ingest::{KbIngestActor, KbIngestArgs};
use aurora_actors::knowledge::KnowledgeBase;
use aurora_actors::{ActorSnapshot, SnapshotOwner};
use aurora_storage::knowledge::DocStatus;
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use uuid::Uuid;

#[derive(Clone)]
pub struct IngestArgs {
    pub kb: Arc<KnowledgeBase>,
}

pub enum IngestMsg {
    /// Ingest a document the edge accepted (state `processing`).
    Ingest {
        org_id: Uuid,
        document_id: Uuid,
    },
    Status(RpcReplyPort<ActorSnapshot>),
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for IngestMsg {}

struct Running {
    org_id: Uuid,
    document_id: Uuid,
    started_at: DateTime<Utc>,
}

pub struct IngestState {
    args: IngestArgs,
    started_at: DateTime<Utc>,
    running: HashMap<ActorId, Running>,
}

pub struct IngestSupervisor;

impl IngestSupervisor {
    async fn fail(state: &IngestState, org_id: Uuid, document_id: Uuid, reason: &str) {
        if let Err(e) = state
            .args
            .kb
            .knowledge
            .mark(org_id, document_id, DocStatus::Failed, Some(reason))
            .await
        {
            tracing::error!(document = %document_id, error = %e, "cannot record the ingestion failure");
        }
    }
}

impl Actor for IngestSupervisor {
    type Msg = IngestMsg;
    type State = IngestState;
    type Arguments = IngestArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<IngestMsg>,
        args: IngestArgs,
    ) -> Result<IngestState, ActorProcessingErr> {
        Ok(IngestState {
            args,
            started_at: Utc::now(),
            running: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<IngestMsg>,
        msg: IngestMsg,
        state: &mut IngestState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IngestMsg::Ingest {
                org_id,
                document_id,
            } => {
                if state.running.values().any(|r| r.document_id == document_id) {
                    return Ok(());
                }
                let args = KbIngestArgs {
                    kb: state.args.kb.clone(),
                    org_id,
                    document_id,
                };
                match Actor::spawn_linked(None, KbIngestActor, args, myself.get_cell()).await {
                    Ok((actor, _)) => {
                        state.running.insert(
                            actor.get_id(),
                            Running {
                                org_id,
                                document_id,
                                started_at: Utc::now(),
                            },
                        );
                    }
                    Err(e) => {
                        let reason = format!("ingestion could not start: {e}");
                        Self::fail(state, org_id, document_id, &reason).await;
                    }
                }
            }
            IngestMsg::Status(reply) => {
                let children = state
                    .running
                    .values()
                    .map(|r| ActorSnapshot {
                        owner: Some(SnapshotOwner {
                            org_id: r.org_id,
                            user_id: None,
                        }),
                        ..ActorSnapshot::new(
                            "kb_ingest",
                            r.document_id.to_string(),
                            "ingesting",
                            r.started_at,
                        )
                    })
                    .collect();
                let _ = reply.send(ActorSnapshot {
                    children,
                    ..ActorSnapshot::new("ingest_supervisor", "ingest", "running", state.started_at)
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<IngestMsg>,
        _state: &mut IngestState,
    ) -> Result<(), ActorProcessingErr> {
        // Documents still processing are failed by the scheduler's stale-upload job (on
        // whichever node runs it).
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
        _myself: ActorRef<IngestMsg>,
        evt: SupervisionEvent,
        state: &mut IngestState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(r) = state.running.remove(&cell.get_id()) {
                    tracing::error!(document = %r.document_id, error = %err, "ingest actor crashed");
                    let reason = format!("ingestion crashed: {err}");
                    Self::fail(state, r.org_id, r.document_id, &reason).await;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.running.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
