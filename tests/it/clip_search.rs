//! A CLIP-family snapshot as a searchable space of its own, and heads trained on its features:
//! `demo --photos DIR --model DIR` serving a photo folder through the tiny CLIP fixture and
//! through an ONNX directory in Immich's layout (search both ways, upload, delete, tags,
//! `/v1/embeddings`), and `train` → `eval` of an adapter head on its features.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use candle_core::Device;
use reqwest::StatusCode;
use serde_json::{json, Value};
use xmodal::encode::{ImageEncoder, Precision, TextEncoder};

use crate::{
    clip_parity::{clip_fixture, gallery_path, models_dir, text_options},
    common::*,
};

const PHOTOS: [&str; 4] = ["chelsea", "coffee", "rocket", "astronaut"];

/// `demo --photos` over a folder of gallery photos with `model`; (base url, child).
fn start_clip_demo(
    data: &std::path::Path,
    photos: &std::path::Path,
    model: &std::path::Path,
) -> (String, std::process::Child) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xmodal"))
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--models-dir",
            models_dir().to_str().unwrap(),
            "demo",
            "--addr",
            "127.0.0.1:0",
            "--photos",
            photos.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut base = String::new();
    let mut seen = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen += &line;
        seen.push('\n');
        if let Some(rest) = line.strip_prefix("xmodal listening on ") {
            base = rest.trim_end_matches('/').to_string();
        }
        if line.starts_with("xmodal is ready") {
            return (base, child);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("demo exited before ready:\n{seen}");
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_snapshot_serves_a_photo_folder_both_ways_with_tags() {
    serves_a_photo_folder(&clip_fixture("clip-tiny"), "clip-tiny", "candle").await;
}

/// The same through ONNX Runtime: Immich's newer graphs (symbolic batch, uint8 NHWC pixels).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immich_onnx_directory_serves_a_photo_folder_both_ways_with_tags() {
    let model = fixture("onnx").join("immich-tiny-batched");
    serves_a_photo_folder(&model, "immich-tiny-batched", "onnxruntime").await;
}

