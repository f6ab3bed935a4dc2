//! ONNX Runtime itself: the shared library the kit unpacks from onnxruntime's PyPI wheel, loaded
//! once per process (`ort`'s `load-dynamic`), and sessions on it.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use ort::{
    environment::Environment,
    session::{builder::GraphOptimizationLevel, Session},
};

use super::OnnxError;

/// The kit's directory holding the library, and the library's file name in it.
pub const KIT_RUNTIME: &str = "onnxruntime";
pub const KIT_LIBRARY: &str = "libonnxruntime.so.1.32.0";
/// Where a user points us at a library of their own (ort's own variable).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Result<(Environment, PathBuf), OnnxError>> = OnceLock::new();
static KIT: OnceLock<PathBuf> = OnceLock::new();
static PREFERRED: OnceLock<Backend> = OnceLock::new();

/// What runs a directory that holds both our towers' safetensors and ONNX graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// xmodal's own towers (candle).
    #[default]
    Candle,
    /// ONNX Runtime on the directory's graphs.
    Onnx,
}

/// The process's choice (`--backend`), set once by the commands before any model loads, like
/// the kit ([`use_kit`]): manifests are recognised deep inside loaders that take no options.
pub fn prefer(backend: Backend) {
    let _ = PREFERRED.set(backend);
}

pub fn preferred() -> Backend {
    PREFERRED.get().copied().unwrap_or_default()
}

/// Which model kit holds the library, for the whole process: the commands call this with
/// `--models-dir` before loading anything (ONNX Runtime allows one environment per process, so
/// the library is a process-wide choice, not a per-model one). The first call wins.
pub fn use_kit(models_dir: &Path) {
    let _ = KIT.set(models_dir.to_path_buf());
}

/// The library a process uses: `ORT_DYLIB_PATH` when set, else the kit's (the one [`use_kit`]
/// named, else `$XMODAL_MODELS_DIR`'s or `models/`'s, as the commands default).
pub fn library_path() -> PathBuf {
    match std::env::var_os(LIBRARY_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => KIT
            .get()
            .cloned()
            .or_else(|| std::env::var_os("XMODAL_MODELS_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(crate::kit::DEFAULT_MODELS_DIR))
            .join(KIT_RUNTIME)
            .join(KIT_LIBRARY),
    }
}

/// Loads the library on first use.
fn environment() -> Result<&'static (Environment, PathBuf), OnnxError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = library_path();
            if !path.is_file() {
                return Err(OnnxError::RuntimeMissing { path });
            }
            let environment = ort::init_from(&path)
                .map_err(|e| OnnxError::Runtime {
                    path: path.clone(),
                    message: e.to_string(),
                })?
                .with_name("xmodal")
                .build()
                .map_err(|e| OnnxError::Runtime {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            Ok((environment, path))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The library this process loaded, if any (what `/ready` and `describe` report).
pub fn loaded_library() -> Option<&'static Path> {
    match ENVIRONMENT.get() {
        Some(Ok((_, path))) => Some(path),
        _ => None,
    }
}

/// A session on `model`, with every graph optimisation and `threads` intra-op threads (what the
/// encoders' own CPU kernels use, so the two backends compare on the same cores).
pub fn session(model: &Path, threads: usize) -> Result<Session, OnnxError> {
    let (environment, _) = environment()?;
    let graph = |e: ort::Error| OnnxError::Graph {
        path: model.to_path_buf(),
        message: e.to_string(),
    };
    if !model.is_file() {
        return Err(OnnxError::Graph {
            path: model.to_path_buf(),
            message: "missing".into(),
        });
    }
    Session::builder(environment)
        .map_err(graph)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| graph(e.into()))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| graph(e.into()))?
        .commit_from_file(model)
        .map_err(graph)
}
