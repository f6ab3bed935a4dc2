//! Bring-your-own features: Karpathy's `vgg_feats.mat` and the VSE++/SCAN `_precomp` folders, on
//! fixtures in the exact formats (written by scripts/fixtures/make_import_fixtures.py with scipy/numpy).
//! Fixture features follow a formula: image j (file order), dim d → (j + 1) + d / 1000.

use std::path::{Path, PathBuf};

use crate::common::*;
use candle_core::Device;
use xmodal::{
    data::{
        catalog::ImageFilter,
        ingest::{self, flickr30k},
        Catalog,
    },
    features::{
        cache::FeatureCache,
        import::{karpathy, precomp, ImportError},
    },
};

const DIMS: usize = 16;

fn expected(j: usize, d: usize) -> f32 {
    ((j + 1) as f64 + d as f64 / 1000.0) as f32
}

fn karpathy_json() -> PathBuf {
    fixture("flickr30k/dataset_flickr30k.json")
}

fn mat(name: &str) -> PathBuf {
    fixture(&format!("import/{name}.mat"))
}

async fn open(dir: &Path) -> Catalog {
    Catalog::open(&dir.join("catalog.sqlite")).await.unwrap()
}

/// Feature rows by key, from the feature set's cache.
fn rows(dir: &Path, set: &xmodal::features::FeatureSetId) -> Vec<(String, Vec<f32>)> {
    let f = FeatureCache::new(&dir.join("features"), set)
        .load(&Device::Cpu)
        .unwrap();
    let m: Vec<Vec<f32>> = f.matrix.to_vec2().unwrap();
    f.keys.into_iter().zip(m).collect()
}

