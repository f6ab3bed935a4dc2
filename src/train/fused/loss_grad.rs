//! The three losses of `train::losses` with their gradients written out, over plain row-major
//! embeddings `[B, D]` (row `i` of images and texts is a positive pair). Same definitions,
//! masks and negative sampling (same RNG draws) as the candle versions; the tests in
//! `fused::tests` hold both to the same values and gradients.

use super::gemm::{matmul, View};
use crate::{
    rng::Rng,
    train::losses::{Direction, Loss},
};

/// Loss value and its gradients with respect to both embeddings (and the InfoNCE log-scale).
#[derive(Default)]
pub struct LossGrads {
    pub loss: f32,
    pub images: Vec<f32>,
    pub texts: Vec<f32>,
    pub log_scale: f32,
    /// `[B, B]` scratch: similarities, then their gradient.
    scores: Vec<f32>,
    d_scores: Vec<f32>,
}

pub struct Batch<'a> {
    pub images: &'a [f32],
    pub texts: &'a [f32],
    pub rows: usize,
    pub dims: usize,
    /// `same[i * rows + j]`: pairs i and j are no negatives of each other (one image or one
    /// caption text, `train::negatives`).
    pub same: &'a [bool],
}

impl LossGrads {
    pub fn compute(
        &mut self,
        loss: Loss,
        batch: &Batch,
        direction: Direction,
        margin: f32,
        log_scale: f32,
        rng: &mut Rng,
    ) {
        let n = batch.rows * batch.dims;
        assert!(
            batch.images.len() == n
                && batch.texts.len() == n
                && batch.same.len() == batch.rows * batch.rows
        );
        for g in [&mut self.images, &mut self.texts] {
            g.clear();
            g.resize(n, 0.0);
        }
        self.log_scale = 0.0;
        match loss {
            Loss::Triplet => self.triplet(batch, direction, margin, rng),
            Loss::Hardest => {
                self.similarities(batch);
                self.hardest(batch, direction, margin);
                self.back_through_similarities(batch);
            }
            Loss::Infonce => {
                self.similarities(batch);
                self.infonce(batch, direction, log_scale);
                self.back_through_similarities(batch);
            }
        }
    }

    /// `scores[i, j]` = image i · text j.
    fn similarities(&mut self, b: &Batch) {
        self.scores.clear();
        self.scores.resize(b.rows * b.rows, 0.0);
        matmul(
            &mut self.scores,
            false,
            View::new(b.images, b.rows, b.dims),
            View::new(b.texts, b.rows, b.dims).t(),
        );
        self.d_scores.clear();
        self.d_scores.resize(b.rows * b.rows, 0.0);
    }

    /// images += dS · texts, texts += dSᵀ · images.
    fn back_through_similarities(&mut self, b: &Batch) {
        let ds = View::new(&self.d_scores, b.rows, b.rows);
        matmul(
            &mut self.images,
            true,
            ds,
            View::new(b.texts, b.rows, b.dims),
        );
        matmul(
            &mut self.texts,
            true,
            ds.t(),
            View::new(b.images, b.rows, b.dims),
        );
    }

    /// Original triplet: one random negative (from another image) per anchor, squared L2, hinge
    /// at `margin`, mean over anchors, per direction.
    fn triplet(&mut self, b: &Batch, direction: Direction, margin: f32, rng: &mut Rng) {
        let rows = b.rows;
        // drawn once, shared by both directions, as the candle version does
        let negatives: Vec<usize> = (0..rows)
            .map(|i| {
                (0..16)
                    .map(|_| rng.below(rows))
                    .find(|&j| !b.same[i * rows + j])
                    .unwrap_or(i)
            })
            .collect();
        let mut total = 0.0;
        if direction.i2t() {
            total += triplet_side(
                (b.images, &mut self.images),
                (b.texts, &mut self.texts),
                &negatives,
                b.dims,
                margin,
            );
        }
        if direction.t2i() {
            total += triplet_side(
                (b.texts, &mut self.texts),
                (b.images, &mut self.images),
                &negatives,
                b.dims,
                margin,
            );
        }
        self.loss = total;
    }

    /// VSE++ max-violation: per anchor the hardest in-batch negative (not sharing its image),
    /// hinge at `margin` on cosine similarities, summed over anchors and directions.
    fn hardest(&mut self, b: &Batch, direction: Direction, margin: f32) {
        let rows = b.rows;
        let positive: Vec<f32> = (0..rows).map(|i| self.scores[i * rows + i]).collect();
        let mut total = 0.0f32;
        let cost = |s: &Vec<f32>, i: usize, j: usize, anchor: usize| {
            let masked = if b.same[i * rows + j] { -1e4 } else { 0.0 };
            (s[i * rows + j] + masked - positive[anchor] + margin).max(0.0)
        };
        if direction.i2t() {
            for i in 0..rows {
                let (j, worst) = hardest_of((0..rows).map(|j| cost(&self.scores, i, j, i)));
                if worst > 0.0 {
                    total += worst;
                    self.d_scores[i * rows + j] += 1.0;
                    self.d_scores[i * rows + i] -= 1.0;
                }
            }
        }
        if direction.t2i() {
            for j in 0..rows {
                let (i, worst) = hardest_of((0..rows).map(|i| cost(&self.scores, i, j, j)));
                if worst > 0.0 {
                    total += worst;
                    self.d_scores[i * rows + j] += 1.0;
                    self.d_scores[j * rows + j] -= 1.0;
                }
            }
        }
        self.loss = total;
    }

