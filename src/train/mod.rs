//! `xmodal train`: projection heads on cached features, with metric-learning losses.
//!
//! One run trains an image head and a text head (for `i2t`/`t2i` these are the original study's
//! two separate models; `joint` is one model for both directions). Every epoch is scored on the
//! validation split by R-sum; the best epoch is kept, training stops early when R-sum stops
//! improving, and embedding collapse (the original recipe's failure) is measured and warned about.

mod adamw;
mod denormals;
mod fused;
pub mod losses;
pub mod negatives;

use std::{io::Write, path::Path, time::Instant};

use candle_core::{Device, Tensor, Var};
use candle_nn::ParamsAdamW;
use serde::{Deserialize, Serialize};

pub use losses::{Direction, Loss};

use crate::{
    eval::{evaluate_embeddings, Metrics},
    features::{paired::PairedSet, FeatureSpec},
    heads::{mlp::spread, HeadsConfig, Mlp, MlpConfig, Score, TrainedHeads},
    rng::Rng,
};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Residual on a CLIP-family model's own features, mlp otherwise.
    Auto,
    /// The original study's heads (image 1 hidden layer, dropout 0.5; text 2, dropout 0.1).
    Original,
    /// `--depth` hidden layers of `--width`, `--dropout` everywhere.
    Mlp,
    /// An adapter on features that already share a space (a CLIP-family model's): `--depth`
    /// hidden layers of `--width` added to the input, the last layer starting at zero, so
    /// training starts from the model's zero-shot space (step 0 equals it). The output keeps
    /// the features' width (`--out-dim` is not used).
    Residual,
}

