//! The search index of each org, in memory, built from the chunks stored in the database (the
//! durable copy: a restarted node rebuilds it on the org's first search).
//!
//! Hybrid search: vector similarity (a full int8 scan re-scored in f32) and BM25 keyword relevance each rank candidates, and
//! reciprocal rank fusion merges the two lists, so a chunk that is good on either side surfaces
//! and one good on both wins.
//!
//! Freshness: every change to an org's chunks bumps its generation in the same database
//! transaction. A search reads the generation first and rebuilds the org's index when its copy
//! is older (another node ingested or deleted); this node's own changes are applied in place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use uuid::Uuid;

use super::bm25::Bm25;
use super::vectors::{self, Scored, VectorStore};
use super::{IndexedChunk, Knowledge};
use crate::StorageError;

/// The constant of reciprocal rank fusion (the usual 60: ranks deep in one list count little).
const RRF_K: f32 = 60.0;
/// Candidates each ranking contributes before fusion, per result asked for.
const CANDIDATES_PER_RESULT: usize = 5;
const MIN_CANDIDATES: usize = 50;
/// Longest snippet, in characters.
const SNIPPET_CHARS: usize = 300;

/// One result of a hybrid search.
#[derive(Clone, Debug, Serialize)]
pub struct SearchHit {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub title: String,
    /// Position of the chunk in its document.
    pub ordinal: i32,
    /// The fused score (higher is better).
    pub score: f32,
    /// Cosine similarity of the chunk to the query.
    pub similarity: f32,
    pub snippet: String,
    /// The whole chunk, for the agent to quote.
    #[serde(skip)]
    pub content: String,
}

/// One org's chunks: vectors back to back, their ids, a live flag (deleted rows are dropped at
/// the next rebuild), and the keyword index over the same rows.
struct OrgIndex {
    generation: i64,
    ids: Vec<(Uuid, Uuid)>,
    vectors: VectorStore,
    live: Vec<bool>,
    keywords: Bm25,
}

impl OrgIndex {
    fn build(generation: i64, chunks: Vec<IndexedChunk>) -> OrgIndex {
        let dims = chunks.first().map(|c| c.vector.len()).unwrap_or(0);
        let mut index = OrgIndex {
            generation,
            ids: Vec::with_capacity(chunks.len()),
            vectors: VectorStore::new(dims),
            live: Vec::with_capacity(chunks.len()),
            keywords: Bm25::default(),
        };
        index.vectors.reserve(chunks.len());
        index.add(chunks);
        index
    }

    fn add(&mut self, chunks: Vec<IndexedChunk>) {
        for c in chunks {
            if self.vectors.dims() == 0 && self.vectors.is_empty() {
                self.vectors = VectorStore::new(c.vector.len());
            }
            if !self.vectors.push(&c.vector) {
                tracing::warn!(chunk = %c.chunk_id, "chunk vector has the wrong size; not indexed");
                continue;
            }
            self.ids.push((c.chunk_id, c.document_id));
            self.live.push(true);
            self.keywords.add(&c.content);
        }
    }

    fn remove_document(&mut self, document_id: Uuid) {
        for (i, (_, doc)) in self.ids.iter().enumerate() {
            if *doc == document_id {
                self.live[i] = false;
            }
        }
    }

    /// Fused ranking: `(row, fused score, cosine)`, best first.
    fn hybrid(
        &self,
        query_vector: &[f32],
        query_text: &str,
        limit: usize,
    ) -> Vec<(usize, f32, f32)> {
        let depth = (limit * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES);
        let by_vector = self.vectors.nearest(&self.live, query_vector, depth);
        let by_keyword = self.keywords.search(query_text, &self.live, depth);
        let mut fused: HashMap<usize, f32> = HashMap::new();
        for list in [&by_vector, &by_keyword] {
            for (rank, Scored { index, .. }) in list.iter().enumerate() {
                *fused.entry(*index).or_insert(0.0) += 1.0 / (RRF_K + rank as f32 + 1.0);
            }
        }
        let mut ranked: Vec<(usize, f32)> = fused.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        ranked
            .into_iter()
            .map(|(row, score)| {
                (
                    row,
                    score,
                    vectors::dot(self.vectors.row(row), query_vector),
                )
            })
            .collect()
    }
}

