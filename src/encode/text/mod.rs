//! Text encoders: a caption becomes one vector.

mod bert;
mod bert_model;
mod static_vectors;
mod words;

use std::path::Path;

use candle_core::{Device, Tensor};

pub use bert::BertEncoder;
pub use static_vectors::StaticVectors;

use super::{
    clip::{ClipText, Family},
    onnx::{LayoutKind, OnnxText},
    EncodeError, Precision,
};
use crate::kit::{Architecture, Manifest, Modality};

/// How token vectors become one sentence vector.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// BERT's first ([CLS]) token.
    Cls,
    /// Mean over real tokens (padding masked out); for word vectors, mean over known words.
    Mean,
    /// Sum over known words (word vectors only).
    Sum,
}

impl std::str::FromStr for Pooling {
    type Err = EncodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cls" => Ok(Self::Cls),
            "mean" => Ok(Self::Mean),
            "sum" => Ok(Self::Sum),
            other => Err(EncodeError::Config(format!(
                "unknown pooling {other:?}: expected cls, mean or sum"
            ))),
        }
    }
}

/// How BERT's dense layers store their weights.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TextQuantization {
    /// int8 where BERT runs on the CPU in f32, none elsewhere (a GPU, half precision): the
    /// commands' default. int8 keeps the generated benchmark's R@1 within half a point of f32
    /// with the same heads, and is 1.2–2.5× faster (README, "Serving under load").
    Auto,
    /// f32 (or `--precision`'s half type) weights.
    #[default]
    None,
    /// int8 weights per output channel, 8-bit activations per token: the CPU only, f32 precision.
    Int8,
}

impl TextQuantization {
    /// What `Auto` means for BERT on `device` computing in `dtype`; other values stay.
    pub fn resolve(self, device: &candle_core::Device, dtype: candle_core::DType) -> Self {
        match self {
            Self::Auto if device.is_cpu() && dtype == candle_core::DType::F32 => Self::Int8,
            Self::Auto => Self::None,
            other => other,
        }
    }
}

/// Overrides of what the manifest says.
#[derive(Debug, Clone)]
pub struct TextOptions {
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    pub max_length: Option<usize>,
    /// BERT's weights and activations (word vectors stay f32).
    pub precision: Precision,
    /// BERT's and CLIP text towers' dense layers (word vectors ignore it).
    pub quantization: TextQuantization,
    /// The model kit, for files a snapshot leaves to it (open_clip's BPE vocabulary).
    pub models_dir: std::path::PathBuf,
}

impl Default for TextOptions {
    fn default() -> Self {
        Self {
            pooling: None,
            normalize: None,
            max_length: None,
            precision: Precision::default(),
            quantization: TextQuantization::default(),
            models_dir: crate::kit::DEFAULT_MODELS_DIR.into(),
        }
    }
}

pub enum TextEncoder {
    Bert(Box<BertEncoder>),
    Static(StaticVectors),
    /// A CLIP-family text tower.
    Clip(Box<ClipText>),
    /// A text tower in an ONNX model directory (Immich's, transformers.js'), run by ONNX Runtime.
    Onnx(Box<OnnxText>),
}

impl TextEncoder {
    pub fn load(dir: &Path, options: &TextOptions, device: &Device) -> Result<Self, EncodeError> {
        let manifest = Manifest::load(dir)?;
        if let Some(kind) = LayoutKind::of(manifest.architecture) {
            crate::encode::onnx::runtime::use_kit(&options.models_dir);
            return Ok(Self::Onnx(Box::new(OnnxText::load(
                dir,
                &manifest.name,
                kind,
                crate::encode::onnx::threads(),
            )?)));
        }
        if let Some(family) = Family::of(manifest.architecture) {
            let cfg = crate::encode::clip::load_config(dir, family)?;
            return Ok(Self::Clip(Box::new(ClipText::load(
                dir,
                &manifest.name,
                &cfg,
                options,
                device,
            )?)));
        }
        if manifest.modality != Modality::Text {
            return Err(EncodeError::Config(format!(
                "{} is an image model, not a text model",
                dir.display()
            )));
        }
        let pooling = match options.pooling {
            Some(p) => p,
            None => manifest.pooling.as_deref().unwrap_or("mean").parse()?,
        };
        let normalize = options.normalize.unwrap_or(manifest.normalize);
        match manifest.architecture {
            Architecture::Bert => Ok(Self::Bert(Box::new(BertEncoder::load(
                dir, &manifest, pooling, normalize, options, device,
            )?))),
            Architecture::Static => Ok(Self::Static(StaticVectors::load(
                dir, &manifest, pooling, normalize, device,
            )?)),
            other => Err(EncodeError::Config(format!(
                "{other:?} is not a text architecture"
            ))),
        }
    }

    /// One row per text, `[texts.len(), dims]`. Empty, very long and non-ASCII texts are fine.
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor, EncodeError> {
        match self {
            Self::Bert(m) => m.encode(texts),
            Self::Static(m) => m.encode(texts),
            Self::Clip(m) => m.encode(texts),
            Self::Onnx(m) => Ok(m.encode(texts)?),
        }
    }

    /// Tokens each text becomes (what the encoder reads, after truncation): wordpieces with
    /// [CLS]/[SEP] for BERT, known words for word vectors, BPE or SentencePiece tokens with the
    /// start and end tokens (not SigLIP's padding) for the CLIP family.
    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>, EncodeError> {
        match self {
            Self::Bert(m) => m.count_tokens(texts),
            Self::Static(m) => Ok(m.count_tokens(texts)),
            Self::Clip(m) => m.count_tokens(texts),
            Self::Onnx(m) => Ok(m.count_tokens(texts)?),
        }
    }

    pub fn dims(&self) -> usize {
        match self {
            Self::Bert(m) => m.dims(),
            Self::Static(m) => m.dims(),
            Self::Clip(m) => m.dims(),
            Self::Onnx(m) => m.dims(),
        }
    }

    pub fn describe(&self) -> serde_json::Value {
        match self {
            Self::Bert(m) => m.describe(),
            Self::Static(m) => m.describe(),
            Self::Clip(m) => m.describe(),
            Self::Onnx(m) => m.describe(),
        }
    }

    /// The CLIP-family text tower, when this is one of our own.
    pub fn clip(&self) -> Option<&ClipText> {
        match self {
            Self::Clip(m) => Some(m),
            _ => None,
        }
    }

    /// The ONNX text tower, when this is one.
    pub fn onnx(&self) -> Option<&OnnxText> {
        match self {
            Self::Onnx(m) => Some(m),
            _ => None,
        }
    }

    /// The text tower of a dual encoder (its features share a space with an image tower's).
    pub fn is_joint_tower(&self) -> bool {
        matches!(self, Self::Clip(_) | Self::Onnx(_))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::TextQuantization;

    #[test]
    fn auto_is_int8_only_on_the_cpu_in_f32() {
        let cpu = Device::Cpu;
        assert_eq!(
            TextQuantization::Auto.resolve(&cpu, DType::F32),
            TextQuantization::Int8
        );
        assert_eq!(
            TextQuantization::Auto.resolve(&cpu, DType::F16),
            TextQuantization::None
        );
        assert_eq!(
            TextQuantization::None.resolve(&cpu, DType::F32),
            TextQuantization::None
        );
    }
}