/// Nothing of a failed import is visible: no images, no feature set, no feature files.
async fn assert_nothing_imported(dir: &Path) {
    let cat = open(dir).await;
    assert!(cat
        .images(&ImageFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert!(cat.feature_sets().await.unwrap().is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("features"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[tokio::test]
async fn karpathy_mat_columns_become_the_json_images_in_order() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(karpathy_json()).unwrap()).unwrap();
    let files: Vec<String> = json["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["filename"].as_str().unwrap().to_string())
        .collect();
    for variant in ["vgg_feats", "vgg_feats_double"] {
        let dir = tempdir(&format!("import-k-{variant}"));
        let cat = open(&dir).await;
        let plan = karpathy::plan(&karpathy_json(), &mat(variant), "feats").unwrap();
        assert_eq!(plan.dims, DIMS);
        let summary = plan
            .commit(&cat, &dir.join("features"), "vgg19-fc7", "flickr30k")
            .await
            .unwrap();
        assert_eq!((summary.inserted, summary.existing), (10, 0));
        let counts = cat.counts(Some("flickr30k")).await.unwrap();
        // the fixture's splits: six train (one of them `restval`), two val, two test
        assert_eq!(counts["train"].0, 6);
        assert_eq!(counts["val"].0, 2);
        assert_eq!(counts["test"].0, 2);
        assert_eq!(counts.values().map(|c| c.1).sum::<u64>(), 49);
        let got = rows(&dir, &summary.feature_set);
        assert_eq!(got.len(), 10);
        for (key, row) in got {
            let j = files.iter().position(|f| *f == key).unwrap();
            for (d, v) in row.iter().enumerate() {
                assert!((v - expected(j, d)).abs() < 1e-6, "{key}[{d}] = {v}");
            }
        }
        // the feature set names its encoder and sources
        let sets = cat.feature_sets().await.unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].encoder, "vgg19-fc7");
        assert!(
            sets[0].options.contains("karpathy-mat"),
            "{}",
            sets[0].options
        );
    }
}

#[tokio::test]
async fn broken_mat_files_are_refused_with_nothing_written() {
    for (variant, says) in [
        ("vgg_feats_nan", "NaN or Inf"),
        ("vgg_feats_short", "lists 10 images"),
        ("vgg_feats_int", "real single or double"),
        ("vgg_feats_wrongname", "--mat-variable"),
    ] {
        let dir = tempdir(&format!("import-bad-{variant}"));
        let err = karpathy::plan(&karpathy_json(), &mat(variant), "feats").unwrap_err();
        assert!(err.to_string().contains(says), "{variant}: {err}");
        // and through the CLI: a non-zero exit, a clear message, nothing in the catalog
        let (ok, _, stderr) = xmodal(&[
            "--data-dir",
            dir.to_str().unwrap(),
            "import",
            "karpathy",
            "--json",
            karpathy_json().to_str().unwrap(),
            "--mat",
            mat(variant).to_str().unwrap(),
            "--encoder",
            "vgg19-fc7",
        ]);
        assert!(!ok);
        assert!(stderr.contains(says), "{variant}: {stderr}");
        assert_nothing_imported(&dir).await;
    }
    // a text file posing as .mat
    let err = karpathy::plan(&karpathy_json(), &karpathy_json(), "feats").unwrap_err();
    assert!(err.to_string().contains("not a MATLAB v5"), "{err}");
}

#[tokio::test]
async fn precomp_folders_one_row_per_image_and_five_times_repeated() {
    for (name, sizes) in [
        ("f30k_precomp", [("train", 8), ("val", 2), ("test", 2)]),
        ("coco_precomp", [("train", 6), ("val", 2), ("test", 2)]),
    ] {
        let dir = tempdir(&format!("import-{name}"));
        let cat = open(&dir).await;
        let plan = precomp::plan(&fixture(&format!("import/{name}")), name).unwrap();
        if name == "coco_precomp" {
            assert!(
                plan.notes.iter().any(|n| n.contains("one row per caption")),
                "{:?}",
                plan.notes
            );
        }
        let summary = plan
            .commit(&cat, &dir.join("features"), "resnet152", name)
            .await
            .unwrap();
        let counts = cat.counts(Some(name)).await.unwrap();
        for (split, n) in sizes {
            assert_eq!(counts[split], (n, 5 * n), "{name} {split}");
        }
        // rows: split offsets are added to dim 0 by the fixture script
        let mut offset = 0;
        let got: std::collections::HashMap<String, Vec<f32>> =
            rows(&dir, &summary.feature_set).into_iter().collect();
        for (split, n) in sizes {
            let file_split = if split == "val" { "dev" } else { split };
            for j in 0..n as usize {
                let row = &got[&format!("{name}-{file_split}-{j:06}")];
                assert!((row[0] - (expected(j, 0) + offset as f32)).abs() < 1e-5);
                assert!((row[DIMS - 1] - expected(j, DIMS - 1)).abs() < 1e-6);
            }
            offset += n;
        }
        // captions stay with their image, in file order
        let caps = cat
            .captions_of(&xmodal::data::ImageId::new(format!("{name}-train-000001")).unwrap())
            .await
            .unwrap();
        assert_eq!(caps.len(), 5);
        assert!(caps[0].text.contains("number 1 in scene 0"), "{caps:?}");
    }
}

#[tokio::test]
async fn broken_precomp_folders_are_refused_with_nothing_written() {
    for (case, says) in [
        ("nan", "NaN or Inf"),
        ("float16", "float32 or float64"),
        ("caps4", "5 per image"),
        ("rows", "expected 4 rows"),
        ("rank1", "2-D"),
    ] {
        let dir = tempdir(&format!("import-bad-{case}"));
        let src = fixture(&format!("import/broken_precomp/{case}"));
        let (ok, _, stderr) = xmodal(&[
            "--data-dir",
            dir.to_str().unwrap(),
            "import",
            "precomp",
            src.to_str().unwrap(),
            "--encoder",
            "x",
        ]);
        assert!(!ok, "{case} was accepted");
        assert!(stderr.contains(says), "{case}: {stderr}");
        assert_nothing_imported(&dir).await;
    }
}

#[tokio::test]
async fn ids_of_another_dataset_are_a_conflict_and_roll_everything_back() {
    let dir = tempdir("import-conflict");
    let cat = open(&dir).await;
    let first = karpathy::plan(&karpathy_json(), &mat("vgg_feats"), "feats").unwrap();
    let first = first
        .commit(&cat, &dir.join("features"), "vgg19-fc7", "flickr30k")
        .await
        .unwrap();
    let again = karpathy::plan(&karpathy_json(), &mat("vgg_feats"), "feats").unwrap();
    let err = again
        .commit(&cat, &dir.join("features"), "vgg19-fc7", "other")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::Conflict(ref ids) if ids.len() == 10),
        "{err}"
    );
    // only the first import's feature set exists, on disk and in the catalog
    let sets = cat.feature_sets().await.unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].id, first.feature_set.0);
    let dirs: Vec<_> = std::fs::read_dir(dir.join("features"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs, vec![first.feature_set.0.clone()]);
    assert!(cat.counts(Some("other")).await.unwrap().is_empty());
}

#[tokio::test]
async fn features_attach_to_a_flickr30k_already_ingested_with_its_files() {
    let dir = tempdir("import-attach");
    let cat = open(&dir).await;
    let src = fixture("flickr30k");
    let parsed = flickr30k::parse(&flickr30k::Flickr30kSource {
        captions: Some(&src.join("results.csv")),
        images: &src.join("flickr30k_images"),
        karpathy: Some(&src.join("dataset_flickr30k.json")),
        seed: 0,
    })
    .unwrap();
    let report = ingest::ingest(&cat, ("flickr30k", "flickr30k", "fixture"), parsed, false)
        .await
        .unwrap();
    let before = cat.images(&ImageFilter::default()).await.unwrap();
    assert_eq!(before.len(), report.inserted);
    let summary = karpathy::plan(&karpathy_json(), &mat("vgg_feats"), "feats")
        .unwrap()
        .commit(&cat, &dir.join("features"), "vgg19-fc7", "flickr30k")
        .await
        .unwrap();
    assert_eq!(summary.existing, report.inserted);
    assert_eq!(summary.inserted, 10 - report.inserted);
    // ingested rows keep their files
    for img in before {
        let now = cat.image(&img.id).await.unwrap().unwrap();
        assert_eq!(now.location, img.location);
        assert!(now.location.is_some());
    }
}

