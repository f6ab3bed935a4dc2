//! `xmodal ingest`

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::{
    data::{
        catalog::Backend,
        ingest::{self, coco, flickr30k, jsonl},
        Catalog, DataDir, Split,
    },
    device::DeviceSpec,
    features::encoders::EncoderSpec,
    library::{self, CatalogSink, LocalEncoder},
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Kaggle's results.csv + flickr30k_images/, optionally Karpathy's dataset_flickr30k.json.
    Flickr30k,
    /// COCO captions annotation JSON + an image folder.
    Coco,
    /// One `{"image", "captions", "split", "id"?}` object per line.
    Jsonl,
    /// A folder of photos, recursively (JPEG, PNG, WebP; no captions needed): images are encoded
    /// now, and running it again is a rescan (new, changed and deleted files).
    Folder,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[arg(long, value_enum)]
    pub format: Format,
    /// flickr30k: results.csv (optional with --split-file); coco: the annotation JSON; jsonl: the
    /// file; folder: the folder.
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
    /// folder: the image encoder that computes the features.
    #[command(flatten)]
    pub encoders: EncoderSpec,
}

pub async fn run(
    args: IngestArgs,
    catalog: &Catalog,
    data: &DataDir,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    let (format, parsed) = match args.format {
        Format::Folder => {
            let root = args.input.as_deref().context("folder needs the folder")?;
            return ingest_folder(&args, root, catalog, data, models_dir, device).await;
        }
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

/// `--format folder`: scan, then add, re-encode and remove what changed, a batch per transaction.
async fn ingest_folder(
    args: &IngestArgs,
    root: &Path,
    catalog: &Catalog,
    data: &DataDir,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    let device = device.open()?;
    let (encoder, image_spec) = args.encoders.load_image(models_dir, &device)?;
    let dataset = args
        .dataset
        .clone()
        .unwrap_or_else(|| library::DEFAULT_DATASET.to_string());
    let dataset_id = library::dataset_id(catalog, &dataset, root).await?;
    catalog.register_feature_set(&image_spec.row()).await?;
    let scan = library::scan(root).with_context(|| format!("scanning {}", root.display()))?;
    let entries = catalog.library_entries(&dataset).await?;
    let bar = super::progress::bar(scan.files.len() as u64, "images");
    let report = library::sync(
        scan,
        &entries,
        &image_spec.id().0,
        &LocalEncoder(&encoder),
        &CatalogSink {
            catalog,
            dataset_id,
        },
        library::BATCH,
        &|n| bar.inc(n),
    )
    .await?;
    bar.finish_and_clear();
    for s in &report.skipped {
        println!("  skipped {}: {}", s.path, s.reason);
    }
    println!("{dataset}: {report}");
    // in-process indexes are reconciled by key at the next start; a changed file keeps its key,
    // so the persisted index is dropped and rebuilt from the catalog (derived data)
    if report.changed > 0 && catalog.backend() == Backend::Sqlite && data.index().exists() {
        std::fs::remove_dir_all(data.index())?;
        println!(
            "  {} changed: the index will be rebuilt at the next start",
            report.changed
        );
    }
    Ok(())
}
