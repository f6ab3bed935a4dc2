//! The vision tower (a ViT): patches → linear embedding (the stride-`p` convolution as one matrix
//! product), class token and positions, the encoder stack, then the class token through the
//! post-LayerNorm and projection (CLIP), or SigLIP's attention-probe pooling head: what
//! `get_image_features` / `encode_image` return.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{LayerNorm, Linear, VarBuilder};

use super::{
    config::{ClipConfig, Family, VisionConfig},
    encoder::{layer_norm, projection, Encoder, Keys},
};
use crate::encode::{
    transformer::{kernels::Activation, Dense},
    EncodeError,
};

/// The vision tower's dense layers are f32 (int8 is for text); [`Dense`] keeps their weights
/// in the layout the GEMM reads without repacking.
fn f32_dense(linear: Linear) -> candle_core::Result<Dense> {
    Dense::new(linear, false)
}

/// SigLIP's multi-head attention pooling: one learned query over all tokens, then a residual MLP.
struct ProbeHead {
    probe: Tensor,
    q: Dense,
    k: Dense,
    v: Dense,
    out: Dense,
    norm: LayerNorm,
    fc1: Dense,
    fc2: Dense,
    heads: usize,
    activation: Activation,
}

impl ProbeHead {
    fn load(vb: VarBuilder, cfg: &VisionConfig) -> candle_core::Result<Self> {
        let h = cfg.tower.hidden;
        let a = vb.pp("attention");
        let w = a.get((3 * h, h), "in_proj_weight")?;
        let b = a.get(3 * h, "in_proj_bias")?;
        let part = |i: usize| -> candle_core::Result<Dense> {
            f32_dense(Linear::new(
                w.narrow(0, i * h, h)?.contiguous()?,
                Some(b.narrow(0, i * h, h)?.contiguous()?),
            ))
        };
        Ok(Self {
            probe: vb.get((1, 1, h), "probe")?.reshape((1, h))?,
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out: f32_dense(candle_nn::linear(h, h, a.pp("out_proj"))?)?,
            norm: layer_norm(&vb, "layernorm", h, cfg.tower.eps)?,
            fc1: f32_dense(candle_nn::linear(
                h,
                cfg.tower.intermediate,
                vb.pp("mlp.fc1"),
            )?)?,
            fc2: f32_dense(candle_nn::linear(
                cfg.tower.intermediate,
                h,
                vb.pp("mlp.fc2"),
            )?)?,
            heads: cfg.tower.heads,
            activation: cfg.tower.activation,
        })
    }

    /// `x` `[B, L, H]` → `[B, H]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let d = h / self.heads;
        let q = self
            .q
            .forward(&self.probe)?
            .reshape((1, self.heads, 1, d))?;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, l, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let scores = (q.broadcast_matmul(&k.t()?)? / (d as f64).sqrt())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.reshape((b, h))?;
        let attended = self.out.forward(&context)?;
        let inner = self
            .activation
            .apply(&self.fc1.forward(&self.norm.forward(&attended)?)?)?;
        attended + self.fc2.forward(&inner)?
    }
}

enum Pooling {
    /// The class token, then the projection (CLIP).
    ClassToken(Dense),
    /// SigLIP's pooling head (its output is the embedding).
    Probe(Box<ProbeHead>),
}

pub struct ClipVision {
    /// `[H, 3·p·p]` (the convolution's weight flattened), with SigLIP's bias.
    patch: Dense,
    class_embedding: Option<Tensor>,
    /// `[tokens, H]`.
    positions: Tensor,
    pre_norm: Option<LayerNorm>,
    encoder: Encoder,
    post_norm: LayerNorm,
    pooling: Pooling,
    cfg: VisionConfig,
    /// How a zero-shot classifier turns cosines into logits: CLIP's `logit_scale` (exp'd), and
    /// SigLIP's `logit_bias` (its probabilities are sigmoids, CLIP's a softmax).
    pub logit_scale: f32,
    pub logit_bias: Option<f32>,
}

