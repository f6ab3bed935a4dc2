//! `xmodal extract`

use std::path::Path;

use clap::{Args, ValueEnum};

use crate::{
    data::{catalog::ImageFilter, Catalog, DataDir, Split},
    device::DeviceSpec,
    features::{
        encoders::EncoderSpec,
        extract::{caption_items, extract, image_items, Encoder, ExtractOptions, ExtractSummary},
        FeatureSpec,
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Modalities {
    Both,
    Image,
    Text,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Only images/captions of this dataset (default: all).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Only this split (default: all).
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    #[command(flatten)]
    pub encoders: EncoderSpec,
    #[arg(long, value_enum, default_value_t = Modalities::Both)]
    pub only: Modalities,
    /// Items per shard (the unit of resumption).
    #[arg(long, default_value_t = 1024)]
    pub shard_size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

pub async fn run(
    args: ExtractArgs,
    catalog: &Catalog,
    data: &DataDir,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    let device = device.open()?;
    let filter = ImageFilter {
        dataset: args.dataset.clone(),
        split: args.split,
    };
    let root = data.features();
    let options = ExtractOptions {
        shard_size: args.shard_size,
        batch_size: args.batch_size,
    };
    if args.only != Modalities::Text {
        anyhow::ensure!(
            args.encoders.image_features.is_none(),
            "--image-features names imported features; extract computes them (drop it, or use --only text)"
        );
        let (encoder, spec) = args.encoders.load_image(models_dir, &device)?;
        let items = image_items(&catalog.images(&filter).await?);
        let summary = run_one(
            &root,
            &spec,
            Encoder::Image(&encoder),
            items,
            &options,
            "images",
        )?;
        catalog.register_feature_set(&spec.row()).await?;
        report("images", &spec, &summary);
    }
    if args.only != Modalities::Image {
        let (encoder, spec) = args.encoders.load_text(models_dir, &device)?;
        let items = caption_items(&catalog.captions(&filter).await?);
        let summary = run_one(
            &root,
            &spec,
            Encoder::Text(&encoder),
            items,
            &options,
            "captions",
        )?;
        catalog.register_feature_set(&spec.row()).await?;
        report("captions", &spec, &summary);
    }
    Ok(())
}

fn run_one(
    root: &Path,
    spec: &FeatureSpec,
    encoder: Encoder,
    items: Vec<(
        crate::features::cache::ItemKey,
        crate::features::extract::Payload,
    )>,
    options: &ExtractOptions,
    what: &'static str,
) -> anyhow::Result<ExtractSummary> {
    let bar = super::progress::bar(items.len() as u64, what);
    let summary = extract(
        root,
        spec,
        encoder,
        items,
        options,
        &|n| bar.inc(n),
        &|i, n| {
            // one line per finished shard: the resumption unit, visible in logs
            bar.println(format!("{what}: shard {}/{n} done", i + 1));
            eprintln!("{what}: shard {}/{n} done", i + 1);
        },
    )?;
    bar.finish_and_clear();
    Ok(summary)
}

fn report(what: &str, spec: &FeatureSpec, s: &ExtractSummary) {
    println!(
        "{what}: feature set {} ({} {}-d): {} items, {} encoded in {:.1}s ({:.1}/s), {} shards reused, {} computed, {} failed",
        s.id,
        spec.encoder,
        spec.dims,
        s.items,
        s.encoded,
        s.seconds,
        s.items_per_second(),
        s.shards_reused,
        s.shards_computed,
        s.failed
    );
}
