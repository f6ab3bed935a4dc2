//! Filtered search: recall@10 against the exact filtered answer and queries/s, at 50%, 10%, 1%
//! and 0.1% of the collection kept, for each way the in-process index can answer (exact scan of
//! the kept items; HNSW walk skipping the rest; the automatic choice) and for Postgres + pgvector
//! (iterative index scan). The filter is a real one (`fields.bucket < T` on the user's field
//! `bucket`, uniform over 0..1000 and independent of the vectors), resolved by the catalog as in
//! the server; the time to resolve it is reported apart.
//! `cargo bench --bench filters -- [--n 50000] [--queries 200] [--database postgres://…]`
//! (scripts/bench/bench-filters starts a Postgres and passes it).

use std::{collections::HashSet, time::Instant};

use candle_core::Device;
use xmodal::{
    data::{
        catalog::{NewImage, PoolConfig, StoredVector},
        filter::{Bound, FieldMatch, Filter, Range},
        metadata::{PhotoMetadata, UserFields},
        Catalog, ImageId,
    },
    index::{
        pgvector::{PgVectorIndex, TableSpec},
        FilterPlan, IndexParams, Query, VectorIndex,
    },
    rng::Rng,
    vectors::{Embedding, Features},
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DIMS: usize = 256;
const K: usize = 10;

fn clustered(n: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..DIMS).map(|_| rng.normal()).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.below(clusters)];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.6 * rng.normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

fn id(i: usize) -> String {
    format!("p{i:06}")
}

/// Images with their `bucket` field, and their vectors as stored features, in one catalog.
async fn fill(catalog: &Catalog, base: &[Vec<f32>], buckets: &[u32]) {
    let dataset = catalog.dataset("bench", "upload", "bench").await.unwrap();
    for start in (0..base.len()).step_by(2000) {
        let end = (start + 2000).min(base.len());
        let images: Vec<NewImage> = (start..end)
            .map(|i| NewImage {
                id: ImageId::new(id(i)).unwrap(),
                location: None,
                width: Some(640),
                height: Some(480),
                sha256: None,
                split: None,
                captions: Vec::new(),
                metadata: PhotoMetadata {
                    fields: UserFields::from_json(&serde_json::json!({"bucket": buckets[i]}))
                        .unwrap(),
                    ..Default::default()
                },
            })
            .collect();
        catalog.upsert_images(dataset, &images).await.unwrap();
        let vectors: Vec<StoredVector> = (start..end)
            .map(|i| StoredVector {
                feature_set: "bench".into(),
                item: id(i),
                image_id: ImageId::new(id(i)).unwrap(),
                vector: Features::new(base[i].clone()),
            })
            .collect();
        catalog.put_vectors(&vectors).await.unwrap();
    }
}

fn below(t: u32) -> Filter {
    Filter::Field {
        name: "bucket".into(),
        matches: FieldMatch::Numbers(Range {
            lower: None,
            upper: Some(Bound {
                value: f64::from(t),
                inclusive: false,
            }),
        }),
    }
}

