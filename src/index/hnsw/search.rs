//! Searching the graph: a greedy walk down the upper layers, then a beam over layer 0 (also what
//! an insert uses to find its neighbours).

use std::{cmp::Reverse, collections::BinaryHeap};

use super::{Hnsw, Scored, Visited};

impl Hnsw {
    /// Walk `level` greedily towards `q` from `from`.
    pub(super) fn greedy(
        &self,
        q: &[f32],
        mut from: Scored,
        level: usize,
        buf: &mut Vec<u32>,
    ) -> Scored {
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
    pub(super) fn search_layer(
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
}
