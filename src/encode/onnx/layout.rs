//! Which files an ONNX model directory holds, and what its configs say, per publisher:
//!
//! - Immich (`immich-app/ViT-B-32__openai`, …; its exporter, machine-learning/export):
//!   `config.json` (open_clip's model config), `textual/model.onnx` + `textual/tokenizer.json` +
//!   `textual/tokenizer_config.json`, `visual/model.onnx` + `visual/preprocess_cfg.json`.
//! - transformers.js (`Xenova/clip-vit-base-patch32`, …): `onnx/text_model.onnx`,
//!   `onnx/vision_model.onnx`, and transformers' `config.json`, `tokenizer.json`,
//!   `tokenizer_config.json`, `preprocessor_config.json` at the root.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::OnnxError;
use crate::{
    encode::clip::{ClipConfig, Family},
    kit::{Architecture, CropOffsets, Preprocess, Resample, ResizeMode},
};

/// Whose layout a directory is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    Immich,
    TransformersJs,
}

/// How a caption is cleaned before tokenizing (Immich's `clean_text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextClean {
    /// transformers.js: the tokenizer's own normaliser only.
    None,
    /// Runs of whitespace become one space, ends trimmed.
    Whitespace,
    /// Also ASCII punctuation removed and lower-cased (`tokenizer_kwargs.clean: canonicalize`,
    /// SigLIP and SigLIP2 in open_clip).
    Canonicalize,
}

impl TextClean {
    pub fn apply(self, text: &str) -> String {
        match self {
            Self::None => text.to_string(),
            Self::Whitespace => text.split_whitespace().collect::<Vec<_>>().join(" "),
            Self::Canonicalize => Self::Whitespace
                .apply(text)
                .chars()
                .filter(|c| !c.is_ascii_punctuation())
                .collect::<String>()
                .to_lowercase(),
        }
    }
}

pub struct TextLayout {
    pub model: PathBuf,
    pub tokenizer: PathBuf,
    /// `pad_token` of `tokenizer_config.json`.
    pub pad_token: String,
    pub context: usize,
    /// Every caption padded to `context` (Immich always; SigLIP was trained so); otherwise to the
    /// longest of the batch.
    pub pad_to_context: bool,
    pub clean: TextClean,
}

pub struct VisionLayout {
    pub model: PathBuf,
    pub preprocess: Preprocess,
}

/// transformers.js' variants of a graph, in the order we take them: f32 first (what the
/// reference computes), then its 8-bit and half-precision exports. A user of transformers.js
/// often has only the variant their runtime downloaded (`_quantized` is its CPU default).
const TRANSFORMERS_JS_VARIANTS: [&str; 6] = ["", "_quantized", "_int8", "_uint8", "_fp16", "_q4"];

/// The graph of transformers.js' `tower` (`text_model`, `vision_model`) that `dir` holds, as a
/// path relative to `dir`.
fn transformers_js_graph(dir: &Path, tower: &str) -> Option<PathBuf> {
    TRANSFORMERS_JS_VARIANTS
        .iter()
        .map(|v| PathBuf::from(format!("onnx/{tower}{v}.onnx")))
        .find(|rel| dir.join(rel).is_file())
}

fn transformers_js_required(dir: &Path, tower: &str) -> Result<PathBuf, OnnxError> {
    transformers_js_graph(dir, tower)
        .map(|rel| dir.join(rel))
        .ok_or_else(|| {
            OnnxError::file(
                &dir.join(format!("onnx/{tower}.onnx")),
                format!(
                    "missing (nor any of its variants: {})",
                    TRANSFORMERS_JS_VARIANTS[1..].join(", ")
                ),
            )
        })
}

