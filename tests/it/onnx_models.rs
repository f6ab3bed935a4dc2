//! ONNX model directories as Immich and transformers.js publish them, through ONNX Runtime,
//! against the reference library: tiny models made by open_clip / transformers with seeded
//! random weights and exported by the publishers' own recipes
//! (scripts/fixtures/make_onnx_fixtures.py), their reference outputs committed beside them.
//! Also what a broken directory answers: a message naming the file, never a crash.

use std::path::{Path, PathBuf};

use candle_core::Device;
use xmodal::encode::{ImageEncoder, Precision, TextEncoder};

use crate::{clip_parity::text_options, common::*};

/// Cosine to the reference at least this, every row.
const MIN_COSINE: f32 = 0.99999;

fn onnx_fixture(name: &str) -> PathBuf {
    fixture("onnx").join(name)
}

/// Token ids equal the reference tokenizer's; text embeddings, and image embeddings from the
/// photo files through our decoder and resampling, within [`MIN_COSINE`] of the reference
/// library's; a text or a photo alone gives what it gives in a batch.
fn check_layout(name: &str) {
    check_layout_with(name, name, true, MIN_COSINE, MIN_COSINE);
}

/// `name`'s directory against `reference_key`'s outputs; `batch_invariant`: a text or photo alone
/// gives what it gives in a batch (false for dynamically quantized graphs, whose activation
/// scales come from the whole batch); the bounds on the two cosines.
fn check_layout_with(
    name: &str,
    reference_key: &str,
    batch_invariant: bool,
    min_text_cosine: f32,
    min_image_cosine: f32,
) {
    let reference = read_json("onnx/reference.json");
    let r = &reference[reference_key];
    let texts = strings(if r["texts"].is_array() {
        &r["texts"]
    } else {
        &reference["texts"]
    });
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let dir = onnx_fixture(name);

    let text = TextEncoder::load(&dir, &text_options(), &Device::Cpu).unwrap();
    let onnx = text.onnx().expect("an ONNX text tower");
    assert_eq!(
        onnx.token_ids(&refs).unwrap(),
        u32_rows(&r["ids"]),
        "{name}: token ids"
    );
    assert_eq!(text.describe()["backend"], "onnxruntime");
    let ours: Vec<Vec<f32>> = text.encode(&refs).unwrap().to_vec2().unwrap();
    let (cos, diff) = compare_rows(&format!("{name} text"), &ours, &matrix(&r["text"]));
    assert!(
        cos >= min_text_cosine,
        "{name} text: cosine {cos}, max |diff| {diff}"
    );
    for (i, t) in refs
        .iter()
        .enumerate()
        .step_by(4)
        .filter(|_| batch_invariant)
    {
        let alone: Vec<Vec<f32>> = text.encode(&[t]).unwrap().to_vec2().unwrap();
        let d = max_abs_diff(&alone, &ours[i..i + 1]);
        assert!(d <= 1e-5, "{name}: text {i} alone differs by {d}");
    }
    assert_eq!(text.encode(&[]).unwrap().dims2().unwrap(), (0, text.dims()));

    let image = ImageEncoder::load(&dir, Precision::F32, &Device::Cpu).unwrap();
    assert_eq!(image.dims(), text.dims());
    let photos = strings(&reference["photos"]);
    let ours = encode_gallery_files(&image, &photos);
    let (cos, diff) = compare_rows(
        &format!("{name} image from files"),
        &ours,
        &matrix(&r["image"]),
    );
    assert!(
        cos >= min_image_cosine,
        "{name} image: cosine {cos}, max |diff| {diff}"
    );
    if batch_invariant {
        let alone = encode_gallery_files(&image, &photos[1..2]);
        let d = max_abs_diff(&alone, &ours[1..2]);
        assert!(d <= 1e-5, "{name}: a photo alone differs by {d}");
    }
}

/// Immich's first generation of graphs: batch fixed at 1, int32 `text`, float NCHW `image`.
#[test]
fn immich_layout_matches_open_clip() {
    check_layout("immich-tiny");
}

