//! Zero-shot retrieval quality on the demo gallery's held-out captions, against a plain ConSE in
//! PyTorch, in one invocation.
//!
//! `cargo bench --bench zeroshot [-- --split held-out|tuning] [--misses]` (or
//! scripts/bench/bench-zeroshot); `--misses` lists the captions whose photo (c) ranks below 3rd.
//!
//! The gallery (45 real photos from pinned wheels and Debian's opencv-doc, 5 captions each that we
//! wrote) splits its captions in two before any tuning (`held_out` in models/gallery.jsonl: caption
//! i of photo j when i + j is odd). Choices were tuned on the other half; this reports the held-out
//! half unless told otherwise. Rows:
//! - (a) PyTorch plain ConSE: scripts/bench/bench_zeroshot_reference.py (EfficientNet-Lite0 with
//!   PIL bicubic, T = 10, one template "a photo of a {}"), run with `XMODAL_REF_PYTHON` (default
//!   ~/.cache/xmodal-ref/venv/bin/python: torch, transformers, efficientnet_lite_pytorch);
//! - the same recipe in xmodal (a parity check of (a), not a result);
//! - (b) xmodal's head before this benchmark: bilinear resize, one template, T = 10;
//! - (c) today's default: the kit's preprocessing (bicubic for EfficientNet-Lite0), each class
//!   described by its name and its WordNet gloss, T = `DEFAULT_TOP`.
//!
//! Metrics: caption → image and image → caption R@1, R@5 and the top-3 hit rate (the share of
//! queries whose match is among the first three), in percent.

use std::{io::Write, path::PathBuf, process::Command};

use candle_core::{Device, Tensor};
use xmodal::{
    encode::{image::preprocess, ImageEncoder, Precision, TextEncoder, TextOptions},
    eval::metrics::Ranks,
    heads::{
        conse::{ClassText, DEFAULT_TOP},
        similarity, ConSE,
    },
    kit::{Preprocess, Resample},
};

#[derive(serde::Deserialize)]
struct Photo {
    image: String,
    captions: Vec<String>,
    held_out: Vec<usize>,
}

/// R@1, R@5 and top-3 hit rate for one direction.
#[derive(Debug, Clone, Copy)]
struct Scores {
    r1: f64,
    r5: f64,
    top3: f64,
}

struct Row {
    name: String,
    /// Caption → image: the rank of each caption's photo (empty for the reference).
    t2i_ranks: Vec<usize>,
    t2i: Scores,
    i2t: Scores,
}

fn scores_of(curve: &[f64]) -> Scores {
    Scores {
        r1: curve[0],
        r5: curve[4],
        top3: curve[2],
    }
}

/// Images `[n, image_dims]` with `p`'s preprocessing.
fn image_features(enc: &ImageEncoder, files: &[PathBuf], p: &Preprocess) -> Tensor {
    let prepared: Vec<Tensor> = files
        .iter()
        .map(|f| {
            let decoded = preprocess::decode(&std::fs::read(f).unwrap()).unwrap();
            preprocess::to_tensor(&decoded.model_input(p), p, enc.device()).unwrap()
        })
        .collect();
    enc.encode_prepared(&prepared).unwrap()
}

fn xmodal_row(
    name: &str,
    conse: &ConSE,
    images: &Tensor,
    texts: &Tensor,
    text_image: &[usize],
) -> Row {
    let placed = conse.images(images).unwrap();
    let queries = conse.texts(texts).unwrap();
    // [images, texts]
    let s: Vec<Vec<f32>> = similarity(&placed, &queries, xmodal::heads::Score::Cosine)
        .unwrap()
        .to_vec2()
        .unwrap();
    let ranks = Ranks::of(&s, text_image);
    let curve = ranks.recall_curve(5);
    Row {
        t2i_ranks: ranks.t2i.iter().map(|r| r[0]).collect(),
        name: name.to_string(),
        t2i: scores_of(&curve.t2i),
        i2t: scores_of(&curve.i2t),
    }
}

