//! Bring-your-own features: import the precomputed image features researchers already have
//! (Karpathy's `vgg_feats.mat`, the VSE++/SCAN `_precomp` folders) as a feature set, with catalog
//! rows for their images and captions, so `train`, `eval` and `serve` use them unchanged.
//!
//! Everything is read and checked before anything is written; the features then go to the cache
//! under a temporary name and are renamed into place, and the catalog rows land in one
//! transaction. A failure at any step leaves neither.

pub mod karpathy;
mod matlab;
mod npy;
pub mod precomp;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use super::{
    cache::{CacheError, FeatureCache, ItemKey, ShardMeta},
    FeatureSetId, FeatureSpec,
};
use crate::{
    data::{catalog::NewImage, Catalog, CatalogError, ImageId, Split},
    kit::Modality,
};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: {rows} of {total} feature rows hold NaN or Inf (first at rows {first:?}); refusing to import them")]
    NonFinite {
        path: PathBuf,
        rows: usize,
        total: usize,
        first: Vec<usize>,
    },
    #[error("{} image ids already belong to another dataset (first: {:?}); import under another --dataset name", .0.len(), &.0[..(.0.len().min(5))])]
    Conflict(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

pub(crate) fn format_error(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A source file and its sha256, recorded in the feature set so it names what it came from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceFile {
    pub path: String,
    pub sha256: String,
}

pub fn source_file(path: &Path) -> Result<SourceFile, ImportError> {
    let mut file = std::fs::File::open(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(SourceFile {
        path: std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string(),
        sha256: format!("{:x}", h.finalize()),
    })
}

/// One imported image: its id, split, captions and row of features.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    pub id: ImageId,
    pub split: Option<Split>,
    pub captions: Vec<String>,
}

/// Everything an import read and checked, ready to be written.
#[derive(Debug)]
pub struct ImportPlan {
    /// `karpathy-mat` or `precomp`.
    pub format: &'static str,
    pub source: String,
    pub images: Vec<ImportedImage>,
    /// Row-major `[images, dims]`: row `i` belongs to `images[i]`.
    pub features: Vec<f32>,
    pub dims: usize,
    pub files: Vec<SourceFile>,
    /// Facts worth telling the user (a repeated-row layout collapsed, splits not found, …).
    pub notes: Vec<String>,
}

/// Reject rows holding NaN or Inf: one bad row poisons every loss and norm it touches.
pub(crate) fn check_finite(path: &Path, features: &[f32], dims: usize) -> Result<(), ImportError> {
    let bad: Vec<usize> = features
        .chunks(dims.max(1))
        .enumerate()
        .filter(|(_, row)| row.iter().any(|v| !v.is_finite()))
        .map(|(i, _)| i)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(ImportError::NonFinite {
        path: path.to_path_buf(),
        rows: bad.len(),
        total: features.len() / dims.max(1),
        first: bad.into_iter().take(5).collect(),
    })
}

/// What an import produced.
#[derive(Debug)]
pub struct ImportSummary {
    pub feature_set: FeatureSetId,
    pub spec: FeatureSpec,
    pub inserted: usize,
    pub existing: usize,
    pub captions: usize,
    pub per_split: Vec<(Option<Split>, usize)>,
}

const SHARD_ROWS: usize = 4096;

impl ImportPlan {
    /// The feature set this plan becomes: named by the user's encoder name, identified by the
    /// source files' hashes and the dataset the rows are keyed under.
    pub fn spec(&self, encoder: &str, dataset: &str) -> FeatureSpec {
        let mut h = Sha256::new();
        for f in &self.files {
            h.update(f.sha256.as_bytes());
        }
        FeatureSpec {
            encoder: encoder.to_string(),
            modality: Modality::Image,
            dims: self.dims,
            manifest_sha256: format!("{:x}", h.finalize()),
            options: serde_json::json!({
                "imported": {
                    "format": self.format,
                    "dataset": dataset,
                    "files": self.files,
                    "rows": self.images.len(),
                }
            }),
        }
    }

    /// Write the feature set and the catalog rows; all or nothing.
    pub async fn commit(
        self,
        catalog: &Catalog,
        features_root: &Path,
        encoder: &str,
        dataset: &str,
    ) -> Result<ImportSummary, ImportError> {
        let spec = self.spec(encoder, dataset);
        let id = spec.id();
        let final_dir = features_root.join(&id.0);
        let staging_root = features_root.join(format!(".import-{}-{}", id.0, std::process::id()));
        let _ = std::fs::remove_dir_all(&staging_root);
        let staged = FeatureCache::new(&staging_root, &id);
        let written = write_features(&staged, &spec, &self);
        let placed = written.and_then(|()| {
            // a previous import of the same files is replaced by this identical one
            if final_dir.exists() {
                std::fs::remove_dir_all(&final_dir).map_err(|source| io(&final_dir, source))?;
            }
            std::fs::rename(staged.dir(), &final_dir).map_err(|source| io(&final_dir, source))
        });
        let _ = std::fs::remove_dir_all(&staging_root);
        placed?;

        let rows: Vec<NewImage> = self
            .images
            .iter()
            .map(|img| NewImage {
                metadata: Default::default(),
                id: img.id.clone(),
                location: None,
                width: None,
                height: None,
                sha256: None,
                split: img.split,
                captions: img.captions.clone(),
            })
            .collect();
        let outcome = catalog
            .import_images((dataset, self.format, &self.source), &rows, &spec.row())
            .await;
        let outcome = match outcome {
            Ok(o) if o.conflicts.is_empty() => o,
            Ok(o) => {
                let _ = std::fs::remove_dir_all(&final_dir);
                return Err(ImportError::Conflict(o.conflicts));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&final_dir);
                return Err(e.into());
            }
        };
        let mut per_split: Vec<(Option<Split>, usize)> = Vec::new();
        for img in &self.images {
            match per_split.iter_mut().find(|(s, _)| *s == img.split) {
                Some((_, n)) => *n += 1,
                None => per_split.push((img.split, 1)),
            }
        }
        Ok(ImportSummary {
            feature_set: id,
            captions: self.images.iter().map(|i| i.captions.len()).sum(),
            spec,
            inserted: outcome.inserted,
            existing: outcome.existing,
            per_split,
        })
    }
}

fn io(path: &Path, source: std::io::Error) -> ImportError {
    ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_features(
    cache: &FeatureCache,
    spec: &FeatureSpec,
    plan: &ImportPlan,
) -> Result<(), ImportError> {
    cache.prepare(spec)?;
    let content = &spec.manifest_sha256;
    for (shard, rows) in plan.images.chunks(SHARD_ROWS).enumerate() {
        let start = shard * SHARD_ROWS;
        let data = plan.features[start * plan.dims..(start + rows.len()) * plan.dims].to_vec();
        let tensor = Tensor::from_vec(data, (rows.len(), plan.dims), &Device::Cpu)?;
        let meta = ShardMeta {
            items: rows
                .iter()
                .enumerate()
                .map(|(i, img)| ItemKey {
                    key: img.id.to_string(),
                    content: format!("{content}#{}", start + i),
                })
                .collect(),
            failed: Default::default(),
        };
        cache.write_shard(shard, &tensor, &meta)?;
    }
    Ok(())
}

/// The spec of an imported image feature set, by id or by the encoder name given at import.
pub fn find_imported(features_root: &Path, name: &str) -> Result<FeatureSpec, ImportError> {
    let entries = std::fs::read_dir(features_root).map_err(|_| {
        ImportError::NotFound(format!(
            "no imported image features named {name:?}: {} does not exist (run `xmodal import`)",
            features_root.display()
        ))
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("spec.json")) else {
            continue;
        };
        let Ok(spec) = serde_json::from_str::<FeatureSpec>(&text) else {
            continue;
        };
        if spec.options.get("imported").is_some() && (spec.id().0 == name || spec.encoder == name) {
            found.push(spec);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ImportError::NotFound(format!(
            "no imported image feature set named {name:?} under {} (run `xmodal import`)",
            features_root.display()
        ))),
        n => Err(ImportError::NotFound(format!(
            "{n} imported feature sets are named {name:?} ({}); pass one id",
            found
                .iter()
                .map(|s| s.id().0)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
