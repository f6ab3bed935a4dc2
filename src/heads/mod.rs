//! Projection heads: image and text features into one space where a caption and its image score
//! high. Trained MLP pairs (`train`) or the zero-shot ConSE head; both answer the same questions.
//! `open` turns a `--heads` value into a projector.

pub mod class_cache;
pub mod conse;
pub mod mlp;
mod open;

use std::{collections::HashMap, path::Path};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use conse::ConSE;
pub use mlp::{Mlp, MlpConfig};
pub use open::{open, OpenedHeads, ZERO_SHOT};

use crate::features::FeatureSpec;

/// How two embeddings are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Dot product of L2-normalised embeddings.
    Cosine,
    /// Negative squared Euclidean distance (the original triplet loss's geometry).
    NegSquaredL2,
}

/// What a trained heads directory records (`heads.json`, beside `heads.safetensors`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadsConfig {
    pub format: u32,
    pub name: String,
    pub loss: String,
    pub direction: String,
    pub score: Score,
    pub image: MlpConfig,
    pub text: MlpConfig,
    /// The encoders (and options) whose features these heads expect.
    pub image_features: FeatureSpec,
    pub text_features: FeatureSpec,
    /// Training facts: epochs, best epoch, validation R-sum, seed, …
    #[serde(default)]
    pub training: serde_json::Value,
}

pub const HEADS_CONFIG: &str = "heads.json";
pub const HEADS_WEIGHTS: &str = "heads.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid heads config: {message}")]
    Config {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("heads expect {what} features from {expected} (feature set {expected_id}), but {actual} (feature set {actual_id}) is loaded")]
    Mismatch {
        what: &'static str,
        expected: String,
        expected_id: String,
        actual: String,
        actual_id: String,
    },
    #[error("the image model has no ImageNet classifier, which the zero-shot head needs (pass trained --heads)")]
    NoClassifier,
    #[error("image features {0} were imported, without the image encoder the zero-shot head needs (pass trained --heads, or drop --image-features)")]
    ImportedFeatures(String),
    #[error("building the zero-shot head: {0}")]
    ZeroShot(Box<crate::encode::EncodeError>),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// A trained image head + text head.
pub struct TrainedHeads {
    pub config: HeadsConfig,
    pub image: Mlp,
    pub text: Mlp,
}

impl TrainedHeads {
    pub fn save(&self, dir: &Path) -> Result<(), HeadsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HeadsError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut tensors = self.image.tensors("image");
        tensors.extend(self.text.tensors("text"));
        // weights first, config last: a directory whose config is readable has its weights
        let weights = dir.join(HEADS_WEIGHTS);
        let bytes = safetensors::serialize(&tensors, None).map_err(|e| HeadsError::Config {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&weights, &bytes).map_err(io(&weights))?;
        let config = dir.join(HEADS_CONFIG);
        let text = serde_json::to_string_pretty(&self.config).expect("config serialises") + "\n";
        crate::fsutil::write_atomic(&config, text.as_bytes()).map_err(io(&config))?;
        Ok(())
    }

    pub fn load(dir: &Path, device: &Device) -> Result<Self, HeadsError> {
        let path = dir.join(HEADS_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|source| HeadsError::Io {
            path: path.clone(),
            source,
        })?;
        let config: HeadsConfig = serde_json::from_str(&text).map_err(|e| HeadsError::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load(dir.join(HEADS_WEIGHTS), device)?;
        let image = Mlp::from_tensors(config.image.clone(), &tensors, "image")?;
        let text = Mlp::from_tensors(config.text.clone(), &tensors, "text")?;
        Ok(Self {
            config,
            image,
            text,
        })
    }

    /// Refuse to run on features from other encoders than the heads were trained on. The same
    /// encoder in another precision or quantization is the same function
    /// ([`FeatureSpec::function_id`]), within the bounds README measures.
    pub fn check_features(
        &self,
        image: &FeatureSpec,
        text: &FeatureSpec,
    ) -> Result<(), HeadsError> {
        for (what, expected, actual) in [
            ("image", &self.config.image_features, image),
            ("text", &self.config.text_features, text),
        ] {
            if expected.function_id() != actual.function_id() {
                return Err(HeadsError::Mismatch {
                    what,
                    expected: expected.encoder.clone(),
                    expected_id: expected.id().0,
                    actual: actual.encoder.clone(),
                    actual_id: actual.id().0,
                });
            }
        }
        Ok(())
    }
}

/// Whatever maps features into the shared space.
pub enum Projector {
    Trained(Box<TrainedHeads>),
    ZeroShot(Box<ConSE>),
    /// A CLIP-family model's own space: its projected features, L2-normalised, are already
    /// comparable across text and images (no head).
    Joint,
}

impl Projector {
    pub fn images(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Trained(h) => h.image.forward(features, None),
            Self::ZeroShot(z) => z.images(features),
            Self::Joint => crate::encode::l2_normalize(features),
        }
    }

    pub fn texts(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Trained(h) => h.text.forward(features, None),
            Self::ZeroShot(z) => z.texts(features),
            Self::Joint => crate::encode::l2_normalize(features),
        }
    }

    pub fn score(&self) -> Score {
        match self {
            Self::Trained(h) => h.config.score,
            Self::ZeroShot(_) | Self::Joint => Score::Cosine,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Self::Trained(h) => h.config.name.clone(),
            Self::ZeroShot(z) => format!("zero-shot (ConSE, top {})", z.top()),
            Self::Joint => "zero-shot (the model's own joint space)".into(),
        }
    }
}

/// Scores of every (image, text) pair: `[images, texts]`.
pub fn similarity(images: &Tensor, texts: &Tensor, score: Score) -> candle_core::Result<Tensor> {
    let dot = images.matmul(&texts.t()?)?;
    match score {
        Score::Cosine => Ok(dot),
        Score::NegSquaredL2 => {
            // -(|a|² - 2a·b + |b|²)
            let a = images.sqr()?.sum_keepdim(1)?;
            let b = texts.sqr()?.sum_keepdim(1)?.t()?;
            (dot * 2.0)?.broadcast_sub(&a)?.broadcast_sub(&b)
        }
    }
}
