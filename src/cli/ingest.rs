//! `xmodal ingest`

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::data::{
    ingest::{self, coco, flickr30k, jsonl},
    Catalog, Split,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Kaggle's results.csv + flickr30k_images/, optionally Karpathy's dataset_flickr30k.json.
    Flickr30k,
    /// COCO captions annotation JSON + an image folder.
    Coco,
    /// One `{"image", "captions", "split", "id"?}` object per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[arg(long, value_enum)]
    pub format: Format,
    /// flickr30k: results.csv (optional with --split-file); coco: the annotation JSON; jsonl: the file.
    pub input: Option<PathBuf>,
    /// The image folder (flickr30k: defaults to flickr30k_images/ beside results.csv).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Karpathy's split file (dataset_flickr30k.json / dataset_coco.json).
    #[arg(long)]
    pub split_file: Option<PathBuf>,
    /// coco without a split file: the split of every image.
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// Dataset name in the catalog (default: the format's name).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Seed of the derived split when there is no split file.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fully decode every image (slower) instead of reading only its header.
    #[arg(long)]
    pub verify_decode: bool,
}

pub async fn run(args: IngestArgs, catalog: &Catalog) -> anyhow::Result<()> {
    let (format, parsed) = match args.format {
        Format::Flickr30k => {
            let images = match (&args.images, &args.input) {
                (Some(dir), _) => dir.clone(),
                (None, Some(csv)) => csv
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("flickr30k_images"),
                (None, None) => anyhow::bail!("flickr30k needs --images DIR without results.csv"),
            };
            let src = flickr30k::Flickr30kSource {
                captions: args.input.as_deref(),
                images: &images,
                karpathy: args.split_file.as_deref(),
                seed: args.seed,
            };
            ("flickr30k", flickr30k::parse(&src)?)
        }
        Format::Coco => {
            let input = args
                .input
                .as_deref()
                .context("coco needs the annotation JSON")?;
            let images = args.images.as_deref().context("coco needs --images DIR")?;
            (
                "coco",
                coco::parse(input, images, args.split_file.as_deref(), args.split)?,
            )
        }
        Format::Jsonl => (
            "jsonl",
            jsonl::parse(args.input.as_deref().context("jsonl needs the file")?)?,
        ),
    };
    let name = args.dataset.clone().unwrap_or_else(|| format.to_string());
    let source = args
        .input
        .as_ref()
        .or(args.split_file.as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let report = ingest::ingest(
        catalog,
        (&name, format, &source),
        parsed,
        args.verify_decode,
    )
    .await?;
    println!("{report}");
    for (split, (images, captions)) in catalog.counts(Some(&name)).await? {
        println!("  {name}/{split}: {images} images, {captions} captions");
    }
    Ok(())
}
