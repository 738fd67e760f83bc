//! Keyword relevance: an in-memory inverted index scored with Okapi BM25. Terms are lowercased
//! alphanumeric words, minus common English stop words, reduced by the Snowball English
//! stemmer, so "restarting" matches "restart".

use std::collections::HashMap;

use rust_stemmers::{Algorithm, Stemmer};

use super::vectors::{Scored, TopK};

const K1: f32 = 1.2;
const B: f32 = 0.75;

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "i", "in",
    "is", "it", "of", "on", "or", "that", "the", "this", "to", "was", "what", "when", "where",
    "which", "who", "why", "with", "you", "we", "our", "can", "my",
];

/// The terms of `text`, in order, with repeats.
pub fn terms(text: &str) -> Vec<String> {
    let stemmer = Stemmer::create(Algorithm::English);
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 64)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| stemmer.stem(&w).into_owned())
        .collect()
}

#[derive(Default)]
pub struct Bm25 {
    ids: HashMap<String, u32>,
    /// Per term: (row, term frequency in that row).
    postings: Vec<Vec<(u32, u16)>>,
    lengths: Vec<u32>,
    total_length: u64,
}

impl Bm25 {
    /// Adds the next row (rows are numbered in the order they are added).
    pub fn add(&mut self, text: &str) {
        let row = self.lengths.len() as u32;
        let terms = terms(text);
        let mut counts: HashMap<u32, u16> = HashMap::new();
        for term in &terms {
            let next = self.ids.len() as u32;
            let id = *self.ids.entry(term.clone()).or_insert(next);
            if id as usize == self.postings.len() {
                self.postings.push(Vec::new());
            }
            let c = counts.entry(id).or_insert(0);
            *c = c.saturating_add(1);
        }
        for (id, tf) in counts {
            self.postings[id as usize].push((row, tf));
        }
        self.lengths.push(terms.len() as u32);
        self.total_length += terms.len() as u64;
    }

    /// The `k` best rows for `query` among live rows, best first; rows sharing no term with the
    /// query are not returned.
    pub fn search(&self, query: &str, live: &[bool], k: usize) -> Vec<Scored> {
        let n = self.lengths.len();
        if n == 0 {
            return Vec::new();
        }
        let avg = (self.total_length as f32 / n as f32).max(1.0);
        let mut query_terms = terms(query);
        query_terms.sort();
        query_terms.dedup();
        // Dense accumulators: a common term touches most rows, and a flat array beats a map.
        let mut scores = vec![0f32; n];
        let mut touched: Vec<u32> = Vec::new();
        for term in &query_terms {
            let Some(&id) = self.ids.get(term) else {
                continue;
            };
            let postings = &self.postings[id as usize];
            let df = postings.len() as f32;
            let idf = ((n as f32 - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &(row, tf) in postings {
                let r = row as usize;
                if !live.get(r).copied().unwrap_or(false) {
                    continue;
                }
                let tf = tf as f32;
                let len = self.lengths[r] as f32;
                let s = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg));
                if scores[r] == 0.0 {
                    touched.push(row);
                }
                scores[r] += s;
            }
        }
        let mut top = TopK::new(k);
        for row in touched {
            top.push(row as usize, scores[row as usize]);
        }
        top.into_sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_stemmed_words_without_stop_words() {
        assert_eq!(
            terms("How to restart the Nginx pods? Restarting!"),
            vec!["restart", "nginx", "pod", "restart"]
        );
    }

    #[test]
    fn rare_matching_terms_rank_first() {
        let mut index = Bm25::default();
        index.add("restart the nginx deployment with kubectl rollout restart");
        index.add("the database backup runs nightly");
        index.add("nginx serves the static files");
        let live = [true, true, true];
        let hits = index.search("how do I restart nginx", &live, 10);
        assert_eq!(hits[0].index, 0);
        assert_eq!(hits.len(), 2, "the backup row shares no term");
        let dead_first = [false, true, true];
        assert_eq!(index.search("restart nginx", &dead_first, 10)[0].index, 2);
    }
}
