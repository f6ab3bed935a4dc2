//! The HNSW index: recall against exact search, persistence, corruption, deletes, paging and
//! reconciliation with the catalog after a crash.

use std::collections::{HashMap, HashSet};

use crate::common::*;
use xmodal::{
    index::{IndexError, IndexParams, Query, StoreError, VectorIndex},
    rng::Rng,
    vectors::Embedding,
};

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// `n` unit vectors in `clusters` Gaussian clusters (the shape of real embedding collections).
fn clustered(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Embedding> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dims).map(|_| rng.normal()).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.below(clusters)];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.6 * rng.normal()).collect();
            normalize(&mut v);
            Embedding::new(v)
        })
        .collect()
}

fn items(vectors: &[Embedding]) -> Vec<(String, Embedding)> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i:06}"), v.clone()))
        .collect()
}

fn exact_top(vectors: &[Embedding], q: &Embedding, k: usize, skip: &HashSet<usize>) -> Vec<String> {
    let mut s: Vec<(usize, f32)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(i, v)| {
            let dot = v.as_slice().iter().zip(q.as_slice()).map(|(a, b)| a * b);
            (i, dot.sum())
        })
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1));
    s.into_iter()
        .take(k)
        .map(|(i, _)| format!("k{i:06}"))
        .collect()
}

const Q: Query = Query {
    k: 10,
    offset: 0,
    min_score: None,
};

#[test]
fn recall_at_10_is_at_least_0_99_on_50k_clustered_vectors() {
    let (n, dims) = (50_000, 512);
    let data = clustered(n + 200, dims, 100, 1);
    let (base, queries) = data.split_at(n);
    let index = VectorIndex::build(dims, IndexParams::default(), items(base), &|_| {}).unwrap();
    assert!(index.is_graph());
    let mut hits = 0;
    for q in queries {
        let truth: HashSet<String> = exact_top(base, q, 10, &HashSet::new())
            .into_iter()
            .collect();
        hits += index
            .search(q, Q)
            .unwrap()
            .iter()
            .filter(|h| truth.contains(&h.key))
            .count();
    }
    let recall = hits as f64 / (10 * queries.len()) as f64;
    eprintln!(
        "recall@10 at ef_search {}: {recall:.4}",
        IndexParams::default().ef_search
    );
    assert!(recall >= 0.99, "recall@10 {recall}");
}

#[test]
fn persisted_index_reloads_with_identical_results() {
    // odd dims x odd count
    let data = clustered(2999, 63, 20, 2);
    let index = VectorIndex::build(63, IndexParams::default(), items(&data), &|_| {}).unwrap();
    index.remove("k000007");
    let dir = tempdir("index-persist").join("images");
    index.save(&dir, "heads-a").unwrap();
    let back = VectorIndex::load(&dir, "heads-a").unwrap();
    assert_eq!((back.len(), back.is_graph()), (2998, true));
    for q in data.iter().take(50) {
        assert_eq!(index.search(q, Q).unwrap(), back.search(q, Q).unwrap());
    }
    assert!(!back.contains("k000007"));
    // small collections persist in exact form
    let small =
        VectorIndex::build(63, IndexParams::default(), items(&data[..100]), &|_| {}).unwrap();
    small.save(&dir, "heads-a").unwrap();
    let back = VectorIndex::load(&dir, "heads-a").unwrap();
    assert!(!back.is_graph());
    assert_eq!(
        small.search(&data[0], Q).unwrap(),
        back.search(&data[0], Q).unwrap()
    );
}

