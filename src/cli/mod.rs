//! The command line: one clap struct, every flag also read from an `XMODAL_*` variable.
//! Each subcommand's work lives in its own file and calls into the library modules.

mod config;
mod demo;
mod duplicates;
mod embed;
mod eval;
mod extract;
mod import;
mod ingest;
mod models;
mod progress;
mod report;
mod serve;
mod synth;
mod train;

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use crate::{data::DataDir, device::DeviceSpec};

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

    /// What runs a model directory that holds both safetensors and ONNX graphs (a transformers.js
    /// snapshot with `model.safetensors`): `candle`, xmodal's own towers, or `onnx`, ONNX Runtime.
    /// Directories with only one kind run on it whatever this says.
    #[arg(
        long,
        global = true,
        env = "XMODAL_BACKEND",
        value_enum,
        default_value = "candle"
    )]
    pub backend: crate::encode::onnx::runtime::Backend,

    /// Where the catalog, images, features, heads and indexes live.
    #[arg(
        long,
        global = true,
        env = "XMODAL_DATA_DIR",
        default_value = "xmodal-data"
    )]
    pub data_dir: PathBuf,

    /// `postgres://USER@HOST:PORT/DB`: keep the catalog in Postgres (and, for `serve`, the
    /// indexes in pgvector, shared by replicas). Default: SQLite under the data directory.
    #[arg(long, global = true, env = "XMODAL_DATABASE", hide_env_values = true)]
    pub database: Option<String>,

    /// A TOML file of flag values (keys are flag names; flags and XMODAL_* variables win).
    #[arg(long, global = true, env = "XMODAL_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parse the command line after filling unset `XMODAL_*` variables from `--config FILE`.
    pub fn parse_with_config() -> anyhow::Result<Self> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        config::apply(&Self::command(), &args)?;
        let cli = Self::parse_from(args);
        if let Some(url) = &cli.database {
            anyhow::ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "--database takes a postgres:// URL (the embedded SQLite catalog needs no flag)"
            );
        }
        Ok(cli)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: fetch the kit, build the demo gallery, train demo heads, index and serve.
    Demo(demo::DemoArgs),
    /// Manage the offline model kit.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Print encoder outputs (before any projection head) as JSON lines.
    #[command(subcommand)]
    Embed(embed::EmbedCommand),
    /// Load a dataset (flickr30k, coco, jsonl) or a folder of photos into the catalog.
    Ingest(ingest::IngestArgs),
    /// Generate the compositional scene benchmark (deterministic by --seed).
    Synth(synth::SynthArgs),
    /// Import precomputed image features (Karpathy's vgg_feats.mat, VSE++/SCAN _precomp folders).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Compute and cache encoder features for the catalog (resumable, with progress).
    Extract(extract::ExtractArgs),
    /// Train projection heads on cached features.
    Train(train::TrainArgs),
    /// Retrieval metrics (R@K, medR, mAP@k) both ways on a split.
    Eval(eval::EvalArgs),
    /// PNG figures: recall@k curves, training curves, a grid of queries and retrievals.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Groups of near-duplicate images (what `GET /v1/duplicates` answers), one per line.
    Duplicates(duplicates::DuplicatesArgs),
    /// Serve the HTTP API over the data directory's catalog, heads and indexes.
    Serve(serve::ServeArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let data = DataDir::new(&cli.data_dir);
    let data = &data;
    crate::encode::onnx::runtime::use_kit(&cli.models_dir);
    crate::encode::onnx::runtime::prefer(cli.backend);
    match cli.command {
        Command::Demo(args) => block_on(demo::run(args, data, &cli.models_dir, cli.device)),
        Command::Models(cmd) => models::run(cmd, &cli.models_dir),
        Command::Embed(cmd) => embed::run(cmd, cli.device, &cli.models_dir),
        Command::Ingest(args) => block_on(async {
            let catalog = open_catalog(data, cli.database.as_deref()).await?;
            ingest::run(args, &catalog, data, &cli.models_dir, cli.device).await
        }),
        Command::Synth(args) => synth::run(args),
        Command::Import(cmd) => block_on(async {
            let catalog = open_catalog(data, cli.database.as_deref()).await?;
            import::run(cmd, &catalog, data).await
        }),
        Command::Extract(args) => block_on(async {
            let catalog = open_catalog(data, cli.database.as_deref()).await?;
            extract::run(args, &catalog, data, &cli.models_dir, cli.device).await
        }),
        Command::Train(args) => block_on(async {
            let catalog = open_catalog(data, cli.database.as_deref()).await?;
            train::run(args, &catalog, data, &cli.models_dir, cli.device).await
        }),
        Command::Serve(args) => block_on(serve::run(
            args,
            data,
            &cli.models_dir,
            cli.database.as_deref(),
            cli.device,
        )),
        Command::Duplicates(args) => block_on(duplicates::run(
            args,
            data,
            &cli.models_dir,
            cli.database.as_deref(),
            cli.device,
        )),
        Command::Report(cmd) => block_on(report::run(
            cmd,
            open_catalog(data, cli.database.as_deref()),
            data,
            &cli.models_dir,
            cli.device,
        )),
        Command::Eval(args) => block_on(async {
            let catalog = open_catalog(data, cli.database.as_deref()).await?;
            eval::run(args, &catalog, data, &cli.models_dir, cli.device).await
        }),
    }
}

/// The catalog of a data directory.
pub async fn open_catalog(
    data: &DataDir,
    database: Option<&str>,
) -> anyhow::Result<crate::data::Catalog> {
    if let Some(url) = database {
        return crate::data::Catalog::open_location(url, Default::default())
            .await
            .context("connecting to the Postgres catalog");
    }
    let path = data.catalog();
    crate::data::Catalog::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Logs go to stderr (stdout carries command output such as JSON lines); `RUST_LOG` filters.
pub fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