/// Immich's newer graphs: a symbolic batch, uint8 NHWC `image` normalised inside the graph.
#[test]
fn immich_batched_uint8_layout_matches_open_clip() {
    check_layout("immich-tiny-batched");
}

/// Immich's M-CLIP (multilingual XLM-RoBERTa text tower): `input_ids` + `attention_mask`, an
/// XLM-R tokenizer, captions in ten scripts.
#[test]
fn immich_multilingual_mclip_layout_matches_transformers() {
    check_layout("immich-mclip-tiny");
}

/// Immich's SigLIP: canonicalised captions (punctuation stripped, lower-cased), a T5 tokenizer,
/// 64 positions; images squashed to the square with mean and std 0.5.
#[test]
fn immich_siglip_layout_matches_open_clip() {
    check_layout("immich-siglip-tiny");
}

/// transformers.js: `onnx/text_model.onnx` (int64 `input_ids`, two outputs) and
/// `onnx/vision_model.onnx`, transformers' processor config.
#[test]
fn transformers_js_layout_matches_transformers() {
    check_layout("transformersjs-tiny");
}

/// transformers.js' `_quantized` graphs alone (its CPU default), against the f32 reference:
/// int8 weights and activations keep the embeddings within 0.99 cosine (measured on an AVX-512
/// VNNI CPU: text 0.99729, images from files 0.99989; on an emulated AVX2-only CPU ONNX Runtime's
/// own int8 kernels give other values, text 0.9975 to the VNNI ones, so the f32 reference is the
/// only one that holds on every CPU). The graph run is named in the text tower's description.
#[test]
fn transformers_js_quantized_variant_stays_near_f32() {
    check_layout_with(
        "transformersjs-tiny-quantized",
        "transformersjs-tiny",
        false,
        0.99,
        0.99,
    );
    let dir = onnx_fixture("transformersjs-tiny-quantized");
    let text = TextEncoder::load(&dir, &text_options(), &Device::Cpu).unwrap();
    assert_eq!(text.describe()["graph"], "text_model_quantized.onnx");
}

/// `rels` of fixture directory `from`, copied into a fresh directory for one test.
fn copy_files(tag: &str, from: &Path, rels: &[&str]) -> PathBuf {
    let dir = tempdir(tag);
    for rel in rels {
        let to = dir.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from.join(rel), to).unwrap();
    }
    dir
}

/// A copy of the Immich fixture to break.
fn broken_copy(tag: &str) -> PathBuf {
    copy_files(
        tag,
        &onnx_fixture("immich-tiny"),
        &[
            "config.json",
            "textual/model.onnx",
            "textual/tokenizer.json",
            "textual/tokenizer_config.json",
            "visual/model.onnx",
            "visual/preprocess_cfg.json",
        ],
    )
}

fn text_error(dir: &Path) -> String {
    match TextEncoder::load(dir, &text_options(), &Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_onnx_directories_are_refused_naming_the_file() {
    // a truncated graph
    let dir = broken_copy("onnx-truncated");
    let graph = dir.join("textual/model.onnx");
    let bytes = std::fs::read(&graph).unwrap();
    std::fs::write(&graph, &bytes[..bytes.len() / 3]).unwrap();
    let e = text_error(&dir);
    assert!(e.contains("textual/model.onnx"), "{e}");

    // not a graph at all
    std::fs::write(&graph, b"\x08\x07garbage that is not protobuf \xff\xff\xff").unwrap();
    let e = text_error(&dir);
    assert!(e.contains("textual/model.onnx"), "{e}");

    // a graph whose inputs do not fit the layout: the vision tower where the text tower goes
    std::fs::copy(dir.join("visual/model.onnx"), &graph).unwrap();
    let e = text_error(&dir);
    assert!(
        e.contains("textual/model.onnx") && e.contains("integer ids"),
        "{e}"
    );
    let e = match ImageEncoder::load(&dir, Precision::F32, &Device::Cpu) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    assert!(e.is_empty(), "the vision tower still loads: {e}");

    // a missing tokenizer
    let dir = broken_copy("onnx-no-tokenizer");
    std::fs::remove_file(dir.join("textual/tokenizer.json")).unwrap();
    let e = text_error(&dir);
    assert!(
        e.contains("textual/tokenizer.json") && e.contains("missing"),
        "{e}"
    );

    // a tokenizer that is not one
    std::fs::write(dir.join("textual/tokenizer.json"), b"{\"model\": 3}").unwrap();
    let e = text_error(&dir);
    assert!(e.contains("textual/tokenizer.json"), "{e}");

    // a preprocessing config the service cannot follow
    let dir = broken_copy("onnx-bad-preprocess");
    std::fs::write(
        dir.join("visual/preprocess_cfg.json"),
        br#"{"size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize_mode": "longest"}"#,
    )
    .unwrap();
    let e = match ImageEncoder::load(&dir, Precision::F32, &Device::Cpu) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("visual/preprocess_cfg.json") && e.contains("longest"),
        "{e}"
    );
}

/// Without ONNX Runtime's library, a clear error that says how to get it.
#[test]
fn a_missing_onnx_runtime_says_how_to_get_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xmodal"))
        .args(["embed", "text", "--model"])
        .arg(onnx_fixture("immich-tiny"))
        .arg("a dog")
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so") && stderr.contains("xmodal models fetch"),
        "{stderr}"
    );
}

