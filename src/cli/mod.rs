//! The command line: one clap struct, every flag also read from an `XMODAL_*` variable.
//! Each subcommand's work lives in its own file and calls into the library modules.

mod embed;
mod models;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::device::DeviceSpec;

#[derive(Debug, Parser)]
#[command(
    name = "xmodal",
    version,
    about = "Cross-modal retrieval: captions to images, images to captions"
)]
pub struct Cli {
    /// Where tensors live: cpu, cuda, cuda:N or auto.
    #[arg(long, global = true, env = "XMODAL_DEVICE", default_value = "cpu")]
    pub device: DeviceSpec,

    /// The model kit directory (`xmodal models fetch` fills it).
    #[arg(
        long,
        global = true,
        env = "XMODAL_MODELS_DIR",
        default_value = "models"
    )]
    pub models_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the offline model kit.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Print encoder outputs (before any projection head) as JSON lines.
    #[command(subcommand)]
    Embed(embed::EmbedCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Models(cmd) => models::run(cmd, &cli.models_dir),
        Command::Embed(cmd) => embed::run(cmd, cli.device),
    }
}

/// Logs go to stderr (stdout carries command output such as JSON lines); `RUST_LOG` filters.
pub fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
