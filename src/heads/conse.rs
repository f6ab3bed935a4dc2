//! The zero-shot head (ConSE, Norouzi et al. 2014): an image is placed in the text space at the
//! probability-weighted mean of the text embeddings of its top-T ImageNet classes; a caption is its
//! own text embedding. Needs no paired data, so a fresh service can search real photos by caption.
//!
//! A class's text embedding is the mean of two descriptions: "a photo of a {name}" and
//! "{name}: {WordNet gloss}". Captions describe what a class looks like more often than they name
//! it ("a small bird with an orange breast", not "robin"), and the gloss carries those words.
//! Measured by scripts/bench/bench-zeroshot on the demo gallery's held-out captions (45 photos,
//! 112 captions), a plain ConSE in PyTorch → this head (T = 20, EfficientNet's bicubic
//! resampling): caption → image top-3 hit rate 64.3% → 69.6%, R@5 69.6 → 82.1, image → caption
//! top-3 46.7 → 71.1; tuned on the other half.

use candle_core::{Tensor, D};
use candle_nn::{Linear, Module};

use crate::encode::{l2_normalize, EncodeError, TextEncoder};

/// ImageNet-1k class names in class-index order (torchvision's list; scripts/fixtures/make_imagenet_classes.py).
pub const IMAGENET_CLASSES: &str = include_str!("../../models/imagenet_classes.txt");

/// ImageNet-1k: the classifier's outputs and the class texts' lines.
pub const CLASSES: usize = 1000;

/// WordNet's gloss of each class, in class-index order (scripts/fixtures/make_imagenet_definitions.py).
pub const IMAGENET_GLOSSES: &str = include_str!("../../models/imagenet_definitions.txt");

/// Top classes per image by default (`--zero-shot-top`): tuned on the demo gallery's tuning captions
/// (T = 10 and 20 tied on caption → image, 20 was ahead on image → caption).
pub const DEFAULT_TOP: usize = 20;

/// How each class name is phrased before encoding.
pub const PROMPT: &str = "a photo of a {}";

/// Which descriptions of a class are averaged into its text embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassText {
    /// "a photo of a {name}" alone (the head before glosses; kept for the benchmark).
    Name,
    /// "a photo of a {name}" and "{name}: {gloss}", equally weighted.
    NameAndGloss,
    /// CLIP's own prompt, "a photo of a {name}.": what CLIP-family models are classified with.
    ClipPrompt,
}

impl ClassText {
    /// Part of the head's identity: indexes built with other class texts are stale.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::NameAndGloss => "gloss",
            Self::ClipPrompt => "clip-prompt",
        }
    }
}

pub struct ConSE {
    classifier: Linear,
    /// `[1000, text_dims]`, L2-normalised.
    class_embeddings: Tensor,
    top: usize,
}

impl ConSE {
    pub fn new(
        classifier: Linear,
        text: &TextEncoder,
        top: usize,
        class_text: ClassText,
    ) -> Result<Self, EncodeError> {
        Ok(Self::with_class_embeddings(
            classifier,
            class_embeddings(text, class_text)?,
            top,
        ))
    }

    /// From class embeddings already made (`[1000, text_dims]`, L2-normalised), e.g. read back by
    /// [`super::class_cache`].
    pub fn with_class_embeddings(classifier: Linear, class_embeddings: Tensor, top: usize) -> Self {
        Self {
            classifier,
            class_embeddings,
            top: top.max(1),
        }
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

/// Every class's text embedding, `[1000, text_dims]`, L2-normalised.
pub fn class_embeddings(text: &TextEncoder, class_text: ClassText) -> Result<Tensor, EncodeError> {
    let names = IMAGENET_CLASSES.lines();
    if class_text == ClassText::ClipPrompt {
        return encode_all(text, names.map(|n| format!("a photo of a {n}.")));
    }
    let mut embeddings = encode_all(text, names.clone().map(|n| PROMPT.replace("{}", n)))?;
    if class_text == ClassText::NameAndGloss {
        let described = names
            .zip(IMAGENET_GLOSSES.lines())
            .map(|(name, gloss)| format!("{name}: {gloss}"));
        embeddings = (embeddings + encode_all(text, described)?)?;
    }
    Ok(l2_normalize(&embeddings)?)
}

/// What the class embeddings are made from: a cache of them is valid only for the same texts.
pub fn class_texts_hash(class_text: ClassText) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [PROMPT, class_text.tag(), IMAGENET_CLASSES, IMAGENET_GLOSSES] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// The L2-normalised embeddings of `texts`, `[n, text_dims]`, encoded 64 at a time.
fn encode_all(
    text: &TextEncoder,
    texts: impl Iterator<Item = String>,
) -> Result<Tensor, EncodeError> {
    let texts: Vec<String> = texts.collect();
    let mut parts = Vec::new();
    for chunk in texts.chunks(64) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        parts.push(text.encode(&refs)?);
    }
    Ok(l2_normalize(&Tensor::cat(&parts, 0)?)?)
}
