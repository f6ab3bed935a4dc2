//! `xmodal import`: precomputed image features researchers already have, as a feature set.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::{
    data::{Catalog, DataDir},
    features::import::{karpathy, precomp, ImportPlan},
};

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Karpathy's release: dataset_flickr30k.json (or dataset_coco.json) + vgg_feats.mat.
    Karpathy(KarpathyArgs),
    /// A VSE++/SCAN `<name>_precomp/` folder: {train,dev,test}_ims.npy + _caps.txt.
    Precomp(PrecompArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    /// Name of the encoder that produced the features (e.g. vgg19-fc7); names the feature set
    /// that `train`/`eval`/`serve --image-features` select.
    #[arg(long)]
    pub encoder: String,
}

#[derive(Debug, Args)]
pub struct KarpathyArgs {
    /// Karpathy's split file, e.g. dataset_flickr30k.json.
    #[arg(long)]
    pub json: PathBuf,
    /// The MATLAB v5 feature file (dims × images, the json's order).
    #[arg(long)]
    pub mat: PathBuf,
    #[arg(long, default_value = "feats")]
    pub mat_variable: String,
    /// Catalog dataset; images keep their file names as ids, so features attach to a Flickr30k
    /// already ingested under this name.
    #[arg(long, default_value = "flickr30k")]
    pub dataset: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct PrecompArgs {
    /// The folder, e.g. data/f30k_precomp.
    pub dir: PathBuf,
    /// Catalog dataset (default: the folder's name); image ids are DATASET-SPLIT-ROW.
    #[arg(long)]
    pub dataset: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(cmd: ImportCommand, catalog: &Catalog, data: &DataDir) -> anyhow::Result<()> {
    let (plan, dataset, common): (ImportPlan, String, Common) = match cmd {
        ImportCommand::Karpathy(a) => (
            karpathy::plan(&a.json, &a.mat, &a.mat_variable)?,
            a.dataset,
            a.common,
        ),
        ImportCommand::Precomp(a) => {
            let dataset = match a.dataset {
                Some(d) => d,
                None => a
                    .dir
                    .canonicalize()?
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| anyhow::anyhow!("name the dataset with --dataset"))?,
            };
            (precomp::plan(&a.dir, &dataset)?, dataset, a.common)
        }
    };
    for note in &plan.notes {
        eprintln!("note: {note}");
    }
    let summary = plan
        .commit(catalog, &data.features(), &common.encoder, &dataset)
        .await?;
    let splits: Vec<String> = summary
        .per_split
        .iter()
        .map(|(s, n)| format!("{} {n}", s.map(|s| s.as_str()).unwrap_or("none")))
        .collect();
    println!(
        "imported feature set {} ({} {}-d, image features) for dataset {dataset}: {} images ({} new, {} already in the catalog), {} captions; splits: {}",
        summary.feature_set,
        summary.spec.encoder,
        summary.spec.dims,
        summary.inserted + summary.existing,
        summary.inserted,
        summary.existing,
        summary.captions,
        splits.join(", ")
    );
    println!(
        "next: xmodal extract --only text --dataset {dataset}; xmodal train --image-features {} --dataset {dataset}",
        summary.feature_set
    );
    Ok(())
}