/// The classic setup end to end: import → text features → train → eval → serve caption→image
/// search and image→caption for indexed images, with no image encoder loaded.
#[tokio::test]
async fn imported_features_train_evaluate_and_serve() {
    let dir = tempdir("import-e2e");
    let d = dir.to_str().unwrap();
    let models = kit_model("minilm-l6")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let src = fixture("import/f30k_precomp");
    let run = |args: &[&str]| {
        let mut all = vec!["--data-dir", d, "--models-dir", models.as_str()];
        all.extend_from_slice(args);
        let (ok, out, err) = xmodal(&all);
        assert!(ok, "{args:?}\n{out}\n{err}");
        out
    };
    run(&[
        "import",
        "precomp",
        src.to_str().unwrap(),
        "--encoder",
        "vgg19-fc7",
    ]);
    run(&["extract", "--only", "text"]);
    let heads = dir.join("heads/h");
    run(&[
        "train",
        "--image-features",
        "vgg19-fc7",
        "--epochs",
        "2",
        "--out",
        heads.to_str().unwrap(),
    ]);
    let metrics = dir.join("metrics.json");
    run(&[
        "eval",
        "--image-features",
        "vgg19-fc7",
        "--heads",
        heads.to_str().unwrap(),
        "--json",
        metrics.to_str().unwrap(),
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    for side in ["i2t", "t2i"] {
        // two test images: R@5 covers both, whatever the ranking
        assert_eq!(m[side]["r5"].as_f64(), Some(100.0), "{m}");
    }
    // the recall curve beside the metrics agrees with them
    for (side, r) in [("i2t", "r1"), ("t2i", "r1"), ("i2t", "r5")] {
        let k = if r == "r1" { 0 } else { 4 };
        assert_eq!(m["recall_curve"][side][k], m[side][r], "{m}");
    }
    // figures from these results, this training log and these heads
    let figures = dir.join("figures");
    for (cmd, file, extra) in [
        (
            "recall",
            "recall.png",
            vec![metrics.to_str().unwrap().to_string()],
        ),
        (
            "training",
            "training.png",
            vec![heads.display().to_string()],
        ),
        (
            "grid",
            "grid.png",
            [
                "--image-features",
                "vgg19-fc7",
                "--direction",
                "i2t",
                "--queries",
                "2",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(["--heads".to_string(), heads.display().to_string()])
            .collect(),
        ),
    ] {
        let out = figures.join(file);
        let mut args = vec!["report", cmd, "--out", out.to_str().unwrap()];
        args.extend(extra.iter().map(String::as_str));
        run(&args);
        let img = image::open(&out).unwrap();
        assert!(img.width() > 500 && img.height() > 150, "{file}");
    }
    // an image encoder is needed for image features; imported ones cannot grow
    let (ok, _, err) = xmodal(&[
        "--data-dir",
        d,
        "eval",
        "--image-features",
        "vgg19-fc7",
        "--heads",
        "zero-shot",
    ]);
    assert!(!ok && err.contains("imported"), "{err}");

    let server = Server::start(
        &dir,
        &[
            "--image-features",
            "vgg19-fc7",
            "--heads",
            heads.to_str().unwrap(),
        ],
    );
    let client = reqwest::Client::new();
    let r: serde_json::Value = post_json(
        &client,
        server.url("/v1/search/text"),
        serde_json::json!({"query": "a green tree", "k": 12}),
    )
    .await;
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 12, "{r}");
    assert!(results
        .iter()
        .all(|h| h["image_id"].as_str().unwrap().starts_with("f30k_precomp-")));
    let r: serde_json::Value = get_json(
        &client,
        server.url("/v1/images/f30k_precomp-test-000000/captions?k=60"),
    )
    .await;
    assert_eq!(r["results"].as_array().unwrap().len(), 60, "{r}");
    for (path, body) in [
        ("/v1/search/image", gallery_photo("astronaut")),
        ("/v1/images", gallery_photo("astronaut")),
    ] {
        let resp = client
            .post(server.url(path))
            .header("content-type", "image/png")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["error"]["code"], "no_image_encoder", "{path}: {body}");
    }
    let missing = client
        .get(server.url("/v1/images/nope/captions"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}
