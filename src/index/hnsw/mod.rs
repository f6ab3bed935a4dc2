//! Hierarchical navigable small-world graph (Malkov & Yashunin, 2016), inner product on
//! L2-normalised vectors.
//!
//! Why our own rather than hnsw_rs: measured on the same 50k × 512-d data (README, "The index"),
//! hnsw_rs 0.3.5 answered 0.41× hnswlib's queries/s at equal recall, built 2.8× slower and held
//! ~6 KB per 2 KB vector (a copy per point plus per-point neighbour vectors behind locks). This
//! layout is hnswlib's: one flat vector arena, one flat layer-0 link array (`count, links…` per
//! node), upper layers only for the ~1/M nodes that have them, generation-tagged visited lists,
//! and the neighbour-selection heuristic; link lists are atomics so a parallel build can read
//! them while other threads rewrite them under striped locks.
//!
//! Vectors are stored as f32, so a score is the exact inner product of the query and the stored
//! embedding: what a client computes from `/v1/embeddings` vectors, to float rounding. (f16
//! storage had halved the arena, but put scores ~1e-4 off f32, visible to clients comparing
//! scores with their own dot products or thresholds.)

use std::{
    cmp::Ordering,
    sync::{
        atomic::{AtomicU32, Ordering::Relaxed},
        Mutex,
    },
};

use rayon::prelude::*;

use super::dot::{kernel, DotFn};
use crate::rng::Rng;

/// Highest layer a node may get (hnswlib and hnsw_rs use 16 too).
pub const MAX_LEVEL: usize = 15;
/// Build-time lock stripes: a node's links are rewritten under `locks[id % STRIPES]`.
const STRIPES: usize = 1024;
/// Levels are drawn from a fixed stream so a build's layer structure is reproducible.
const LEVEL_SEED: u64 = 0x5eed_0f4e_5f00;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored {
    /// 1 - inner product: smaller is closer
    dist: f32,
    id: u32,
}

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.id.cmp(&other.id))
    }
}

/// Which nodes a search has seen: a tag per node, compared with the current search's epoch, so
/// starting a search costs nothing instead of clearing a set.
pub struct Visited {
    tags: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn new(n: usize) -> Self {
        Self {
            tags: vec![0; n],
            epoch: 0,
        }
    }