impl ClipVision {
    pub fn load(
        dir: &Path,
        name: &str,
        cfg: &ClipConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, EncodeError> {
        let vb = super::weights(dir, cfg.family, name, dtype, device)?;
        Self::from_weights(vb, cfg).map_err(|source| EncodeError::Weights {
            model: name.to_string(),
            source,
        })
    }

    fn from_weights(vb: VarBuilder, cfg: &ClipConfig) -> candle_core::Result<Self> {
        let v = &cfg.vision;
        let (h, p) = (v.tower.hidden, v.patch_size);
        if !v.image_size.is_multiple_of(p) {
            candle_core::bail!(
                "image_size {} is not a multiple of patch_size {p}",
                v.image_size
            )
        }
        let grid = v.image_size / p;
        let patch_in = 3 * p * p;
        let scalar = |name: &str| -> candle_core::Result<f32> {
            vb.get_unchecked_dtype(name, DType::F32)?
                .flatten_all()?
                .get(0)?
                .to_scalar::<f32>()
        };
        let logit_scale = scalar("logit_scale")?.exp();
        let (keys, tower) = match cfg.family {
            Family::Clip | Family::Siglip => (Keys::Hf, vb.pp("vision_model")),
            Family::OpenClip => (Keys::OpenClip, vb.pp("visual")),
        };
        let flat = |w: Tensor| w.reshape((h, patch_in));
        let me = match cfg.family {
            Family::Clip => {
                let e = tower.pp("embeddings");
                Self {
                    patch: f32_dense(Linear::new(
                        flat(e.get((h, 3, p, p), "patch_embedding.weight")?)?,
                        None,
                    ))?,
                    class_embedding: Some(e.get(h, "class_embedding")?),
                    positions: e.get((grid * grid + 1, h), "position_embedding.weight")?,
                    pre_norm: Some(layer_norm(&tower, "pre_layrnorm", h, v.tower.eps)?),
                    encoder: Encoder::load(&tower, keys, &v.tower, false, false)?,
                    post_norm: layer_norm(&tower, "post_layernorm", h, v.tower.eps)?,
                    pooling: Pooling::ClassToken(f32_dense(projection(
                        &vb,
                        keys,
                        "visual_projection",
                        (h, v.projection),
                        false,
                    )?)?),
                    cfg: v.clone(),
                    logit_scale,
                    logit_bias: None,
                }
            }
            Family::Siglip => {
                let e = tower.pp("embeddings");
                Self {
                    patch: f32_dense(Linear::new(
                        flat(e.get((h, 3, p, p), "patch_embedding.weight")?)?,
                        Some(e.get(h, "patch_embedding.bias")?),
                    ))?,
                    class_embedding: None,
                    positions: e.get((grid * grid, h), "position_embedding.weight")?,
                    pre_norm: None,
                    encoder: Encoder::load(&tower, keys, &v.tower, false, false)?,
                    post_norm: layer_norm(&tower, "post_layernorm", h, v.tower.eps)?,
                    pooling: Pooling::Probe(Box::new(ProbeHead::load(tower.pp("head"), v)?)),
                    cfg: v.clone(),
                    logit_scale,
                    logit_bias: Some(scalar("logit_bias")?),
                }
            }
            Family::OpenClip => Self {
                patch: f32_dense(Linear::new(
                    flat(tower.get((h, 3, p, p), "conv1.weight")?)?,
                    None,
                ))?,
                class_embedding: Some(tower.get(h, "class_embedding")?),
                positions: tower.get((grid * grid + 1, h), "positional_embedding")?,
                pre_norm: Some(layer_norm(&tower, "ln_pre", h, v.tower.eps)?),
                encoder: Encoder::load(&tower, keys, &v.tower, false, false)?,
                post_norm: layer_norm(&tower, "ln_post", h, v.tower.eps)?,
                pooling: Pooling::ClassToken(f32_dense(projection(
                    &tower,
                    keys,
                    "proj",
                    (h, v.projection),
                    false,
                )?)?),
                cfg: v.clone(),
                logit_scale,
                logit_bias: None,
            },
        };
        Ok(me)
    }

    pub fn dims(&self) -> usize {
        self.cfg.projection
    }

    /// `[B, 3, S, S]` normalised pixels → `[B, projection]` image features (not normalised).
    pub fn features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, s, s2) = pixels.dims4()?;
        let (p, size) = (self.cfg.patch_size, self.cfg.image_size);
        if c != 3 || s != size || s2 != size {
            candle_core::bail!(
                "the vision tower takes [B, 3, {size}, {size}], not {:?}",
                pixels.dims()
            )
        }
        let g = s / p;
        let h = self.cfg.tower.hidden;
        // [B, 3, g, p, g, p] → [B, g, g, 3, p, p]: each patch's pixels in the convolution
        // weight's (channel, row, column) order
        let patches = pixels
            .reshape((b, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, 3 * p * p))?;
        let mut x = self.patch.forward(&patches)?.reshape((b, g * g, h))?;
        if let Some(class) = &self.class_embedding {
            let class = class.reshape((1, 1, h))?.broadcast_as((b, 1, h))?;
            x = Tensor::cat(&[&class.contiguous()?, &x], 1)?;
        }
        let l = x.dim(1)?;
        let mut x = x.broadcast_add(&self.positions.unsqueeze(0)?)?;
        if let Some(norm) = &self.pre_norm {
            x = norm.forward(&x)?;
        }
        let mask = Tensor::ones((b, l), x.dtype(), x.device())?;
        let x = self
            .encoder
            .forward(&x.reshape((b * l, h))?, (b, l), &mask, None)?;
        match &self.pooling {
            Pooling::ClassToken(projection) => {
                let rows: Vec<u32> = (0..b as u32).map(|i| i * l as u32).collect();
                let class = x.index_select(&Tensor::from_vec(rows, b, x.device())?, 0)?;
                projection.forward(&self.post_norm.forward(&class)?)
            }
            Pooling::Probe(head) => head.forward(&self.post_norm.forward(&x)?.reshape((b, l, h))?),
        }
    }
}

/// Zero-shot probabilities from cosines `[N, C]` the way the family was trained: CLIP's softmax
/// over scaled cosines, SigLIP's independent sigmoids of scaled cosines plus its bias.
pub fn zero_shot_probabilities(
    cosines: &Tensor,
    scale: f32,
    bias: Option<f32>,
) -> candle_core::Result<Tensor> {
    let logits = (cosines * scale as f64)?;
    match bias {
        Some(bias) => candle_nn::ops::sigmoid(&(logits + bias as f64)?),
        None => candle_nn::ops::softmax(&logits, D::Minus1),
    }
}
