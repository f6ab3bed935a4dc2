//! Cached encoder features: what `extract` computes once so training, evaluation and indexing
//! never re-run an encoder. A feature set is one encoder (by the hash of its weights and options)
//! applied to one modality; its features live in safetensors shards under
//! `DATA/features/<feature-set-id>/`.

pub mod backfill;
pub mod cache;
pub mod encoders;
pub mod extract;
pub mod import;
pub mod paired;

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    encode::{ImageEncoder, TextEncoder},
    kit::{Manifest, Modality},
};

/// Identifies a feature set: a short hash of the encoder's identity and options.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeatureSetId(pub String);

impl std::fmt::Display for FeatureSetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that makes two extractions comparable; hashed into the [`FeatureSetId`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub encoder: String,
    pub modality: Modality,
    pub dims: usize,
    /// sha256 over the encoder's weight and config files.
    pub manifest_sha256: String,
    /// Encoder options that change outputs (pooling, normalisation, max length, …) as JSON.
    pub options: serde_json::Value,
}

impl FeatureSpec {
    pub fn id(&self) -> FeatureSetId {
        // Hash a canonical text: a float that started as f32 prints differently before and after
        // one trip through JSON, and a spec read back from disk must keep its id.
        let value: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(self).expect("spec serialises"))
                .expect("valid JSON");
        let bytes = serde_json::to_vec(&value).expect("spec serialises");
        FeatureSetId(format!("{:x}", Sha256::digest(bytes))[..16].to_string())
    }
}

/// Options that change only how precisely an encoder computes, not what: `--precision` (f16
/// cosine to f32 ≥ 0.9999, bf16 ≥ 0.99) and `--text-quantization` (int8 ≥ 0.99; the generated
/// benchmark's R@1 within a point with the same heads). README has the measurements.
const NUMERICS: [&str; 2] = ["precision", "quantization"];

impl FeatureSpec {
    /// The id without [`NUMERICS`]: feature sets with the same function id are one function
    /// computed to different precision, so heads trained on one run on the other (their cached
    /// features and indexes stay apart, under [`FeatureSpec::id`]).
    pub fn function_id(&self) -> FeatureSetId {
        let mut exact = self.clone();
        if let Some(options) = exact.options.as_object_mut() {
            for key in NUMERICS {
                options.remove(key);
            }
        }
        exact.id()
    }
}

/// sha256 identifying a model directory's contents: the kit's recorded file hashes when present,
/// else a hash of the files themselves (for directories users bring).
pub fn model_fingerprint(dir: &Path, manifest: &Manifest) -> std::io::Result<String> {
    let mut h = Sha256::new();
    if !manifest.files.is_empty() {
        for (name, sha) in &manifest.files {
            h.update(name.as_bytes());
            h.update(sha.as_bytes());
        }
    } else {
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            h.update(
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
                    .as_bytes(),
            );
            let mut file = std::fs::File::open(&f)?;
            std::io::copy(&mut file, &mut h)?;
        }
        // ONNX layouts keep their graphs and tokenizers in subfolders (empty for other models,
        // so their ids stay as they were)
        for rel in crate::encode::onnx::layout::fingerprint_files(manifest.architecture, dir) {
            h.update(rel.to_string_lossy().as_bytes());
            let mut file = std::fs::File::open(dir.join(&rel))?;
            std::io::copy(&mut file, &mut h)?;
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// What shapes an image encoder's output besides its weights. f32 adds nothing, so feature sets
/// extracted before `--precision` existed keep their ids.
fn image_options(encoder: &ImageEncoder) -> serde_json::Value {
    let mut options = serde_json::json!({"architecture": encoder.manifest.architecture, "preprocess": encoder.preprocess()});
    if encoder.backend() != "candle" {
        options["backend"] = encoder.backend().into();
    }
    if let Some(tag) = crate::encode::feature_tag(encoder.dtype()) {
        options["precision"] = tag.into();
    }
    options
}

impl FeatureSpec {
    pub fn for_image(dir: &Path, encoder: &ImageEncoder) -> std::io::Result<Self> {
        Ok(Self {
            encoder: encoder.manifest.name.clone(),
            modality: Modality::Image,
            dims: encoder.dims(),
            manifest_sha256: model_fingerprint(dir, &encoder.manifest)?,
            options: image_options(encoder),
        })
    }

    pub fn for_text(dir: &Path, encoder: &TextEncoder) -> std::io::Result<Self> {
        let manifest = Manifest::load(dir).map_err(std::io::Error::other)?;
        Ok(Self {
            encoder: manifest.name.clone(),
            modality: Modality::Text,
            dims: encoder.dims(),
            manifest_sha256: model_fingerprint(dir, &manifest)?,
            options: encoder.describe(),
        })
    }

    /// The catalog's record of this feature set.
    pub fn row(&self) -> crate::data::catalog::FeatureSetRow {
        crate::data::catalog::FeatureSetRow {
            id: self.id().0,
            encoder: self.encoder.clone(),
            modality: match self.modality {
                Modality::Image => "image",
                _ => "text",
            }
            .into(),
            manifest_sha256: self.manifest_sha256.clone(),
            dims: self.dims,
            options: self.options.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_set_id_survives_a_json_round_trip() {
        let spec = FeatureSpec {
            encoder: "e".into(),
            modality: Modality::Image,
            dims: 3,
            manifest_sha256: "x".into(),
            options: serde_json::json!({"mean": [127f32 / 255.0], "std": 0.1f32}),
        };
        let back: FeatureSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(spec.id(), back.id());
    }

    #[test]
    fn precision_and_quantization_change_the_id_but_not_the_function() {
        let spec = |options| FeatureSpec {
            encoder: "minilm".into(),
            modality: Modality::Text,
            dims: 384,
            manifest_sha256: "x".into(),
            options,
        };
        let f32 = spec(serde_json::json!({"pooling": "mean"}));
        let int8 = spec(serde_json::json!({"pooling": "mean", "quantization": "int8"}));
        let f16 = spec(serde_json::json!({"pooling": "mean", "precision": "f16"}));
        let cls = spec(serde_json::json!({"pooling": "cls", "quantization": "int8"}));
        assert_ne!(f32.id(), int8.id());
        assert_ne!(f32.id(), f16.id());
        assert_eq!(f32.function_id(), int8.function_id());
        assert_eq!(f32.function_id(), f16.function_id());
        assert_ne!(f32.function_id(), cls.function_id());
    }
}
