//! The graph's invariants: link caps, damaged parts, inserts finding themselves.

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
    let v = g.vectors();
    assert!(Hnsw::from_parts(16, v.to_vec(), g.to_parts()).is_ok());
    assert!(Hnsw::from_parts(16, v[16..].to_vec(), g.to_parts()).is_err());
    // node 0 finds itself first
    let hits = g.search(&g.vector_f32(0), 1, 32, &|_| true);
    assert_eq!(hits[0].0, 0);
    assert!((hits[0].1 - 1.0).abs() < 1e-5); // f32 storage: the exact score
}

#[test]
fn damaged_parts_are_refused() {
    let data = unit_vectors(500, 8, 2);
    let g = Hnsw::build(8, 4, 32, data, &|_| {});
    let mut p = g.to_parts();
    p.layer0[1] = 10_000; // a link to a node that does not exist
    p.layer0[0] = p.layer0[0].max(1);
    assert!(Hnsw::from_parts(8, g.vectors().to_vec(), p).is_err());
    let mut p = g.to_parts();
    p.layer0[0] = 99; // more links than the list holds
    assert!(Hnsw::from_parts(8, g.vectors().to_vec(), p).is_err());
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
