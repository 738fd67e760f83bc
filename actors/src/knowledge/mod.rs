//! The knowledge base as the node uses it: accepting uploads, the ingestion pipeline a
//! `KbIngestActor` runs (extract, split, embed, store and index), hybrid search, deletion.
//!
//! The relational rows and the search index live in `aurora_storage::knowledge`; the model in
//! `aurora_models::embeddings`; the uploaded files in object storage. This ties them together.

pub mod child;
mod extract;
mod split;

use std::sync::Arc;

use aurora_models::embeddings::{EmbeddingPool, PoolError};
use aurora_storage::auth::Principal;
use aurora_storage::knowledge::{
    DocStatus, Document, Knowledge, KnowledgeIndex, NewChunk, NewDocument, SearchHit,
};
use aurora_storage::objects::ObjectStore;
use aurora_storage::StorageError;
use uuid::Uuid;

pub use extract::{extract, FileKind};
pub use split::split;

/// Texts per embedding request during ingestion (one progress update each).
const EMBED_BATCH: usize = 64;
/// Longest accepted search query, in characters.
const MAX_QUERY_CHARS: usize = 2000;
pub const MAX_SEARCH_LIMIT: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("unsupported file type: {0}")]
    Unsupported(String),
    #[error("the file is over {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Invalid(String),
    /// Why a document cannot be ingested (becomes its failure reason).
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Embedding(#[from] PoolError),
}

/// Shared by the HTTP edge, the ingest actors and the agent's search tool.
pub struct KnowledgeBase {
    pub knowledge: Knowledge,
    pub index: KnowledgeIndex,
    pub embeddings: EmbeddingPool,
    pub objects: ObjectStore,
    /// Largest accepted upload.
    pub max_upload_bytes: u64,
    /// Reads PDFs in a child process under limits.
    pub extractor: child::Extractor,
}

impl KnowledgeBase {
    pub fn new(
        knowledge: Knowledge,
        embeddings: EmbeddingPool,
        objects: ObjectStore,
        max_upload_bytes: u64,
        extractor: child::Extractor,
    ) -> Arc<KnowledgeBase> {
        Arc::new(KnowledgeBase {
            index: KnowledgeIndex::new(knowledge.clone()),
            knowledge,
            embeddings,
            objects,
            max_upload_bytes,
            extractor,
        })
    }