impl Architecture {
    /// What `Auto` means for features that do (`joint`) or do not share a space already.
    pub fn resolve(self, joint: bool) -> Self {
        match self {
            Self::Auto if joint => Self::Residual,
            Self::Auto => Self::Mlp,
            other => other,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub loss: Loss,
    pub direction: Direction,
    pub architecture: Architecture,
    pub depth: usize,
    pub width: usize,
    pub out_dim: usize,
    pub dropout: f32,
    pub input_norm: bool,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Multiply the learning rate by `lr_decay` every `decay_every` epochs (step decay; with
    /// `decay_every` = 1 this is exponential decay).
    pub lr_decay: f64,
    pub decay_every: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    /// Margin of triplet/hardest; default 1.0 (triplet) or 0.2 (hardest).
    pub margin: Option<f32>,
    pub patience: usize,
    pub seed: u64,
    /// Train through candle's autograd on the CPU too, instead of the fused step (the same
    /// arithmetic, slower; other devices always use autograd).
    #[serde(default)]
    pub autograd: bool,
}

impl TrainConfig {
    pub fn margin(&self) -> f32 {
        self.margin
            .unwrap_or(if self.loss == Loss::Triplet { 1.0 } else { 0.2 })
    }

    /// Cosine losses train L2-normalised embeddings; the original triplet does not.
    pub fn normalized(&self) -> bool {
        self.loss != Loss::Triplet
    }
}

/// One epoch's record in the training log.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// Mean training loss; none for epoch 0, a residual head's starting point.
    pub loss: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
    pub val: Metrics,
    pub rsum: f64,
    /// Mean pairwise cosine of validation image / text embeddings (1.0 = collapsed).
    pub mean_cosine_images: f32,
    pub mean_cosine_texts: f32,
    pub variance_images: f32,
    pub variance_texts: f32,
    pub collapsed: bool,
    pub temperature: Option<f32>,
}

pub struct TrainOutcome {
    pub best_epoch: usize,
    pub best: Metrics,
    pub epochs_run: usize,
    pub mean_epoch_seconds: f64,
    pub log: Vec<EpochLog>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Heads(#[from] crate::heads::HeadsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("nothing to train on: the training split has no captions with features")]
    Empty,
}

/// Mean pairwise cosine above which embeddings point the same way (one half of a collapse; see
/// [`collapsed`]).
pub const COLLAPSE_COSINE: f32 = 0.95;

pub fn heads_configs(
    cfg: &TrainConfig,
    image_dims: usize,
    text_dims: usize,
) -> (MlpConfig, MlpConfig) {
    let (mut img, mut txt) = match cfg.architecture {
        Architecture::Original => (
            MlpConfig::original_image(image_dims, cfg.out_dim),
            MlpConfig::original_text(text_dims, cfg.out_dim),
        ),
        Architecture::Mlp | Architecture::Auto | Architecture::Residual => {
            let residual = cfg.architecture == Architecture::Residual;
            let mk = |input| MlpConfig {
                input,
                hidden: vec![cfg.width; cfg.depth],
                output: if residual { input } else { cfg.out_dim },
                dropout: cfg.dropout,
                input_norm: false,
                normalize: false,
                residual,
            };
            (mk(image_dims), mk(text_dims))
        }
    };
    for c in [&mut img, &mut txt] {
        c.input_norm = cfg.input_norm;
        c.normalize = cfg.normalized();
    }
    (img, txt)
}

/// Train on `train`, select on `val`, write the best heads to `out`.
#[allow(clippy::too_many_arguments)]
pub fn train(
    cfg: &TrainConfig,
    name: &str,
    train: &PairedSet,
    val: &PairedSet,
    specs: (&FeatureSpec, &FeatureSpec),
    out: &Path,
    device: &Device,
    mut on_step: impl FnMut(usize, usize),
    mut on_epoch: impl FnMut(&EpochLog),
) -> Result<TrainOutcome, TrainError> {
    let n = train.text_image.len();
    if n == 0 {
        return Err(TrainError::Empty);
    }
    if device.is_cpu() {
        denormals::flush_denormals();
    }
    let mut rng = Rng::new(cfg.seed);
    let (img_cfg, txt_cfg) = heads_configs(cfg, train.images.dim(1)?, train.texts.dim(1)?);
    let mut image = Mlp::new(img_cfg.clone(), &mut rng, device)?;
    let mut text = Mlp::new(txt_cfg.clone(), &mut rng, device)?;
    image.fit_input_norm(&train.images)?;
    text.fit_input_norm(&train.texts)?;
    // CLIP's initial temperature 0.07
    let log_scale = Var::from_tensor(&Tensor::new(&[(1.0f32 / 0.07).ln()], device)?)?;
    let params = ParamsAdamW {
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        ..Default::default()
    };
    let mut stepper = if crate::device::cpu_kernels(device) && !cfg.autograd {
        Stepper::Fused(Box::new(fused::FusedTrainer::new(
            &image, &text, &log_scale, cfg, params,
        )?))
    } else {
        let mut vars = image.vars();
        vars.extend(text.vars());
        if cfg.loss == Loss::Infonce {
            vars.push(log_scale.clone());
        }
        Stepper::Autograd(adamw::TrainOptimizer::new(vars, params)?)
    };
    std::fs::create_dir_all(out)?;
    let mut log_file = std::fs::File::create(out.join("train_log.jsonl"))?;

    let text_image: Vec<u32> = train.text_image.iter().map(|&i| i as u32).collect();
    let caption_keys = negatives::caption_keys(&train.captions);
    let mut order: Vec<usize> = (0..n).collect();
    let mut best: Option<(usize, Metrics)> = None;
    let mut stale = 0;
    let mut log = Vec::new();
    let mut lr = cfg.lr;
    let steps = n.div_ceil(cfg.batch_size.max(1));
    let mut record = |entry: &EpochLog| -> std::io::Result<()> {
        writeln!(
            log_file,
            "{}",
            serde_json::to_string(entry).expect("log serialises")
        )?;
        on_epoch(entry);
        Ok(())
    };
    let checkpoint = Checkpoint {
        cfg,
        name,
        heads: (&img_cfg, &txt_cfg),
        specs,
        out,
    };
    if img_cfg.residual {
        // a residual head starts at the identity: epoch 0 is the features' own space (a CLIP
        // model's zero-shot), the baseline every trained epoch has to beat to be kept
        let entry = validate(
            cfg,
            (&image, &text),
            val,
            (0, None, lr, Instant::now()),
            &log_scale,
        )?;
        record(&entry)?;
        (image, text) = keep_best(&checkpoint, 0, entry.val, (image, text))?;
        best = Some((0, entry.val));
        log.push(entry);
    }
    for epoch in 1..=cfg.epochs {
        let started = Instant::now();
        rng.shuffle(&mut order);
        let mut total = 0.0;
        for (step, batch) in order.chunks(cfg.batch_size.max(2)).enumerate() {
            if batch.len() < 2 {
                continue; // a lone pair has no negatives
            }
            let text_idx: Vec<u32> = batch.iter().map(|&t| t as u32).collect();
            let img_idx: Vec<u32> = batch.iter().map(|&t| text_image[t]).collect();
            let same = negatives::not_negatives(&img_idx, &text_idx, &caption_keys);
            let loss = match &mut stepper {
                Stepper::Fused(fused) => fused.step(
                    (&train.images, &train.texts),
                    (&img_idx, &text_idx),
                    &same,
                    &mut rng,
                    cfg.grad_clip,
                )?,
                Stepper::Autograd(opt) => autograd_step(
                    cfg,
                    (&image, &text, &log_scale),
                    train,
                    (&img_idx, &text_idx),
                    &same,
                    &mut rng,
                    opt,
                )?,
            };
            total += loss as f64;
            on_step(step + 1, steps);
        }
        if let Stepper::Fused(fused) = &stepper {
            fused.write_back(&image, &text, &log_scale)?;
        }
        let entry = validate(
            cfg,
            (&image, &text),
            val,
            (epoch, Some(total / steps as f64), lr, started),
            &log_scale,
        )?;
        let metrics = entry.val;
        record(&entry)?;
        if best.as_ref().is_none_or(|(_, m)| metrics.rsum() > m.rsum()) {
            best = Some((epoch, metrics));
            stale = 0;
            (image, text) = keep_best(&checkpoint, epoch, metrics, (image, text))?;
        } else {
            stale += 1;
        }
        log.push(entry);
        if stale >= cfg.patience {
            break;
        }
        if cfg.decay_every > 0 && epoch % cfg.decay_every == 0 {
            lr *= cfg.lr_decay;
            match &mut stepper {
                Stepper::Fused(fused) => fused.set_learning_rate(lr),
                Stepper::Autograd(opt) => opt.set_learning_rate(lr),
            }
        }
    }
    let (best_epoch, best) = best.expect("at least one epoch ran");
    let trained: Vec<&EpochLog> = log.iter().filter(|e| e.epoch > 0).collect();
    let mean_epoch_seconds =
        trained.iter().map(|e| e.seconds).sum::<f64>() / trained.len().max(1) as f64;
    Ok(TrainOutcome {
        best_epoch,
        best,
        epochs_run: trained.len(),
        mean_epoch_seconds,
        log,
    })
}

/// One epoch's validation record: both heads project the validation split once, for the metrics
/// and the collapse check alike. `(epoch, loss, lr, started)` describe the epoch.
fn validate(
    cfg: &TrainConfig,
    (image, text): (&Mlp, &Mlp),
    val: &PairedSet,
    (epoch, loss, lr, started): (usize, Option<f64>, f64, Instant),
    log_scale: &Var,
) -> Result<EpochLog, TrainError> {
    let (e_img, e_txt) = (
        image.forward(&val.images, None)?,
        text.forward(&val.texts, None)?,
    );
    let metrics = evaluate_embeddings(&e_img, &e_txt, score_of(cfg), &val.text_image)?;
    let (cos_i, var_i) = spread(&e_img)?;
    let (cos_t, var_t) = spread(&e_txt)?;
    let chance = chance_r10(val.images.dim(0)?);
    let collapsed = collapsed(&metrics, (cos_i, cos_t), chance);
    if collapsed {
        tracing::warn!(
            epoch,
            mean_cosine_images = cos_i,
            mean_cosine_texts = cos_t,
            "EMBEDDINGS COLLAPSED: nearly all validation embeddings point the same way and retrieval is at chance (R@10 i2t {:.1}, t2i {:.1}; chance {chance:.1})",
            metrics.i2t.r10,
            metrics.t2i.r10
        );
    }
    Ok(EpochLog {
        epoch,
        loss,
        lr,
        seconds: started.elapsed().as_secs_f64(),
        rsum: metrics.rsum(),
        val: metrics,
        mean_cosine_images: cos_i,
        mean_cosine_texts: cos_t,
        variance_images: var_i,
        variance_texts: var_t,
        collapsed,
        temperature: (cfg.loss == Loss::Infonce).then(|| {
            log_scale
                .as_tensor()
                .exp()
                .and_then(|s| s.recip())
                .and_then(|t| t.squeeze(0)?.to_scalar::<f32>())
                .unwrap_or(f32::NAN)
        }),
    })
}

/// R@10 (percent) of ranking at random among `images` validation images: a query's 10 picks
/// hold one of the right images (t2i), or one of an image's captions (i2t), with probability
/// about 10 / images either way.
fn chance_r10(images: usize) -> f64 {
    (1000.0 / images.max(1) as f64).min(100.0)
}

/// Collapse is a fact about retrieval, not about geometry alone: embeddings can crowd into a
/// narrow cone (mean cosine near 1) and still rank well, since ranking depends on differences
/// between scores, not their spread. So a space is collapsed when its embeddings point the same
/// way *and* retrieval is no better than chance: R@10 both ways under 1.5× chance (or chance +
/// 5 points where chance is tiny).
fn collapsed(metrics: &Metrics, (cos_images, cos_texts): (f32, f32), chance: f64) -> bool {
    let at_chance = |r10: f64| r10 <= (1.5 * chance).max(chance + 5.0);
    cos_images > COLLAPSE_COSINE
        && cos_texts > COLLAPSE_COSINE
        && at_chance(metrics.i2t.r10)
        && at_chance(metrics.t2i.r10)
}

/// Where and how the best heads so far are saved.
struct Checkpoint<'a> {
    cfg: &'a TrainConfig,
    name: &'a str,
    heads: (&'a MlpConfig, &'a MlpConfig),
    specs: (&'a FeatureSpec, &'a FeatureSpec),
    out: &'a Path,
}

/// Save `heads` as the best so far (`epoch`, scoring `metrics`) and hand them back.
fn keep_best(
    c: &Checkpoint,
    epoch: usize,
    metrics: Metrics,
    (image, text): (Mlp, Mlp),
) -> Result<(Mlp, Mlp), TrainError> {
    let training = serde_json::json!({"config": c.cfg, "best_epoch": epoch, "val": metrics, "val_rsum": metrics.rsum()});
    let heads = TrainedHeads {
        config: heads_config(c.cfg, c.name, c.heads.0, c.heads.1, c.specs, training),
        image,
        text,
    };
    heads.save(c.out)?;
    Ok((heads.image, heads.text))
}

/// How a training step runs: written out on the CPU, or candle's autograd.
enum Stepper {
    Fused(Box<fused::FusedTrainer>),
    Autograd(adamw::TrainOptimizer),
}

/// One step through candle's autograd: the loss, backward, AdamW.
fn autograd_step(
    cfg: &TrainConfig,
    heads: (&Mlp, &Mlp, &Var),
    train: &PairedSet,
    rows: (&[u32], &[u32]),
    same: &[bool],
    rng: &mut Rng,
    opt: &mut adamw::TrainOptimizer,
) -> Result<f32, TrainError> {
    let loss = autograd_loss(cfg, heads, (&train.images, &train.texts), rows, same, rng)?;
    let value = loss.to_scalar::<f32>()?;
    opt.step(&mut loss.backward()?, cfg.grad_clip)?;
    Ok(value)
}

/// The batch loss as a candle graph: both heads' forward passes (dropout masks from `rng`), then
/// the loss (triplet negatives from `rng`). The fused step is tested against this.
pub(crate) fn autograd_loss(
    cfg: &TrainConfig,
    (image, text, log_scale): (&Mlp, &Mlp, &Var),
    (images, texts): (&Tensor, &Tensor),
    (img_idx, text_idx): (&[u32], &[u32]),
    same: &[bool],
    rng: &mut Rng,
) -> candle_core::Result<Tensor> {
    let device = images.device();
    let b = img_idx.len();
    let same: Vec<Vec<bool>> = same.chunks(b).map(|row| row.to_vec()).collect();
    let x_img = images.index_select(&Tensor::from_slice(img_idx, b, device)?, 0)?;
    let x_txt = texts.index_select(&Tensor::from_slice(text_idx, b, device)?, 0)?;
    let e_img = image.forward(&x_img, Some(rng))?;
    let e_txt = text.forward(&x_txt, Some(rng))?;
    match cfg.loss {
        Loss::Triplet => losses::triplet(&e_img, &e_txt, &same, cfg.direction, cfg.margin(), rng),
        Loss::Hardest => losses::hardest(
            &e_img,
            &e_txt,
            &losses::negative_mask(&same, device)?,
            cfg.direction,
            cfg.margin(),
        ),
        Loss::Infonce => {
            losses::infonce(&e_img, &e_txt, &same, log_scale.as_tensor(), cfg.direction)
        }
    }
}

fn heads_config(
    cfg: &TrainConfig,
    name: &str,
    img: &MlpConfig,
    txt: &MlpConfig,
    specs: (&FeatureSpec, &FeatureSpec),
    training: serde_json::Value,
) -> HeadsConfig {
    HeadsConfig {
        format: 1,
        name: name.to_string(),
        loss: serde_json::to_value(cfg.loss)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        direction: serde_json::to_value(cfg.direction)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        score: score_of(cfg),
        image: img.clone(),
        text: txt.clone(),
        image_features: specs.0.clone(),
        text_features: specs.1.clone(),
        training,
    }
}

/// The geometry heads trained with `cfg` are scored in.
fn score_of(cfg: &TrainConfig) -> Score {
    if cfg.normalized() {
        Score::Cosine
    } else {
        Score::NegSquaredL2
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// 100 images with 5 captions each, as unit vectors `base + spread · own direction`: the
    /// caption of an image shares its direction when `paired`, else points anywhere.
    fn space(spread: f32, paired: bool) -> (Tensor, Tensor, Vec<usize>) {
        let (n, dims) = (100, 64);
        let mut rng = crate::rng::Rng::new(3);
        let base: Vec<f32> = (0..dims).map(|_| rng.normal()).collect();
        let directions: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..dims).map(|_| rng.normal()).collect())
            .collect();
        let vector = |d: &[f32], rng: &mut crate::rng::Rng| -> Vec<f32> {
            let v: Vec<f32> = base
                .iter()
                .zip(d)
                .map(|(b, x)| b + spread * (x + 0.3 * rng.normal()))
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        };
        let images: Vec<f32> = directions
            .iter()
            .flat_map(|d| vector(d, &mut rng))
            .collect();
        let text_image: Vec<usize> = (0..n * 5).map(|t| t / 5).collect();
        let texts: Vec<f32> = text_image
            .iter()
            .flat_map(|&i| {
                let d = if paired {
                    directions[i].clone()
                } else {
                    (0..dims).map(|_| rng.normal()).collect()
                };
                vector(&d, &mut rng)
            })
            .collect();
        (
            Tensor::from_vec(images, (n, dims), &Device::Cpu).unwrap(),
            Tensor::from_vec(texts, (n * 5, dims), &Device::Cpu).unwrap(),
            text_image,
        )
    }

    fn verdict(spread_: f32, paired: bool) -> (bool, Metrics, f32) {
        let (images, texts, text_image) = space(spread_, paired);
        let metrics = evaluate_embeddings(&images, &texts, Score::Cosine, &text_image).unwrap();
        let cos = (spread(&images).unwrap().0, spread(&texts).unwrap().0);
        let chance = chance_r10(images.dim(0).unwrap());
        (collapsed(&metrics, cos, chance), metrics, cos.0.min(cos.1))
    }

    #[test]
    fn a_tight_but_useful_space_is_not_called_collapsed() {
        // every embedding within a narrow cone, yet each caption next to its own image
        let (collapsed, metrics, cos) = verdict(0.02, true);
        assert!(
            cos > COLLAPSE_COSINE,
            "the cone is tight: mean cosine {cos}"
        );
        assert!(metrics.t2i.r10 > 90.0, "{metrics:?}");
        assert!(!collapsed);
    }

    #[test]
    fn a_tight_space_that_ranks_at_chance_is_collapsed() {
        let (collapsed, metrics, cos) = verdict(0.02, false);
        assert!(cos > COLLAPSE_COSINE, "mean cosine {cos}");
        assert!(metrics.t2i.r10 < 25.0, "{metrics:?}");
        assert!(collapsed);
        // and a spread-out space is never collapsed, however it ranks
        assert!(!verdict(1.0, false).0);
    }
}
