//! The knowledge base's rows: documents and their ingestion state, the chunks with their
//! embedding vectors, each org's memory text, and the per-org index generation.
//!
//! A document's chunks are inserted in the same transaction that marks it `ready` and bumps the
//! org's generation, so a search never sees a half-indexed document, and every node's
//! in-memory index ([`index::KnowledgeIndex`]) can tell from the generation that it must catch up.

mod bm25;
pub mod index;
pub mod vectors;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Principal;
use crate::entities::{kb_chunks, kb_documents, kb_index_versions, kb_memory};
use crate::objects::ObjectKey;
use crate::{audit, org_select, Db, OrgTx, StorageError};

pub use index::{KnowledgeIndex, SearchHit};

/// Rows per insert statement when a document's chunks are written.
const INSERT_BATCH: usize = 200;
/// Longest org memory text, in characters.
pub const MAX_MEMORY_CHARS: usize = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocStatus {
    Uploading,
    Processing,
    Ready,
    Failed,
}

impl DocStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocStatus::Uploading => "uploading",
            DocStatus::Processing => "processing",
            DocStatus::Ready => "ready",
            DocStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<DocStatus, StorageError> {
        Ok(match s {
            "uploading" => DocStatus::Uploading,
            "processing" => DocStatus::Processing,
            "ready" => DocStatus::Ready,
            "failed" => DocStatus::Failed,
            other => {
                return Err(StorageError::Internal(format!(
                    "stored document status '{other}'"
                )))
            }
        })
    }
}

/// A document as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Document {
    pub id: Uuid,
    pub user_id: Uuid,
    pub title: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub status: DocStatus,
    pub error: Option<String>,
    pub chunks_done: i32,
    pub chunks_total: i32,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Where the uploaded file is (under its uploader's prefix).
    #[serde(skip)]
    pub object_path: String,
}

impl Document {
    pub fn object_key(&self, org_id: Uuid) -> Result<ObjectKey, StorageError> {
        ObjectKey::new(org_id, self.user_id, &self.object_path)
    }
}

impl TryFrom<kb_documents::Model> for Document {
    type Error = StorageError;
    fn try_from(m: kb_documents::Model) -> Result<Document, StorageError> {
        Ok(Document {
            id: m.id,
            user_id: m.user_id,
            title: m.title,
            filename: m.filename,
            content_type: m.content_type,
            size_bytes: m.size_bytes,
            status: DocStatus::parse(&m.status)?,
            error: m.error,
            chunks_done: m.chunks_done,
            chunks_total: m.chunks_total,
            created_at: m.created_at,
            updated_at: m.updated_at,
            object_path: m.object_key,
        })
    }
}

/// What an upload declares.
pub struct NewDocument<'a> {
    pub title: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size_bytes: i64,
}

/// One chunk ready to be stored: its text and its unit embedding.
pub struct NewChunk {
    pub content: String,
    pub vector: Vec<f32>,
}

/// A stored chunk as the search index holds it.
#[derive(Clone, Debug)]
pub struct IndexedChunk {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub content: String,
    pub vector: Vec<f32>,
}

/// A chunk's text with its document, for search results.
#[derive(Clone, Debug)]
pub struct ChunkRow {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub title: String,
    pub ordinal: i32,
    pub content: String,
}