/// `backend`: what `/ready` must say runs both towers.
async fn serves_a_photo_folder(model: &std::path::Path, name: &str, backend: &str) {
    let data = tempdir(&format!("{name}-demo-data"));
    let photos = tempdir(&format!("{name}-demo-photos"));
    for p in PHOTOS {
        let from = gallery_path(p);
        std::fs::copy(&from, photos.join(from.file_name().unwrap())).unwrap();
    }
    let (base, mut child) = start_clip_demo(&data, &photos, model);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{base}{p}");

    let ready = get_json(&client, url("/ready")).await;
    assert_eq!(ready["models"], json!([name]), "{ready}");
    assert_eq!(ready["features"]["text"]["encoder"], name);
    assert_eq!(ready["features"]["text"]["backend"], backend, "{ready}");
    assert_eq!(ready["features"]["image"]["backend"], backend, "{ready}");
    assert_eq!(ready["images"], 4, "{ready}");

    // caption → images: the scores are CLIP's own cosines (index vectors are f16)
    let query = "a cat on a sofa";
    let answer = post_json(
        &client,
        url("/v1/search/text"),
        json!({"query": query, "k": 4}),
    )
    .await;
    let results = answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(results.len(), 4, "{answer}");
    assert!(answer["model"].as_str().unwrap().contains(name), "{answer}");
    let text = TextEncoder::load(model, &text_options(), &Device::Cpu).unwrap();
    let q: Vec<f32> = text.encode(&[query]).unwrap().to_vec2().unwrap().remove(0);
    let image = ImageEncoder::load(model, Precision::F32, &Device::Cpu).unwrap();
    for hit in results {
        let id = hit["image_id"].as_str().unwrap();
        let photo = PHOTOS
            .iter()
            .find(|p| id.starts_with(*p))
            .expect("a folder photo");
        let bytes = std::fs::read(gallery_path(photo)).unwrap();
        let f: Vec<f32> = image
            .encode_bytes(&[&bytes])
            .unwrap()
            .to_vec2()
            .unwrap()
            .remove(0);
        let expected = cosine(&q, &f);
        let score = hit["score"].as_f64().unwrap() as f32;
        assert!(
            (score - expected).abs() < 2e-3,
            "{id}: score {score}, CLIP cosine {expected}"
        );
        // an uncaptioned photo gets tags from CLIP's zero-shot ImageNet classifier
        let tags = hit["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 5, "{hit}");
        let total: f64 = tags.iter().map(|t| t["score"].as_f64().unwrap()).sum();
        assert!(
            total > 0.0 && total <= 1.0 + 1e-6,
            "softmax probabilities: {tags:?}"
        );
    }

    // upload with a caption, then image → captions finds it
    let form = upload_form(
        "grace-hopper",
        &["a woman in a naval uniform"],
        Some("hopper"),
    );
    let r = client
        .post(url("/v1/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(url("/v1/search/image?k=3"))
        .header("content-type", "image/jpeg")
        .body(gallery_photo("grace-hopper"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["results"][0]["image_id"], "hopper", "{answer}");
    assert_eq!(answer["results"][0]["text"], "a woman in a naval uniform");
    assert_eq!(
        answer["query_tags"].as_array().unwrap().len(),
        5,
        "{answer}"
    );
    let similar = get_json(&client, url("/v1/images/hopper/similar?k=2")).await;
    assert_eq!(similar["results"].as_array().unwrap().len(), 2, "{similar}");

    // OpenAI's embeddings route gives the text tower's vector, normalised
    let answer = post_json(
        &client,
        url("/v1/embeddings"),
        json!({"model": name, "input": [query]}),
    )
    .await;
    let served: Vec<f32> = answer["data"][0]["embedding"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert!(cosine(&served, &q) > 0.9999, "{answer}");

    // delete: gone from results at once
    let r = client
        .delete(url("/v1/images/hopper"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let answer = post_json(
        &client,
        url("/v1/search/text"),
        json!({"query": "a woman", "k": 10}),
    )
    .await;
    assert!(
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["image_id"] != "hopper"),
        "{answer}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `train` on CLIP features makes a residual adapter whose epoch 0 is CLIP's zero-shot space
/// (the same validation numbers `eval --compare zero-shot` gives it) and which improves on the
/// generated benchmark; `eval` puts the two side by side.
#[test]
fn heads_on_clip_features_start_at_zero_shot_and_improve() {
    let data = tempdir("clip-heads");
    let d = data.to_str().unwrap();
    let models = models_dir();
    let m = models.to_str().unwrap();
    let clip = clip_fixture("clip-tiny");
    let model = clip.to_str().unwrap();
    let bench = data.join("bench");
    let run = |args: &[&str]| {
        let mut all = vec!["--data-dir", d, "--models-dir", m];
        all.extend_from_slice(args);
        let (ok, out, err) = xmodal(&all);
        assert!(ok, "xmodal {args:?}:\n{out}\n{err}");
        out
    };
    run(&[
        "synth",
        "--out",
        bench.to_str().unwrap(),
        "--seed",
        "0",
        "--images",
        "300",
    ]);
    run(&[
        "ingest",
        "--format",
        "jsonl",
        "--dataset",
        "synth",
        bench.join("dataset.jsonl").to_str().unwrap(),
    ]);
    run(&["extract", "--dataset", "synth", "--model", model]);
    let heads = data.join("heads-clip");
    let out = run(&[
        "train",
        "--dataset",
        "synth",
        "--model",
        model,
        "--epochs",
        "6",
        "--patience",
        "6",
        "--out",
        heads.to_str().unwrap(),
        "--name",
        "clip-adapter",
    ]);
    let log: Vec<Value> = std::fs::read_to_string(heads.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log[0]["epoch"], 0, "{out}");
    assert!(log[0]["loss"].is_null());
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(heads.join("heads.json")).unwrap()).unwrap();
    assert_eq!(config["image"]["residual"], true, "{config}");

    let json = data.join("val.json");
    run(&[
        "eval",
        "--dataset",
        "synth",
        "--split",
        "val",
        "--model",
        model,
        "--heads",
        heads.to_str().unwrap(),
        "--compare",
        "zero-shot",
        "--json",
        json.to_str().unwrap(),
    ]);
    let eval: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rsum = |m: &Value| -> f64 {
        ["i2t", "t2i"]
            .iter()
            .flat_map(|d| ["r1", "r5", "r10"].map(|k| m[d][k].as_f64().unwrap()))
            .sum()
    };
    let zero_shot = rsum(&eval["compared"]["clip-tiny"]);
    let epoch0 = log[0]["rsum"].as_f64().unwrap();
    assert!(
        (zero_shot - epoch0).abs() < 1e-9,
        "epoch 0 R-sum {epoch0}, zero-shot {zero_shot}"
    );
    let trained = rsum(&eval);
    let best = log
        .iter()
        .map(|e| e["rsum"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    eprintln!(
        "val R-sum: zero-shot {zero_shot:.1}, epoch 0 {epoch0:.1}, trained head {trained:.1}"
    );
    assert!(
        (trained - best).abs() < 1e-9,
        "the kept heads are the best epoch's"
    );
    assert!(
        trained > zero_shot + 10.0,
        "trained R-sum {trained} vs zero-shot {zero_shot}"
    );
}
