//! The BERT encoder stack (Devlin et al.), HF key names, inference only.
//!
//! Written here rather than taken from candle-transformers because the serving shape is many
//! short captions: tokens of the whole batch are flattened into one `[B·L, H]` matrix so every
//! projection is a single large matrix product (Q, K and V fused into one), attention runs in one
//! kernel over all (sequence, head) pairs, and GELU uses a vectorised erf. Same math as
//! transformers' `BertModel`; the parity tests hold it to 1e-4.

use candle_core::{DType, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::{
    int8::Int8Linear,
    kernels::{Attention, Gelu},
};

#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

/// A dense layer in f32 (candle's GEMM) or with int8 weights (`--text-quantization int8`).
enum Dense {
    F32(Linear),
    Int8(Int8Linear),
}

impl Dense {
    fn new(linear: Linear, int8: bool) -> candle_core::Result<Self> {
        if int8 {
            if let Some(q) = Int8Linear::quantize(linear.weight(), linear.bias())? {
                return Ok(Self::Int8(q));
            }
        }
        Ok(Self::F32(linear))
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::F32(linear) => linear.forward(x),
            Self::Int8(q) => x.contiguous()?.apply_op1_no_bwd(q),
        }
    }
}

pub struct BertModel {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

impl BertModel {
    /// `int8`: the dense layers with int8 weights (CPU, f32 activations only).
    pub fn load(vb: VarBuilder, config: &BertConfig, int8: bool) -> candle_core::Result<Self> {
        if config.hidden_act != "gelu" {
            candle_core::bail!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                config.hidden_act
            )
        }
        if config
            .position_embedding_type
            .as_deref()
            .is_some_and(|t| t != "absolute")
        {
            candle_core::bail!(
                "position_embedding_type {:?} is not supported",
                config.position_embedding_type
            )
        }
        // bert-base-uncased and friends prefix every key with "bert."; sentence-transformers don't.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = config.hidden_size;
        let e = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                let s = a.pp("self");
                let (q, k, v) = (
                    linear(h, h, s.pp("query"))?,
                    linear(h, h, s.pp("key"))?,
                    linear(h, h, s.pp("value"))?,
                );
                let weight = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
                let bias = Tensor::cat(
                    &[q.bias().unwrap(), k.bias().unwrap(), v.bias().unwrap()],
                    0,
                )?;
                Ok(Layer {
                    qkv: Dense::new(Linear::new(weight, Some(bias)), int8)?,
                    attention_out: Dense::new(linear(h, h, a.pp("output.dense"))?, int8)?,
                    attention_norm: layer_norm(h, config.layer_norm_eps, a.pp("output.LayerNorm"))?,
                    intermediate: Dense::new(
                        linear(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                        int8,
                    )?,
                    output: Dense::new(
                        linear(config.intermediate_size, h, l.pp("output.dense"))?,
                        int8,
                    )?,
                    output_norm: layer_norm(h, config.layer_norm_eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            word_embeddings: embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            position_embeddings: embedding(
                config.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            token_type_embeddings: embedding(
                config.type_vocab_size,
                h,
                e.pp("token_type_embeddings"),
            )?,
            embeddings_norm: layer_norm(h, config.layer_norm_eps, e.pp("LayerNorm"))?,
            layers,
            heads: config.num_attention_heads,
            hidden: h,
        })
    }

    /// Token ids `[B, L]` (u32) and 0/1 attention mask `[B, L]` → last hidden state `[B, L, H]`
    /// (zeros at padded positions).
    ///
    /// Only real tokens go through the dense layers: a batch of captions is padded to its longest,
    /// and every padded row would cost each projection as much as a word. Rows are packed to
    /// `[T, H]` once, and spread back to `[B, L, ·]` only around attention (a copy, against a
    /// matrix product per layer). Measured in benches/encoders.rs and scripts/bench/bench-serve.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let device = ids.device();
        let packing = Packing::new(&mask.flatten_all()?.to_vec1::<u32>()?, l, device)?;
        let ids = ids.flatten_all()?.index_select(&packing.rows, 0)?;
        let x = self
            .word_embeddings
            .forward(&ids)?
            .add(&self.position_embeddings.forward(&packing.positions)?)?
            .broadcast_add(&self.token_type_embeddings.forward(&Tensor::zeros(
                1,
                DType::U32,
                device,
            )?)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        let mask = mask.to_dtype(x.dtype())?;
        for layer in &self.layers {
            let qkv = packing
                .spread(&layer.qkv.forward(&x)?)?
                .reshape((b, l, 3 * self.hidden))?;
            let context = self.attention(&qkv, &mask)?.reshape((b * l, self.hidden))?;
            let context = context.index_select(&packing.rows, 0)?;
            let a = layer
                .attention_norm
                .forward(&(layer.attention_out.forward(&context)? + &x)?)?;
            let i = gelu(&layer.intermediate.forward(&a)?)?;
            x = layer
                .output_norm
                .forward(&(layer.output.forward(&i)? + &a)?)?;
        }
        packing.spread(&x)?.reshape((b, l, self.hidden))
    }

    fn attention(&self, qkv: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        if crate::device::cpu_kernels_for(qkv) {
            return qkv.apply_op2_no_bwd(mask, &Attention { heads: self.heads });
        }
        // Other devices: the same math with candle's generic ops.
        let (b, l, _) = qkv.dims3()?;
        let d = self.hidden / self.heads;
        let split = |i: usize| {
            qkv.narrow(2, i * self.hidden, self.hidden)?
                .reshape((b, l, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
        // The dtype's most negative finite number, as transformers adds: in f16, f32::MIN would
        // be -inf and 0·(-inf) a NaN at every real token.
        let lowest = match mask.dtype() {
            DType::F16 => half::f16::MIN.to_f64(),
            DType::BF16 => half::bf16::MIN.to_f64(),
            _ => f32::MIN as f64,
        };
        let bias = ((mask.ones_like()? - mask)? * lowest)?.reshape((b, 1, 1, l))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias)?)?;
        probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, l, self.hidden))
    }
}

fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    if crate::device::cpu_kernels_for(x) {
        x.contiguous()?.apply_op1_no_bwd(&Gelu)
    } else {
        x.gelu_erf()
    }
}

/// Where the real tokens of a padded `[B, L]` batch are: packed row `t` is padded row `rows[t]`;
/// padded row `r` reads packed row `from[r]`, or the zero row `T` when it is padding.
struct Packing {
    /// `[T]` padded row of each real token.
    rows: Tensor,
    /// `[T]` each real token's position in its sequence.
    positions: Tensor,
    /// `[B·L]` packed row of each padded row (`T`: padding).
    from: Tensor,
}

impl Packing {
    /// `mask`: the `[B, L]` 0/1 mask, flattened; `l`: the padded length.
    fn new(mask: &[u32], l: usize, device: &candle_core::Device) -> candle_core::Result<Self> {
        let rows: Vec<u32> = (0..mask.len() as u32)
            .filter(|&r| mask[r as usize] != 0)
            .collect();
        let mut from = vec![rows.len() as u32; mask.len()];
        for (t, &r) in rows.iter().enumerate() {
            from[r as usize] = t as u32;
        }
        let positions: Vec<u32> = rows.iter().map(|&r| r % l as u32).collect();
        Ok(Self {
            positions: Tensor::from_vec(positions, rows.len(), device)?,
            rows: Tensor::from_slice(&rows, rows.len(), device)?,
            from: Tensor::from_vec(from, mask.len(), device)?,
        })
    }

    /// `[T, D]` → `[B·L, D]`, zeros at padding.
    fn spread(&self, packed: &Tensor) -> candle_core::Result<Tensor> {
        let zero = Tensor::zeros((1, packed.dim(1)?), packed.dtype(), packed.device())?;
        Tensor::cat(&[packed, &zero], 0)?.index_select(&self.from, 0)
    }
}