    /// Symmetric cross-entropy over `exp(log_scale)`-scaled similarities (scale clamped at
    /// 100); pairs that are no negatives (other than the target) are masked out, averaged over directions.
    fn infonce(&mut self, b: &Batch, direction: Direction, log_scale: f32) {
        let rows = b.rows;
        let raw_scale = log_scale.exp();
        let scale = raw_scale.clamp(0.0, 100.0);
        let logits: Vec<f32> = (0..rows * rows)
            .map(|ij| {
                let (i, j) = (ij / rows, ij % rows);
                let masked = if b.same[ij] && i != j { -1e4 } else { 0.0 };
                self.scores[ij] * scale + masked
            })
            .collect();
        let terms = direction.i2t() as usize + direction.t2i() as usize;
        let weight = 1.0 / (rows * terms) as f32;
        let mut d_logits = vec![0f32; rows * rows];
        let mut total = 0.0f32;
        // rows (image → captions) read logits[i, ·]; columns (caption → images) read logits[·, j]
        let mut softmax_ce = |at: &dyn Fn(usize, usize) -> usize| {
            for a in 0..rows {
                let max = (0..rows)
                    .map(|o| logits[at(a, o)])
                    .fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = (0..rows).map(|o| (logits[at(a, o)] - max).exp()).sum();
                let lse = max + sum.ln();
                total += (lse - logits[at(a, a)]) * weight;
                for o in 0..rows {
                    let p = (logits[at(a, o)] - lse).exp();
                    d_logits[at(a, o)] += (p - if o == a { 1.0 } else { 0.0 }) * weight;
                }
            }
        };
        if direction.i2t() {
            softmax_ce(&|a, o| a * rows + o);
        }
        if direction.t2i() {
            softmax_ce(&|a, o| o * rows + a);
        }
        self.loss = total;
        let mut d_scale = 0.0f32;
        for ((ds, &dl), &s) in self.d_scores.iter_mut().zip(&d_logits).zip(&self.scores) {
            *ds = dl * scale;
            d_scale += dl * s;
        }
        // the clamp passes no gradient once the scale sits at its ceiling
        self.log_scale = if raw_scale <= 100.0 {
            d_scale * raw_scale
        } else {
            0.0
        };
    }
}

/// Index and value of the first maximum. On a tie (two pairs of one image, without dropout,
/// score a caption identically) one entry takes the gradient, as PyTorch's `max` does; candle's
/// autograd would give every tied entry the full gradient, counting one violation twice.
fn hardest_of(costs: impl Iterator<Item = f32>) -> (usize, f32) {
    costs
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (j, c)| {
            if c > best.1 {
                (j, c)
            } else {
                best
            }
        })
}

/// One direction of the triplet loss: anchor `i` of `anchors` against positive `i` and negative
/// `negatives[i]` of `others`; returns the mean hinge and adds its gradients.
fn triplet_side(
    (anchors, d_anchors): (&[f32], &mut [f32]),
    (others, d_others): (&[f32], &mut [f32]),
    negatives: &[usize],
    dims: usize,
    margin: f32,
) -> f32 {
    let weight = 1.0 / negatives.len() as f32;
    let row = |i: usize| i * dims..(i + 1) * dims;
    let sq = |a: &[f32], c: &[f32]| a.iter().zip(c).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let mut sum = 0.0;
    for (i, &j) in negatives.iter().enumerate() {
        let (a, p, q) = (&anchors[row(i)], &others[row(i)], &others[row(j)]);
        let hinge = sq(a, p) - sq(a, q) + margin;
        if hinge < 0.0 {
            continue; // relu: no gradient below the margin
        }
        sum += hinge;
        // d/da = 2(q - p), d/dp = -2(a - p), d/dq = 2(a - q)
        for k in 0..dims {
            d_anchors[i * dims + k] += weight * 2.0 * (q[k] - p[k]);
            d_others[i * dims + k] -= weight * 2.0 * (a[k] - p[k]);
            d_others[j * dims + k] += weight * 2.0 * (a[k] - q[k]);
        }
    }
    sum * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tied_hardest_negative_takes_the_gradient_once() {
        // images 0 and 1 are identical (one picture twice in the batch, no dropout); caption 2
        // belongs to image 2 and is scored equally by both
        let images = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let texts = [1.0, 0.0, 0.6, 0.8, 0.6, 0.8];
        let same = [
            true, true, false, //
            true, true, false, //
            false, false, true,
        ];
        let batch = Batch {
            images: &images,
            texts: &texts,
            rows: 3,
            dims: 2,
            same: &same,
        };
        let mut g = LossGrads::default();
        g.compute(
            Loss::Hardest,
            &batch,
            Direction::T2i,
            0.5,
            0.0,
            &mut Rng::new(0),
        );
        // caption 2: positive 0.8, images 0 and 1 both score 0.6, violation 0.6 + 0.5 - 0.8 = 0.3;
        // caption 1: positive 0.6, image 2 scores 0.8, violation 0.7; caption 0: none
        assert!((g.loss - 1.0).abs() < 1e-6, "0.3 + 0.7, got {}", g.loss);
        let rows = 3;
        let column: Vec<f32> = (0..rows).map(|i| g.d_scores[i * rows + 2]).collect();
        assert_eq!(
            column,
            vec![1.0, 0.0, -1.0],
            "one tied image takes the gradient"
        );
    }
}
