//! Tags: an image's top ImageNet labels with their probabilities, from the image model's own
//! classifier, or for a CLIP-family model zero-shot the CLIP way (its text tower over "a photo of
//! a {class}." prompts, cosines scaled by the model's logit scale: a softmax for CLIP, SigLIP's
//! sigmoids). They give uncaptioned photos (a folder library) words: shown on the page,
//! returned with image details, with uncaptioned search hits, and with an image query's results.

use std::sync::Arc;

use candle_core::{Tensor, D};

use super::{Service, ServiceError};
use crate::{encode::l2_normalize, heads::conse::IMAGENET_CLASSES, vectors::Features};

/// A CLIP-family model's zero-shot ImageNet classifier.
pub struct ZeroShotTags {
    /// `[1000, dims]` class prompt embeddings, L2-normalised.
    pub classes: Tensor,
    pub scale: f32,
    /// SigLIP's logit bias (its probabilities are sigmoids); `None`: CLIP's softmax.
    pub bias: Option<f32>,
}

impl ZeroShotTags {
    fn probabilities(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        let cosines = l2_normalize(features)?.matmul(&self.classes.t()?)?;
        crate::encode::clip::zero_shot_probabilities(&cosines, self.scale, self.bias)
    }
}

/// Labels per image.
pub const TAGS: usize = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub label: String,
    pub score: f32,
}

impl Service {
    /// The top labels of each image's features (none when the server has no image encoder, or its
    /// model has no classifier). Runs off the async runtime: one small matrix product per call.
    pub async fn tags(&self, features: Vec<Features>) -> Result<Vec<Vec<Tag>>, ServiceError> {
        let Some(encoder) = self.engine.image_encoder().map(Arc::clone) else {
            return Ok(features.iter().map(|_| Vec::new()).collect());
        };
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let zero_shot = self.zero_shot_tags.clone();
        let rows = tokio::task::spawn_blocking(move || -> candle_core::Result<Vec<Vec<f32>>> {
            let dims = features[0].dims();
            let flat: Vec<f32> = features
                .iter()
                .flat_map(|f| f.as_slice().to_vec())
                .collect();
            let x = Tensor::from_vec(flat, (features.len(), dims), encoder.device())?;
            if let Some(zero_shot) = zero_shot {
                return zero_shot
                    .probabilities(&x)?
                    .to_device(&candle_core::Device::Cpu)?
                    .to_vec2();
            }
            match encoder.logits(&x) {
                Some(logits) => {
                    candle_nn::ops::softmax(&logits.map_err(candle_core::Error::wrap)?, D::Minus1)?
                        .to_device(&candle_core::Device::Cpu)?
                        .to_vec2()
                }
                None => Ok(vec![Vec::new(); features.len()]),
            }
        })
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))??;
        let labels: Vec<&str> = IMAGENET_CLASSES.lines().collect();
        Ok(rows
            .into_iter()
            .map(|probs| {
                let mut order: Vec<usize> = (0..probs.len()).collect();
                order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
                order
                    .into_iter()
                    .take(TAGS)
                    .filter_map(|c| {
                        let name = labels.get(c)?.split(',').next()?.trim();
                        Some(Tag {
                            label: name.to_string(),
                            score: probs[c],
                        })
                    })
                    .collect()
            })
            .collect())
    }
}
