//! `xmodal extract`: resumable after SIGKILL, identical to an uninterrupted run, and keyed by
//! encoder so different encoders never mix.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use crate::common::*;
use candle_core::Device;
use xmodal::{
    data::synth,
    features::{
        cache::{FeatureCache, FeatureMatrix},
        FeatureSetId,
    },
};

fn setup(tag: &str, images: usize) -> std::path::PathBuf {
    let root = tempdir(tag);
    synth::generate(&root.join("synth"), 9, images, |_| {}).unwrap();
    let (ok, out, err) = xmodal(&[
        "--data-dir",
        root.join("data").to_str().unwrap(),
        "ingest",
        "--format",
        "jsonl",
        root.join("synth/dataset.jsonl").to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    root
}

fn extract_args<'a>(data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--data-dir",
        data,
        "--models-dir",
        MODELS.as_str(),
        "extract",
    ];
    v.extend_from_slice(extra);
    v
}

static MODELS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    kit_model("minilm-l6")
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
});

fn feature_set(stdout: &str, what: &str) -> FeatureSetId {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(what))
        .unwrap_or_else(|| panic!("no {what} line in {stdout}"));
    FeatureSetId(
        line.split("feature set ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string(),
    )
}

fn load(data: &Path, id: &FeatureSetId) -> FeatureMatrix {
    FeatureCache::new(&data.join("features"), id)
        .load(&Device::Cpu)
        .unwrap()
}

#[test]
fn killed_extract_resumes_to_identical_features() {
    let root = setup("extract-kill", 48);
    let data = root.join("data");
    let data_s = data.to_str().unwrap();
    let args = extract_args(
        data_s,
        &["--only", "image", "--shard-size", "6", "--batch-size", "6"],
    );

    // Start, and SIGKILL it as soon as its second shard is on disk.
    let mut child = Command::new(env!("CARGO_BIN_EXE_xmodal"))
        .args(&args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("shard 2/8 done") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let shards = |id: &FeatureSetId| {
        std::fs::read_dir(data.join("features").join(&id.0))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("shard-")
            })
            .count()
    };

    let (ok, out, err) = xmodal(&args);
    assert!(ok, "{err}");
    let id = feature_set(&out, "images");
    assert!(
        out.contains("shards reused") && !out.contains(" 0 shards reused"),
        "resumed run reused nothing: {out}"
    );
    assert_eq!(shards(&id), 8);
    assert!(std::fs::read_dir(data.join("features").join(&id.0))
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
    let resumed = load(&data, &id);

    // An uninterrupted run elsewhere gives the same features, in the same order, no duplicates.
    let fresh_root = setup("extract-fresh", 48);
    let fresh_data = fresh_root.join("data");
    let (ok, out2, err) = xmodal(&extract_args(
        fresh_data.to_str().unwrap(),
        &["--only", "image", "--shard-size", "6", "--batch-size", "6"],
    ));
    assert!(ok, "{err}");
    assert_eq!(
        feature_set(&out2, "images"),
        id,
        "same encoder, same feature set id"
    );
    let fresh = load(&fresh_data, &id);
    assert_eq!(resumed.keys, fresh.keys);
    let mut unique = resumed.keys.clone();
    unique.dedup();
    assert_eq!(unique.len(), 48);
    let a: Vec<Vec<f32>> = resumed.matrix.to_vec2().unwrap();
    let b: Vec<Vec<f32>> = fresh.matrix.to_vec2().unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

#[test]
fn different_encoders_get_different_feature_sets_and_changed_items_are_reencoded() {
    let root = setup("extract-specs", 20);
    let data = root.join("data");
    let data_s = data.to_str().unwrap();
    let glove = kit_model("glove-6b-50d");
    let glove = glove.to_str().unwrap();
    let (ok, mean_out, err) = xmodal(&extract_args(
        data_s,
        &[
            "--only",
            "text",
            "--text-model",
            glove,
            "--shard-size",
            "25",
        ],
    ));
    assert!(ok, "{err}");
    let (ok, sum_out, _) = xmodal(&extract_args(
        data_s,
        &[
            "--only",
            "text",
            "--text-model",
            glove,
            "--pooling",
            "sum",
            "--shard-size",
            "25",
        ],
    ));
    assert!(ok);
    let (mean_id, sum_id) = (
        feature_set(&mean_out, "captions"),
        feature_set(&sum_out, "captions"),
    );
    assert_ne!(mean_id, sum_id);
    assert_eq!(load(&data, &mean_id).keys.len(), 100);

    // Change one caption: only its shard is recomputed.
    let jsonl = root.join("synth/dataset.jsonl");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let first = text.lines().next().unwrap();
    let mut line: serde_json::Value = serde_json::from_str(first).unwrap();
    line["captions"][0] = "a completely different caption about a red circle".into();
    std::fs::write(&jsonl, text.replacen(first, &line.to_string(), 1)).unwrap();
    let (ok, out, err) = xmodal(&[
        "--data-dir",
        data_s,
        "ingest",
        "--format",
        "jsonl",
        jsonl.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("1 updated"), "{out}{err}");
    let (ok, again, _) = xmodal(&extract_args(
        data_s,
        &[
            "--only",
            "text",
            "--text-model",
            glove,
            "--shard-size",
            "25",
        ],
    ));
    assert!(ok);
    assert!(again.contains("3 shards reused, 1 computed"), "{again}");
}
