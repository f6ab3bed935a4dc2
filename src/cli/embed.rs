//! `xmodal embed text|image`: encoder outputs as JSON lines, one per input; `xmodal embed
//! throughput`: how many per second, on whatever device it runs.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use crate::{
    device::DeviceSpec,
    encode::{ImageEncoder, Pooling, Precision, TextEncoder, TextOptions, TextQuantization},
};

#[derive(Debug, Subcommand)]
pub enum EmbedCommand {
    /// `{"text":…, "embedding":[…]}` per text (a CLIP-family snapshot: its projected text
    /// embedding, what `get_text_features` returns).
    Text {
        /// A text model directory (kit, HF layout, or a CLIP/SigLIP/OpenCLIP snapshot).
        #[arg(long, env = "XMODAL_TEXT_MODEL")]
        model: PathBuf,
        /// Override the model's pooling (BERT: cls|mean; word vectors: mean|sum).
        #[arg(long, value_enum)]
        pooling: Option<Pooling>,
        /// L2-normalise (default: as the model's manifest says).
        #[arg(long)]
        normalize: Option<bool>,
        /// Truncate longer texts to this many tokens.
        #[arg(long)]
        max_length: Option<usize>,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// auto = f16 on a GPU, f32 on the CPU.
        #[arg(long, env = "XMODAL_PRECISION", value_enum, default_value_t)]
        precision: Precision,
        /// BERT's dense layers: auto = int8 on the CPU in f32, none elsewhere (CLIP-family text
        /// towers: none unless int8 is asked for). `--quantization` is the old name.
        #[arg(long = "text-quantization", alias = "quantization", env = "XMODAL_TEXT_QUANTIZATION", value_enum, default_value_t = TextQuantization::Auto)]
        quantization: TextQuantization,
        /// The texts; none, or `-`, reads one text per line from stdin.
        texts: Vec<String>,
    },
    /// `{"path":…, "embedding":[…]}` per image file (or `{"path":…, "error":…}`); a CLIP-family
    /// snapshot: its projected image embedding (`get_image_features`).
    Image {
        /// An image model directory (kit, torchvision/timm safetensors, or a CLIP-family snapshot).
        #[arg(long, env = "XMODAL_IMAGE_MODEL")]
        model: PathBuf,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// auto = f16 on a GPU, f32 on the CPU.
        #[arg(long, env = "XMODAL_PRECISION", value_enum, default_value_t)]
        precision: Precision,
        files: Vec<PathBuf>,
    },
    /// Encoder throughput on synthetic batches, one JSON line per (model, precision, batch):
    /// `{"model", "device", "precision", "batch", "items_per_s"}`. Text includes tokenisation;
    /// images are prepared 224×224 tensors (decoding excluded).
    Throughput {
        /// Text model directories to measure.
        #[arg(long = "text-model")]
        text_models: Vec<PathBuf>,
        /// Image model directories to measure.
        #[arg(long = "image-model")]
        image_models: Vec<PathBuf>,
        /// Batch sizes.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 32, 256])]
        batches: Vec<usize>,
        /// Precisions to measure each model in.
        #[arg(long, value_delimiter = ',', value_enum, default_values_t = [Precision::F32])]
        precisions: Vec<Precision>,
        /// Text models' dense layers: none, int8, auto or several (`none,int8`; int8 on the CPU in
        /// f32).
        #[arg(long, value_delimiter = ',', value_enum, default_values_t = [TextQuantization::None])]
        text_quantization: Vec<TextQuantization>,
        /// Timed passes per point (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
}

#[derive(Serialize)]
struct ThroughputLine<'a> {
    model: &'a str,
    device: &'a str,
    precision: &'a str,
    batch: usize,
    items_per_s: f64,
}