    /// Takes an upload: checks its type and size, records it, stores the file, and leaves the
    /// document `processing` for an ingest actor. A failure after the row exists marks it
    /// failed with the reason.
    pub async fn accept(
        &self,
        who: &Principal,
        filename: &str,
        title: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<Document, KbError> {
        let kind = FileKind::from_filename(filename).ok_or_else(|| {
            KbError::Unsupported(format!(
                "'{filename}': only .md, .txt and .pdf are accepted"
            ))
        })?;
        if bytes.len() as u64 > self.max_upload_bytes {
            return Err(KbError::TooLarge(self.max_upload_bytes));
        }
        let default_title = filename
            .rsplit_once('.')
            .map(|(stem, _)| stem)
            .unwrap_or(filename);
        let title = title
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(default_title);
        let doc = self
            .knowledge
            .create(
                who,
                NewDocument {
                    title,
                    filename,
                    content_type: kind.content_type(),
                    size_bytes: bytes.len() as i64,
                },
            )
            .await?;
        let key = doc.object_key(who.org_id)?;
        if let Err(e) = self.objects.put(&key, bytes).await {
            tracing::warn!(document = %doc.id, error = %e, "upload could not be stored");
            self.knowledge
                .mark(
                    who.org_id,
                    doc.id,
                    DocStatus::Failed,
                    Some(&format!("the file could not be stored: {e}")),
                )
                .await?;
            return Err(e.into());
        }
        self.knowledge
            .mark(who.org_id, doc.id, DocStatus::Processing, None)
            .await?;
        Ok(self.knowledge.get(who.org_id, doc.id).await?)
    }

    /// The ingestion pipeline of one document: read the file, extract, split, embed in batches
    /// (recording progress), then store every chunk and mark the document ready at once, and
    /// add the chunks to this node's index. Errors are the caller's to record as the failure.
    pub async fn ingest(&self, org_id: Uuid, document_id: Uuid) -> Result<usize, KbError> {
        let doc = self.knowledge.get(org_id, document_id).await?;
        if doc.status != DocStatus::Processing {
            return Err(KbError::Invalid(format!(
                "document is {}, not processing",
                doc.status.as_str()
            )));
        }
        let kind = FileKind::from_content_type(&doc.content_type)
            .ok_or_else(|| KbError::Unsupported(doc.content_type.clone()))?;
        let bytes = self
            .objects
            .get(&doc.object_key(org_id)?)
            .await?
            .ok_or_else(|| KbError::Unreadable("the uploaded file is missing".into()))?;
        let text = self.extractor.text(kind, bytes).await?;
        let chunks = tokio::task::spawn_blocking(move || split(kind, &text))
            .await
            .map_err(|e| KbError::Unreadable(format!("text extraction failed: {e}")))?;
        if chunks.is_empty() {
            return Err(KbError::Unreadable("the file has no text".into()));
        }
        let total = chunks.len();
        let mut stored = Vec::with_capacity(total);
        for batch in chunks.chunks(EMBED_BATCH) {
            let vectors = self.embed_patiently(batch.to_vec()).await?;
            for (content, vector) in batch.iter().zip(vectors) {
                stored.push(NewChunk {
                    content: content.clone(),
                    vector,
                });
            }
            if !self
                .knowledge
                .progress(org_id, document_id, stored.len(), total)
                .await?
            {
                return Err(KbError::Invalid(
                    "the document was deleted or failed during ingestion".into(),
                ));
            }
        }
        match self.knowledge.complete(org_id, document_id, stored).await? {
            Some((generation, chunks)) => {
                self.index.added(org_id, generation, chunks);
                Ok(total)
            }
            None => Err(KbError::Invalid(
                "the document was deleted or failed during ingestion".into(),
            )),
        }
    }

    /// Ingestion waits out a full embedding queue (searches from users go first) instead of
    /// failing the document.
    async fn embed_patiently(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, KbError> {
        let mut wait = std::time::Duration::from_millis(20);
        loop {
            match self.embeddings.embed(texts.clone()).await {
                Err(PoolError::Busy) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(1));
                }
                other => return Ok(other?),
            }
        }
    }

    /// Hybrid search over the org's ready documents.
    pub async fn search(
        &self,
        org_id: Uuid,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchHit>, KbError> {
        let query = query.trim();
        if query.is_empty() || query.chars().count() > MAX_QUERY_CHARS {
            return Err(KbError::Invalid(format!(
                "query must be 1 to {MAX_QUERY_CHARS} characters"
            )));
        }
        if !(1..=MAX_SEARCH_LIMIT).contains(&limit) {
            return Err(KbError::Invalid(format!(
                "limit must be from 1 to {MAX_SEARCH_LIMIT}"
            )));
        }
        let vector = self
            .embeddings
            .embed(vec![query.to_string()])
            .await?
            .pop()
            .ok_or_else(|| KbError::Invalid("the query produced no embedding".into()))?;
        Ok(self.index.search(org_id, query, vector, limit).await?)
    }

    /// Deletes a document: its rows (chunks and vectors with them) first, so it is unsearchable
    /// at once, then its file.
    pub async fn delete(&self, who: &Principal, id: Uuid) -> Result<(), KbError> {
        let (doc, generation) = self.knowledge.delete(who, id).await?;
        self.index.removed(who.org_id, generation, id);
        let key = doc.object_key(who.org_id)?;
        if let Err(e) = self.objects.delete(&key).await {
            // The row is gone, so nothing refers to the object any more; say so in the log.
            tracing::warn!(document = %id, key = %key, error = %e, "document file not deleted");
        }
        Ok(())
    }
}
