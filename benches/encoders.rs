//! candle against the two reference engines, PyTorch and ONNX Runtime, in one invocation.
//!
//! `cargo bench --bench encoders [-- --reps N --rounds R --images a,b --text-only|--images-only
//! --clip DIR [--clip-only]]`
//!
//! Text: MiniLM-L6 (kit weights), batches of 1, 8 and 32 captions of ~12 words, tokenisation
//! included on every side. Each reference runs f32 and int8: PyTorch's Linear layers quantized by
//! `torch.ao.quantization.quantize_dynamic` (qint8, fbgemm), ONNX Runtime's graph by its own
//! `quantize_dynamic` (QInt8), what a user of either chasing CPU throughput would run. Images:
//! batches of 16 already-normalised 224×224 tensors (decoding excluded everywhere); kit weights
//! for EfficientNet-Lite0/MobileNetV2 in candle, random weights elsewhere (speed does not depend
//! on values). The references are scripts/bench/bench_reference.py, run with `XMODAL_REF_PYTHON`
//! (default ~/.cache/xmodal-ref/venv/bin/python; see scripts/fixtures/make_clip_fixtures.py for
//! its setup, plus `onnx onnxruntime`), the same thread count; ONNX Runtime runs the same torch
//! modules exported by `torch.onnx.export`, cached in `~/.cache/xmodal-onnx` (outside the repo
//! and target/). Candle, PyTorch and ONNX Runtime alternate for `--rounds` rounds; each number is
//! a median. The table says which reference is ahead on each row, and the CPU's flags.
//!
//! `--clip DIR`: a CLIP-family snapshot's towers too (scripts/bench/bench-clip makes full-size
//! ones with random weights), against the same weights in its reference library: text at batch 1
//! and 32 (tokenisation included; f32, and int8 against PyTorch's dynamic int8 where it has
//! one), images at batch 1 and 32 (normalised tensors of the model's input size).

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{var_builder::SimpleBackend, Init, VarBuilder};
use xmodal::{
    encode::{
        image::Backbone, throughput::captions, ImageEncoder, Precision, TextEncoder, TextOptions,
        TextQuantization,
    },
    kit::Architecture,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct RandomWeights;
impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        _: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let fan_in = (s.elem_count() / s.dims()[0]).max(1) as f64;
        let bound = (1.0 / fan_in).sqrt();
        let t = Tensor::rand(-bound as f32, bound as f32, s, dev)?;
        t.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: shape unknown")
    }
    fn contains_tensor(&self, name: &str) -> bool {
        !name.starts_with("pre_logits")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn timed(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

struct ImageJob {
    name: &'static str,
    arch: Architecture,
    py_arch: &'static str,
    kit: Option<&'static str>,
    batch: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let reps: usize = arg("--reps").and_then(|v| v.parse().ok()).unwrap_or(5);
    let rounds: usize = arg("--rounds").and_then(|v| v.parse().ok()).unwrap_or(2);
    let clip_only = args.iter().any(|a| a == "--clip-only");
    let text_only = args.iter().any(|a| a == "--text-only");
    let images_only = clip_only || args.iter().any(|a| a == "--images-only");
    let image_filter = arg("--images");
    let clip_dir = arg("--clip").map(PathBuf::from);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let models = std::env::var_os("XMODAL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models"));
    let dev = Device::Cpu;

    let caps = captions(256);
    const TEXT_BATCHES: [usize; 3] = [1, 8, 32];
    let mut jobs = vec![
        ImageJob {
            name: "efficientnet-lite0",
            arch: Architecture::EfficientnetLite0,
            py_arch: "efficientnet_lite0",
            kit: Some("efficientnet-lite0"),
            batch: 16,
        },
        ImageJob {
            name: "mobilenet-v2",
            arch: Architecture::MobilenetV2,
            py_arch: "mobilenet_v2",
            kit: Some("mobilenet-v2"),
            batch: 16,
        },
        ImageJob {
            name: "resnet50",
            arch: Architecture::Resnet50,
            py_arch: "resnet50",
            kit: None,
            batch: 16,
        },
        ImageJob {
            name: "vgg16",
            arch: Architecture::Vgg16,
            py_arch: "vgg16",
            kit: None,
            batch: 16,
        },
    ];
    if let Some(f) = &image_filter {
        jobs.retain(|j| f.split(',').any(|n| n == j.name));
    }
    if text_only || clip_only {
        jobs.clear();
    }

    // candle f32, and candle with int8 dense layers (`--text-quantization int8`)
    let texts: Vec<(&str, TextEncoder)> = if images_only {
        vec![]
    } else {
        [
            ("f32", TextQuantization::None),
            ("int8", TextQuantization::Int8),
        ]
        .into_iter()
        .map(|(tag, quantization)| {
            let opts = TextOptions {
                max_length: Some(256),
                quantization,
                ..Default::default()
            };
            let enc = TextEncoder::load(&models.join("minilm-l6"), &opts, &dev)
                .expect("minilm-l6 (run `xmodal models fetch`)");
            (tag, enc)
        })
        .collect()
    };
    let backbones: Vec<Backbone> = jobs
        .iter()
        .map(|j| match j.kit {
            Some(k) => {
                let enc =
                    ImageEncoder::load(&models.join(k), Precision::F32, &dev).expect("kit model");
                let vb = unsafe {
                    VarBuilder::from_mmaped_safetensors(
                        &[models.join(k).join("model.safetensors")],
                        DType::F32,
                        &dev,
                    )
                }
                .unwrap();
                drop(enc);
                Backbone::load(j.arch, vb).unwrap()
            }
            None => Backbone::load(
                j.arch,
                VarBuilder::from_backend(Box::new(RandomWeights), DType::F32, dev.clone()),
            )
            .unwrap(),
        })
        .collect();

    const CLIP_BATCHES: [usize; 2] = [1, 32];
    let clip = clip_dir.as_ref().map(|dir| {
        let load = |quantization| {
            let opts = TextOptions {
                quantization,
                models_dir: models.clone(),
                ..Default::default()
            };
            TextEncoder::load(dir, &opts, &dev).expect("a CLIP-family snapshot")
        };
        let text = [
            ("f32", load(TextQuantization::None)),
            ("int8", load(TextQuantization::Int8)),
        ];
        let image = ImageEncoder::load(dir, Precision::F32, &dev).expect("a CLIP-family snapshot");
        (text, image)
    });
    let clip_job = clip.as_ref().map(|(text, image)| {
        serde_json::json!({
            "model_dir": clip_dir,
            "family": text[0].1.describe()["family"],
            "captions": caps,
            "batches": CLIP_BATCHES,
            "image_size": image.preprocess().crop,
        })
    });
    let job = serde_json::json!({
        "threads": threads,
        "reps": reps,
        "clip": clip_job,
        "text": (!texts.is_empty()).then(|| serde_json::json!({"model_dir": models.join("minilm-l6"), "captions": caps, "batches": TEXT_BATCHES})),
        "images": jobs.iter().map(|j| serde_json::json!({"name": j.name, "arch": j.py_arch, "batch": j.batch, "reps": if j.name == "vgg16" { 1 } else { reps }})).collect::<Vec<_>>(),
    });
    let python = std::env::var("XMODAL_REF_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/xmodal-ref/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let script = root.join("scripts/bench/bench_reference.py");

    let mut candle: Seconds = Default::default();
    let mut torch: Seconds = Default::default();
    let mut ort: Seconds = Default::default();
    let mut versions: std::collections::BTreeMap<&str, String> = Default::default();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}: candle", round + 1);
        for ((tag, enc), &batch) in texts
            .iter()
            .flat_map(|e| TEXT_BATCHES.iter().map(move |b| (e, b)))
        {
            let batches: Vec<Vec<&str>> = caps
                .chunks(batch)
                .map(|c| c.iter().map(String::as_str).collect())
                .collect();
            let t = timed(reps, || {
                for b in &batches {
                    enc.encode(b).unwrap();
                }
            });
            candle
                .entry(format!("text-{tag}-b{batch}"))
                .or_default()
                .push(t / batches.len() as f64);
        }
        for (j, m) in jobs.iter().zip(&backbones) {
            let x = Tensor::arange(0f32, (j.batch * 3 * 224 * 224) as f32, &dev)
                .unwrap()
                .affine(2.0 / (j.batch * 3 * 224 * 224) as f64, -1.0)
                .unwrap()
                .sin()
                .unwrap()
                .reshape((j.batch, 3, 224, 224))
                .unwrap();
            let r = if j.name == "vgg16" { 1 } else { reps };
            candle
                .entry(j.name.to_string())
                .or_default()
                .push(timed(r, || {
                    m.features(&x).unwrap();
                }));
        }
        if let Some((text, image)) = &clip {
            for ((tag, enc), &batch) in text
                .iter()
                .flat_map(|e| CLIP_BATCHES.iter().map(move |b| (e, b)))
            {
                let batches: Vec<Vec<&str>> = caps
                    .chunks(batch)
                    .take((64 / batch).max(1))
                    .map(|c| c.iter().map(String::as_str).collect())
                    .collect();
                let t = timed(reps, || {
                    for b in &batches {
                        enc.encode(b).unwrap();
                    }
                });
                candle
                    .entry(format!("clip-text-{tag}-b{batch}"))
                    .or_default()
                    .push(t / batches.len() as f64);
            }
            let side = image.preprocess().crop as usize;
            for batch in CLIP_BATCHES {
                let pixels: Vec<Tensor> = (0..batch)
                    .map(|i| {
                        Tensor::arange(0f32, (3 * side * side) as f32, &dev)
                            .unwrap()
                            .affine(2.0 / (3 * side * side) as f64, -1.0 + i as f64 * 1e-3)
                            .unwrap()
                            .sin()
                            .unwrap()
                            .reshape((3, side, side))
                            .unwrap()
                    })
                    .collect();
                candle
                    .entry(format!("clip-image-b{batch}"))
                    .or_default()
                    .push(timed(reps, || {
                        image.encode_prepared(&pixels).unwrap();
                    }));
            }
        }
        for (engine, seconds) in [("pytorch", &mut torch), ("onnxruntime", &mut ort)] {
            eprintln!("round {}/{rounds}: {engine} ({python})", round + 1);
            let mut job = job.clone();
            job["engine"] = engine.into();
            match run_reference(&python, &script, &job) {
                Ok((version, times)) => {
                    versions.insert(engine, version);
                    for (k, s) in times {
                        seconds.entry(k).or_default().push(s);
                    }
                }
                Err(e) => eprintln!("{engine} reference not run ({e}): its column stays empty"),
            }
        }
    }

    let version = |engine| versions.get(engine).map_or("not run", String::as_str);
    println!(
        "\nencoder throughput, {threads} threads; candle vs {} and {}; medians of {rounds} rounds x {reps} reps; CPU: {}",
        version("pytorch"),
        version("onnxruntime"),
        cpu_flags()
    );
    println!("| workload | batch | candle items/s | PyTorch items/s | ONNX Runtime items/s | candle / PyTorch | candle / ORT | reference ahead |");
    println!("|---|---|---|---|---|---|---|---|");
    let row = |label: &str, batch: usize, candle_times: &[f64], key: &str| {
        let b = batch as f64;
        let c = b / median(candle_times.to_vec());
        let rate = |t: &Seconds| t.get(key).map(|t| b / median(t.clone()));
        let (p, o) = (rate(&torch), rate(&ort));
        let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        let ratio = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}x", c / v));
        let ahead = match (p, o) {
            (Some(p), Some(o)) if o >= p => "ONNX Runtime",
            (Some(_), Some(_)) => "PyTorch",
            _ => "-",
        };
        println!(
            "| {label} | {batch} | {c:.1} | {} | {} | {} | {} | {ahead} |",
            cell(p),
            cell(o),
            ratio(p),
            ratio(o)
        );
    };
    if !texts.is_empty() {
        for (ours, theirs) in [
            ("f32", "f32"),
            ("f32", "int8"),
            ("int8", "int8"),
            ("int8", "f32"),
        ] {
            for batch in TEXT_BATCHES {
                let label = format!("MiniLM-L6 captions, candle {ours} vs references' {theirs}");
                let times = &candle[&format!("text-{ours}-b{batch}")];
                row(&label, batch, times, &format!("text-{theirs}-b{batch}"));
            }
        }
    }
    for j in &jobs {
        row(j.name, j.batch, &candle[j.name], j.name);
    }
    if let Some((_, image)) = &clip {
        let name = &image.manifest.name;
        for (ours, theirs) in [("f32", "f32"), ("int8", "int8"), ("int8", "f32")] {
            for batch in CLIP_BATCHES {
                let label = format!("{name} text tower, candle {ours} vs references' {theirs}");
                let times = &candle[&format!("clip-text-{ours}-b{batch}")];
                row(
                    &label,
                    batch,
                    times,
                    &format!("clip-text-{theirs}-b{batch}"),
                );
            }
        }
        for batch in CLIP_BATCHES {
            let label = format!("{name} image tower, f32");
            let key = format!("clip-image-b{batch}");
            row(&label, batch, &candle[&key], &key);
        }
    }
}

