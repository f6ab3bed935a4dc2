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
//! Vectors are stored as f16 (queries stay f32): half the memory of the largest structure in a
//! server, for scores within ~1e-3 of f32 on unit vectors; the recall the index bench and
//! tests/it/index.rs measure is against exact f32 scoring.

use std::{
    cmp::{Ordering, Reverse},
    collections::BinaryHeap,
    sync::{
        atomic::{AtomicU32, Ordering::Relaxed},
        Mutex,
    },
};

use rayon::prelude::*;

use super::dot::{from_f16, kernel_f16, to_f16, DotF16Fn};
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
    dot: DotF16Fn,
    /// f16 bits, `dims` per node
    vectors: Vec<u16>,
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

/// The graph's links as stored on disk (see index/store.rs); the vectors are stored beside them.
pub struct Parts {
    pub m: usize,
    pub ef_construction: usize,
    pub levels: Vec<u8>,
    pub layer0: Vec<u32>,
    pub upper: Vec<Vec<u32>>,
    pub entry: Option<Entry>,
}

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

    fn vector(&self, id: usize) -> &[u16] {
        &self.vectors[id * self.dims..(id + 1) * self.dims]
    }

    /// Node `id`'s vector as f32 (what was stored, rounded to f16).
    pub fn vector_f32(&self, id: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.dims);
        from_f16(self.vector(id), &mut out);
        out
    }

    /// The arena: f16 bits, `dims` per node.
    pub fn vectors_f16(&self) -> &[u16] {
        &self.vectors
    }

    fn empty(dims: usize, m: usize, ef_construction: usize, seed: u64) -> Self {
        Self {
            dims,
            m,
            ef_construction,
            dot: kernel_f16(),
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
        self.vectors.extend(to_f16(v));
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

    /// Build from a flat array of `dims`-long vectors (stored as f16), inserting on rayon's
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
        graph.vectors = to_f16(&vectors[..n * dims]).collect();
        drop(vectors);
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

    /// Walk `level` greedily towards `q` from `from`.
    fn greedy(&self, q: &[f32], mut from: Scored, level: usize, buf: &mut Vec<u32>) -> Scored {
        loop {
            let mut moved = false;
            self.neighbours(from.id, level, buf);
            for &nb in buf.iter() {
                let d = self.dist(q, nb);
                if d < from.dist {
                    from = Scored { dist: d, id: nb };
                    moved = true;
                }
            }
            if !moved {
                return from;
            }
        }
    }

    /// Beam search of width `ef` on `level`; returns the nearest found, closest first, keeping
    /// only nodes `keep` accepts in the results (all nodes are still walked through).
    fn search_layer(
        &self,
        q: &[f32],
        from: &[Scored],
        ef: usize,
        level: usize,
        visited: &mut Visited,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        visited.start(self.len());
        let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
        let mut found: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
        for &s in from {
            if visited.first_visit(s.id) {
                candidates.push(Reverse(s));
                if keep(s.id) {
                    found.push(s);
                }
            }
        }
        while found.len() > ef {
            found.pop();
        }
        let mut bound = found.peek().map_or(f32::INFINITY, |s| s.dist);
        let mut buf = Vec::with_capacity(self.m0());
        let mut fresh = Vec::with_capacity(self.m0());
        while let Some(Reverse(c)) = candidates.pop() {
            if c.dist > bound && found.len() >= ef {
                break;
            }
            self.neighbours(c.id, level, &mut buf);
            fresh.clear();
            fresh.extend(buf.iter().copied().filter(|&nb| visited.first_visit(nb)));
            for &nb in &fresh {
                self.prefetch(nb);
            }
            for &nb in &fresh {
                let d = self.dist(q, nb);
                if found.len() < ef || d < bound {
                    let s = Scored { dist: d, id: nb };
                    candidates.push(Reverse(s));
                    if keep(nb) {
                        found.push(s);
                        if found.len() > ef {
                            found.pop();
                        }
                        bound = found.peek().map_or(f32::INFINITY, |s| s.dist);
                    }
                }
            }
        }
        found.into_sorted_vec()
    }

    /// hnswlib's neighbour heuristic: walking candidates closest first, keep one only if it is
    /// closer to the base than to every neighbour kept so far (spreads links across directions).
    fn select(&self, sorted: &[Scored], m: usize) -> Vec<Scored> {
        let mut kept: Vec<Scored> = Vec::with_capacity(m);
        let mut v = Vec::with_capacity(self.dims);
        for &c in sorted {
            if kept.len() >= m {
                break;
            }
            from_f16(self.vector(c.id as usize), &mut v);
            if kept.iter().all(|s| self.dist(&v, s.id) >= c.dist) {
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
        let q = &self.vector_f32(id as usize);
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
        let v = &self.vector_f32(node as usize);
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

    /// Up to `k` nodes nearest `q` that `keep` accepts, as (id, inner product), best first.
    pub fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let Some(entry) = *self.entry.lock().expect("entry lock") else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let mut visited = self
            .pool
            .lock()
            .expect("visited pool")
            .pop()
            .unwrap_or_else(|| Visited::new(self.len()));
        let mut buf = Vec::with_capacity(self.m0());
        let mut at = Scored {
            dist: self.dist(q, entry.node),
            id: entry.node,
        };
        for l in (1..=entry.level).rev() {
            at = self.greedy(q, at, l, &mut buf);
        }
        let found = self.search_layer(q, &[at], ef.max(k), 0, &mut visited, keep);
        self.pool.lock().expect("visited pool").push(visited);
        found
            .into_iter()
            .take(k)
            .map(|s| (s.id, 1.0 - s.dist))
            .collect()
    }

    /// The links (not the vectors: those are written straight from [`Hnsw::vectors_f16`]).
    pub fn to_parts(&self) -> Parts {
        Parts {
            m: self.m,
            ef_construction: self.ef_construction,
            levels: self.levels.clone(),
            layer0: self.layer0.iter().map(|a| a.load(Relaxed)).collect(),
            upper: self
                .upper
                .iter()
                .map(|u| u.iter().map(|a| a.load(Relaxed)).collect())
                .collect(),
            entry: *self.entry.lock().expect("entry lock"),
        }
    }

    /// Rebuild from stored parts, checking every size, count and link so a damaged file can
    /// never make a search index out of bounds.
    pub fn from_parts(dims: usize, vectors: Vec<u16>, p: Parts) -> Result<Self, String> {
        let n = p.levels.len();
        if dims == 0 || p.m < 2 || vectors.len() != n * dims {
            return Err(format!(
                "{} halves for {n} vectors of {dims} dims (m {})",
                vectors.len(),
                p.m
            ));
        }
        let m0 = 2 * p.m;
        if p.layer0.len() != n * (m0 + 1) || p.upper.len() != n {
            return Err("link arrays do not match the node count".into());
        }
        let check = |list: &[u32], cap: usize| -> Result<(), String> {
            let count = list[0] as usize;
            if count > cap || list[1..=count].iter().any(|&l| l as usize >= n) {
                return Err("a link list is out of range".into());
            }
            Ok(())
        };
        for list in p.layer0.chunks_exact(m0 + 1) {
            check(list, m0)?;
        }
        for (u, &level) in p.upper.iter().zip(&p.levels) {
            if level as usize > MAX_LEVEL || u.len() != level as usize * (p.m + 1) {
                return Err("upper-layer links do not match the node's level".into());
            }
            for list in u.chunks_exact(p.m + 1) {
                check(list, p.m)?;
            }
        }
        match p.entry {
            None if n > 0 => return Err("no entry point".into()),
            Some(e) if e.node as usize >= n || p.levels[e.node as usize] as usize != e.level => {
                return Err("entry point out of range".into())
            }
            _ => {}
        }
        let mut graph = Self::empty(dims, p.m, p.ef_construction, LEVEL_SEED ^ n as u64);
        graph.vectors = vectors;
        graph.levels = p.levels;
        graph.layer0 = p.layer0.into_iter().map(AtomicU32::new).collect();
        graph.upper = p
            .upper
            .into_iter()
            .map(|u| u.into_iter().map(AtomicU32::new).collect())
            .collect();
        *graph.entry.get_mut().expect("entry lock") = p.entry;
        Ok(graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_vectors(n: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(n * dims);
        for _ in 0..n {
            let v: Vec<f32> = (0..dims).map(|_| rng.normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        out
    }

    #[test]
    fn every_link_list_stays_within_its_cap_and_points_at_real_nodes() {
        let data = unit_vectors(3000, 16, 1);
        let g = Hnsw::build(16, 8, 64, data, &|_| {});
        let v = g.vectors_f16();
        assert!(Hnsw::from_parts(16, v.to_vec(), g.to_parts()).is_ok());
        assert!(Hnsw::from_parts(16, v[16..].to_vec(), g.to_parts()).is_err());
        // node 0 finds itself first
        let hits = g.search(&g.vector_f32(0), 1, 32, &|_| true);
        assert_eq!(hits[0].0, 0);
        assert!((hits[0].1 - 1.0).abs() < 2e-3); // f16 storage
    }

    #[test]
    fn damaged_parts_are_refused() {
        let data = unit_vectors(500, 8, 2);
        let g = Hnsw::build(8, 4, 32, data, &|_| {});
        let mut p = g.to_parts();
        p.layer0[1] = 10_000; // a link to a node that does not exist
        p.layer0[0] = p.layer0[0].max(1);
        assert!(Hnsw::from_parts(8, g.vectors_f16().to_vec(), p).is_err());
        let mut p = g.to_parts();
        p.layer0[0] = 99; // more links than the list holds
        assert!(Hnsw::from_parts(8, g.vectors_f16().to_vec(), p).is_err());
    }

    #[test]
    fn single_inserts_find_what_they_added() {
        let data = unit_vectors(600, 12, 3);
        let mut g = Hnsw::build(12, 6, 40, data[..12].to_vec(), &|_| {});
        for v in data.chunks_exact(12).skip(1) {
            g.add(v);
        }
        assert_eq!(g.len(), 600);
        for id in [0usize, 17, 599] {
            let hits = g.search(&g.vector_f32(id), 1, 50, &|_| true);
            assert_eq!(hits[0].0 as usize, id);
        }
        // a filter removes nodes from results, not from the walk
        let hits = g.search(&g.vector_f32(17), 5, 50, &|i| i != 17);
        assert!(hits.iter().all(|(i, _)| *i != 17) && hits.len() == 5);
    }
}