#[test]
fn corrupt_stale_or_missing_files_are_detected() {
    let data = clustered(3000, 32, 10, 3);
    let dir = tempdir("index-corrupt").join("captions");
    assert!(matches!(
        VectorIndex::load(&dir, "x"),
        Err(StoreError::Missing(_))
    ));
    VectorIndex::build(32, IndexParams::default(), items(&data), &|_| {})
        .unwrap()
        .save(&dir, "heads-a")
        .unwrap();
    assert!(matches!(
        VectorIndex::load(&dir, "heads-b"),
        Err(StoreError::Stale { .. })
    ));
    // flip one byte of the graph, then of the vectors
    for name in ["graph.u32", "vectors.f32"] {
        VectorIndex::build(32, IndexParams::default(), items(&data), &|_| {})
            .unwrap()
            .save(&dir, "heads-a")
            .unwrap();
        let file = dir.join(name);
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&file, bytes).unwrap();
        assert!(
            matches!(
                VectorIndex::load(&dir, "heads-a"),
                Err(StoreError::Corrupt { .. })
            ),
            "{name}"
        );
    }
    // a truncated key file
    VectorIndex::build(32, IndexParams::default(), items(&data), &|_| {})
        .unwrap()
        .save(&dir, "heads-a")
        .unwrap();
    let keys = dir.join("keys.json");
    let len = std::fs::metadata(&keys).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&keys)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    assert!(matches!(
        VectorIndex::load(&dir, "heads-a"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn deleted_items_never_come_back_and_pages_stay_full() {
    let data = clustered(4000, 48, 8, 4);
    let index = VectorIndex::build(48, IndexParams::default(), items(&data), &|_| {}).unwrap();
    let mut rng = Rng::new(9);
    let mut deleted = HashSet::new();
    while deleted.len() < 600 {
        let i = rng.below(4000);
        if deleted.insert(i) {
            assert!(index.remove(&format!("k{i:06}")));
        }
    }
    assert!(!index.remove("k999999"));
    assert_eq!(index.len(), 3400);
    let dead: HashSet<String> = deleted.iter().map(|i| format!("k{i:06}")).collect();
    for q in data.iter().step_by(40) {
        let page1 = index
            .search(
                q,
                Query {
                    k: 20,
                    offset: 0,
                    min_score: None,
                },
            )
            .unwrap();
        let page2 = index
            .search(
                q,
                Query {
                    k: 20,
                    offset: 20,
                    min_score: None,
                },
            )
            .unwrap();
        assert_eq!((page1.len(), page2.len()), (20, 20));
        assert!(page1.iter().chain(&page2).all(|h| !dead.contains(&h.key)));
        assert!(page1.last().unwrap().score >= page2.first().unwrap().score);
        let keys: HashSet<&String> = page1.iter().chain(&page2).map(|h| &h.key).collect();
        assert_eq!(keys.len(), 40, "pages overlap");
    }
    // min_score cuts the list
    let hits = index
        .search(
            &data[1],
            Query {
                k: 50,
                offset: 0,
                min_score: Some(0.9),
            },
        )
        .unwrap();
    assert!(hits.iter().all(|h| h.score >= 0.9));
}

#[test]
fn a_crash_between_catalog_and_index_writes_is_reconciled() {
    // The index was saved before the last writes; the catalog (truth) has 30 more items and lost 5.
    let data = clustered(2600, 32, 8, 5);
    let dir = tempdir("index-reconcile").join("images");
    let index =
        VectorIndex::build(32, IndexParams::default(), items(&data[..2500]), &|_| {}).unwrap();
    index.save(&dir, "s").unwrap();
    let mut truth: HashMap<String, Embedding> = items(&data[..2530]).into_iter().collect();
    for i in 0..5 {
        truth.remove(&format!("k{i:06}"));
    }
    let back = VectorIndex::load(&dir, "s").unwrap();
    assert_eq!(back.reconcile(&truth).unwrap(), (30, 5));
    let mut keys = back.keys();
    keys.sort();
    let mut expected: Vec<String> = truth.keys().cloned().collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(
        back.search(
            &data[2520],
            Query {
                k: 1,
                offset: 0,
                min_score: None
            }
        )
        .unwrap()[0]
            .key,
        "k002520"
    );
}

#[test]
fn invalid_parameters_are_errors_not_exits() {
    let bad = IndexParams {
        m: 300,
        ..Default::default()
    };
    assert!(matches!(
        VectorIndex::new(8, bad),
        Err(IndexError::Params(_))
    ));
}

/// A query or vector of the wrong width is an error, not an empty result.
#[test]
fn a_dimension_mismatch_is_an_error() {
    let data = clustered(50, 16, 2, 6);
    let index = VectorIndex::build(16, IndexParams::default(), items(&data), &|_| {}).unwrap();
    let wide = Embedding::new(vec![0.1; 17]);
    assert!(matches!(
        index.search(&wide, Q),
        Err(IndexError::Dims {
            expected: 16,
            got: 17
        })
    ));
    assert!(matches!(
        index.upsert("x", &wide),
        Err(IndexError::Dims { .. })
    ));
    assert!(matches!(
        VectorIndex::build(
            16,
            IndexParams::default(),
            vec![("x".into(), wide)],
            &|_| {}
        ),
        Err(IndexError::Dims { .. })
    ));
}
