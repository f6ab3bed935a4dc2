//! `xmodal eval`

use std::path::{Path, PathBuf};

use clap::Args;

use super::encoders::EncoderArgs;
use crate::{
    data::{catalog::ImageFilter, Catalog, Split},
    device::DeviceSpec,
    eval::{evaluate_projector, markdown},
    features::paired::PairedSet,
    project::{ConSE, Projector, TrainedHeads},
};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A trained heads directory, or `zero-shot`.
    #[arg(long, default_value = "zero-shot")]
    pub heads: String,
    #[command(flatten)]
    pub encoders: EncoderArgs,
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    /// Evaluate on every image regardless of split (e.g. the demo gallery, which has none).
    #[arg(long)]
    pub all_splits: bool,
    /// Zero-shot: how many top ImageNet classes place an image.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Also write the metrics as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub async fn run(
    args: EvalArgs,
    catalog: &Catalog,
    data_dir: &Path,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    let device = device.open()?;
    let enc = args.encoders.load(models_dir, data_dir, &device)?;
    let projector = if args.heads == "zero-shot" {
        let classifier = enc.image_encoder()?.classifier().cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "the image model has no ImageNet classifier, which the zero-shot head needs"
            )
        })?;
        Projector::ZeroShot(Box::new(ConSE::new(classifier, &enc.text, args.top)?))
    } else {
        let heads = TrainedHeads::load(Path::new(&args.heads), &device)?;
        heads.check_features(&enc.image_spec, &enc.text_spec)?;
        Projector::Trained(Box::new(heads))
    };
    let filter = ImageFilter {
        dataset: args.dataset.clone(),
        split: (!args.all_splits).then_some(args.split),
    };
    let set = PairedSet::load(
        catalog,
        &filter,
        &data_dir.join("features"),
        &enc.image_spec.id(),
        &enc.text_spec.id(),
        &device,
    )
    .await?;
    let metrics = evaluate_projector(&projector, &set)?;
    println!(
        "{} on {} {} ({} images, {} captions)\n",
        projector.name(),
        args.dataset.as_deref().unwrap_or("all data"),
        if args.all_splits {
            "(all splits)".to_string()
        } else {
            args.split.to_string()
        },
        set.image_ids.len(),
        set.text_image.len()
    );
    print!("{}", markdown(&projector.name(), &metrics));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&metrics)? + "\n")?;
    }
    Ok(())
}
