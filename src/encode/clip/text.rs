//! The text tower: token + position embeddings, the encoder stack, the final LayerNorm at the
//! pooled position (the first end-of-text token for CLIP, the last of 64 for SigLIP) and the
//! projection into the joint space: what `get_text_features` / `encode_text` return.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use super::{
    config::{ClipConfig, Family, TextConfig, TextPooling},
    encoder::{layer_norm, projection, Encoder, Keys},
    tokenizer::ClipTokenizer,
};
use crate::encode::{
    transformer::{Dense, Packing},
    EncodeError, TextOptions, TextQuantization,
};

struct Tower {
    token_embedding: Embedding,
    /// `[context, H]`.
    positions: Tensor,
    encoder: Encoder,
    final_norm: LayerNorm,
    projection: Dense,
}

impl Tower {
    fn load(
        vb: VarBuilder,
        family: Family,
        cfg: &TextConfig,
        int8: bool,
    ) -> candle_core::Result<Self> {
        let h = cfg.tower.hidden;
        let (keys, vb, root) = match family {
            Family::Clip | Family::Siglip => (Keys::Hf, vb.pp("text_model"), vb),
            Family::OpenClip => (Keys::OpenClip, vb.clone(), vb),
        };
        let (token_embedding, positions, final_norm, projection) = match family {
            Family::Clip => (
                candle_nn::embedding(cfg.vocab, h, vb.pp("embeddings.token_embedding"))?,
                vb.get((cfg.context, h), "embeddings.position_embedding.weight")?,
                layer_norm(&vb, "final_layer_norm", h, cfg.tower.eps)?,
                projection(&root, keys, "text_projection", (h, cfg.projection), false)?,
            ),
            Family::Siglip => (
                candle_nn::embedding(cfg.vocab, h, vb.pp("embeddings.token_embedding"))?,
                vb.get((cfg.context, h), "embeddings.position_embedding.weight")?,
                layer_norm(&vb, "final_layer_norm", h, cfg.tower.eps)?,
                projection(&vb, keys, "head", (h, cfg.projection), true)?,
            ),
            Family::OpenClip => (
                candle_nn::embedding(cfg.vocab, h, vb.pp("token_embedding"))?,
                vb.get((cfg.context, h), "positional_embedding")?,
                layer_norm(&vb, "ln_final", h, cfg.tower.eps)?,
                projection(&vb, keys, "text_projection", (h, cfg.projection), false)?,
            ),
        };
        Ok(Self {
            token_embedding,
            positions,
            encoder: Encoder::load(&vb, keys, &cfg.tower, cfg.causal, int8)?,
            final_norm,
            projection: Dense::new(projection, false)?,
        })
    }
}

pub struct ClipText {
    tokenizer: ClipTokenizer,
    tower: Tower,
    cfg: TextConfig,
    family: Family,
    name: String,
    dtype: DType,
    quantization: TextQuantization,
    device: Device,
}

impl ClipText {
    pub fn load(
        dir: &Path,
        name: &str,
        cfg: &ClipConfig,
        options: &TextOptions,
        device: &Device,
    ) -> Result<Self, EncodeError> {
        let dtype = options.precision.dtype(device);
        // int8 is opt-in for the CLIP family: its effect on retrieval cannot be measured here
        // without real CLIP weights (README, "Search your photos with CLIP")
        let quantization = match options.quantization {
            TextQuantization::Auto => TextQuantization::None,
            q => q,
        };
        let int8 = quantization == TextQuantization::Int8;
        if int8 && (!device.is_cpu() || dtype != DType::F32) {
            return Err(EncodeError::Config(
                "--text-quantization int8 runs on the CPU in f32 (--device cpu, --precision f32)"
                    .into(),
            ));
        }
        let kit_bpe = options
            .models_dir
            .join(super::KIT_VOCABULARY)
            .join(super::KIT_VOCABULARY_FILE);
        let tokenizer = ClipTokenizer::load(dir, cfg.family, &cfg.text, &kit_bpe)
            .map_err(|e| EncodeError::Tokenizer(e.to_string()))?;
        let vb = super::weights(dir, cfg.family, name, dtype, device)?;
        let tower = Tower::load(vb, cfg.family, &cfg.text, int8).map_err(|source| {
            EncodeError::Weights {
                model: name.to_string(),
                source,
            }
        })?;
        Ok(Self {
            tokenizer,
            tower,
            cfg: cfg.text.clone(),
            family: cfg.family,
            name: name.to_string(),
            dtype,
            quantization,
            device: device.clone(),
        })
    }

