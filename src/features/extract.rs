//! Encode a catalog's images or captions into a feature set, shard by shard, resumably.
//!
//! Items are sorted by key and cut into fixed-size shards. A shard whose recorded keys and content
//! hashes equal the current chunk is reused; anything else is (re)computed. So a killed run
//! resumes without recomputing finished shards, a changed caption or image is re-encoded, and a
//! changed encoder gets a different feature set id instead of mixing into this one.

use std::{path::PathBuf, time::Instant};

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{
    cache::{CacheError, FeatureCache, ItemKey, ShardMeta},
    FeatureSetId, FeatureSpec,
};
use crate::{
    data::{
        catalog::{CaptionRecord, ImageRecord},
        CaptionKey,
    },
    encode::{EncodeError, ImageEncoder, TextEncoder},
};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub shard_size: usize,
    pub batch_size: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            shard_size: 1024,
            batch_size: 32,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExtractSummary {
    pub id: FeatureSetId,
    pub items: usize,
    pub shards_reused: usize,
    pub shards_computed: usize,
    pub encoded: usize,
    pub failed: usize,
    pub seconds: f64,
}

impl ExtractSummary {
    pub fn items_per_second(&self) -> f64 {
        self.encoded as f64 / self.seconds.max(1e-9)
    }
}

/// What to encode for one item.
pub enum Payload {
    ImageFile(Option<PathBuf>),
    Text(String),
}

pub fn image_items(images: &[ImageRecord]) -> Vec<(ItemKey, Payload)> {
    let mut items: Vec<_> = images
        .iter()
        .map(|i| {
            let key = ItemKey {
                key: i.id.to_string(),
                content: i.sha256.clone().unwrap_or_default(),
            };
            (
                key,
                Payload::ImageFile(i.location.as_ref().map(PathBuf::from)),
            )
        })
        .collect();
    items.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    items
}

/// Caption items are keyed by their [`CaptionKey`], with a hash of the text as content.
pub fn caption_items(captions: &[CaptionRecord]) -> Vec<(ItemKey, Payload)> {
    let mut items: Vec<_> = captions
        .iter()
        .map(|c| {
            let content = format!("{:x}", Sha256::digest(c.text.as_bytes()))[..16].to_string();
            (
                ItemKey {
                    key: CaptionKey::new(c.image_id.clone(), c.ordinal).to_string(),
                    content,
                },
                Payload::Text(c.text.clone()),
            )
        })
        .collect();
    items.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    items
}

/// The encoder for one feature set.
pub enum Encoder<'a> {
    Image(&'a ImageEncoder),
    Text(&'a TextEncoder),
}

impl Encoder<'_> {
    /// Encode a batch; per-item errors (an undecodable image) do not fail the batch.
    pub fn encode_batch(
        &self,
        batch: &[&Payload],
    ) -> Result<Vec<Result<Tensor, String>>, EncodeError> {
        self.encode(batch)
    }

    fn encode(&self, batch: &[&Payload]) -> Result<Vec<Result<Tensor, String>>, EncodeError> {
        match self {
            Encoder::Text(enc) => {
                let texts: Vec<&str> = batch
                    .iter()
                    .map(|p| {
                        if let Payload::Text(t) = p {
                            t.as_str()
                        } else {
                            ""
                        }
                    })
                    .collect();
                let rows = enc.encode(&texts)?;
                (0..texts.len()).map(|i| Ok(Ok(rows.get(i)?))).collect()
            }
            Encoder::Image(enc) => {
                let prepared: Vec<Result<Tensor, String>> = batch
                    .par_iter()
                    .map(|p| match p {
                        Payload::ImageFile(Some(path)) => std::fs::read(path)
                            .map_err(|e| format!("{}: {e}", path.display()))
                            .and_then(|b| enc.prepare(&b).map_err(|e| e.to_string())),
                        Payload::ImageFile(None) => Err("no image file".to_string()),
                        Payload::Text(_) => Err("not an image".to_string()),
                    })
                    .collect();
                let ok: Vec<Tensor> = prepared
                    .iter()
                    .filter_map(|r| r.as_ref().ok().cloned())
                    .collect();
                let features = enc.encode_prepared(&ok)?;
                let mut next = 0;
                prepared
                    .into_iter()
                    .map(|r| match r {
                        Ok(_) => {
                            next += 1;
                            Ok(Ok(features.get(next - 1)?))
                        }
                        Err(e) => Ok(Err(e)),
                    })
                    .collect()
            }
        }
    }
}

/// Run (or resume) an extraction. `progress` receives item counts as they complete, `on_shard`
/// each finished shard's index.
pub fn extract(
    root: &std::path::Path,
    spec: &FeatureSpec,
    encoder: Encoder,
    items: Vec<(ItemKey, Payload)>,
    options: &ExtractOptions,
    progress: &dyn Fn(u64),
    on_shard: &dyn Fn(usize, usize),
) -> Result<ExtractSummary, ExtractError> {
    let started = Instant::now();
    let id = spec.id();
    let cache = FeatureCache::new(root, &id);
    cache.prepare(spec)?;
    let shard_size = options.shard_size.max(1);
    let shards: Vec<&[(ItemKey, Payload)]> = items.chunks(shard_size).collect();
    let mut summary = ExtractSummary {
        id: id.clone(),
        items: items.len(),
        shards_reused: 0,
        shards_computed: 0,
        encoded: 0,
        failed: 0,
        seconds: 0.0,
    };
    for (index, shard) in shards.iter().enumerate() {
        let keys: Vec<ItemKey> = shard.iter().map(|(k, _)| k.clone()).collect();
        if let Some(meta) = cache.shard_meta(index).filter(|m| m.items == keys) {
            summary.shards_reused += 1;
            summary.failed += meta.failed.len();
            progress(shard.len() as u64);
            on_shard(index, shards.len());
            continue;
        }
        let mut rows = Vec::with_capacity(shard.len());
        let mut meta = ShardMeta {
            items: keys,
            ..Default::default()
        };
        for batch in shard.chunks(options.batch_size.max(1)) {
            let payloads: Vec<&Payload> = batch.iter().map(|(_, p)| p).collect();
            for ((key, _), result) in batch.iter().zip(encoder.encode(&payloads)?) {
                match result {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        meta.failed.insert(key.key.clone(), e);
                    }
                }
            }
            progress(batch.len() as u64);
        }
        summary.encoded += rows.len();
        summary.failed += meta.failed.len();
        let dims = spec.dims;
        let matrix = if rows.is_empty() {
            Tensor::zeros((0, dims), candle_core::DType::F32, &Device::Cpu)?
        } else {
            Tensor::stack(&rows, 0)?.to_device(&Device::Cpu)?
        };
        cache.write_shard(index, &matrix, &meta)?;
        summary.shards_computed += 1;
        on_shard(index, shards.len());
    }
    cache.truncate(shards.len());
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

impl From<candle_core::Error> for ExtractError {
    fn from(e: candle_core::Error) -> Self {
        Self::Encode(EncodeError::Tensor(e))
    }
}
