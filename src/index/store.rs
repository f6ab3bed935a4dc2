//! Index files: written to a temporary directory, fsynced, then renamed over the old one, with a
//! header (format, dims, metric, counts, the projector it was built for) and a sha256 per file.
//! A file that fails any check is reported, never used; the caller rebuilds from the catalog.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::RwLock,
};

use hnsw_rs::{api::AnnT, hnswio::HnswIo, prelude::DistDot};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ann::Ann, IndexParams, Inner, VectorIndex};

pub const FORMAT: u32 = 1;
const GRAPH_BASENAME: &str = "graph";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no index at {0}")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("index at {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("index at {path} was built for {found:?}, not {expected:?}")]
    Stale {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    dims: usize,
    metric: String,
    kind: String,
    count: usize,
    live: usize,
    /// What the vectors are: the projector and feature sets they came from.
    source: String,
    params: IndexParams,
    files: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Keys {
    keys: Vec<String>,
    dead: Vec<usize>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sha256_file(path: &Path) -> Result<String, StoreError> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    std::io::copy(&mut f, &mut h).map_err(io(path))?;
    Ok(format!("{:x}", h.finalize()))
}

impl VectorIndex {
    /// Persist atomically to `dir`.
    pub fn save(&self, dir: &Path, source: &str) -> Result<(), StoreError> {
        let inner = self.inner.read().expect("index lock");
        let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let kind = match &inner.ann {
            Ann::Exact { vectors, .. } => {
                let bytes: Vec<u8> = vectors.iter().flat_map(|x| x.to_le_bytes()).collect();
                let path = tmp.join("vectors.f32");
                std::fs::write(&path, bytes).map_err(io(&path))?;
                "exact"
            }
            Ann::Graph(g) => {
                g.file_dump(&tmp, GRAPH_BASENAME)
                    .map_err(|e| StoreError::Corrupt {
                        path: tmp.clone(),
                        message: e.to_string(),
                    })?;
                "graph"
            }
        };
        let keys = Keys {
            keys: inner.keys.clone(),
            dead: inner.dead.iter().copied().collect(),
        };
        let path = tmp.join("keys.json");
        std::fs::write(&path, serde_json::to_vec(&keys).expect("keys serialise"))
            .map_err(io(&path))?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let p = entry.path();
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(io(&p))?;
            files.insert(
                entry.file_name().to_string_lossy().into_owned(),
                sha256_file(&p)?,
            );
        }
        let header = Header {
            format: FORMAT,
            dims: self.dims,
            metric: "cosine".into(),
            kind: kind.into(),
            count: inner.keys.len(),
            live: inner.live.len(),
            source: source.to_string(),
            params: self.params,
            files,
        };
        let path = tmp.join("header.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&header).expect("header serialises"),
        )
        .map_err(io(&path))?;
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io(&path))?;
        // swap: old → .old, tmp → dir, drop .old
        let old = dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
        let _ = std::fs::remove_dir_all(&old);
        if let Some(parent) = dir.parent() {
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Load from `dir` if it is intact and was built for `source`.
    pub fn load(dir: &Path, source: &str) -> Result<Self, StoreError> {
        let header_path = dir.join("header.json");
        if !header_path.exists() {
            return Err(StoreError::Missing(dir.to_path_buf()));
        }
        let corrupt = |message: String| StoreError::Corrupt {
            path: dir.to_path_buf(),
            message,
        };
        let header: Header =
            serde_json::from_slice(&std::fs::read(&header_path).map_err(io(&header_path))?)
                .map_err(|e| corrupt(e.to_string()))?;
        if header.format != FORMAT || header.metric != "cosine" {
            return Err(corrupt(format!(
                "format {} / metric {} not supported",
                header.format, header.metric
            )));
        }
        if header.source != source {
            return Err(StoreError::Stale {
                path: dir.to_path_buf(),
                expected: source.to_string(),
                found: header.source,
            });
        }
        for (name, sha) in &header.files {
            if &sha256_file(&dir.join(name))? != sha {
                return Err(corrupt(format!("{name} does not match its checksum")));
            }
        }
        header.params.validate().map_err(corrupt)?;
        let keys: Keys =
            serde_json::from_slice(&std::fs::read(dir.join("keys.json")).map_err(io(dir))?)
                .map_err(|e| corrupt(e.to_string()))?;
        let ann = match header.kind.as_str() {
            "exact" => {
                let bytes = std::fs::read(dir.join("vectors.f32")).map_err(io(dir))?;
                let vectors: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Ann::Exact {
                    dims: header.dims,
                    vectors,
                }
            }
            "graph" => {
                // hnsw_rs ties a reloaded graph's lifetime to its loader; the loader is a few
                // paths and options, leaked once per load so the graph can live in the index.
                let loader: &'static mut HnswIo =
                    Box::leak(Box::new(HnswIo::new(dir, GRAPH_BASENAME)));
                let graph = loader
                    .load_hnsw::<f32, DistDot>()
                    .map_err(|e| corrupt(e.to_string()))?;
                Ann::Graph(Box::new(graph))
            }
            other => return Err(corrupt(format!("unknown index kind {other}"))),
        };
        if ann.count() != header.count || keys.keys.len() != header.count {
            return Err(corrupt(format!(
                "{} vectors and {} keys for a count of {}",
                ann.count(),
                keys.keys.len(),
                header.count
            )));
        }
        let dead: HashSet<usize> = keys.dead.into_iter().collect();
        let live: HashMap<String, usize> = keys
            .keys
            .iter()
            .enumerate()
            .filter(|(i, _)| !dead.contains(i))
            .map(|(i, k)| (k.clone(), i))
            .collect();
        if live.len() != header.live {
            return Err(corrupt(format!(
                "{} live keys, header says {}",
                live.len(),
                header.live
            )));
        }
        Ok(Self {
            dims: header.dims,
            params: header.params,
            inner: RwLock::new(Inner {
                ann,
                keys: keys.keys,
                live,
                dead,
            }),
        })
    }
}