/// Immich's or transformers.js' files in `dir`, if either: what [`crate::kit::Manifest`] uses
/// to recognise a directory a user brings.
pub fn sniff(dir: &Path) -> Option<Architecture> {
    let any = |files: &[&str]| files.iter().any(|f| dir.join(f).is_file());
    if any(&["textual/model.onnx", "visual/model.onnx"]) {
        return Some(Architecture::ImmichOnnx);
    }
    // a snapshot with safetensors beside its onnx/ folder is read by our own towers, unless the
    // process asked for ONNX Runtime (`--backend onnx`)
    let transformers_js = ["text_model", "vision_model"]
        .iter()
        .any(|t| transformers_js_graph(dir, t).is_some());
    let ours_too = dir.join("model.safetensors").exists();
    if transformers_js
        && (!ours_too || super::runtime::preferred() == super::runtime::Backend::Onnx)
    {
        return Some(Architecture::TransformersJsOnnx);
    }
    None
}

/// The files below `dir`'s top level that make the model what it is (relative paths, sorted): a
/// model's fingerprint must cover them, or two Immich directories with the same open_clip config
/// (ViT-B-32 trained by OpenAI and by LAION) would share cached features. transformers.js' `onnx/`
/// holds many variants (several GB); only the graphs we load count.
pub fn fingerprint_files(architecture: Architecture, dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match LayoutKind::of(architecture) {
        Some(LayoutKind::Immich) => {
            for sub in ["textual", "visual"] {
                for entry in walkdir::WalkDir::new(dir.join(sub)).sort_by_file_name() {
                    let Ok(entry) = entry else { continue };
                    if entry.file_type().is_file() {
                        if let Ok(rel) = entry.path().strip_prefix(dir) {
                            files.push(rel.to_path_buf());
                        }
                    }
                }
            }
        }
        Some(LayoutKind::TransformersJs) => {
            files.extend(
                ["text_model", "vision_model"]
                    .iter()
                    .filter_map(|t| transformers_js_graph(dir, t)),
            );
        }
        None => {}
    }
    files
}

fn read_json(path: &Path) -> Result<Value, OnnxError> {
    let text = std::fs::read_to_string(path).map_err(|e| OnnxError::file(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| OnnxError::file(path, e.to_string()))
}

fn pad_token(path: &Path) -> Result<String, OnnxError> {
    crate::encode::clip::tokenizer::pad_token(&read_json(path)?).ok_or_else(|| {
        OnnxError::file(
            path,
            "no pad_token (a string, or an added token's content)".into(),
        )
    })
}

fn required(path: PathBuf) -> Result<PathBuf, OnnxError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(OnnxError::file(&path, "missing".into()))
    }
}

impl LayoutKind {
    pub fn of(architecture: Architecture) -> Option<Self> {
        match architecture {
            Architecture::ImmichOnnx => Some(Self::Immich),
            Architecture::TransformersJsOnnx => Some(Self::TransformersJs),
            _ => None,
        }
    }

    pub fn text(self, dir: &Path) -> Result<TextLayout, OnnxError> {
        match self {
            Self::Immich => {
                let config = dir.join("config.json");
                let cfg = read_json(&config)?;
                let text_cfg = cfg.get("text_cfg").unwrap_or(&Value::Null);
                let context = match text_cfg.get("context_length") {
                    None => 77,
                    Some(v) => v.as_u64().filter(|&n| n > 1).ok_or_else(|| {
                        OnnxError::file(
                            &config,
                            format!("text_cfg.context_length {v} is not a length"),
                        )
                    })? as usize,
                };
                let clean = match text_cfg
                    .pointer("/tokenizer_kwargs/clean")
                    .and_then(Value::as_str)
                {
                    Some("canonicalize") => TextClean::Canonicalize,
                    _ => TextClean::Whitespace,
                };
                let textual = dir.join("textual");
                Ok(TextLayout {
                    model: required(textual.join("model.onnx"))?,
                    tokenizer: required(textual.join("tokenizer.json"))?,
                    pad_token: pad_token(&required(textual.join("tokenizer_config.json"))?)?,
                    context,
                    pad_to_context: true,
                    clean,
                })
            }
            Self::TransformersJs => {
                let (family, cfg) = hf_config(dir)?;
                Ok(TextLayout {
                    model: transformers_js_required(dir, "text_model")?,
                    tokenizer: required(dir.join("tokenizer.json"))?,
                    pad_token: pad_token(&required(dir.join("tokenizer_config.json"))?)?,
                    context: cfg.text.context,
                    pad_to_context: family == Family::Siglip,
                    clean: TextClean::None,
                })
            }
        }
    }

