//! Index files: written to a temporary directory, fsynced, then renamed over the old one (a
//! directory swap: the files inside are written with `fsutil::write_synced`), with a
//! header (format, dims, metric, counts, the projector it was built for) and a sha256 per file.
//! A file that fails any check is reported, never used; the caller rebuilds from the catalog.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::RwLock,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::{sync_dir, write_synced};

use super::{
    ann::Ann,
    hnsw::{Entry, Hnsw, Parts},
    IndexParams, Inner, VectorIndex,
};

/// 4: our own HNSW with f32 vectors (1 held hnsw_rs dumps, 2 f32 vectors, 3 f16 vectors; all
/// are rebuilt from the catalog).
pub const FORMAT: u32 = 4;
const VECTORS: &str = "vectors.f32";
const GRAPH: &str = "graph.u32";
const GRAPH_MAGIC: u32 = u32::from_le_bytes(*b"XMHG");

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
                write_words(&tmp.join(VECTORS), vectors.iter().map(|x| x.to_bits()))?;
                "exact"
            }
            Ann::Graph(g) => {
                write_words(&tmp.join(VECTORS), g.vectors().iter().map(|x| x.to_bits()))?;
                write_words(&tmp.join(GRAPH), graph_words(&g.to_parts()))?;
                "graph"
            }
        };
        let keys = Keys {
            keys: inner.keys.clone(),
            dead: inner.dead.iter().copied().collect(),
        };
        let path = tmp.join("keys.json");
        write_synced(&path, &serde_json::to_vec(&keys).expect("keys serialise"))
            .map_err(io(&path))?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let p = entry.path();
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
        write_synced(
            &path,
            &serde_json::to_vec_pretty(&header).expect("header serialises"),
        )
        .map_err(io(&path))?;
        sync_dir(&tmp).map_err(io(&tmp))?;
        // swap: old → .old, tmp → dir, drop .old
        let old = dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
        let _ = std::fs::remove_dir_all(&old);
        if let Some(parent) = dir.parent() {
            let _ = sync_dir(parent);
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
        if header.format != FORMAT {
            // an index from another version is derived data like any other: rebuild it
            return Err(StoreError::Stale {
                path: dir.to_path_buf(),
                expected: format!("index format {FORMAT}"),
                found: format!("index format {}", header.format),
            });
        }
        if header.metric != "cosine" {
            return Err(corrupt(format!("metric {} not supported", header.metric)));
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
        let vectors = || -> Result<Vec<f32>, StoreError> {
            Ok(read_words(&dir.join(VECTORS))?
                .into_iter()
                .map(f32::from_bits)
                .collect())
        };
        let ann = match header.kind.as_str() {
            "exact" => Ann::Exact {
                dims: header.dims,
                vectors: vectors()?,
            },
            "graph" => {
                let vectors = vectors()?;
                let parts = graph_parts(&read_words(&dir.join(GRAPH))?).map_err(&corrupt)?;
                Ann::Graph(Box::new(
                    Hnsw::from_parts(header.dims, vectors, parts).map_err(&corrupt)?,
                ))
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

/// Little-endian u32 words, streamed (the vector arena can be most of the process's memory).
fn write_words(path: &Path, words: impl IntoIterator<Item = u32>) -> Result<(), StoreError> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    for w in words {
        out.write_all(&w.to_le_bytes()).map_err(io(path))?;
    }
    out.into_inner()
        .map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(io(path))
}

fn read_words(path: &Path) -> Result<Vec<u32>, StoreError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len() as usize;
    if !len.is_multiple_of(4) {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            message: format!("{len} bytes is not a whole number of 4-byte words"),
        });
    }
    let mut words = Vec::with_capacity(len / 4);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let got = file.read(&mut buf).map_err(io(path))?;
        if got == 0 {
            break;
        }
        // reads of a regular file return whole 4-byte multiples except possibly at the end,
        // which the length check above rules out; a short read mid-word is re-read below
        let whole = got - got % 4;
        words.extend(
            buf[..whole]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        if whole != got {
            let mut rest = [0u8; 4];
            rest[..got - whole].copy_from_slice(&buf[whole..got]);
            file.read_exact(&mut rest[got - whole..])
                .map_err(io(path))?;
            words.push(u32::from_le_bytes(rest));
        }
    }
    Ok(words)
}

/// The graph file: magic, m, ef_construction, node count, entry node and level (u32::MAX when
/// empty), one level word per node, the layer-0 lists, then each node's upper-layer lists.
fn graph_words(p: &Parts) -> Vec<u32> {
    let (node, level) = p
        .entry
        .map_or((u32::MAX, u32::MAX), |e| (e.node, e.level as u32));
    let mut words = vec![
        GRAPH_MAGIC,
        p.m as u32,
        p.ef_construction as u32,
        p.levels.len() as u32,
        node,
        level,
    ];
    words.extend(p.levels.iter().map(|&l| l as u32));
    words.extend_from_slice(&p.layer0);
    for u in &p.upper {
        words.extend_from_slice(u);
    }
    words
}

fn graph_parts(words: &[u32]) -> Result<Parts, String> {
    let short = || "graph file is truncated".to_string();
    let head = words.get(..6).ok_or_else(short)?;
    if head[0] != GRAPH_MAGIC {
        return Err("graph file has the wrong magic number".into());
    }
    let (m, ef_construction, n) = (head[1] as usize, head[2] as usize, head[3] as usize);
    if !(2..=256).contains(&m) {
        return Err(format!("graph file has m {m}"));
    }
    let entry = (head[4] != u32::MAX).then_some(Entry {
        node: head[4],
        level: head[5] as usize,
    });
    let mut at = 6;
    let mut take = |count: usize| -> Result<&[u32], String> {
        let s = words.get(at..at + count).ok_or_else(short)?;
        at += count;
        Ok(s)
    };
    let levels: Vec<u8> = take(n)?
        .iter()
        .map(|&l| u8::try_from(l).map_err(|_| format!("node level {l}")))
        .collect::<Result<_, _>>()?;
    let layer0 = take(n * (2 * m + 1))?.to_vec();
    let mut upper = Vec::with_capacity(n);
    for &l in &levels {
        upper.push(take(l as usize * (m + 1))?.to_vec());
    }
    if at != words.len() {
        return Err("graph file has trailing data".into());
    }
    Ok(Parts {
        m,
        ef_construction,
        levels,
        layer0,
        upper,
        entry,
    })
}