/// Two Immich directories with the same config.json but different graphs are different models:
/// their fingerprints (which key cached features) differ; the same files give the same one.
#[test]
fn onnx_directories_are_fingerprinted_by_their_graphs() {
    use xmodal::{features::model_fingerprint, kit::Manifest};
    let fingerprint = |dir: &Path| model_fingerprint(dir, &Manifest::load(dir).unwrap()).unwrap();
    let a = broken_copy("onnx-fingerprint-a");
    let b = broken_copy("onnx-fingerprint-b");
    assert_eq!(fingerprint(&a), fingerprint(&b));
    std::fs::copy(
        onnx_fixture("immich-tiny-batched").join("textual/model.onnx"),
        b.join("textual/model.onnx"),
    )
    .unwrap();
    assert_ne!(fingerprint(&a), fingerprint(&b));
    assert_ne!(
        fingerprint(&onnx_fixture("transformersjs-tiny")),
        fingerprint(&fixture("clip").join("clip-tiny"))
    );
}

/// A transformers.js snapshot that also holds `model.safetensors` runs on our towers by default
/// and on ONNX Runtime with `--backend onnx`; both give the reference's embedding.
#[test]
fn backend_picks_the_engine_where_a_directory_has_both() {
    let dir = copy_files(
        "onnx-both-backends",
        &onnx_fixture("transformersjs-tiny"),
        &[
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "preprocessor_config.json",
            "onnx/text_model.onnx",
        ],
    );
    std::fs::copy(
        fixture("clip").join("clip-tiny/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let reference = read_json("onnx/reference.json");
    let expected = &matrix(&reference["transformersjs-tiny"]["text"])[..1];
    let text = strings(&reference["texts"])[0].clone();
    for (backend, engine) in [("candle", "candle"), ("onnx", "onnxruntime")] {
        let got: Vec<Vec<f32>> = embeddings(
            &[
                "--backend",
                backend,
                "embed",
                "text",
                "--text-quantization",
                "none",
                "--model",
                dir.to_str().unwrap(),
                &text,
            ],
            &[],
        )
        .iter()
        .map(|row| row.iter().map(|&x| x as f32).collect())
        .collect();
        let cos = min_row_cosine(&got, expected);
        assert!(cos >= MIN_COSINE, "{engine}: cosine {cos}");
    }
    // which engine ran: with the graph broken, our towers still answer and ONNX Runtime refuses
    std::fs::write(dir.join("onnx/text_model.onnx"), b"not a graph").unwrap();
    let run = |backend: &str| {
        xmodal(&[
            "--backend",
            backend,
            "embed",
            "text",
            "--model",
            dir.to_str().unwrap(),
            &text,
        ])
    };
    assert!(run("candle").0);
    let (ok, _, stderr) = run("onnx");
    assert!(!ok && stderr.contains("text_model.onnx"), "{stderr}");
}