fn reference_row(root: &std::path::Path, models: &std::path::Path) -> Option<Row> {
    let python = std::env::var("XMODAL_REF_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/xmodal-ref/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    eprintln!("PyTorch reference ({python})");
    let out = Command::new(&python)
        .arg(root.join("scripts/bench/bench_zeroshot_reference.py"))
        .arg(models)
        .env("HF_HUB_OFFLINE", "1")
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            return None;
        }
        Err(e) => {
            eprintln!("PyTorch reference not runnable at {python}: {e}");
            return None;
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let dir = |d: &str| Scores {
        r1: v[d]["r1"].as_f64().unwrap_or(f64::NAN),
        r5: v[d]["r5"].as_f64().unwrap_or(f64::NAN),
        top3: v[d]["top3"].as_f64().unwrap_or(f64::NAN),
    };
    Some(Row {
        name: "(a) PyTorch plain ConSE (Lite0 bicubic, 1 template, T=10)".into(),
        t2i_ranks: Vec::new(),
        t2i: dir("t2i"),
        i2t: dir("i2t"),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let held_out = !args
        .windows(2)
        .any(|w| w[0] == "--split" && w[1] == "tuning");
    let misses = args.iter().any(|a| a == "--misses");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let models = std::env::var("XMODAL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("models"));
    let gallery = models.join("demo-gallery");
    let photos: Vec<Photo> = std::fs::read_to_string(gallery.join("dataset.jsonl"))
        .expect("the kit's demo gallery (xmodal models fetch)")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a gallery line with held_out"))
        .collect();
    let (mut captions, mut text_image) = (Vec::new(), Vec::new());
    for (i, p) in photos.iter().enumerate() {
        for (c, caption) in p.captions.iter().enumerate() {
            if p.held_out.contains(&c) == held_out {
                captions.push(caption.as_str());
                text_image.push(i);
            }
        }
    }
    let files: Vec<PathBuf> = photos.iter().map(|p| gallery.join(&p.image)).collect();

    let dev = Device::Cpu;
    let image =
        ImageEncoder::load(&models.join("efficientnet-lite0"), Precision::F32, &dev).unwrap();
    let text = TextEncoder::load(&models.join("minilm-l6"), &TextOptions::default(), &dev).unwrap();
    let classifier = image.classifier().unwrap().clone();
    let texts = text.encode(&captions).unwrap();
    let kit = image.preprocess().clone();
    let with = |resample| Preprocess {
        resample,
        ..kit.clone()
    };
    let bicubic = image_features(&image, &files, &with(Resample::Bicubic));
    let bilinear = image_features(&image, &files, &with(Resample::Bilinear));
    let kit_features = image_features(&image, &files, &kit);

    let plain = ConSE::new(classifier.clone(), &text, 10, ClassText::Name).unwrap();
    let default = ConSE::new(classifier, &text, DEFAULT_TOP, ClassText::NameAndGloss).unwrap();
    let mut rows: Vec<Row> = reference_row(&root, &models).into_iter().collect();
    rows.push(xmodal_row(
        "    the same recipe in xmodal (parity of (a))",
        &plain,
        &bicubic,
        &texts,
        &text_image,
    ));
    rows.push(xmodal_row(
        "(b) xmodal before: bilinear, 1 template, T=10",
        &plain,
        &bilinear,
        &texts,
        &text_image,
    ));
    rows.push(xmodal_row(
        &format!(
            "(c) xmodal default: {:?}, name + gloss, T={DEFAULT_TOP}",
            kit.resample
        ),
        &default,
        &kit_features,
        &texts,
        &text_image,
    ));

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nzero-shot on the demo gallery: {} photos, {} {} captions\n",
        photos.len(),
        captions.len(),
        if held_out { "held-out" } else { "tuning" }
    )
    .unwrap();
    writeln!(out, "| head | caption → image R@1 | R@5 | top-3 | image → caption R@1 | R@5 | top-3 |\n|---|---|---|---|---|---|---|").unwrap();
    for r in &rows {
        writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.name.trim(),
            r.t2i.r1,
            r.t2i.r5,
            r.t2i.top3,
            r.i2t.r1,
            r.i2t.r5,
            r.i2t.top3
        )
        .unwrap();
    }
    if misses {
        let c = rows.last().unwrap();
        writeln!(out, "\n(c) caption → image, photo ranked below 3rd:").unwrap();
        for (t, &rank) in c.t2i_ranks.iter().enumerate() {
            if rank > 3 {
                let photo = &photos[text_image[t]];
                let id = photo.image.trim_start_matches("images/");
                writeln!(out, "  {rank:>3}  {id:<24} {}", captions[t]).unwrap();
            }
        }
    }
    if let (Some(a), Some(c)) = (rows.first(), rows.last()) {
        if a.name.starts_with("(a)") {
            writeln!(
                out,
                "\n(c) − (a): caption → image top-3 {:+.1} points, R@1 {:+.1}; image → caption top-3 {:+.1}",
                c.t2i.top3 - a.t2i.top3,
                c.t2i.r1 - a.t2i.r1,
                c.i2t.top3 - a.i2t.top3
            )
            .unwrap();
        }
    }
}
