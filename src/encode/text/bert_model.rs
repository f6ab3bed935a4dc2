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

use crate::encode::transformer::{kernels::Activation, self_attention, Dense, Packing};

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
            let context =
                self_attention(&qkv, &mask, self.heads, false)?.reshape((b * l, self.hidden))?;
            let context = context.index_select(&packing.rows, 0)?;
            let a = layer
                .attention_norm
                .forward(&(layer.attention_out.forward(&context)? + &x)?)?;
            let i = Activation::GeluErf.apply(&layer.intermediate.forward(&a)?)?;
            x = layer
                .output_norm
                .forward(&(layer.output.forward(&i)? + &a)?)?;
        }
        packing.spread(&x)?.reshape((b, l, self.hidden))
    }
}
