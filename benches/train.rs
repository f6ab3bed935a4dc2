//! Training speed against PyTorch: the same heads, loss (VSE++ hardest negative, joint), batch
//! and features, one invocation; our fused CPU step and candle's autograd (`train --autograd`)
//! both run.
//! `cargo bench --bench train [-- --captions 20000 --epochs 2 --out-dim 256]`
//! The PyTorch side is scripts/bench/bench_train_reference.py (XMODAL_REF_PYTHON, as benches/encoders).

use std::io::Write;

use candle_core::{Device, Tensor};
use xmodal::{
    data::ImageId,
    features::{paired::PairedSet, FeatureSpec},
    kit::Modality,
    rng::Rng,
    train::{train, Architecture, Direction, Loss, TrainConfig},
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (captions, epochs) = (arg("--captions", 20_000), arg("--epochs", 2));
    // out-dim defaults to `xmodal train`'s (256); VSE++ used 1024
    let (image_dims, text_dims, width, out, batch) = (1280, 384, 1024, arg("--out-dim", 256), 128);
    let images = captions / 5;
    let mut rng = Rng::new(1);
    let img: Vec<f32> = (0..images * image_dims)
        .map(|_| rng.normal().max(0.0))
        .collect();
    let txt: Vec<f32> = (0..captions * text_dims).map(|_| rng.normal()).collect();
    let text_image: Vec<usize> = (0..captions).map(|i| i / 5).collect();
    let set = PairedSet {
        image_ids: (0..images)
            .map(|i| ImageId::new(format!("i{i}")).unwrap())
            .collect(),
        images: Tensor::from_vec(img.clone(), (images, image_dims), &Device::Cpu).unwrap(),
        captions: vec![String::new(); captions],
        texts: Tensor::from_vec(txt.clone(), (captions, text_dims), &Device::Cpu).unwrap(),
        text_image: text_image.clone(),
        missing: 0,
    };
    let val = PairedSet {
        image_ids: set.image_ids[..100].to_vec(),
        images: set.images.narrow(0, 0, 100).unwrap(),
        captions: vec![String::new(); 500],
        texts: set.texts.narrow(0, 0, 500).unwrap(),
        text_image: text_image[..500].to_vec(),
        missing: 0,
    };
    let spec = |m, d| FeatureSpec {
        encoder: "bench".into(),
        modality: m,
        dims: d,
        manifest_sha256: String::new(),
        options: serde_json::json!({}),
    };
    let cfg = TrainConfig {
        loss: Loss::Hardest,
        direction: Direction::Joint,
        architecture: Architecture::Mlp,
        depth: 1,
        width,
        out_dim: out,
        dropout: 0.1,
        input_norm: false,
        epochs,
        batch_size: batch,
        lr: 2e-4,
        lr_decay: 1.0,
        decay_every: 0,
        weight_decay: 0.0,
        grad_clip: 2.0,
        margin: None,
        patience: epochs,
        seed: 0,
        autograd: false,
    };
    let dir = std::env::temp_dir().join(format!("xmodal-train-bench-{}", std::process::id()));
    let epoch_seconds = |autograd: bool| {
        let cfg = TrainConfig {
            autograd,
            ..cfg.clone()
        };
        let outcome = train(
            &cfg,
            "bench",
            &set,
            &val,
            (
                &spec(Modality::Image, image_dims),
                &spec(Modality::Text, text_dims),
            ),
            &dir.join("heads"),
            &Device::Cpu,
            |_, _| {},
            |_| {},
        )
        .unwrap();
        let mut secs: Vec<f64> = outcome.log.iter().map(|e| e.seconds).collect();
        secs.sort_by(f64::total_cmp);
        secs[secs.len() / 2]
    };
    let fused = epoch_seconds(false);
    let autograd = epoch_seconds(true);

    let write = |name: &str, v: &[f32]| {
        std::fs::File::create(dir.join(name))
            .unwrap()
            .write_all(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
            .unwrap()
    };
    write("images.f32", &img);
    write("texts.f32", &txt);
    std::fs::write(
        dir.join("text_image.json"),
        serde_json::to_string(&text_image).unwrap(),
    )
    .unwrap();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    std::fs::write(dir.join("params.json"), serde_json::json!({"image_dims": image_dims, "text_dims": text_dims, "width": width, "out": out, "dropout": 0.1, "batch": batch, "epochs": epochs, "threads": threads}).to_string()).unwrap();
    let python = std::env::var("XMODAL_REF_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/xmodal-ref/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/bench/bench_train_reference.py");
    let reference: serde_json::Value = std::process::Command::new(&python)
        .arg(script)
        .arg(&dir)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    println!("\none epoch of {captions} captions ({images} images), batch {batch}, heads {image_dims}/{text_dims} -> {width} -> {out}, hardest joint, {threads} threads");
    println!("xmodal, fused step: {fused:.2} s per epoch (includes validation on 100 images and the checkpoint)");
    println!("xmodal, candle autograd: {autograd:.2} s per epoch");
    match reference["epoch_s"].as_f64() {
        Some(t) => println!(
            "PyTorch {}: {t:.2} s per epoch\nfused / PyTorch time: {:.2}x (target <= 1.0); candle autograd / PyTorch: {:.2}x",
            reference["torch"].as_str().unwrap_or("?"),
            fused / t,
            autograd / t
        ),
        None => println!("PyTorch reference not run ({python})"),
    }
}
