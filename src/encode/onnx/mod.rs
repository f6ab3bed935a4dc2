//! ONNX model directories through ONNX Runtime: the files users of Immich and transformers.js
//! already have, run by the engine those peers run, so a model loads without conversion.
//!
//! Why ONNX Runtime through the `ort` crate rather than our own graph interpreter: an ONNX graph
//! may use any of ~200 operators in any arrangement (open_clip's towers alone export to several
//! hundred nodes, each exporter's differently); ONNX Runtime runs them all with kernels tuned per
//! CPU (AVX2, AVX-512, AMX dispatched at run time) and is what these files were checked against
//! by their publishers. The library comes from onnxruntime's PyPI wheel through the kit
//! (`xmodal models fetch`), loaded at run time (`ort`'s `load-dynamic`), so nothing is
//! downloaded at build time and the crate builds and tests without it.
//!
//! Inputs and outputs are taken by position, type and shape, not by name: Immich's two
//! generations of graphs name and shape them differently (`text` int32 [1, 77] vs a symbolic
//! batch; `image` float NCHW vs uint8 NHWC), transformers.js' use `input_ids` / `pixel_values`.

mod graph;
pub mod layout;
pub mod runtime;
mod text;
mod vision;

use std::path::{Path, PathBuf};

pub use layout::{LayoutKind, TextClean};
pub use text::OnnxText;
pub use vision::OnnxVision;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OnnxError {
    #[error(
        "ONNX Runtime's library {path} is missing: run `xmodal models fetch` (the kit unpacks it \
         from the onnxruntime wheel on PyPI), or set {env} to a libonnxruntime.so of version 1.17 \
         or newer",
        env = runtime::LIBRARY_ENV
    )]
    RuntimeMissing { path: PathBuf },
    #[error("ONNX Runtime from {path}: {message}")]
    Runtime { path: PathBuf, message: String },
    /// The graph does not load, or its inputs and outputs do not fit the layout.
    #[error("{path}: {message}")]
    Graph { path: PathBuf, message: String },
    /// A config or tokenizer file is missing or unreadable.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("running {path}: {message}")]
    Run { path: PathBuf, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Tensor(String),
}

impl OnnxError {
    pub(crate) fn file(path: &Path, message: String) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message,
        }
    }
}

impl From<candle_core::Error> for OnnxError {
    fn from(e: candle_core::Error) -> Self {
        Self::Tensor(e.to_string())
    }
}

/// ONNX Runtime's intra-op threads: the rayon pool's size, which our own kernels use.
pub fn threads() -> usize {
    rayon::current_num_threads()
}