fn exact(base: &[Vec<f32>], q: &[f32], kept: &HashSet<String>) -> HashSet<String> {
    let mut scored: Vec<(f32, usize)> = (0..base.len())
        .filter(|&i| kept.contains(&id(i)))
        .map(|i| (base[i].iter().zip(q).map(|(a, b)| a * b).sum(), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.iter().take(K).map(|&(_, i)| id(i)).collect()
}

fn recall(found: &[String], truth: &HashSet<String>) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    found.iter().filter(|k| truth.contains(*k)).count() as f64 / truth.len() as f64
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = arg("--n").and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let nq: usize = arg("--queries").and_then(|v| v.parse().ok()).unwrap_or(200);
    let data = clustered(n + nq, 100, 7);
    let (base, queries) = data.split_at(n);
    let mut rng = Rng::new(11);
    let buckets: Vec<u32> = (0..n).map(|_| rng.below(1000) as u32).collect();
    let selectivities = [(500u32, "50%"), (100, "10%"), (10, "1%"), (1, "0.1%")];
    println!("filtered search: {n} clustered {DIMS}-d vectors, {nq} queries, k={K}, M=16, ef_construction=200, ef_search=64; one thread");

    let dir = tempfile::tempdir().unwrap();
    let sqlite = Catalog::open(&dir.path().join("catalog.sqlite"))
        .await
        .unwrap();
    let t = Instant::now();
    fill(&sqlite, base, &buckets).await;
    println!("catalog filled in {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let items: Vec<(String, Embedding)> = (0..n)
        .map(|i| (id(i), Embedding::new(base[i].clone())))
        .collect();
    let params = IndexParams::default();
    let index = VectorIndex::build(DIMS, params, items, &|_| {}).unwrap();
    println!("HNSW built in {:.1}s\n", t.elapsed().as_secs_f64());

    println!("| kept | backend | plan | recall@10 | queries/s | filter resolved (ms) |");
    println!("|---|---|---|---|---|---|");
    let page = Query {
        k: K,
        offset: 0,
        min_score: None,
    };
    let mut truths = Vec::new();
    for &(t, label) in &selectivities {
        let filter = below(t);
        let started = Instant::now();
        let kept: HashSet<String> = sqlite
            .images_matching(&filter)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let resolve_ms = started.elapsed().as_secs_f64() * 1e3;
        let truth: Vec<HashSet<String>> = queries.iter().map(|q| exact(base, q, &kept)).collect();
        for plan in [FilterPlan::Exact, FilterPlan::Graph, FilterPlan::Auto] {
            let started = Instant::now();
            let mut total = 0.0;
            let mut chosen = plan;
            for (q, truth) in queries.iter().zip(&truth) {
                let (hits, used) = index
                    .search_filtered(&Embedding::new(q.clone()), page, &kept, plan)
                    .unwrap();
                chosen = used;
                let found: Vec<String> = hits.into_iter().map(|h| h.key).collect();
                total += recall(&found, truth);
            }
            let qps = nq as f64 / started.elapsed().as_secs_f64();
            let name = match plan {
                FilterPlan::Auto => format!("auto ({chosen:?})").to_lowercase(),
                other => format!("{other:?}").to_lowercase(),
            };
            println!(
                "| {label} ({}) | memory (HNSW) | {name} | {:.3} | {qps:.0} | {resolve_ms:.1} |",
                kept.len(),
                total / nq as f64
            );
        }
        truths.push(truth);
    }

    let Some(url) = arg("--database") else {
        println!("\n(no --database: Postgres rows skipped)");
        return;
    };
    let pg = Catalog::connect_postgres(&url, PoolConfig::default())
        .await
        .unwrap();
    let t = Instant::now();
    fill(&pg, base, &buckets).await;
    let spec = TableSpec {
        space_id: "bench-filters",
        side: "images",
        dims: DIMS,
        feature_set: "bench",
    };
    let pg_index = PgVectorIndex::open(
        &pg,
        spec,
        params,
        &|m| eprintln!("{m}"),
        |t| Ok(t.clone()),
        &Device::Cpu,
    )
    .await
    .unwrap();
    println!(
        "\nPostgres filled and indexed in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for (&(t, label), truth) in selectivities.iter().zip(&truths) {
        let filter = below(t);
        for plan in [FilterPlan::Exact, FilterPlan::Graph, FilterPlan::Auto] {
            let started = Instant::now();
            let mut total = 0.0;
            let mut chosen = plan;
            for (q, truth) in queries.iter().zip(truth) {
                let (hits, used) = pg_index
                    .search_planned(&Embedding::new(q.clone()), page, Some(&filter), plan)
                    .await
                    .unwrap();
                chosen = used;
                let found: Vec<String> = hits.into_iter().map(|h| h.key).collect();
                total += recall(&found, truth);
            }
            let qps = nq as f64 / started.elapsed().as_secs_f64();
            let name = match plan {
                FilterPlan::Auto => format!("auto ({chosen:?})").to_lowercase(),
                FilterPlan::Exact => "exact (materialised kept rows)".to_string(),
                FilterPlan::Graph => "graph (iterative scan)".to_string(),
            };
            println!(
                "| {label} | Postgres (pgvector) | {name} | {:.3} | {qps:.0} | (in the query) |",
                total / nq as f64
            );
        }
    }
}
