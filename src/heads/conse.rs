//! The zero-shot head (ConSE, Norouzi et al. 2014): an image is placed in the text space at the
//! probability-weighted mean of the text embeddings of its top-T ImageNet classes; a caption is its
//! own text embedding. Needs no paired data, so a fresh service can search real photos by caption.

use candle_core::{Tensor, D};
use candle_nn::{Linear, Module};

use crate::encode::{l2_normalize, EncodeError, TextEncoder};

/// ImageNet-1k class names in class-index order (torchvision's list; scripts/fixtures/make_imagenet_classes.py).
pub const IMAGENET_CLASSES: &str = include_str!("../../models/imagenet_classes.txt");

/// How each class name is phrased before encoding.
pub const PROMPT: &str = "a photo of a {}";

pub struct ConSE {
    classifier: Linear,
    /// `[1000, text_dims]`, L2-normalised.
    class_embeddings: Tensor,
    top: usize,
}

impl ConSE {
    pub fn new(classifier: Linear, text: &TextEncoder, top: usize) -> Result<Self, EncodeError> {
        let prompts: Vec<String> = IMAGENET_CLASSES
            .lines()
            .map(|name| PROMPT.replace("{}", name))
            .collect();
        let mut parts = Vec::new();
        for chunk in prompts.chunks(64) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            parts.push(text.encode(&refs)?);
        }
        let class_embeddings = l2_normalize(&Tensor::cat(&parts, 0)?)?;
        Ok(Self {
            classifier,
            class_embeddings,
            top: top.max(1),
        })
    }

    pub fn top(&self) -> usize {
        self.top
    }

    /// Pooled image features `[n, image_dims]` → `[n, text_dims]`, L2-normalised.
    pub fn images(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        let probs = candle_nn::ops::softmax(&self.classifier.forward(features)?, D::Minus1)?;
        let weights = if crate::device::cpu_kernels(probs.device()) {
            self.top_weights_host(&probs)?
        } else {
            self.top_weights_on_device(&probs)?
        };
        l2_normalize(&weights.matmul(&self.class_embeddings)?)
    }

    /// The top-T probabilities of each row, renormalised to sum to 1, computed where the
    /// probabilities are (a GPU never copies them to the host): a class is kept when its
    /// probability is at least the row's T-th largest.
    fn top_weights_on_device(&self, probs: &Tensor) -> candle_core::Result<Tensor> {
        let classes = probs.dim(1)?;
        let (sorted, _) = probs.sort_last_dim(false)?;
        let threshold = sorted.narrow(1, self.top.min(classes) - 1, 1)?;
        let kept = probs.broadcast_ge(&threshold)?.to_dtype(probs.dtype())?;
        let top = (probs * kept)?;
        let total = top.sum_keepdim(1)?.clamp(f32::MIN_POSITIVE, f32::MAX)?;
        top.broadcast_div(&total)
    }

    /// The same on the CPU, in a plain loop (ties broken by class index).
    fn top_weights_host(&self, probs: &Tensor) -> candle_core::Result<Tensor> {
        let rows: Vec<Vec<f32>> = probs.to_vec2()?;
        let classes = rows.first().map_or(0, Vec::len);
        // sparse weights: the top-T probabilities of each row, renormalised to sum to 1
        let mut weights = vec![0f32; rows.len() * classes];
        for (r, row) in rows.iter().enumerate() {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let top = &order[..self.top.min(order.len())];
            let total: f32 = top.iter().map(|&c| row[c]).sum();
            for &c in top {
                weights[r * classes + c] = row[c] / total.max(f32::MIN_POSITIVE);
            }
        }
        Tensor::from_vec(weights, (rows.len(), classes), probs.device())
    }

    /// Caption features → the same space (just normalised).
    pub fn texts(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        l2_normalize(features)
    }
}