    fn start(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.tags.fill(0);
            self.epoch = 1;
        }
    }

    /// True the first time `id` is seen in this search.
    #[inline]
    fn first_visit(&mut self, id: u32) -> bool {
        let tag = &mut self.tags[id as usize];
        if *tag == self.epoch {
            false
        } else {
            *tag = self.epoch;
            true
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub node: u32,
    pub level: usize,
}

pub struct Hnsw {
    dims: usize,
    /// links per node on layers above 0; layer 0 keeps up to `2m`
    m: usize,
    ef_construction: usize,
    dot: DotFn,
    /// `dims` per node
    vectors: Vec<f32>,
    levels: Vec<u8>,
    /// `m0 + 1` per node: the count, then the links
    layer0: Vec<AtomicU32>,
    /// per node, `m + 1` slots (count, links) for each layer 1..=level; empty for most nodes
    upper: Vec<Box<[AtomicU32]>>,
    entry: Mutex<Option<Entry>>,
    locks: Box<[Mutex<()>]>,
    /// visited lists for queries, reused across searches
    pool: Mutex<Vec<Visited>>,
    rng: Rng,
}

mod parts;
mod search;
#[cfg(test)]
mod tests;

pub use parts::Parts;

impl Hnsw {
    pub fn m0(&self) -> usize {
        2 * self.m
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    fn vector(&self, id: usize) -> &[f32] {
        &self.vectors[id * self.dims..(id + 1) * self.dims]
    }

    /// Node `id`'s vector.
    pub fn vector_f32(&self, id: usize) -> Vec<f32> {
        self.vector(id).to_vec()
    }

    /// The arena: `dims` per node.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    fn empty(dims: usize, m: usize, ef_construction: usize, seed: u64) -> Self {
        Self {
            dims,
            m,
            ef_construction,
            dot: kernel(),
            vectors: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper: Vec::new(),
            entry: Mutex::new(None),
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            pool: Mutex::new(Vec::new()),
            rng: Rng::new(seed),
        }
    }

    /// A random layer: P(level ≥ l) = m^-l.
    fn draw_level(&mut self) -> usize {
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let level = -(1.0 - u).ln() / (self.m as f64).ln();
        (level as usize).min(MAX_LEVEL)
    }

    /// Make room for one more node of `level` holding `v`; returns its id.
    fn push_node(&mut self, v: &[f32], level: usize) -> u32 {
        let id = self.levels.len() as u32;
        self.vectors.extend_from_slice(v);
        self.levels.push(level as u8);
        let m0 = self.m0();
        self.layer0.extend((0..=m0).map(|_| AtomicU32::new(0)));
        self.upper.push(
            (0..level * (self.m + 1))
                .map(|_| AtomicU32::new(0))
                .collect(),
        );
        id
    }

    /// Build from a flat array of `dims`-long vectors, inserting on rayon's
    /// threads. `progress` is called with the number of nodes inserted since its last call.
    pub fn build(
        dims: usize,
        m: usize,
        ef_construction: usize,
        vectors: Vec<f32>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Self {
        let n = vectors.len() / dims.max(1);
        let mut graph = Self::empty(dims, m, ef_construction, LEVEL_SEED);
        graph.layer0.reserve_exact(n * (graph.m0() + 1));
        for _ in 0..n {
            let level = graph.draw_level();
            graph.levels.push(level as u8);
            graph
                .layer0
                .extend((0..=graph.m0()).map(|_| AtomicU32::new(0)));
            graph
                .upper
                .push((0..level * (m + 1)).map(|_| AtomicU32::new(0)).collect());
        }
        let mut vectors = vectors;
        vectors.truncate(n * dims);
        graph.vectors = vectors;
        if n == 0 {
            return graph;
        }
        let mut visited = Visited::new(n);
        graph.insert(0, &mut visited);
        progress(1);
        let ids: Vec<u32> = (1..n as u32).collect();
        for chunk in ids.chunks(4096) {
            chunk
                .par_iter()
                .for_each_init(|| Visited::new(n), |visited, &id| graph.insert(id, visited));
            progress(chunk.len() as u64);
        }
        graph
    }

    /// Append one vector and link it in (the caller holds the index exclusively).
    pub fn add(&mut self, v: &[f32]) -> u32 {
        let level = self.draw_level();
        let id = self.push_node(v, level);
        let mut visited = self
            .pool
            .get_mut()
            .expect("visited pool")
            .pop()
            .unwrap_or_else(|| Visited::new(0));
        self.insert(id, &mut visited); // each layer search sizes and resets the visited list
        self.pool.get_mut().expect("visited pool").push(visited);
        id
    }

    #[inline]
    fn dist(&self, q: &[f32], id: u32) -> f32 {
        1.0 - (self.dot)(q, self.vector(id as usize))
    }

    #[inline]
    fn links(&self, id: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            let w = self.m0() + 1;
            &self.layer0[id as usize * w..(id as usize + 1) * w]
        } else {
            let w = self.m + 1;
            &self.upper[id as usize][(level - 1) * w..level * w]
        }
    }

    /// The links of `id` on `level`, into `out` (cleared first).
    #[inline]
    fn neighbours(&self, id: u32, level: usize, out: &mut Vec<u32>) {
        let list = self.links(id, level);
        let count = (list[0].load(Relaxed) as usize).min(list.len() - 1);
        out.clear();
        out.extend(list[1..=count].iter().map(|l| l.load(Relaxed)));
    }

    fn set_links(&self, id: u32, level: usize, to: impl ExactSizeIterator<Item = u32>) {
        let list = self.links(id, level);
        let count = to.len().min(list.len() - 1);
        for (slot, l) in list[1..].iter().zip(to) {
            slot.store(l, Relaxed);
        }
        list[0].store(count as u32, Relaxed);
    }

    #[inline]
    fn prefetch(&self, id: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self.vectors[id as usize * self.dims..].as_ptr() as *const i8;
            // SAFETY: a prefetch is a hint; the address lies inside the arena.
            unsafe { _mm_prefetch(p, _MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = id;
    }

    /// hnswlib's neighbour heuristic: walking candidates closest first, keep one only if it is
    /// closer to the base than to every neighbour kept so far (spreads links across directions).
    fn select(&self, sorted: &[Scored], m: usize) -> Vec<Scored> {
        let mut kept: Vec<Scored> = Vec::with_capacity(m);
        for &c in sorted {
            if kept.len() >= m {
                break;
            }
            let v = self.vector(c.id as usize);
            if kept.iter().all(|s| self.dist(v, s.id) >= c.dist) {
                kept.push(c);
            }
        }
        kept
    }

    /// Link node `id` (already in the arrays) into the graph.
    fn insert(&self, id: u32, visited: &mut Visited) {
        let level = self.levels[id as usize] as usize;
        let mut top = self.entry.lock().expect("entry lock");
        let Some(entry) = *top else {
            *top = Some(Entry { node: id, level });
            return;
        };
        // a node that raises the top keeps the entry locked until it is linked (as hnswlib does)
        let raising = level > entry.level;
        let top = if raising {
            Some(top)
        } else {
            drop(top);
            None
        };
        let q = self.vector(id as usize);
        let mut buf = Vec::with_capacity(self.m0());
        let mut at = Scored {
            dist: self.dist(q, entry.node),
            id: entry.node,
        };
        for l in (level + 1..=entry.level).rev() {
            at = self.greedy(q, at, l, &mut buf);
        }
        let mut from = vec![at];
        for l in (0..=level.min(entry.level)).rev() {
            let found = self.search_layer(q, &from, self.ef_construction, l, visited, &|_| true);
            let chosen = self.select(&found, self.m);
            {
                let _g = self.locks[id as usize % STRIPES].lock().expect("link lock");
                self.set_links(id, l, chosen.iter().map(|s| s.id));
            }
            let cap = if l == 0 { self.m0() } else { self.m };
            for s in &chosen {
                self.link_back(s.id, id, s.dist, l, cap, &mut buf);
            }
            from = found;
        }
        if let Some(mut top) = top {
            *top = Some(Entry { node: id, level });
        }
    }

    /// Add `new` to `node`'s links on `level`, re-selecting them when full.
    fn link_back(
        &self,
        node: u32,
        new: u32,
        dist: f32,
        level: usize,
        cap: usize,
        buf: &mut Vec<u32>,
    ) {
        let _g = self.locks[node as usize % STRIPES]
            .lock()
            .expect("link lock");
        self.neighbours(node, level, buf);
        if buf.contains(&new) {
            return;
        }
        if buf.len() < cap {
            buf.push(new);
            self.set_links(node, level, buf.iter().copied());
            return;
        }
        let v = self.vector(node as usize);
        let mut candidates: Vec<Scored> = buf
            .iter()
            .map(|&nb| Scored {
                dist: self.dist(v, nb),
                id: nb,
            })
            .chain(std::iter::once(Scored { dist, id: new }))
            .collect();
        candidates.sort_unstable();
        let kept = self.select(&candidates, cap);
        self.set_links(node, level, kept.iter().map(|s| s.id));
    }
}
