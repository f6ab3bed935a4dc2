//! CLIP, SigLIP and OpenCLIP against their reference implementations: tiny models made by
//! transformers and open_clip with seeded random weights (scripts/fixtures/make_clip_fixtures.py),
//! their outputs for fixed texts and real gallery photos committed beside them. The same checks
//! at full architecture size run in scripts/bench/bench-clip.

use std::path::PathBuf;

use candle_core::Device;
use xmodal::encode::{
    image::preprocess, ImageEncoder, Precision, TextEncoder, TextOptions, TextQuantization,
};

use crate::common::*;

/// Cosine to the reference at least this, every row (f32 both sides).
const MIN_COSINE: f32 = 0.99999;

pub fn clip_fixture(name: &str) -> PathBuf {
    fixture("clip").join(name)
}

/// The kit's directory (for open_clip's vocabulary, `clip-bpe`).
pub fn models_dir() -> PathBuf {
    kit_model("clip-bpe").parent().unwrap().to_path_buf()
}

pub fn gallery_path(id: &str) -> PathBuf {
    let images = kit_model("demo-gallery").join("images");
    std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_stem().is_some_and(|s| s == id))
        .unwrap_or_else(|| panic!("{id} is not in {}", images.display()))
}

pub fn text_options() -> TextOptions {
    TextOptions {
        precision: Precision::F32,
        quantization: TextQuantization::None,
        models_dir: models_dir(),
        ..Default::default()
    }
}

