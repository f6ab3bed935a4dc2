//! The pre-LayerNorm transformer stack both towers of every CLIP-family model use:
//! `x + attn(ln1(x))`, then `x + fc2(act(fc1(ln2(x))))`, read under either layout's key names.
//!
//! Tokens run as one `[T, H]` matrix of the batch's real tokens (padding packed out, as our BERT
//! does), so each dense layer is one matrix product, Q, K and V are one fused product, and
//! attention is our kernel over all (sequence, head) pairs (causal for CLIP's text tower).

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};

use super::config::Tower;
use crate::encode::transformer::{kernels::Activation, self_attention, Dense, Packing};

/// Whose key names the snapshot's tensors carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// transformers: `encoder.layers.N.self_attn.q_proj`, `layer_norm1`, `mlp.fc1`, …
    Hf,
    /// open_clip: `transformer.resblocks.N.attn.in_proj_weight`, `ln_1`, `mlp.c_fc`, …
    OpenClip,
}

pub fn layer_norm(
    vb: &VarBuilder,
    name: &str,
    h: usize,
    eps: f64,
) -> candle_core::Result<LayerNorm> {
    candle_nn::layer_norm(h, eps, vb.pp(name))
}

struct Layer {
    ln1: LayerNorm,
    qkv: Dense,
    out: Dense,
    ln2: LayerNorm,
    fc1: Dense,
    fc2: Dense,
}

pub struct Encoder {
    layers: Vec<Layer>,
    heads: usize,
    activation: Activation,
    causal: bool,
}

impl Encoder {
    /// `vb` at the tower's root (`text_model.`, `visual.`, …); `int8`: dense layers in int8.
    pub fn load(
        vb: &VarBuilder,
        keys: Keys,
        tower: &Tower,
        causal: bool,
        int8: bool,
    ) -> candle_core::Result<Self> {
        let (h, inter, eps) = (tower.hidden, tower.intermediate, tower.eps);
        let layers = (0..tower.layers)
            .map(|i| -> candle_core::Result<Layer> {
                Ok(match keys {
                    Keys::Hf => {
                        let l = vb.pp(format!("encoder.layers.{i}"));
                        let a = l.pp("self_attn");
                        let proj = |n: &str| candle_nn::linear(h, h, a.pp(n));
                        let (q, k, v) = (proj("q_proj")?, proj("k_proj")?, proj("v_proj")?);
                        let weight = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
                        let bias = Tensor::cat(&[bias_of(&q)?, bias_of(&k)?, bias_of(&v)?], 0)?;
                        Layer {
                            ln1: layer_norm(&l, "layer_norm1", h, eps)?,
                            qkv: Dense::new(Linear::new(weight, Some(bias)), int8)?,
                            out: Dense::new(proj("out_proj")?, int8)?,
                            ln2: layer_norm(&l, "layer_norm2", h, eps)?,
                            fc1: Dense::new(candle_nn::linear(h, inter, l.pp("mlp.fc1"))?, int8)?,
                            fc2: Dense::new(candle_nn::linear(inter, h, l.pp("mlp.fc2"))?, int8)?,
                        }
                    }
                    Keys::OpenClip => {
                        let l = vb.pp(format!("transformer.resblocks.{i}"));
                        let a = l.pp("attn");
                        let qkv = Linear::new(
                            a.get((3 * h, h), "in_proj_weight")?,
                            Some(a.get(3 * h, "in_proj_bias")?),
                        );
                        Layer {
                            ln1: layer_norm(&l, "ln_1", h, eps)?,
                            qkv: Dense::new(qkv, int8)?,
                            out: Dense::new(candle_nn::linear(h, h, a.pp("out_proj"))?, int8)?,
                            ln2: layer_norm(&l, "ln_2", h, eps)?,
                            fc1: Dense::new(candle_nn::linear(h, inter, l.pp("mlp.c_fc"))?, int8)?,
                            fc2: Dense::new(
                                candle_nn::linear(inter, h, l.pp("mlp.c_proj"))?,
                                int8,
                            )?,
                        }
                    }
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            heads: tower.heads,
            activation: tower.activation,
            causal,
        })
    }

    /// `x`: `[T, H]` token rows of a `[B, L]` batch; `packing` says which padded rows they are
    /// (`None`: all `B·L` rows, no padding); `mask` `[B, L]` 0/1 in `x`'s dtype.
    pub fn forward(
        &self,
        x: &Tensor,
        (b, l): (usize, usize),
        mask: &Tensor,
        packing: Option<&Packing>,
    ) -> candle_core::Result<Tensor> {
        let hidden = x.dim(1)?;
        let mut x = x.clone();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&layer.ln1.forward(&x)?)?;
            let qkv = match packing {
                Some(p) => p.spread(&qkv)?,
                None => qkv,
            };
            let context = self_attention(
                &qkv.reshape((b, l, 3 * hidden))?,
                mask,
                self.heads,
                self.causal,
            )?
            .reshape((b * l, hidden))?;
            let context = match packing {
                Some(p) => context.index_select(&p.rows, 0)?,
                None => context,
            };
            x = (layer.out.forward(&context)? + &x)?;
            let inner = self
                .activation
                .apply(&layer.fc1.forward(&layer.ln2.forward(&x)?)?)?;
            x = (layer.fc2.forward(&inner)? + &x)?;
        }
        Ok(x)
    }
}

fn bias_of(linear: &Linear) -> candle_core::Result<Tensor> {
    linear
        .bias()
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("an attention projection has no bias".into()))
}

/// A projection `y = x·Pᵀ (+ b)` from `[out, in]` (transformers' Linear) or, for open_clip's
/// bare parameters, from `[in, out]` transposed once at load.
pub fn projection(
    vb: &VarBuilder,
    keys: Keys,
    name: &str,
    (input, output): (usize, usize),
    bias: bool,
) -> candle_core::Result<Linear> {
    match keys {
        Keys::Hf if bias => candle_nn::linear(input, output, vb.pp(name)),
        Keys::Hf => candle_nn::linear_no_bias(input, output, vb.pp(name)),
        Keys::OpenClip => Ok(Linear::new(
            vb.get((input, output), name)?.t()?.contiguous()?,
            None,
        )),
    }
}
