//! Nearest-neighbour search over projected embeddings: one [`VectorIndex`] per searchable side
//! (images for caption→image search, captions for image→caption search).
//!
//! The catalog is the source of truth. An index is derived data: persisted atomically with a
//! header and checksum, reloaded at start-up when it matches, rebuilt when missing, stale or
//! corrupt, and reconciled with the catalog (insert what is missing, delete what is gone).

pub mod ann;
mod dot;
mod duplicates;
mod filtered;
mod hnsw;
pub mod open;
pub mod pgvector;
mod search;
mod store;
mod writes;

use std::{
    collections::{HashMap, HashSet},
    sync::RwLock,
};

use ann::Ann;
pub use ann::IndexParams;
pub use duplicates::NearPair;
pub use filtered::{FilterPlan, EXACT_BELOW_FRACTION};
use hnsw::Hnsw;
pub use search::{SearchIndex, SearchRequest};
pub use store::StoreError;
pub use writes::IndexWrites;

use crate::vectors::Embedding;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("an embedding of {got} dims met an index of {expected}")]
    Dims { expected: usize, got: usize },
    #[error("invalid index parameters: {0}")]
    Params(String),
    #[error(transparent)]
    Postgres(#[from] pgvector::PgIndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] crate::data::CatalogError),
    #[error("projecting stored features: {0}")]
    Projection(#[from] candle_core::Error),
}

impl IndexError {
    /// The database is unreachable or busy (worth a retry, or a 503), rather than broken.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Postgres(e) => e.is_transient(),
            Self::Catalog(crate::data::CatalogError::Db(e)) => {
                crate::data::catalog::is_transient(e)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub key: String,
    pub score: f32,
}

#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub k: usize,
    pub offset: usize,
    pub min_score: Option<f32>,
}

impl Inner {
    /// The `offset..offset+k` slice of ranked (id, score) pairs above `min_score`, as hits.
    fn page(&self, found: Vec<(usize, f32)>, query: Query) -> Vec<Hit> {
        found
            .into_iter()
            .skip(query.offset)
            .take(query.k)
            .filter(|(_, s)| query.min_score.is_none_or(|m| *s >= m))
            .map(|(id, score)| Hit {
                key: self.keys[id].clone(),
                score,
            })
            .collect()
    }
}

struct Inner {
    ann: Ann,
    /// internal id → key
    keys: Vec<String>,
    /// key → live internal id
    live: HashMap<String, usize>,
    dead: HashSet<usize>,
}

pub struct VectorIndex {
    dims: usize,
    params: IndexParams,
    inner: RwLock<Inner>,
}

/// Rebuild when this share of stored vectors is deleted.
const COMPACT_DEAD_FRACTION: f64 = 0.2;

impl VectorIndex {
    pub fn new(dims: usize, params: IndexParams) -> Result<Self, IndexError> {
        params.validate().map_err(IndexError::Params)?;
        let inner = Inner {
            ann: Ann::Exact {
                dims,
                vectors: Vec::new(),
            },
            keys: Vec::new(),
            live: HashMap::new(),
            dead: HashSet::new(),
        };
        Ok(Self {
            dims,
            params,
            inner: RwLock::new(inner),
        })
    }

    /// Build from (key, L2-normalised embedding) pairs, inserting in parallel.
    pub fn build(
        dims: usize,
        params: IndexParams,
        items: Vec<(String, Embedding)>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Self, IndexError> {
        let index = Self::new(dims, params)?;
        {
            let mut inner = index.inner.write().expect("index lock");
            let n = items.len();
            let mut vectors = Vec::with_capacity(n * dims);
            for (id, (key, v)) in items.into_iter().enumerate() {
                if v.dims() != dims {
                    return Err(IndexError::Dims {
                        expected: dims,
                        got: v.dims(),
                    });
                }
                if let Some(old) = inner.live.insert(key.clone(), id) {
                    inner.dead.insert(old); // a repeated key: the later one wins
                }
                inner.keys.push(key);
                vectors.extend_from_slice(v.as_slice());
            }
            inner.ann = if n >= params.exact_below {
                Ann::Graph(Box::new(Hnsw::build(
                    dims,
                    params.m,
                    params.ef_construction,
                    vectors,
                    progress,
                )))
            } else {
                progress(n as u64);
                Ann::Exact { dims, vectors }
            };
        }
        Ok(index)
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn params(&self) -> IndexParams {
        self.params
    }

    /// Live items.
    pub fn len(&self) -> usize {
        self.inner.read().expect("index lock").live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: &str) -> bool {
        self.inner
            .read()
            .expect("index lock")
            .live
            .contains_key(key)
    }

    pub fn keys(&self) -> Vec<String> {
        self.inner
            .read()
            .expect("index lock")
            .live
            .keys()
            .cloned()
            .collect()
    }

    /// Add or replace `key`. Searches see it as soon as this returns.
    pub fn upsert(&self, key: &str, v: &Embedding) -> Result<(), IndexError> {
        self.check_dims(v)?;
        let mut inner = self.inner.write().expect("index lock");
        let id = inner.keys.len();
        if let Some(old) = inner.live.insert(key.to_string(), id) {
            inner.dead.insert(old);
        }
        inner.keys.push(key.to_string());
        inner.ann.insert(v.as_slice());
        // outgrew exact search: move to a graph
        if let Ann::Exact { .. } = inner.ann {
            if inner.keys.len() >= self.params.exact_below {
                self.rebuild_locked(&mut inner);
            }
        }
        Ok(())
    }

    /// Remove `key`; false if absent. It never appears in results afterwards.
    pub fn remove(&self, key: &str) -> bool {
        let mut inner = self.inner.write().expect("index lock");
        let Some(id) = inner.live.remove(key) else {
            return false;
        };
        inner.dead.insert(id);
        if inner.dead.len() as f64 > COMPACT_DEAD_FRACTION * inner.keys.len() as f64
            && inner.keys.len() > 64
        {
            self.rebuild_locked(&mut inner);
        }
        true
    }

    /// Drop tombstones by rebuilding from the live vectors (ids renumbered).
    fn rebuild_locked(&self, inner: &mut Inner) {
        let vectors = inner.ann.vectors(self.dims);
        let mut live: Vec<(String, Embedding)> = vectors
            .into_iter()
            .filter(|(id, _)| !inner.dead.contains(id))
            .map(|(id, v)| (inner.keys[id].clone(), Embedding::new(v)))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        let rebuilt =
            Self::build(self.dims, self.params, live, &|_| {}).expect("dims already checked");
        *inner = rebuilt.inner.into_inner().expect("fresh lock");
    }

    fn check_dims(&self, v: &Embedding) -> Result<(), IndexError> {
        if v.dims() != self.dims {
            return Err(IndexError::Dims {
                expected: self.dims,
                got: v.dims(),
            });
        }
        Ok(())
    }

    /// The `offset..offset+k` best live items by inner product, above `min_score` if given.
    /// Deleted items are filtered inside the search, so a page is only short when fewer live
    /// items exist (or pass `min_score`). A query of other dims than the index is an error.
    pub fn search(&self, q: &Embedding, query: Query) -> Result<Vec<Hit>, IndexError> {
        self.search_ef(q, query, self.params.ef_search)
    }

    fn search_ef(
        &self,
        q: &Embedding,
        query: Query,
        ef_search: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        self.check_dims(q)?;
        let q = q.as_slice();
        let inner = self.inner.read().expect("index lock");
        let want = query.offset + query.k;
        if want == 0 {
            return Ok(Vec::new());
        }
        let mut ef = ef_search.max(want);
        let mut found = inner.ann.search(q, want, ef, &inner.dead);
        // HNSW can return fewer than asked on a sparse filtered graph: widen the beam
        while found.len() < want.min(inner.live.len()) && ef < 4 * inner.keys.len().max(1) {
            ef *= 2;
            found = inner.ann.search(q, want, ef, &inner.dead);
        }
        Ok(inner.page(found, query))
    }

    /// The same index searched with another beam width (for benchmarks and tuning).
    pub fn with_ef_search(&self, ef_search: usize) -> SearchWith<'_> {
        SearchWith {
            index: self,
            ef_search,
        }
    }

    pub fn is_graph(&self) -> bool {
        matches!(self.inner.read().expect("index lock").ann, Ann::Graph(_))
    }
}

impl VectorIndex {
    /// Make the index agree with the catalog: `truth` maps every key that should be searchable
    /// to its vector. Returns (inserted, removed).
    pub fn reconcile(
        &self,
        truth: &HashMap<String, Embedding>,
    ) -> Result<(usize, usize), IndexError> {
        let keys: HashSet<&str> = truth.keys().map(String::as_str).collect();
        let (missing, removed) = self.reconcile_keys(&keys);
        for k in &missing {
            self.upsert(k, &truth[k])?;
        }
        Ok((missing.len(), removed))
    }

    /// Remove entries whose key is not in `truth`; return the keys of `truth` the index lacks
    /// (sorted) and how many entries were removed. Callers then insert the missing vectors, so
    /// only those need to be read.
    pub fn reconcile_keys(&self, truth: &HashSet<&str>) -> (Vec<String>, usize) {
        let extra: Vec<String> = self
            .keys()
            .into_iter()
            .filter(|k| !truth.contains(k.as_str()))
            .collect();
        for k in &extra {
            self.remove(k);
        }
        let mut missing: Vec<String> = truth
            .iter()
            .filter(|k| !self.contains(k))
            .map(|k| k.to_string())
            .collect();
        missing.sort();
        (missing, extra.len())
    }
}

pub struct SearchWith<'a> {
    index: &'a VectorIndex,
    ef_search: usize,
}

impl SearchWith<'_> {
    pub fn search(&self, q: &Embedding, query: Query) -> Result<Vec<Hit>, IndexError> {
        self.index.search_ef(q, query, self.ef_search)
    }
}

/// Stored feature rows → (item, projected embedding): one projection for the whole chunk, on the
/// projector's device.
pub fn project_stored(
    stored: &[crate::data::catalog::StoredVector],
    project: &impl Fn(&candle_core::Tensor) -> candle_core::Result<candle_core::Tensor>,
    device: &candle_core::Device,
) -> candle_core::Result<Vec<(String, Embedding)>> {
    let Some(first) = stored.first() else {
        return Ok(Vec::new());
    };
    let dims = first.vector.dims();
    let flat: Vec<f32> = stored
        .iter()
        .flat_map(|v| v.vector.as_slice().iter().copied())
        .collect();
    let projected: Vec<Vec<f32>> = project(&candle_core::Tensor::from_vec(
        flat,
        (stored.len(), dims),
        device,
    )?)?
    .to_vec2()?;
    Ok(stored
        .iter()
        .map(|v| v.item.clone())
        .zip(projected.into_iter().map(Embedding::new))
        .collect())
}