/// One family's fixture: token ids equal the reference's exactly; text embeddings, and image
/// embeddings of the reference's own preprocessed pixels, within [`MIN_COSINE`] and `max_abs`;
/// image embeddings from the photo files through our decoder and resampling within
/// [`MIN_COSINE`] and `photo_max_abs` (a resampled pixel may differ from PIL's by one level:
/// measured mean 0.003–0.013 levels).
fn check_family(key: &str, dir: &str, max_abs: f32, photo_max_abs: f32) {
    let reference = read_json("clip/reference.json");
    let texts = strings(&reference["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let r = &reference[key];
    let dir = clip_fixture(dir);

    let text = TextEncoder::load(&dir, &text_options(), &Device::Cpu).unwrap();
    let clip = text.clip().expect("a CLIP-family text tower");
    assert_eq!(
        clip.token_ids(&refs).unwrap(),
        u32_rows(&r["ids"]),
        "{key}: token ids"
    );
    let ours: Vec<Vec<f32>> = text.encode(&refs).unwrap().to_vec2().unwrap();
    let (cos, diff) = compare_rows(&format!("{key} text"), &ours, &matrix(&r["text"]));
    assert!(
        cos >= MIN_COSINE && diff <= max_abs,
        "{key} text: cosine {cos}, max |diff| {diff}"
    );
    // each text alone gives what it gives in the batch (padding changes nothing)
    for (i, t) in refs.iter().enumerate().step_by(5) {
        let alone: Vec<Vec<f32>> = text.encode(&[t]).unwrap().to_vec2().unwrap();
        let d = max_abs_diff(&alone, &ours[i..i + 1]);
        assert!(d <= 1e-5, "{key}: text {i} alone differs by {d}");
    }

    let image = ImageEncoder::load(&dir, Precision::F32, &Device::Cpu).unwrap();
    assert!(image.clip().is_some());
    let ours = encode_gallery_files(&image, &strings(&reference["photos"]));
    let (cos, diff) = compare_rows(
        &format!("{key} image from files"),
        &ours,
        &matrix(&r["image"]),
    );
    assert!(
        cos >= MIN_COSINE && diff <= photo_max_abs,
        "{key} image: cosine {cos}, max |diff| {diff}"
    );

    let crops: Vec<candle_core::Tensor> = CROP_PHOTOS
        .iter()
        .map(|photo| {
            let png = clip_fixture("crops").join(format!("{key}_{photo}.png"));
            let pixels = image::open(png).unwrap().to_rgb8();
            preprocess::to_tensor(&pixels, image.preprocess(), &Device::Cpu).unwrap()
        })
        .collect();
    let ours: Vec<Vec<f32>> = image.encode_prepared(&crops).unwrap().to_vec2().unwrap();
    let theirs = matrix(&r["crops"]);
    let (cos, diff) = (min_row_cosine(&ours, &theirs), max_abs_diff(&ours, &theirs));
    eprintln!(
        "{key} image from the reference's pixels: min cosine {cos:.7}, max |diff| {diff:.2e}"
    );
    assert!(
        cos >= MIN_COSINE && diff <= max_abs,
        "{key} crops: cosine {cos}, max |diff| {diff}"
    );
}

const CROP_PHOTOS: [&str; 3] = ["chelsea", "rocket", "astronaut"];

#[test]
fn clip_in_transformers_layout_matches_transformers() {
    check_family("clip", "clip-tiny", 1e-4, 2e-3);
}

#[test]
fn siglip_matches_transformers() {
    check_family("siglip", "siglip-tiny", 1e-4, 2e-3);
}

/// SigLIP2 at a fixed resolution: `model_type: siglip` with Gemma's tokenizer.json (no
/// spiece.model), texts padded on the tokenizer's side.
#[test]
fn siglip2_with_a_gemma_tokenizer_matches_transformers() {
    check_family("siglip2", "siglip2-tiny", 1e-4, 2e-3);
}

#[test]
fn open_clip_snapshot_matches_open_clip() {
    check_family("openclip", "openclip-tiny", 1e-4, 2e-3);
}

/// A snapshot without tokenizer.json (vocab.json + merges.txt only, as older CLIP snapshots)
/// tokenizes the same.
#[test]
fn clip_tokenizer_from_vocab_and_merges_equals_tokenizer_json() {
    let dir = tempdir("clip-vocab-merges");
    for f in [
        "config.json",
        "vocab.json",
        "merges.txt",
        "model.safetensors",
    ] {
        std::fs::copy(clip_fixture("clip-tiny").join(f), dir.join(f)).unwrap();
    }
    let reference = read_json("clip/reference.json");
    let texts = strings(&reference["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let text = TextEncoder::load(&dir, &text_options(), &Device::Cpu).unwrap();
    assert_eq!(text.describe()["tokenizer"], "vocab.json+merges.txt");
    assert_eq!(
        text.clip().unwrap().token_ids(&refs).unwrap(),
        u32_rows(&reference["clip"]["ids"])
    );
}

/// What our decoder and preprocessing make of gallery photos against the 8-bit pixels of
/// transformers' CLIPImageProcessor and SiglipImageProcessor (PIL backends) and open_clip's eval
/// transform (torchvision on PIL).
#[test]
fn clip_and_siglip_preprocessing_match_the_reference_processors() {
    for (kind, dir) in [
        ("clip", "clip-tiny"),
        ("siglip", "siglip-tiny"),
        ("openclip", "openclip-tiny"),
    ] {
        let image = ImageEncoder::load(&clip_fixture(dir), Precision::F32, &Device::Cpu).unwrap();
        for photo in CROP_PHOTOS {
            let decoded = preprocess::decode(&std::fs::read(gallery_path(photo)).unwrap()).unwrap();
            let ours = decoded.model_input(image.preprocess());
            let theirs = image::open(clip_fixture("crops").join(format!("{kind}_{photo}.png")))
                .unwrap()
                .to_rgb8();
            let (mean, max) = pixel_diff(&ours, &theirs);
            eprintln!("{kind} {photo}: mean |diff| {mean:.3}, max {max} (0..255)");
            assert!(
                mean <= 0.5 && max <= 8.0,
                "{kind} {photo}: mean {mean}, max {max}"
            );
        }
    }
}

/// Every gallery photo through our preprocessing against the reference processors' pixels that
/// scripts/bench/bench-clip writes to `$XMODAL_CLIP_CROPS` (`{clip,siglip,openclip}/<photo>.png`),
/// or scripts/bench/bench-onnx (`{immich,transformersjs}/<photo>.png`: Immich's own
/// preprocessing, transformers' processor): prints each processor's mean absolute difference
/// over the gallery, and the photos over 0.05 levels. Run by those scripts.
#[test]
#[ignore = "needs the reference crops scripts/bench/bench-clip makes"]
fn clip_preprocessing_on_the_whole_gallery() {
    let root = PathBuf::from(std::env::var("XMODAL_CLIP_CROPS").expect("XMODAL_CLIP_CROPS"));
    let mut kinds = 0;
    for (kind, dir) in [
        ("clip", clip_fixture("clip-tiny")),
        ("siglip", clip_fixture("siglip-tiny")),
        ("openclip", clip_fixture("openclip-tiny")),
        ("immich", fixture("onnx").join("immich-tiny")),
        (
            "transformersjs",
            fixture("onnx").join("transformersjs-tiny"),
        ),
    ] {
        if !root.join(kind).is_dir() {
            continue;
        }
        kinds += 1;
        let image = ImageEncoder::load(&dir, Precision::F32, &Device::Cpu).unwrap();
        let (mut sum, mut count, mut worst) = (0f64, 0usize, 0f64);
        let mut photos = 0;
        for entry in std::fs::read_dir(root.join(kind)).unwrap() {
            let png = entry.unwrap().path();
            let photo = png.file_stem().unwrap().to_str().unwrap().to_string();
            let bytes = std::fs::read(gallery_path(&photo)).unwrap();
            let ours = preprocess::decode(&bytes)
                .unwrap()
                .model_input(image.preprocess());
            let theirs = image::open(&png).unwrap().to_rgb8();
            assert_eq!(ours.dimensions(), theirs.dimensions(), "{kind} {photo}");
            let diff: f64 = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .map(|(a, b)| (*a as f64 - *b as f64).abs())
                .sum();
            let n = ours.as_raw().len();
            if diff / n as f64 > 0.05 {
                println!("  {kind} {photo}: mean |diff| {:.3}", diff / n as f64);
            }
            worst = worst.max(diff / n as f64);
            sum += diff;
            count += n;
            photos += 1;
        }
        println!(
            "{kind}: mean |diff| {:.3} (0..255) over {photos} photos, worst photo {worst:.3}",
            sum / count as f64
        );
        // PNGs come out within ~0.01 levels; JPEGs differ more (0.05-0.33), from the decoders
        // (libjpeg-turbo's chroma upsampling in PIL, zune-jpeg here), not the resampling
        assert!(sum / count as f64 <= 0.2 && worst <= 0.5, "{kind}");
    }
    assert!(kinds > 0, "no crops in {}", root.display());
}

/// SigLIP2's NaFlex snapshots (`model_type: siglip2`) are refused by name, pointing at the
/// fixed-resolution ones that load.
#[test]
fn siglip2_naflex_is_refused_by_name() {
    let dir = tempdir("siglip2-naflex");
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "siglip2", "text_config": {}, "vision_config": {"num_patches": 256}}"#,
    )
    .unwrap();
    let e = match TextEncoder::load(&dir, &text_options(), &Device::Cpu) {
        Ok(_) => panic!("a NaFlex snapshot loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("NaFlex") && e.contains("config.json") && e.contains("fixed"),
        "{e}"
    );
}