type Seconds = std::collections::BTreeMap<String, Vec<f64>>;

/// Runs scripts/bench/bench_reference.py on `job`: the engine's version and seconds per workload.
fn run_reference(
    python: &str,
    script: &std::path::Path,
    job: &serde_json::Value,
) -> Result<(String, Vec<(String, f64)>), String> {
    let mut child = Command::new(python)
        .arg(script)
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{python}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin
        .write_all(job.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("exit {}, output not JSON: {e}", out.status))?;
    let version = format!(
        "{} ({} threads)",
        v["engine"].as_str().unwrap_or("?"),
        v["threads"]
    );
    let times = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "threads")
        .filter_map(|(k, s)| Some((k.clone(), s.as_f64()?)))
        .collect();
    Ok((version, times))
}

/// What every number needs beside it: the CPU's model and its AVX-512 / AMX / VNNI flags.
fn cpu_flags() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |m| m.trim_start_matches([' ', '\t', ':']));
    let mut flags: Vec<&str> = info
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|f| f.starts_with("avx512") || f.starts_with("amx") || *f == "avx_vnni")
        .collect();
    flags.sort_unstable();
    flags.dedup();
    let flags = if flags.is_empty() {
        "no AVX-512/AMX/VNNI".to_string()
    } else {
        flags.join(" ")
    };
    format!("{model}: {flags}")
}