    pub fn vision(self, dir: &Path) -> Result<VisionLayout, OnnxError> {
        match self {
            Self::Immich => {
                let visual = dir.join("visual");
                let path = required(visual.join("preprocess_cfg.json"))?;
                Ok(VisionLayout {
                    model: required(visual.join("model.onnx"))?,
                    preprocess: immich_preprocess(&path, &read_json(&path)?)?,
                })
            }
            Self::TransformersJs => Ok(VisionLayout {
                model: transformers_js_required(dir, "vision_model")?,
                preprocess: hf_config(dir)?.1.preprocess,
            }),
        }
    }
}

/// transformers' `config.json` (CLIP or SigLIP) and `preprocessor_config.json`, as our own
/// towers read them.
fn hf_config(dir: &Path) -> Result<(Family, ClipConfig), OnnxError> {
    let path = dir.join("config.json");
    let family = match read_json(&path)?.get("model_type").and_then(Value::as_str) {
        Some("clip") => Family::Clip,
        Some("siglip") => Family::Siglip,
        other => {
            return Err(OnnxError::file(
                &path,
                format!("model_type {other:?}: transformers.js directories of clip and siglip models are supported"),
            ))
        }
    };
    let cfg = ClipConfig::load(dir, family).map_err(|e| OnnxError::file(&path, e.to_string()))?;
    Ok((family, cfg))
}

/// Immich's `visual/preprocess_cfg.json` (open_clip's `PreprocessCfg`), as its service applies
/// it: PIL resize of the shorter side (or a squash), then a centre crop whose offsets it
/// truncates (`int(w / 2 - size / 2)`), where torchvision rounds.
fn immich_preprocess(path: &Path, cfg: &Value) -> Result<Preprocess, OnnxError> {
    let bad = |m: String| OnnxError::file(path, m);
    let size = match cfg.get("size") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::Array(a)) if a.len() == 2 && a[0] == a[1] => a[0].as_u64(),
        other => return Err(bad(format!("size {other:?}: a square size is needed"))),
    }
    .filter(|&s| (1..=4096).contains(&s))
    .ok_or_else(|| bad("size is not a positive side".into()))? as u32;
    let triple = |key: &str| -> Result<[f32; 3], OnnxError> {
        cfg.get(key)
            .and_then(|v| serde_json::from_value::<[f32; 3]>(v.clone()).ok())
            .filter(|t| key != "std" || t.iter().all(|&x| x > 0.0))
            .ok_or_else(|| bad(format!("{key} must be 3 numbers (std positive)")))
    };
    let resample = match cfg.get("interpolation").and_then(Value::as_str) {
        None | Some("bicubic") => Resample::Bicubic,
        Some("bilinear") => Resample::Bilinear,
        Some(other) => {
            return Err(bad(format!(
                "interpolation {other:?} is not supported (bicubic, bilinear)"
            )))
        }
    };
    let resize_mode = match cfg.get("resize_mode").and_then(Value::as_str) {
        None | Some("shortest") => ResizeMode::ShorterSide,
        Some("squash") => ResizeMode::Squash,
        Some(other) => {
            return Err(bad(format!(
                "resize_mode {other:?} is not supported (shortest, squash; as in Immich)"
            )))
        }
    };
    Ok(Preprocess {
        resize: size,
        crop: size,
        mean: triple("mean")?,
        std: triple("std")?,
        resample,
        resize_mode,
        crop_offsets: CropOffsets::Floor,
    })
}