/// An org's memory: standing notes the agent gets.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub content: String,
    pub updated_by: Option<Uuid>,
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A filename reduced to characters that are safe in an object key.
fn key_name(filename: &str) -> String {
    let name: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    match name.trim_matches('.') {
        "" => "file".into(),
        n => n.into(),
    }
}

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(bytes: &[u8]) -> Result<Vec<f32>, StorageError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(StorageError::Internal(
            "stored embedding is not whole f32s".into(),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Bumps `org_id`'s index generation inside `tx` and returns the new value.
async fn bump_generation(tx: &OrgTx) -> Result<i64, StorageError> {
    let row = kb_index_versions::ActiveModel {
        org_id: Set(tx.org_id()),
        generation: Set(1),
    };
    kb_index_versions::Entity::insert(row)
        .on_conflict(
            OnConflict::column(kb_index_versions::Column::OrgId)
                .value(
                    kb_index_versions::Column::Generation,
                    Expr::col((
                        kb_index_versions::Entity,
                        kb_index_versions::Column::Generation,
                    ))
                    .add(1),
                )
                .to_owned(),
        )
        .exec_without_returning(tx.conn())
        .await?;
    let row = tx
        .select::<kb_index_versions::Entity>()
        .one(tx.conn())
        .await?
        .ok_or_else(|| StorageError::Internal("index generation row vanished".into()))?;
    Ok(row.generation)
}

#[derive(Clone, Debug)]
pub struct Knowledge {
    db: Db,
    caps: DocCaps,
}

/// Per-org bounds on the knowledge base, checked when a document is created.
#[derive(Clone, Copy, Debug)]
pub struct DocCaps {
    /// Documents an org may keep.
    pub max_documents: u64,
    /// Documents of an org being uploaded or ingested at once.
    pub max_in_flight: u64,
}

impl Default for DocCaps {
    fn default() -> Self {
        DocCaps {
            max_documents: 10_000,
            max_in_flight: 4,
        }
    }
}

impl Knowledge {
    pub fn new(db: Db) -> Knowledge {
        Knowledge {
            db,
            caps: DocCaps::default(),
        }
    }

    pub fn with_caps(mut self, caps: DocCaps) -> Knowledge {
        self.caps = caps;
        self
    }

    /// Refuses a new document over the org's caps. On PostgreSQL the org's row is locked
    /// first, so uploads racing each other are counted one after another.
    async fn check_caps(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        org_id: Uuid,
    ) -> Result<(), StorageError> {
        use sea_orm::PaginatorTrait;
        crate::db::lock_org(conn, org_id).await?;
        let org_docs =
            || kb_documents::Entity::find().filter(kb_documents::Column::OrgId.eq(org_id));
        if org_docs().count(conn).await? >= self.caps.max_documents {
            // A quota, not a rate: retrying does not help (409, not 429).
            return Err(StorageError::Conflict(format!(
                "the organization keeps at most {} documents: delete some first",
                self.caps.max_documents
            )));
        }
        let in_flight = org_docs()
            .filter(kb_documents::Column::Status.is_in([
                DocStatus::Uploading.as_str(),
                DocStatus::Processing.as_str(),
            ]))
            .count(conn)
            .await?;
        if in_flight >= self.caps.max_in_flight {
            return Err(StorageError::LimitReached(format!(
                "at most {} documents of an organization are processed at once: try again when one is done",
                self.caps.max_in_flight
            )));
        }
        Ok(())
    }

    /// Records a new upload in state `uploading`; the file goes to object storage next.
    pub async fn create(
        &self,
        who: &Principal,
        doc: NewDocument<'_>,
    ) -> Result<Document, StorageError> {
        let title = doc.title.trim();
        if title.is_empty() || title.chars().count() > 300 {
            return Err(StorageError::invalid(
                "title",
                "must be 1 to 300 characters",
            ));
        }
        if doc.filename.is_empty() || doc.filename.chars().count() > 300 {
            return Err(StorageError::invalid(
                "filename",
                "must be 1 to 300 characters",
            ));
        }
        let id = Uuid::now_v7();
        let path = format!("kb/{id}/{}", key_name(doc.filename));
        // Checked here so a bad key never reaches a row.
        ObjectKey::new(who.org_id, who.user_id, &path)?;
        let now = Utc::now();
        let row = kb_documents::ActiveModel {
            id: Set(id),
            org_id: Set(who.org_id),
            user_id: Set(who.user_id),
            title: Set(title.into()),
            filename: Set(doc.filename.into()),
            content_type: Set(doc.content_type.into()),
            size_bytes: Set(doc.size_bytes),
            object_key: Set(path),
            status: Set(DocStatus::Uploading.as_str().into()),
            error: Set(None),
            chunks_done: Set(0),
            chunks_total: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let tx = self.db.org(who.org_id).await?;
        self.check_caps(tx.conn(), who.org_id).await?;
        let m = kb_documents::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            who.org_id,
            Some(who.user_id),
            "kb.upload",
            Some(&id.to_string()),
            serde_json::json!({ "filename": doc.filename, "size_bytes": doc.size_bytes }),
        )
        .await?;
        tx.commit().await?;
        Document::try_from(m)
    }

    /// Moves a document that is not finished yet (`uploading` or `processing`) to `status`.
    /// Returns false when it is gone or already finished (ready or failed stay as they are).
    pub async fn mark(
        &self,
        org_id: Uuid,
        id: Uuid,
        status: DocStatus,
        error: Option<&str>,
    ) -> Result<bool, StorageError> {
        let tx = self.db.org(org_id).await?;
        let res = kb_documents::Entity::update_many()
            .col_expr(kb_documents::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                kb_documents::Column::Error,
                Expr::value(error.map(|e| e.chars().take(1000).collect::<String>())),
            )
            .col_expr(kb_documents::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(tx.org_filter::<kb_documents::Entity>())
            .filter(kb_documents::Column::Id.eq(id))
            .filter(kb_documents::Column::Status.is_in(["uploading", "processing"]))
            .exec(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected == 1)
    }

    /// Records ingestion progress of a `processing` document (also proof that it is alive, for
    /// the stuck-document job). Returns false when the document is gone or no longer processing.
    pub async fn progress(
        &self,
        org_id: Uuid,
        id: Uuid,
        done: usize,
        total: usize,
    ) -> Result<bool, StorageError> {
        let tx = self.db.org(org_id).await?;
        let res = kb_documents::Entity::update_many()
            .col_expr(kb_documents::Column::ChunksDone, Expr::value(done as i32))
            .col_expr(kb_documents::Column::ChunksTotal, Expr::value(total as i32))
            .col_expr(kb_documents::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(tx.org_filter::<kb_documents::Entity>())
            .filter(kb_documents::Column::Id.eq(id))
            .filter(kb_documents::Column::Status.eq("processing"))
            .exec(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected == 1)
    }

    /// Stores all of a processing document's chunks and marks it ready, in one transaction that
    /// also bumps the org's index generation. Returns the new generation and the stored chunks,
    /// or `None` (and stores nothing) when the document was deleted or failed meanwhile.
    pub async fn complete(
        &self,
        org_id: Uuid,
        id: Uuid,
        chunks: Vec<NewChunk>,
    ) -> Result<Option<(i64, Vec<IndexedChunk>)>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let total = chunks.len() as i32;
        // Claim the document first: the update holds its row until commit, so a concurrent
        // delete or stuck-job waits and then sees `ready`.
        let res = kb_documents::Entity::update_many()
            .col_expr(kb_documents::Column::Status, Expr::value("ready"))
            .col_expr(kb_documents::Column::Error, Expr::value(None::<String>))
            .col_expr(kb_documents::Column::ChunksDone, Expr::value(total))
            .col_expr(kb_documents::Column::ChunksTotal, Expr::value(total))
            .col_expr(kb_documents::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(tx.org_filter::<kb_documents::Entity>())
            .filter(kb_documents::Column::Id.eq(id))
            .filter(kb_documents::Column::Status.eq("processing"))
            .exec(tx.conn())
            .await?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        let mut stored = Vec::with_capacity(chunks.len());
        let mut rows = Vec::with_capacity(chunks.len());
        for (ordinal, chunk) in chunks.into_iter().enumerate() {
            let chunk_id = Uuid::now_v7();
            rows.push(kb_chunks::ActiveModel {
                id: Set(chunk_id),
                org_id: Set(org_id),
                document_id: Set(id),
                ordinal: Set(ordinal as i32),
                content: Set(chunk.content.clone()),
                embedding: Set(encode_vector(&chunk.vector)),
            });
            stored.push(IndexedChunk {
                chunk_id,
                document_id: id,
                content: chunk.content,
                vector: chunk.vector,
            });
        }
        while !rows.is_empty() {
            let rest = rows.split_off(rows.len().min(INSERT_BATCH));
            kb_chunks::Entity::insert_many(std::mem::replace(&mut rows, rest))
                .exec_without_returning(tx.conn())
                .await?;
        }
        let generation = bump_generation(&tx).await?;
        tx.commit().await?;
        Ok(Some((generation, stored)))
    }

    /// The org's documents, newest first.
    pub async fn list(&self, org_id: Uuid, limit: u64) -> Result<Vec<Document>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let rows = tx
            .select::<kb_documents::Entity>()
            .order_by_desc(kb_documents::Column::CreatedAt)
            .limit(limit)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        rows.into_iter().map(Document::try_from).collect()
    }

    pub async fn get(&self, org_id: Uuid, id: Uuid) -> Result<Document, StorageError> {
        let tx = self.db.org(org_id).await?;
        let row = tx
            .select::<kb_documents::Entity>()
            .filter(kb_documents::Column::Id.eq(id))
            .one(tx.conn())
            .await?;
        tx.commit().await?;
        row.ok_or(StorageError::NotFound("document"))
            .and_then(Document::try_from)
    }

    /// Deletes a document and its chunks. Returns the deleted document (its object is the
    /// caller's to remove) and the org's new index generation.
    pub async fn delete(&self, who: &Principal, id: Uuid) -> Result<(Document, i64), StorageError> {
        let tx = self.db.org(who.org_id).await?;
        let row = tx
            .select::<kb_documents::Entity>()
            .filter(kb_documents::Column::Id.eq(id))
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("document"))?;
        kb_chunks::Entity::delete_many()
            .filter(tx.org_filter::<kb_chunks::Entity>())
            .filter(kb_chunks::Column::DocumentId.eq(id))
            .exec(tx.conn())
            .await?;
        kb_documents::Entity::delete_many()
            .filter(tx.org_filter::<kb_documents::Entity>())
            .filter(kb_documents::Column::Id.eq(id))
            .exec(tx.conn())
            .await?;
        let generation = bump_generation(&tx).await?;
        audit::record(
            tx.conn(),
            who.org_id,
            Some(who.user_id),
            "kb.delete",
            Some(&id.to_string()),
            serde_json::json!({ "filename": row.filename }),
        )
        .await?;
        tx.commit().await?;
        Ok((Document::try_from(row)?, generation))
    }

    /// Marks every document of every org that has been `uploading` or `processing` without a
    /// sign of life for longer than `older_than` as failed. Returns `(org, document)` of each.
    pub async fn fail_stuck(
        &self,
        older_than: Duration,
    ) -> Result<Vec<(Uuid, Uuid)>, StorageError> {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(older_than)
                .map_err(|e| StorageError::Internal(e.to_string()))?;
        let tx = self.db.system().await?;
        let stuck = kb_documents::Entity::find()
            .filter(kb_documents::Column::Status.is_in(["uploading", "processing"]))
            .filter(kb_documents::Column::UpdatedAt.lt(cutoff))
            .all(tx.conn())
            .await?;
        let reason = format!(
            "ingestion stopped: no progress for {} s",
            older_than.as_secs()
        );
        let mut failed = Vec::new();
        for doc in stuck {
            let res = kb_documents::Entity::update_many()
                .col_expr(kb_documents::Column::Status, Expr::value("failed"))
                .col_expr(kb_documents::Column::Error, Expr::value(reason.clone()))
                .col_expr(kb_documents::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(kb_documents::Column::Id.eq(doc.id))
                .filter(kb_documents::Column::Status.is_in(["uploading", "processing"]))
                .filter(kb_documents::Column::UpdatedAt.lt(cutoff))
                .exec(tx.conn())
                .await?;
            if res.rows_affected == 1 {
                failed.push((doc.org_id, doc.id));
            }
        }
        tx.commit().await?;
        Ok(failed)
    }

    /// The org's index generation (0 before its first document).
    pub async fn generation(&self, org_id: Uuid) -> Result<i64, StorageError> {
        let query = org_select::<kb_index_versions::Entity>(org_id)
            .select_only()
            .column(kb_index_versions::Column::Generation)
            .into_query();
        let rows = self.db.org_query(org_id, &query).await?;
        match rows.first() {
            Some(r) => Ok(r.try_get("", "generation")?),
            None => Ok(0),
        }
    }

    /// Every searchable chunk of the org with the generation they belong to, read in one
    /// transaction so the two agree.
    pub async fn load_index(&self, org_id: Uuid) -> Result<(i64, Vec<IndexedChunk>), StorageError> {
        let tx = self.db.org(org_id).await?;
        let generation = tx
            .select::<kb_index_versions::Entity>()
            .one(tx.conn())
            .await?
            .map(|r| r.generation)
            .unwrap_or(0);
        let rows = tx
            .select::<kb_chunks::Entity>()
            .order_by_asc(kb_chunks::Column::Id)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        let chunks = rows
            .into_iter()
            .map(|r| {
                Ok(IndexedChunk {
                    chunk_id: r.id,
                    document_id: r.document_id,
                    vector: decode_vector(&r.embedding)?,
                    content: r.content,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok((generation, chunks))
    }

    /// The chunks with these ids that belong to ready documents of the org, in no order.
    pub async fn chunks(&self, org_id: Uuid, ids: &[Uuid]) -> Result<Vec<ChunkRow>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.db.org(org_id).await?;
        let chunks = tx
            .select::<kb_chunks::Entity>()
            .select_only()
            .columns([
                kb_chunks::Column::Id,
                kb_chunks::Column::DocumentId,
                kb_chunks::Column::Ordinal,
                kb_chunks::Column::Content,
            ])
            .filter(kb_chunks::Column::Id.is_in(ids.iter().copied()))
            .into_tuple::<(Uuid, Uuid, i32, String)>()
            .all(tx.conn())
            .await?;
        let doc_ids: Vec<Uuid> = chunks.iter().map(|c| c.1).collect();
        let titles: HashMap<Uuid, String> = tx
            .select::<kb_documents::Entity>()
            .select_only()
            .columns([kb_documents::Column::Id, kb_documents::Column::Title])
            .filter(kb_documents::Column::Id.is_in(doc_ids))
            .filter(kb_documents::Column::Status.eq("ready"))
            .into_tuple::<(Uuid, String)>()
            .all(tx.conn())
            .await?
            .into_iter()
            .collect();
        tx.commit().await?;
        Ok(chunks
            .into_iter()
            .filter_map(|(chunk_id, document_id, ordinal, content)| {
                Some(ChunkRow {
                    chunk_id,
                    document_id,
                    title: titles.get(&document_id)?.clone(),
                    ordinal,
                    content,
                })
            })
            .collect())
    }

    pub async fn memory(&self, org_id: Uuid) -> Result<Memory, StorageError> {
        let tx = self.db.org(org_id).await?;
        let row = tx.select::<kb_memory::Entity>().one(tx.conn()).await?;
        tx.commit().await?;
        Ok(match row {
            Some(m) => Memory {
                content: m.content,
                updated_by: m.updated_by,
                updated_at: Some(m.updated_at),
            },
            None => Memory {
                content: String::new(),
                updated_by: None,
                updated_at: None,
            },
        })
    }

    pub async fn set_memory(&self, who: &Principal, content: &str) -> Result<Memory, StorageError> {
        if content.chars().count() > MAX_MEMORY_CHARS {
            return Err(StorageError::invalid(
                "content",
                format!("at most {MAX_MEMORY_CHARS} characters"),
            ));
        }
        let now = Utc::now();
        let row = kb_memory::ActiveModel {
            org_id: Set(who.org_id),
            content: Set(content.into()),
            updated_by: Set(Some(who.user_id)),
            updated_at: Set(now),
        };
        let tx = self.db.org(who.org_id).await?;
        kb_memory::Entity::insert(row)
            .on_conflict(
                OnConflict::column(kb_memory::Column::OrgId)
                    .update_columns([
                        kb_memory::Column::Content,
                        kb_memory::Column::UpdatedBy,
                        kb_memory::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            who.org_id,
            Some(who.user_id),
            "kb.memory",
            None,
            serde_json::json!({ "chars": content.chars().count() }),
        )
        .await?;
        tx.commit().await?;
        Ok(Memory {
            content: content.into(),
            updated_by: Some(who.user_id),
            updated_at: Some(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_safe() {
        assert_eq!(key_name("run book (v2).md"), "run_book__v2_.md");
        assert_eq!(key_name(".."), "file");
        assert_eq!(key_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(key_name("ünïcode.pdf"), "_n_code.pdf");
    }

    #[test]
    fn vectors_round_trip() {
        let v = vec![0.25f32, -1.5, 3.0e-7];
        assert_eq!(decode_vector(&encode_vector(&v)).unwrap(), v);
        assert!(decode_vector(&[1, 2, 3]).is_err());
    }
}
