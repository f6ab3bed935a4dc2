//! The graph as plain parts for the index files (index/store.rs), and back, checking every link.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use super::{Entry, Hnsw, LEVEL_SEED, MAX_LEVEL};

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
    /// The links (not the vectors: those are written straight from [`Hnsw::vectors`]).
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
    pub fn from_parts(dims: usize, vectors: Vec<f32>, p: Parts) -> Result<Self, String> {
        let n = p.levels.len();
        if dims == 0 || p.m < 2 || vectors.len() != n * dims {
            return Err(format!(
                "{} values for {n} vectors of {dims} dims (m {})",
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
