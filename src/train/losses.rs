//! Metric-learning losses over a batch of (image, caption) pairs. Row `i` of `images` and `texts`
//! is a positive pair; `same[i][j]` says pairs `i` and `j` share an image or a caption text
//! (`train::negatives`; then `j` is no negative for `i`, whatever the loss).

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// The original: one random negative per anchor, squared L2, margin 1.0, unnormalised.
    Triplet,
    /// VSE++ max-violation: the hardest in-batch negative, cosine, margin 0.2.
    Hardest,
    /// Symmetric cross-entropy over in-batch similarities with a learnable temperature.
    Infonce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Image anchors, caption positives/negatives.
    I2t,
    /// Caption anchors, image positives/negatives.
    T2i,
    /// Both, one model.
    Joint,
}

impl Direction {
    pub fn i2t(self) -> bool {
        self != Direction::T2i
    }
    pub fn t2i(self) -> bool {
        self != Direction::I2t
    }
}

/// `[B, B]` additive mask: a large negative where `j` is not a negative of `i` (same image,
/// including the diagonal), 0 elsewhere.
pub fn negative_mask(
    same: &[Vec<bool>],
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    let b = same.len();
    let v: Vec<f32> = same
        .iter()
        .flat_map(|row| row.iter().map(|&s| if s { -1e4 } else { 0.0 }))
        .collect();
    Tensor::from_vec(v, (b, b), device)
}

/// Original triplet loss: for each anchor one random negative from another image.
pub fn triplet(
    images: &Tensor,
    texts: &Tensor,
    same: &[Vec<bool>],
    direction: Direction,
    margin: f32,
    rng: &mut Rng,
) -> candle_core::Result<Tensor> {
    let b = same.len();
    let negatives: Vec<u32> = (0..b)
        .map(|i| {
            // a few tries for a negative from another image; batches of one image fall back to self
            (0..16)
                .map(|_| rng.below(b))
                .find(|&j| !same[i][j])
                .unwrap_or(i) as u32
        })
        .collect();
    let neg = Tensor::from_vec(negatives, b, images.device())?;
    let sq = |a: &Tensor, c: &Tensor| (a - c)?.sqr()?.sum(D::Minus1);
    let hinge = |anchor: &Tensor, pos: &Tensor, negs: &Tensor| -> candle_core::Result<Tensor> {
        ((sq(anchor, pos)? - sq(anchor, &negs.index_select(&neg, 0)?)?)? + margin as f64)?
            .relu()?
            .mean_all()
    };
    let mut loss = Tensor::new(0f32, images.device())?;
    if direction.i2t() {
        loss = (loss + hinge(images, texts, texts)?)?;
    }
    if direction.t2i() {
        loss = (loss + hinge(texts, images, images)?)?;
    }
    Ok(loss)
}

/// VSE++ max-violation on L2-normalised embeddings, summed over the batch.
pub fn hardest(
    images: &Tensor,
    texts: &Tensor,
    mask: &Tensor,
    direction: Direction,
    margin: f32,
) -> candle_core::Result<Tensor> {
    let scores = images.matmul(&texts.t()?)?; // [images, texts]
    let positive = (images * texts)?.sum(D::Minus1)?; // diagonal
    let masked = (&scores + mask)?;
    let mut loss = Tensor::new(0f32, images.device())?;
    if direction.i2t() {
        // image i against every other caption j
        let cost = (masked.broadcast_sub(&positive.unsqueeze(1)?)? + margin as f64)?.relu()?;
        loss = (loss + cost.max(1)?.sum_all()?)?;
    }
    if direction.t2i() {
        // caption j against every other image i
        let cost = (masked.broadcast_sub(&positive.unsqueeze(0)?)? + margin as f64)?.relu()?;
        loss = (loss + cost.max(0)?.sum_all()?)?;
    }
    Ok(loss)
}

/// Symmetric InfoNCE with logit scale `exp(log_scale)` (clamped at 100, as CLIP does).
pub fn infonce(
    images: &Tensor,
    texts: &Tensor,
    same: &[Vec<bool>],
    log_scale: &Tensor,
    direction: Direction,
) -> candle_core::Result<Tensor> {
    let b = same.len();
    // other captions of the same image are neither targets nor negatives
    let v: Vec<f32> = same
        .iter()
        .enumerate()
        .flat_map(|(i, row)| {
            row.iter()
                .enumerate()
                .map(move |(j, &s)| if s && i != j { -1e4 } else { 0.0 })
        })
        .collect();
    let mask = Tensor::from_vec(v, (b, b), images.device())?;
    let scale = log_scale.exp()?.clamp(0f32, 100f32)?;
    let logits = (images.matmul(&texts.t()?)?.broadcast_mul(&scale)? + mask)?;
    let targets = Tensor::arange(0u32, b as u32, images.device())?;
    let mut terms = Vec::new();
    if direction.i2t() {
        terms.push(candle_nn::loss::cross_entropy(&logits, &targets)?);
    }
    if direction.t2i() {
        terms.push(candle_nn::loss::cross_entropy(
            &logits.t()?.contiguous()?,
            &targets,
        )?);
    }
    let n = terms.len() as f64;
    Tensor::stack(&terms, 0)?.sum_all()? / n
}
