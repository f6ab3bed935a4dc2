//! Pairs of items whose embeddings lie close: what near-duplicate grouping reads from an index.
//! Each item's few nearest neighbours above a similarity are found by the index's own search
//! (the HNSW walk in process, pgvector's index from a lateral join in Postgres), so the cost is
//! one search per item rather than a comparison of every pair.

use std::ops::Range;

use super::VectorIndex;

/// Two items and their similarity, `a < b`.
#[derive(Debug, Clone, PartialEq)]
pub struct NearPair {
    pub a: String,
    pub b: String,
    pub score: f32,
}

impl NearPair {
    /// The pair in key order (each pair is found from both ends).
    pub fn new(x: String, y: String, score: f32) -> Self {
        if x <= y {
            Self { a: x, b: y, score }
        } else {
            Self { a: y, b: x, score }
        }
    }
}

impl VectorIndex {
    /// Internal ids the next [`Self::near_pairs_among`] calls walk through (live and dead; a
    /// caller steps through it in chunks, so a long scan holds the lock only a chunk at a time).
    pub fn id_span(&self) -> usize {
        self.inner.read().expect("index lock").keys.len()
    }

    /// For each live item with an internal id in `ids`: its up to `per_item` nearest other live
    /// items scoring at least `min_score`.
    pub fn near_pairs_among(
        &self,
        ids: Range<usize>,
        min_score: f32,
        per_item: usize,
    ) -> Vec<NearPair> {
        let inner = self.inner.read().expect("index lock");
        let ef = self.params.ef_search.max(per_item + 1);
        let mut pairs = Vec::new();
        for id in ids.start..ids.end.min(inner.keys.len()) {
            if inner.dead.contains(&id) {
                continue;
            }
            let q = inner.ann.vector(self.dims, id);
            let keep = |other: usize| other != id && !inner.dead.contains(&other);
            for (other, score) in inner.ann.search_keep(q, per_item, ef, &keep) {
                if score < min_score {
                    break;
                }
                pairs.push(NearPair::new(
                    inner.keys[id].clone(),
                    inner.keys[other].clone(),
                    score,
                ));
            }
        }
        pairs
    }
}