/// One output line. Vectors stay `f32` so they print at f32's shortest round-trip precision.
#[derive(Serialize)]
struct TextLine<'a> {
    text: &'a str,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct ImageLine<'a> {
    path: &'a std::path::Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn line(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

pub fn run(cmd: EmbedCommand, device: DeviceSpec, models_dir: &Path) -> anyhow::Result<()> {
    let device = device.open()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cmd {
        EmbedCommand::Throughput {
            text_models,
            image_models,
            batches,
            precisions,
            text_quantization,
            reps,
        } => throughput(
            &mut out,
            &device,
            models_dir,
            (&text_models, &text_quantization),
            &image_models,
            &batches,
            &precisions,
            reps,
        )?,
        EmbedCommand::Text {
            model,
            pooling,
            normalize,
            max_length,
            batch_size,
            precision,
            quantization,
            texts,
        } => {
            let texts = if texts.is_empty() || texts == ["-"] {
                std::io::stdin()
                    .lines()
                    .collect::<Result<Vec<_>, _>>()
                    .context("reading texts from stdin")?
            } else {
                texts
            };
            let encoder = TextEncoder::load(
                &model,
                &TextOptions {
                    pooling,
                    normalize,
                    max_length,
                    precision,
                    quantization,
                    models_dir: models_dir.to_path_buf(),
                },
                &device,
            )?;
            for chunk in texts.chunks(batch_size.max(1)) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let rows: Vec<Vec<f32>> = encoder.encode(&refs)?.to_vec2()?;
                for (text, embedding) in chunk.iter().zip(rows) {
                    line(&mut out, &TextLine { text, embedding })?;
                }
            }
        }
        EmbedCommand::Image {
            model,
            batch_size,
            precision,
            files,
        } => {
            let encoder = ImageEncoder::load(&model, precision, &device)?;
            let mut failed = 0;
            for chunk in files.chunks(batch_size.max(1)) {
                let mut ok = Vec::new();
                for path in chunk {
                    let prepared = std::fs::read(path)
                        .map_err(anyhow::Error::from)
                        .and_then(|b| Ok(encoder.prepare(&b)?));
                    match prepared {
                        Ok(t) => ok.push((path, t)),
                        Err(e) => {
                            failed += 1;
                            line(
                                &mut out,
                                &ImageLine {
                                    path,
                                    embedding: None,
                                    error: Some(e.to_string()),
                                },
                            )?;
                        }
                    }
                }
                let tensors: Vec<_> = ok.iter().map(|(_, t)| t.clone()).collect();
                let rows: Vec<Vec<f32>> = encoder.encode_prepared(&tensors)?.to_vec2()?;
                for ((path, _), embedding) in ok.iter().zip(rows) {
                    line(
                        &mut out,
                        &ImageLine {
                            path,
                            embedding: Some(embedding),
                            error: None,
                        },
                    )?;
                }
            }
            out.flush()?;
            anyhow::ensure!(
                failed == 0,
                "{failed} of {} images could not be encoded",
                files.len()
            );
        }
    }
    out.flush()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn throughput(
    out: &mut impl Write,
    device: &candle_core::Device,
    models_dir: &Path,
    (text_models, quantizations): (&[PathBuf], &[TextQuantization]),
    image_models: &[PathBuf],
    batches: &[usize],
    precisions: &[Precision],
    reps: usize,
) -> anyhow::Result<()> {
    let device_name = crate::device::name(device);
    for &precision in precisions {
        let dtype = precision.dtype(device).as_str();
        for (dir, &quantization) in text_models
            .iter()
            .flat_map(|d| quantizations.iter().map(move |q| (d, q)))
        {
            let options = TextOptions {
                max_length: Some(256),
                precision,
                quantization,
                models_dir: models_dir.to_path_buf(),
                ..Default::default()
            };
            let encoder = TextEncoder::load(dir, &options, device)?;
            let described = encoder.describe();
            let name = described["model"].as_str().unwrap_or("text");
            let model = match described["quantization"].as_str() {
                Some(q) => format!("{name} {q}"),
                None => name.to_string(),
            };
            for &batch in batches {
                let items_per_s = crate::encode::throughput::text(&encoder, batch, reps)?;
                line(
                    out,
                    &ThroughputLine {
                        model: &model,
                        device: &device_name,
                        precision: dtype,
                        batch,
                        items_per_s,
                    },
                )?;
                out.flush()?;
            }
        }
        for dir in image_models {
            let encoder = ImageEncoder::load(dir, precision, device)?;
            for &batch in batches {
                let items_per_s = crate::encode::throughput::image(&encoder, batch, reps, device)?;
                line(
                    out,
                    &ThroughputLine {
                        model: &encoder.manifest.name,
                        device: &device_name,
                        precision: dtype,
                        batch,
                        items_per_s,
                    },
                )?;
                out.flush()?;
            }
        }
    }
    Ok(())
}
