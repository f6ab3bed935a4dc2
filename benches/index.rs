//! xmodal's index against exact search, hnsw_rs (the crate it replaced), hnswlib and faiss on the
//! same data and parameters, in one run: 50k clustered 512-d unit vectors, 1000 queries, M=16,
//! ef_construction=200; build with 2 threads, search with one.
//! `cargo bench --bench index [-- --n 50000 --queries 1000]`
//! The Python side is scripts/bench/bench_index_reference.py (XMODAL_REF_PYTHON, as benches/encoders).

use std::{collections::HashSet, io::Write, time::Instant};

use xmodal::{
    index::{IndexParams, Query, VectorIndex},
    rng::Rng,
    vectors::Embedding,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn clustered(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dims).map(|_| rng.normal()).collect())
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

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, nq, dims) = (arg("--n", 50_000), arg("--queries", 1000), 512);
    let efs = [16usize, 32, 64, 128];
    let data = clustered(n + nq, dims, 100, 1);
    let (base, queries) = data.split_at(n);

    // exact search: the truth, and its speed
    let started = Instant::now();
    let truth: Vec<Vec<usize>> = queries
        .iter()
        .map(|q| {
            let mut s: Vec<(usize, f32)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum()))
                .collect();
            s.select_nth_unstable_by(9, |a, b| b.1.total_cmp(&a.1));
            s.truncate(10);
            s.into_iter().map(|(i, _)| i).collect()
        })
        .collect();
    let exact_qps = nq as f64 / started.elapsed().as_secs_f64();

    let rss_before = rss_bytes();
    let items: Vec<(String, Embedding)> = base
        .iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), Embedding::new(v.clone())))
        .collect();
    // queries as the index takes them, made before the clock starts
    let query_embeddings: Vec<Embedding> = queries.iter().cloned().map(Embedding::new).collect();
    let started = Instant::now();
    let index = VectorIndex::build(dims, IndexParams::default(), items, &|_| {}).unwrap();
    let build = started.elapsed().as_secs_f64();
    let bytes_per_vector = rss_bytes().saturating_sub(rss_before) as f64 / n as f64;
    let mut ours = Vec::new();
    for &ef in &efs {
        let searcher = index.with_ef_search(ef);
        let started = Instant::now();
        let mut hits = 0;
        for (q, t) in query_embeddings.iter().zip(&truth) {
            let t: HashSet<String> = t.iter().map(|i| i.to_string()).collect();
            hits += searcher
                .search(
                    q,
                    Query {
                        k: 10,
                        offset: 0,
                        min_score: None,
                    },
                )
                .expect("query dims match")
                .iter()
                .filter(|h| t.contains(&h.key))
                .count();
        }
        ours.push((
            ef,
            hits as f64 / (10 * nq) as f64,
            nq as f64 / started.elapsed().as_secs_f64(),
        ));
    }

    let (rs_build, rs) = hnsw_rs_reference(base, queries, &truth, &efs);

    // the references, on the same vectors
    let dir = std::env::temp_dir().join(format!("xmodal-index-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, rows: &[Vec<f32>]| {
        let mut f = std::fs::File::create(dir.join(name)).unwrap();
        for r in rows {
            for x in r {
                f.write_all(&x.to_le_bytes()).unwrap();
            }
        }
    };
    write("base.f32", base);
    write("queries.f32", queries);
    std::fs::write(
        dir.join("truth.json"),
        serde_json::to_string(&truth).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("params.json"), serde_json::json!({"dims": dims, "m": 16, "ef_construction": 200, "ef_search": efs, "threads": 2}).to_string()).unwrap();
    let python = std::env::var("XMODAL_REF_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/xmodal-ref/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/bench/bench_index_reference.py");
    let reference: serde_json::Value = std::process::Command::new(&python)
        .arg(script)
        .arg(&dir)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    println!("\n{n} clustered {dims}-d vectors, {nq} queries; M=16, ef_construction=200; build 2 threads, search 1 thread");
    println!("exact search: {exact_qps:.0} queries/s; xmodal index memory: {bytes_per_vector:.0} bytes per vector (RSS growth; raw vector {} bytes)", dims * 4);
    println!(
        "| engine | build s | {} |",
        efs.iter()
            .map(|e| format!("ef={e}: recall@10 / qps"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(efs.len()));
    println!(
        "| xmodal | {build:.1} | {} |",
        ours.iter()
            .map(|(_, r, q)| format!("{r:.4} / {q:.0}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!(
        "| hnsw_rs 0.3.5 (simdeez) | {rs_build:.1} | {} |",
        rs.iter()
            .map(|(_, r, q)| format!("{r:.4} / {q:.0}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for engine in ["hnswlib", "faiss"] {
        let r = &reference[engine];
        if r["build_s"].is_null() {
            println!(
                "| {engine} | not run ({}) |",
                r["error"]
                    .as_str()
                    .unwrap_or("reference python unavailable")
            );
            continue;
        }
        let cells: Vec<String> = efs
            .iter()
            .map(|e| {
                format!(
                    "{:.4} / {:.0}",
                    r["ef"][e.to_string()]["recall"].as_f64().unwrap_or(0.0),
                    r["ef"][e.to_string()]["qps"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        println!(
            "| {engine} | {:.1} | {} |",
            r["build_s"].as_f64().unwrap_or(0.0),
            cells.join(" | ")
        );
    }
    if let Some(h) = reference["hnswlib"]["build_s"].as_f64() {
        println!("build time ratio xmodal / hnswlib: {:.2}", build / h);
    }
}

/// hnsw_rs with the settings xmodal used before its own graph: DistDot, max layer 16, parallel
/// insertion on rayon's threads.
fn hnsw_rs_reference(
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
    efs: &[usize],
) -> (f64, Vec<(usize, f64, f64)>) {
    use hnsw_rs::{hnsw::Hnsw, prelude::DistDot};
    let started = Instant::now();
    let graph: Hnsw<f32, DistDot> = Hnsw::new(16, base.len(), 16, 200, DistDot);
    let refs: Vec<(&Vec<f32>, usize)> = base.iter().enumerate().map(|(i, v)| (v, i)).collect();
    graph.parallel_insert(&refs);
    let build = started.elapsed().as_secs_f64();
    let rows = efs
        .iter()
        .map(|&ef| {
            let started = Instant::now();
            let mut hits = 0;
            for (q, t) in queries.iter().zip(truth) {
                hits += graph
                    .search(q, 10, ef)
                    .iter()
                    .filter(|n| t.contains(&n.d_id))
                    .count();
            }
            (
                ef,
                hits as f64 / (10 * queries.len()) as f64,
                queries.len() as f64 / started.elapsed().as_secs_f64(),
            )
        })
        .collect();
    (build, rows)
}
