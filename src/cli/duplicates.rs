//! `xmodal duplicates`: the near-duplicate groups `GET /v1/duplicates` answers, from the same
//! data directory, heads and indexes a server would load, printed as text or JSON lines.

use std::path::Path;

use clap::Args;

use super::serve::ServeArgs;
use crate::{
    data::DataDir,
    device::DeviceSpec,
    serve::service::{Service, DEFAULT_DUPLICATE_SCORE},
};

#[derive(Debug, Clone, Args)]
pub struct DuplicatesArgs {
    /// Lowest similarity (0..=1) at which two images count as copies.
    #[arg(long, default_value_t = DEFAULT_DUPLICATE_SCORE)]
    pub threshold: f32,
    /// Which served space to compare in, by the name requests pass as `model` (default: the
    /// first of --heads).
    #[arg(long)]
    pub space: Option<String>,
    /// Groups to print at most.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// One JSON object per group instead of text.
    #[arg(long)]
    pub json: bool,
    /// What to load, as for `serve` (heads, encoders, --library).
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub async fn run(
    args: DuplicatesArgs,
    data: &DataDir,
    models_dir: &Path,
    database: Option<&str>,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.threshold),
        "--threshold must be within 0..=1"
    );
    let (_, config) = args.serve.configs(data, models_dir, database, device)?;
    let service = Service::load(&config, &|m| eprintln!("{m}")).await?;
    let found = service
        .duplicates(args.space.as_deref(), Some(args.threshold), args.limit, 0)
        .await?;
    eprintln!(
        "{} groups of near-duplicates at similarity ≥ {} in {}",
        found.total, found.threshold, found.model
    );
    for group in &found.groups {
        if args.json {
            let images: Vec<serde_json::Value> = group
                .images
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "image_id": i.image.as_str(),
                        "score": i.score,
                        "file_size": i.metadata.as_ref().and_then(|m| m.file_size),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"score": group.score, "images": images})
            );
        } else {
            let ids: Vec<&str> = group.images.iter().map(|i| i.image.as_str()).collect();
            println!("{:.4}\t{}", group.score, ids.join("\t"));
        }
    }
    Ok(())
}
