//! Feature shards on disk. Each shard is a safetensors file holding `features` `[n, dims]` and,
//! in its metadata, the item keys and content hashes it covers (and items that failed). Shards are
//! written to a temporary name, fsynced and renamed, so a killed extract leaves only whole shards.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{FeatureSetId, FeatureSpec};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("feature set {0} has not been extracted (run `xmodal extract`)")]
    Missing(FeatureSetId),
}

/// One item to encode: a stable key and a hash of its content (image bytes, caption text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemKey {
    pub key: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub items: Vec<ItemKey>,
    /// key → error, for items that could not be encoded (they have no row).
    pub failed: HashMap<String, String>,
}

pub struct FeatureCache {
    dir: PathBuf,
}

/// All features of a set in memory: `keys[i]` is row `i` of `matrix`.
pub struct FeatureMatrix {
    pub keys: Vec<String>,
    pub matrix: Tensor,
    pub failed: HashMap<String, String>,
}

impl FeatureMatrix {
    pub fn index(&self) -> HashMap<&str, usize> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FeatureCache {
    pub fn new(root: &Path, id: &FeatureSetId) -> Self {
        Self {
            dir: root.join(&id.0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn shard_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("shard-{index:05}.safetensors"))
    }

    /// Create the directory, record the spec, and remove leftovers of interrupted writes.
    pub fn prepare(&self, spec: &FeatureSpec) -> Result<(), CacheError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let meta = self.dir.join("spec.json");
        crate::fsutil::write_atomic(
            &meta,
            serde_json::to_string_pretty(spec)
                .expect("spec serialises")
                .as_bytes(),
        )
        .map_err(io(&meta))?;
        for entry in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            // temporaries of writes a kill interrupted (and of older versions' `.tmp` names)
            if name.starts_with(crate::fsutil::TEMP_PREFIX) || name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    pub fn spec(&self) -> Result<FeatureSpec, CacheError> {
        let path = self.dir.join("spec.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|e| CacheError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// A shard's metadata if it exists and is readable.
    pub fn shard_meta(&self, index: usize) -> Option<ShardMeta> {
        let path = self.shard_path(index);
        let bytes = std::fs::read(&path).ok()?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let text = meta.metadata().as_ref()?.get("xmodal")?;
        serde_json::from_str(text).ok()
    }

    /// Atomically write shard `index`: `features` rows correspond to `meta.items` minus failures.
    pub fn write_shard(
        &self,
        index: usize,
        features: &Tensor,
        meta: &ShardMeta,
    ) -> Result<(), CacheError> {
        let path = self.shard_path(index);
        let info: HashMap<String, String> = [(
            "xmodal".to_string(),
            serde_json::to_string(meta).expect("meta serialises"),
        )]
        .into();
        let corrupt = |message: String| CacheError::Corrupt {
            path: path.clone(),
            message,
        };
        let data = features
            .contiguous()
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .map_err(|e| corrupt(e.to_string()))?;
        let bytes = safetensors::serialize([("features", &data)], Some(info))
            .map_err(|e| corrupt(e.to_string()))?;
        crate::fsutil::write_atomic(&path, &bytes).map_err(io(&path))
    }

    /// Remove shards numbered `from` and above (the item list shrank).
    pub fn truncate(&self, from: usize) {
        let mut i = from;
        while self.shard_path(i).exists() {
            let _ = std::fs::remove_file(self.shard_path(i));
            i += 1;
        }
    }

    /// Load every shard, in order.
    pub fn load(&self, device: &Device) -> Result<FeatureMatrix, CacheError> {
        let mut keys = Vec::new();
        let mut parts = Vec::new();
        let mut failed = HashMap::new();
        let mut i = 0;
        while self.shard_path(i).exists() {
            let path = self.shard_path(i);
            let meta = self.shard_meta(i).ok_or_else(|| CacheError::Corrupt {
                path: path.clone(),
                message: "unreadable shard".into(),
            })?;
            let tensors =
                candle_core::safetensors::load(&path, device).map_err(|e| CacheError::Corrupt {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            let t = tensors.get("features").ok_or_else(|| CacheError::Corrupt {
                path: path.clone(),
                message: "no features tensor".into(),
            })?;
            let ok: Vec<String> = meta
                .items
                .iter()
                .filter(|k| !meta.failed.contains_key(&k.key))
                .map(|k| k.key.clone())
                .collect();
            if t.dim(0).ok() != Some(ok.len()) {
                return Err(CacheError::Corrupt {
                    path,
                    message: format!("{} rows for {} items", t.dim(0).unwrap_or(0), ok.len()),
                });
            }
            keys.extend(ok);
            failed.extend(meta.failed);
            parts.push(t.clone());
            i += 1;
        }
        if i == 0 {
            return Err(CacheError::Missing(FeatureSetId(
                self.dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )));
        }
        let matrix = Tensor::cat(&parts, 0).map_err(|e| CacheError::Corrupt {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        Ok(FeatureMatrix {
            keys,
            matrix,
            failed,
        })
    }
}