/// Each org's index, shared by the node's searches and kept current with the database.
#[derive(Clone)]
pub struct KnowledgeIndex {
    knowledge: Knowledge,
    orgs: Arc<Mutex<HashMap<Uuid, Arc<RwLock<OrgIndex>>>>>,
    /// One rebuild per org at a time: searches arriving during a rebuild wait for it.
    loading: Arc<Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>>,
}

fn poisoned<T>(_: T) -> StorageError {
    StorageError::Internal("knowledge index lock poisoned".into())
}

impl KnowledgeIndex {
    pub fn new(knowledge: Knowledge) -> KnowledgeIndex {
        KnowledgeIndex {
            knowledge,
            orgs: Arc::default(),
            loading: Arc::default(),
        }
    }

    pub fn knowledge(&self) -> &Knowledge {
        &self.knowledge
    }

    /// The org's index at `generation` or newer, rebuilt from the database when needed.
    async fn current(
        &self,
        org_id: Uuid,
        generation: i64,
    ) -> Result<Arc<RwLock<OrgIndex>>, StorageError> {
        let fresh = |orgs: &HashMap<Uuid, Arc<RwLock<OrgIndex>>>| {
            orgs.get(&org_id).and_then(|idx| {
                let current = idx.read().ok()?.generation >= generation;
                current.then(|| idx.clone())
            })
        };
        if let Some(idx) = fresh(&*self.orgs.lock().map_err(poisoned)?) {
            return Ok(idx);
        }
        let gate = self
            .loading
            .lock()
            .map_err(poisoned)?
            .entry(org_id)
            .or_default()
            .clone();
        let _one_at_a_time = gate.lock().await;
        if let Some(idx) = fresh(&*self.orgs.lock().map_err(poisoned)?) {
            return Ok(idx);
        }
        let started = std::time::Instant::now();
        let (loaded_generation, chunks) = self.knowledge.load_index(org_id).await?;
        let count = chunks.len();
        let built = tokio::task::spawn_blocking(move || OrgIndex::build(loaded_generation, chunks))
            .await
            .map_err(|e| StorageError::Internal(format!("index build failed: {e}")))?;
        tracing::info!(org = %org_id, chunks = count, generation = loaded_generation, ms = started.elapsed().as_millis() as u64, "knowledge index built");
        let idx = Arc::new(RwLock::new(built));
        self.orgs
            .lock()
            .map_err(poisoned)?
            .insert(org_id, idx.clone());
        Ok(idx)
    }

    /// Applies this node's own ingestion of `chunks` (committed at `generation`). When the copy
    /// here missed an earlier change it is dropped instead, and the next search rebuilds it.
    pub fn added(&self, org_id: Uuid, generation: i64, chunks: Vec<IndexedChunk>) {
        self.apply(org_id, generation, |idx| idx.add(chunks));
    }

    /// Applies this node's own deletion of a document (committed at `generation`).
    pub fn removed(&self, org_id: Uuid, generation: i64, document_id: Uuid) {
        self.apply(org_id, generation, |idx| idx.remove_document(document_id));
    }

    fn apply(&self, org_id: Uuid, generation: i64, change: impl FnOnce(&mut OrgIndex)) {
        let Ok(mut orgs) = self.orgs.lock() else {
            return;
        };
        let Some(idx) = orgs.get(&org_id).cloned() else {
            return;
        };
        match idx.write() {
            Ok(mut idx) if idx.generation == generation - 1 => {
                change(&mut idx);
                idx.generation = generation;
            }
            Ok(idx) if idx.generation >= generation => {}
            _ => {
                orgs.remove(&org_id);
            }
        };
    }

