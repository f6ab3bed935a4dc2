//! `xmodal report`: PNG figures from eval results, training logs and a trained projector.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use super::eval::{load_evaluation, Evaluation, Selection};
use crate::{
    data::{Catalog, DataDir},
    device::DeviceSpec,
    eval::{score_matrix, RecallCurve},
    report::{
        charts::{recall_curves, training_curves, CurveSeries, TrainingSeries},
        font,
        grid::{draw_grid, Cell, Retrieved, Row},
    },
};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// R@k curves (k = 1..50) of several `xmodal eval --json` results on one chart.
    Recall {
        /// The PNG to write.
        #[arg(long)]
        out: PathBuf,
        /// Result files; each is named by its file stem in the legend.
        #[arg(required = true)]
        results: Vec<PathBuf>,
    },
    /// Training loss and validation R-sum per epoch of several trained heads.
    Training {
        #[arg(long)]
        out: PathBuf,
        /// Heads directories (each has the train_log.jsonl `xmodal train` writes).
        #[arg(required = true)]
        heads: Vec<PathBuf>,
    },
    /// Queries with their top retrievals on a split, ground truth framed in green.
    Grid(GridArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GridDirection {
    /// Captions as queries, images retrieved.
    T2i,
    /// Images as queries, captions retrieved.
    I2t,
}

#[derive(Debug, Args)]
pub struct GridArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub selection: Selection,
    #[arg(long, value_enum, default_value_t = GridDirection::T2i)]
    pub direction: GridDirection,
    /// How many queries (rows), spread evenly over the split.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=50))]
    pub queries: u64,
    /// Retrievals per query.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10))]
    pub k: u64,
}

pub async fn run(
    cmd: ReportCommand,
    catalog: impl std::future::Future<Output = anyhow::Result<Catalog>>,
    data: &DataDir,
    models_dir: &Path,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    font::register(models_dir)?;
    match cmd {
        ReportCommand::Recall { out, results } => {
            let series = results
                .iter()
                .map(|path| read_curve(path))
                .collect::<anyhow::Result<Vec<_>>>()?;
            recall_curves(&out, &series)?;
            println!("wrote {}", out.display());
        }
        ReportCommand::Training { out, heads } => {
            let runs = heads
                .iter()
                .map(|dir| read_training_log(dir))
                .collect::<anyhow::Result<Vec<_>>>()?;
            training_curves(&out, &runs)?;
            println!("wrote {}", out.display());
        }
        ReportCommand::Grid(args) => {
            let catalog = catalog.await?;
            let evaluation =
                load_evaluation(&args.selection, &catalog, data, models_dir, device).await?;
            let rows = grid_rows(&args, &catalog, &evaluation).await?;
            let title = format!(
                "{}: {}, top {} (green: ground truth)",
                evaluation.projector.name(),
                match args.direction {
                    GridDirection::T2i => "caption → images",
                    GridDirection::I2t => "image → captions",
                },
                args.k
            );
            draw_grid(&args.out, &title, &rows)?;
            println!("wrote {}", args.out.display());
        }
    }
    Ok(())
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .or(path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn read_curve(path: &Path) -> anyhow::Result<CurveSeries> {
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let curve: RecallCurve =
        serde_json::from_value(json["recall_curve"].clone()).with_context(|| {
            format!(
                "{} has no recall_curve (written by `xmodal eval --json` of this version)",
                path.display()
            )
        })?;
    Ok(CurveSeries {
        name: stem(path),
        curve,
    })
}

fn read_training_log(dir: &Path) -> anyhow::Result<TrainingSeries> {
    let path = dir.join("train_log.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let epochs = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
            // a residual head's epoch 0 (its starting point) has no training loss
            match (v["epoch"].as_u64(), &v["loss"], v["rsum"].as_f64()) {
                (Some(0), serde_json::Value::Null, Some(rsum)) => Ok((0, None, rsum)),
                (Some(e), loss, Some(rsum)) if loss.is_f64() => {
                    Ok((e as usize, loss.as_f64(), rsum))
                }
                _ => anyhow::bail!("{}:{}: needs epoch, loss and rsum", path.display(), i + 1),
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(TrainingSeries {
        name: stem(dir),
        epochs,
    })
}

/// `n` indices spread evenly over `0..len`.
fn spread(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    (0..n).map(|i| i * len / n).collect()
}

async fn grid_rows(
    args: &GridArgs,
    catalog: &Catalog,
    evaluation: &Evaluation,
) -> anyhow::Result<Vec<Row>> {
    let Evaluation { projector, set, .. } = evaluation;
    if set.image_ids.is_empty() {
        anyhow::bail!("the selected split has no images with features");
    }
    let scores = score_matrix(projector, set)?;
    let locations: std::collections::HashMap<String, PathBuf> = catalog
        .images(&args.selection.filter())
        .await?
        .into_iter()
        .filter_map(|r| r.location.map(|l| (r.id.to_string(), PathBuf::from(l))))
        .collect();
    let image_cell = |i: usize| {
        Cell::Image(
            locations
                .get(&set.image_ids[i].to_string())
                .cloned()
                .unwrap_or_default(),
        )
    };
    let k = args.k as usize;
    let top = |scored: Vec<(usize, f32)>| {
        let mut scored = scored;
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    };
    let rows = match args.direction {
        GridDirection::T2i => spread(set.text_image.len(), args.queries as usize)
            .into_iter()
            .map(|t| Row {
                query: Cell::Text(set.captions[t].clone()),
                hits: top((0..scores.len()).map(|i| (i, scores[i][t])).collect())
                    .into_iter()
                    .map(|(i, score)| Retrieved {
                        cell: image_cell(i),
                        score,
                        relevant: set.text_image[t] == i,
                    })
                    .collect(),
            })
            .collect(),
        GridDirection::I2t => spread(set.image_ids.len(), args.queries as usize)
            .into_iter()
            .map(|i| Row {
                query: image_cell(i),
                hits: top(scores[i].iter().copied().enumerate().collect())
                    .into_iter()
                    .map(|(t, score)| Retrieved {
                        cell: Cell::Text(set.captions[t].clone()),
                        score,
                        relevant: set.text_image[t] == i,
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok(rows)
}
