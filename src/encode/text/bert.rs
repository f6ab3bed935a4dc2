//! BERT-family sentence encoder (MiniLM here; bert-base-uncased and kin from any HF-layout dir).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{
    bert_model::{BertConfig, BertModel},
    Pooling, TextOptions, TextQuantization,
};
use crate::{
    encode::{l2_normalize, EncodeError},
    kit::Manifest,
};

pub struct BertEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    dims: usize,
    max_length: usize,
    name: String,
    dtype: DType,
    quantization: TextQuantization,
    device: Device,
}

impl BertEncoder {
    /// `pooling` and `normalize` as resolved against the manifest; `options` for the rest.
    pub fn load(
        dir: &Path,
        manifest: &Manifest,
        pooling: Pooling,
        normalize: bool,
        options: &TextOptions,
        device: &Device,
    ) -> Result<Self, EncodeError> {
        let max_length = options.max_length;
        let dtype = options.precision.dtype(device);
        let quantization = options.quantization.resolve(device, dtype);
        let int8 = quantization == TextQuantization::Int8;
        if int8 && (!device.is_cpu() || dtype != DType::F32) {
            return Err(EncodeError::Config(
                "--text-quantization int8 runs on the CPU in f32 (--device cpu, --precision f32)"
                    .into(),
            ));
        }
        if pooling == Pooling::Sum {
            return Err(EncodeError::Config(
                "BERT pooling is cls or mean, not sum".into(),
            ));
        }
        let config_path = dir.join("config.json");
        let config: BertConfig = serde_json::from_str(&read(&config_path)?)
            .map_err(|e| EncodeError::Config(format!("{}: {e}", config_path.display())))?;
        let positions = config.max_position_embeddings;
        let max_length = max_length
            .or(manifest.max_length)
            .unwrap_or(positions)
            .min(positions);

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            EncodeError::Tokenizer(format!("{}: {e}", dir.join("tokenizer.json").display()))
        })?;
        // Upstream tokenizer.json files often pin padding to a fixed 128 tokens: pad to the longest
        // text in the batch instead (short captions would otherwise cost ~8x the compute), and
        // truncate at the model's limit so over-long text is cut, never an error.
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token: "[PAD]".into(),
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| EncodeError::Tokenizer(e.to_string()))?;

        let vb = crate::encode::mmap_weights(dir, &manifest.name, dtype, device)?;
        let model = BertModel::load(vb, &config, int8).map_err(|source| EncodeError::Weights {
            model: manifest.name.clone(),
            source,
        })?;
        Ok(Self {
            model,
            tokenizer,
            pooling,
            normalize,
            dims: config.hidden_size,
            max_length,
            name: manifest.name.clone(),
            dtype,
            quantization,
            device: device.clone(),
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The options that shape this encoder's output (part of a feature set's identity).
    pub fn describe(&self) -> serde_json::Value {
        let mut options = serde_json::json!({"model": self.name, "pooling": self.pooling, "normalize": self.normalize, "max_length": self.max_length});
        if let Some(tag) = crate::encode::feature_tag(self.dtype) {
            options["precision"] = tag.into();
        }
        if self.quantization != TextQuantization::None {
            options["quantization"] = serde_json::to_value(self.quantization).expect("an enum");
        }
        options
    }

    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>, EncodeError> {
        Ok(self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EncodeError::Tokenizer(e.to_string()))?
            .iter()
            .map(|e| e.get_ids().len())
            .collect())
    }

    pub fn encode(&self, texts: &[&str]) -> Result<Tensor, EncodeError> {
        if texts.is_empty() {
            return Ok(Tensor::zeros((0, self.dims), DType::F32, &self.device)?);
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EncodeError::Tokenizer(e.to_string()))?;
        let rows = encodings.len();
        let width = encodings[0].get_ids().len();
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        // pooled and normalised in f32: a sum over tokens is where half precision loses most
        let hidden = self.model.forward(&ids, &mask)?.to_dtype(DType::F32)?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            _ => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?;
                summed.broadcast_div(&counts)?
            }
        };
        Ok(if self.normalize {
            l2_normalize(&pooled)?
        } else {
            pooled
        })
    }
}

fn read(path: &Path) -> Result<String, EncodeError> {
    std::fs::read_to_string(path).map_err(|source| EncodeError::Io {
        path: path.to_path_buf(),
        source,
    })
}