    /// The `limit` best chunks of the org for a query given as text and as its embedding.
    pub async fn search(
        &self,
        org_id: Uuid,
        query_text: &str,
        query_vector: Vec<f32>,
        limit: usize,
    ) -> Result<Vec<SearchHit>, StorageError> {
        let generation = self.knowledge.generation(org_id).await?;
        let idx = self.current(org_id, generation).await?;
        let text = query_text.to_string();
        let ranked = tokio::task::spawn_blocking(move || {
            let idx = idx.read().map_err(poisoned)?;
            let ranked = idx.hybrid(&query_vector, &text, limit);
            Ok::<_, StorageError>(
                ranked
                    .into_iter()
                    .map(|(row, score, sim)| (idx.ids[row].0, score, sim))
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(|e| StorageError::Internal(format!("search failed: {e}")))??;
        let ids: Vec<Uuid> = ranked.iter().map(|r| r.0).collect();
        let mut rows: HashMap<Uuid, _> = self
            .knowledge
            .chunks(org_id, &ids)
            .await?
            .into_iter()
            .map(|r| (r.chunk_id, r))
            .collect();
        // A chunk whose document went away since the index was read is left out.
        Ok(ranked
            .into_iter()
            .filter_map(|(id, score, similarity)| {
                let row = rows.remove(&id)?;
                Some(SearchHit {
                    chunk_id: id,
                    document_id: row.document_id,
                    title: row.title,
                    ordinal: row.ordinal,
                    score,
                    similarity,
                    snippet: snippet(&row.content, query_text),
                    content: row.content,
                })
            })
            .collect())
    }
}

/// Up to [`SNIPPET_CHARS`] of `content`, starting a little before the first query word found
/// in it (or at the start), on character boundaries, with ellipses where it was cut.
pub fn snippet(content: &str, query: &str) -> String {
    let lower = content.to_lowercase();
    let start_byte = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 4)
        .filter_map(|w| lower.find(&w.to_lowercase()))
        .min()
        .unwrap_or(0);
    // Byte offsets of the lowercase copy can differ from the original's: map by characters.
    let start_char = lower[..start_byte.min(lower.len())].chars().count();
    let begin = start_char.saturating_sub(60);
    let total = content.chars().count();
    let text: String = content
        .chars()
        .skip(begin)
        .take(SNIPPET_CHARS)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    if begin > 0 {
        out.push('…');
    }
    out.push_str(&text);
    if begin + SNIPPET_CHARS < total {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(doc: Uuid, text: &str, v: [f32; 2]) -> IndexedChunk {
        IndexedChunk {
            chunk_id: Uuid::now_v7(),
            document_id: doc,
            content: text.into(),
            vector: v.to_vec(),
        }
    }

    #[test]
    fn fusion_rewards_agreement_and_removal_hides_rows() {
        let (d1, d2) = (Uuid::now_v7(), Uuid::now_v7());
        let mut idx = OrgIndex::build(
            1,
            vec![
                chunk(d1, "restart nginx with a rollout", [1.0, 0.0]),
                chunk(d1, "backups run nightly", [0.6, 0.8]),
                chunk(d2, "nginx configuration reference", [0.0, 1.0]),
            ],
        );
        // Close to row 0 by vector, and rows 0 and 2 by keyword: row 0 wins on both.
        let ranked = idx.hybrid(&[0.95, 0.312], "nginx restart", 3);
        assert_eq!(ranked[0].0, 0);
        assert!(ranked[0].1 > ranked[1].1);
        idx.remove_document(d1);
        let ranked = idx.hybrid(&[0.95, 0.312], "nginx restart", 3);
        assert_eq!(
            ranked.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![2],
            "only the other document is left"
        );
    }

    #[test]
    fn snippets_start_near_the_match_and_mark_cuts() {
        let long = format!(
            "{} the nginx restart procedure {}",
            "x ".repeat(200),
            "y ".repeat(200)
        );
        let s = snippet(&long, "nginx");
        assert!(s.starts_with('…') && s.ends_with('…'));
        assert!(s.contains("nginx restart"));
        assert_eq!(snippet("short text", "absent"), "short text");
    }
}
