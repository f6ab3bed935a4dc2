//! Recent queries' text features. Real query streams repeat, and a hit skips tokenising and the
//! text encoder (a forward pass is most of a caption search's cost on a CPU). Keyed by the text
//! feature set (the encoder and its options) and the query with runs of whitespace collapsed and
//! ends trimmed (case is kept: a cased model tells "Apple" from "apple"); bounded by bytes, with
//! quick_cache's S3-FIFO eviction (scan-resistant, hit rates at or above LRU's). Hits and misses
//! are counted in /metrics as `xmodal_query_cache_total{result}`.

use quick_cache::{sync::Cache, Weighter};

use crate::vectors::Features;

#[derive(Clone, Copy)]
struct Bytes;

impl Weighter<(String, String), Features> for Bytes {
    fn weight(&self, key: &(String, String), value: &Features) -> u64 {
        // key text, the f32s, and the entry's own bookkeeping
        (key.0.len() + key.1.len() + 4 * value.dims() + 64) as u64
    }
}

pub struct QueryCache {
    feature_set: String,
    cache: Cache<(String, String), Features, Bytes>,
}

impl QueryCache {
    /// A cache of at most `bytes` for features of `feature_set`; `None` when `bytes` is 0.
    pub fn new(feature_set: String, bytes: u64) -> Option<Self> {
        (bytes > 0).then(|| Self {
            feature_set,
            // ~1.6 KB an entry for a 384-d encoder
            cache: Cache::with_weighter((bytes / 1600).max(16) as usize, bytes, Bytes),
        })
    }

    fn key(&self, text: &str) -> (String, String) {
        let normalised = text.split_whitespace().collect::<Vec<_>>().join(" ");
        (self.feature_set.clone(), normalised)
    }

    pub fn get(&self, text: &str) -> Option<Features> {
        let hit = self.cache.get(&self.key(text));
        let result = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!("xmodal_query_cache_total", "result" => result).increment(1);
        hit
    }

    pub fn insert(&self, text: &str, features: Features) {
        self.cache.insert(self.key(text), features);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_ignore_whitespace_not_case_and_stay_within_bytes() {
        let cache = QueryCache::new("fs".into(), 64 * 1024).unwrap();
        cache.insert("a  cat\t", Features::new(vec![1.0; 384]));
        assert!(cache.get(" a cat").is_some());
        assert!(cache.get("A cat").is_none());
        for i in 0..1000 {
            cache.insert(&format!("query {i}"), Features::new(vec![0.5; 384]));
        }
        assert!(
            cache.cache.weight() <= 64 * 1024,
            "{}",
            cache.cache.weight()
        );
        assert!(QueryCache::new("fs".into(), 0).is_none());
    }
}
