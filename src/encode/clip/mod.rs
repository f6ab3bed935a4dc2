//! CLIP-family dual encoders: OpenAI's CLIP and LAION's in transformers' layout, open_clip's
//! ViT CLIPs in its hub layout, and SigLIP. A snapshot directory is one model with two towers;
//! the text tower is a [`crate::encode::TextEncoder`] and the vision tower an image backbone, and
//! both emit the projected embeddings (`get_text_features` / `get_image_features`), which share
//! one space with no head needed.
//!
//! Why our own towers rather than candle-transformers' `clip` / `siglip` modules (0.11.1):
//! - its CLIP hard-codes quick GELU in both towers (`Activation` has one variant), so LAION's
//!   CLIP checkpoints (`hidden_act: "gelu"`) and every open_clip model without `quick_gelu`
//!   would load and give wrong vectors; it has no open_clip vision tower and reads no
//!   `config.json` for CLIP;
//! - the towers here reuse what made our BERT 0.56× → 0.87× of PyTorch: padding packed out of
//!   the dense layers, Q/K/V as one product, attention in one kernel over all heads (causal for
//!   CLIP's text), vectorised activations, and the int8 dense layers (`--text-quantization
//!   int8`); `cargo bench --bench encoders` has the numbers against PyTorch;
//! - candle-transformers is one crate with every model in it, and its build would come on top
//!   of every cold CI build.
//!
//! The key names and the math follow transformers' `modeling_clip.py` / `modeling_siglip.py` and
//! open_clip's `transformer.py`; tests/it/clip_parity.rs holds them to those on weights the
//! reference code made.

pub mod clean;
pub mod config;
mod encoder;
mod spm;
mod text;
pub mod tokenizer;
mod vision;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

pub use config::{ClipConfig, Family};
pub use text::ClipText;
pub use vision::{zero_shot_probabilities, ClipVision};

use super::EncodeError;

/// The kit directory holding CLIP's BPE vocabulary (open_clip snapshots do not carry it).
pub const KIT_VOCABULARY: &str = "clip-bpe";
pub const KIT_VOCABULARY_FILE: &str = "bpe_simple_vocab_16e6.txt.gz";

/// A snapshot's configuration, with errors as the encoders report them.
pub fn load_config(dir: &Path, family: Family) -> Result<ClipConfig, EncodeError> {
    ClipConfig::load(dir, family).map_err(|e| EncodeError::Config(e.to_string()))
}

/// The snapshot's weights file, memory-mapped; tensors come out as `dtype` on `device`.
fn weights(
    dir: &Path,
    family: Family,
    model: &str,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>, EncodeError> {
    let path = dir.join(family.weights_file());
    if !path.exists() {
        return Err(EncodeError::Config(format!(
            "{}: missing {}",
            dir.display(),
            family.weights_file()
        )));
    }
    // SAFETY: memory-mapped read-only; nothing rewrites a snapshot in place.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, device) }.map_err(|source| {
        EncodeError::Weights {
            model: model.to_string(),
            source,
        }
    })
}
