//! Where pixels and words become vectors. Text encoders (BERT family, static word vectors, the
//! CLIP family's text towers) and image encoders (CNNs, the CLIP family's vision towers) load
//! from a model directory described by a [`crate::kit::Manifest`] and return one row per input:
//! the feature before any projection head (for the CLIP family: its projected embedding).

pub mod clip;
mod cpu;
pub mod image;
pub mod onnx;
mod precision;
pub mod text;
pub mod throughput;
pub(crate) mod transformer;

pub use image::{ImageEncoder, ImageError};
pub use precision::{feature_tag, Precision};
pub use text::{Pooling, TextEncoder, TextOptions, TextQuantization};

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Manifest(#[from] crate::kit::ManifestError),
    #[error("{0}")]
    Config(String),
    #[error("model {model}: {source}")]
    Weights {
        model: String,
        source: candle_core::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Onnx(#[from] onnx::OnnxError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A model directory's `model.safetensors`, memory-mapped; tensors come out as `dtype` on
/// `device`.
pub fn mmap_weights(
    dir: &std::path::Path,
    model: &str,
    dtype: candle_core::DType,
    device: &candle_core::Device,
) -> Result<candle_nn::VarBuilder<'static>, EncodeError> {
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(EncodeError::Config(format!(
            "{}: missing model.safetensors",
            dir.display()
        )));
    }
    // SAFETY: memory-mapped read-only; the kit never rewrites a model in place.
    unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[weights], dtype, device) }.map_err(
        |source| EncodeError::Weights {
            model: model.to_string(),
            source,
        },
    )
}

/// L2-normalise each row; an all-zero row stays zero instead of becoming NaN.
pub fn l2_normalize(x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(candle_core::D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}
