//! `KbIngestActor`: one per uploaded document. It runs the ingestion pipeline inside its
//! handler, so a panic anywhere in it (a PDF parser, the splitter) is caught by ractor and
//! reported to the ingest supervisor, which marks the document failed; the actor itself marks
//! it failed, with the reason, for every error it sees.

use std::sync::Arc;
use std::time::Instant;

use aurora_storage::knowledge::DocStatus;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use crate::knowledge::KnowledgeBase;

pub struct KbIngestArgs {
    pub kb: Arc<KnowledgeBase>,
    pub org_id: Uuid,
    pub document_id: Uuid,
}

pub enum KbIngestMsg {
    Run,
}

// Local only: never sent to another node (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for KbIngestMsg {}

pub struct KbIngestState {
    args: KbIngestArgs,
    /// Counted in `aurora_actors` while the actor lives.
    _live: crate::metrics::Live,
}

pub struct KbIngestActor;

impl Actor for KbIngestActor {
    type Msg = KbIngestMsg;
    type State = KbIngestState;
    type Arguments = KbIngestArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<KbIngestMsg>,
        args: KbIngestArgs,
    ) -> Result<KbIngestState, ActorProcessingErr> {
        // The work runs in `handle`: a failure in `pre_start` would go to the spawner, not
        // to the supervisor.
        myself.send_message(KbIngestMsg::Run)?;
        Ok(KbIngestState {
            args,
            _live: crate::metrics::Live::new("kb_ingest"),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<KbIngestMsg>,
        msg: KbIngestMsg,
        state: &mut KbIngestState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            KbIngestMsg::Run => {
                let KbIngestArgs {
                    kb,
                    org_id,
                    document_id,
                } = &state.args;
                let started = Instant::now();
                // Tests inject a crash of the pipeline here (a no-op unless configured).
                fail::fail_point!("kb-ingest");
                match kb.ingest(*org_id, *document_id).await {
                    Ok(chunks) => {
                        tracing::info!(document = %document_id, chunks, ms = started.elapsed().as_millis() as u64, "document ingested")
                    }
                    Err(e) => {
                        tracing::warn!(document = %document_id, error = %e, "document ingestion failed");
                        let reason = e.to_string();
                        if let Err(e) = kb
                            .knowledge
                            .mark(*org_id, *document_id, DocStatus::Failed, Some(&reason))
                            .await
                        {
                            // The stuck-document job fails it later.
                            tracing::error!(document = %document_id, error = %e, "cannot record the ingestion failure");
                        }
                    }
                }
                myself.stop(None);
            }
        }
        Ok(())
    }
}
