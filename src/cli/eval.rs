//! `xmodal eval`

use std::path::{Path, PathBuf};

use clap::Args;

use crate::{
    data::{catalog::ImageFilter, Catalog, DataDir, Split},
    device::DeviceSpec,
    eval::{markdown, rank_projector},
    features::encoders::EncoderSpec,
    features::paired::PairedSet,
    heads::Projector,
};

/// How far the recall curve in `--json` reaches.
const RECALL_CURVE_K: usize = 50;

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Also write the metrics as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Other heads to evaluate on the same split for comparison (`zero-shot`: a CLIP-family
    /// model's own space, or ConSE), comma-separated; in `--json` under `compared`.
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
}

/// Which heads, encoders and split: shared by `eval` and `report grid`.
#[derive(Debug, Args)]
pub struct Selection {
    /// A trained heads directory, or `zero-shot`.
    #[arg(long, default_value = "zero-shot")]
    pub heads: String,
    #[command(flatten)]
    pub encoders: EncoderSpec,
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    /// Evaluate on every image regardless of split (e.g. the demo gallery, which has none).
    #[arg(long)]
    pub all_splits: bool,
    /// Zero-shot: how many top ImageNet classes place an image.
    #[arg(long, default_value_t = crate::heads::conse::DEFAULT_TOP)]
    pub top: usize,
}

impl Selection {
    pub fn filter(&self) -> ImageFilter {
        ImageFilter {
            dataset: self.dataset.clone(),
            split: (!self.all_splits).then_some(self.split),
        }
    }
}

/// The heads under evaluation and the split they are evaluated on.
pub(super) struct Evaluation {
    pub projector: Projector,
    pub set: PairedSet,
    pub encoders: crate::features::encoders::Encoders,
}

/// Load encoders, the projector (`heads`: a directory or `zero-shot`) and a split's features.
pub(super) async fn load_evaluation(
    selection: &Selection,
    catalog: &Catalog,
    data: &DataDir,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<Evaluation> {
    let device = device.open()?;
    let enc = selection
        .encoders
        .load(models_dir, &data.features(), &device)?;
    let projector = crate::heads::open(
        &selection.heads,
        &enc,
        selection.top,
        &data.features(),
        &device,
    )?
    .projector;
    let set = PairedSet::load(
        catalog,
        &selection.filter(),
        &data.features(),
        &enc.image_spec.id(),
        &enc.text_spec.id(),
        &device,
    )
    .await?;
    Ok(Evaluation {
        projector,
        set,
        encoders: enc,
    })
}

pub async fn run(
    args: EvalArgs,
    catalog: &Catalog,
    data: &DataDir,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    let Evaluation {
        projector,
        set,
        encoders,
    } = load_evaluation(&args.selection, catalog, data, models_dir, device).await?;
    let ranks = rank_projector(&projector, &set)?;
    let metrics = ranks.metrics();
    let mut compared = serde_json::Map::new();
    let mut tables = String::new();
    for heads in &args.compare {
        let other = crate::heads::open(
            heads,
            &encoders,
            args.selection.top,
            &data.features(),
            set.images.device(),
        )?;
        let m = rank_projector(&other.projector, &set)?.metrics();
        tables += &format!("\n{}", markdown(&other.projector.name(), &m));
        tables += &format!(
            "R-sum {:.1} vs {:.1} ({:+.1})\n",
            metrics.rsum(),
            m.rsum(),
            metrics.rsum() - m.rsum()
        );
        compared.insert(other.name, serde_json::to_value(m)?);
    }
    println!(
        "{} on {} {} ({} images, {} captions)\n",
        projector.name(),
        args.selection.dataset.as_deref().unwrap_or("all data"),
        if args.selection.all_splits {
            "(all splits)".to_string()
        } else {
            args.selection.split.to_string()
        },
        set.image_ids.len(),
        set.text_image.len()
    );
    print!("{}{tables}", markdown(&projector.name(), &metrics));
    if let Some(path) = &args.json {
        // API.md's shape, plus the R@k curve (k = 1..50) that `xmodal report recall` plots
        let mut json = serde_json::to_value(metrics)?;
        json["recall_curve"] = serde_json::to_value(ranks.recall_curve(RECALL_CURVE_K))?;
        if !compared.is_empty() {
            json["compared"] = compared.into();
        }
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")?;
    }
    Ok(())
}