    pub fn dims(&self) -> usize {
        self.cfg.projection
    }

    /// The options that shape this encoder's output (part of a feature set's identity).
    pub fn describe(&self) -> serde_json::Value {
        let mut options = serde_json::json!({
            "model": self.name,
            "family": self.family,
            "tokenizer": self.tokenizer.source(),
            "context": self.cfg.context,
        });
        if let Some(tag) = crate::encode::feature_tag(self.dtype) {
            options["precision"] = tag.into();
        }
        if self.quantization != TextQuantization::None {
            options["quantization"] = serde_json::to_value(self.quantization).expect("an enum");
        }
        options
    }

    /// Token ids per text, as the reference tokenizer makes them.
    pub fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EncodeError> {
        self.tokenizer
            .encode(texts)
            .map_err(|e| EncodeError::Tokenizer(e.to_string()))
    }

    /// Tokens per text, start and end tokens included, SigLIP's padding not.
    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>, EncodeError> {
        let eos = self.tokenizer.eos();
        Ok(self
            .token_ids(texts)?
            .iter()
            .map(|ids| {
                ids.iter()
                    .position(|&t| t == eos)
                    .map_or(ids.len(), |p| p + 1)
            })
            .collect())
    }

    /// `[texts.len(), projection]` in f32: the projected text features (not normalised).
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor, EncodeError> {
        if texts.is_empty() {
            return Ok(Tensor::zeros((0, self.dims()), DType::F32, &self.device)?);
        }
        let ids = self.token_ids(texts)?;
        Ok(self.forward(&ids)?.to_dtype(DType::F32)?)
    }

    fn forward(&self, ids: &[Vec<u32>]) -> candle_core::Result<Tensor> {
        let b = ids.len();
        let l = ids.iter().map(Vec::len).max().unwrap_or(0);
        let mut flat = vec![0u32; b * l];
        let mut mask = vec![0u32; b * l];
        // the packed row each text is read at
        let mut pooled_rows = Vec::with_capacity(b);
        let mut packed = 0u32;
        for (i, row) in ids.iter().enumerate() {
            flat[i * l..i * l + row.len()].copy_from_slice(row);
            mask[i * l..i * l + row.len()].fill(1);
            let at = match self.cfg.pooling {
                TextPooling::FirstEos => row
                    .iter()
                    .position(|&t| t == self.tokenizer.eos())
                    .unwrap_or(row.len() - 1),
                TextPooling::Last => row.len() - 1,
            };
            pooled_rows.push(packed + at as u32);
            packed += row.len() as u32;
        }
        let device = &self.device;
        let packing = Packing::new(&mask, l, device)?;
        let tokens = Tensor::from_vec(flat, b * l, device)?.index_select(&packing.rows, 0)?;
        let x = self
            .tower
            .token_embedding
            .forward(&tokens)?
            .add(&self.tower.positions.index_select(&packing.positions, 0)?)?;
        let mask = Tensor::from_vec(mask, (b, l), device)?.to_dtype(x.dtype())?;
        let x = self
            .tower
            .encoder
            .forward(&x, (b, l), &mask, Some(&packing))?;
        let pooled = x.index_select(&Tensor::from_vec(pooled_rows, b, device)?, 0)?;
        self.tower
            .projection
            .forward(&self.tower.final_norm.forward(&pooled)?)
    }
}
