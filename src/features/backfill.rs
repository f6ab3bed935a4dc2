//! Before a server indexes anything, every image and caption in the catalog must have its
//! features stored (the catalog is what indexes are built and reconciled from): taken from the
//! extract cache where `xmodal extract` computed them, encoded now otherwise.

use std::collections::HashSet;

use candle_core::Device;

use super::{
    cache::FeatureCache,
    encoders::Encoders,
    extract::{caption_items, image_items, Encoder, Payload},
    FeatureSpec,
};
use crate::{
    data::{
        catalog::{ImageFilter, StoredVector},
        CaptionKey, Catalog, DataDir,
    },
    vectors::Features,
};

/// Store the features every image and caption lacks, for `encoders`' feature sets.
pub async fn fill_vectors(
    catalog: &Catalog,
    data: &DataDir,
    encoders: &Encoders,
    log: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let all = ImageFilter::default();
    let images = catalog.images(&all).await?;
    let captions = catalog.captions(&all).await?;
    for (spec, items, is_image) in [
        (&encoders.image_spec, image_items(&images), true),
        (&encoders.text_spec, caption_items(&captions), false),
    ] {
        let set = spec.id().0;
        let have: HashSet<String> = catalog.vector_items(&set).await?.into_iter().collect();
        let missing: Vec<_> = items
            .into_iter()
            .filter(|(k, _)| !have.contains(&k.key))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let (mut rows, to_encode) = from_cache(data, spec, missing)?;
        let what = if is_image { "images" } else { "captions" };
        log(&format!(
            "{what}: {} vectors from the extract cache, {} to encode",
            rows.len(),
            to_encode.len()
        ));
        let encoder = match (is_image, encoders.image.as_ref()) {
            (false, _) => Some(Encoder::Text(&encoders.text)),
            (true, Some(image)) => Some(Encoder::Image(image)),
            (true, None) => {
                log(&format!(
                    "images: {} have no imported features and no encoder can compute them; they are not searchable",
                    to_encode.len()
                ));
                None
            }
        };
        if let Some(encoder) = encoder {
            for chunk in to_encode.chunks(64) {
                let payloads: Vec<&Payload> = chunk.iter().map(|(_, p)| p).collect();
                for ((key, _), result) in chunk.iter().zip(encoder.encode_batch(&payloads)?) {
                    match result {
                        Ok(v) => rows.push((key.clone(), Features::new(v.to_vec1()?))),
                        Err(e) => {
                            tracing::warn!(item = %key, error = %e, "cannot encode; it will not be searchable")
                        }
                    }
                }
            }
        }
        let stored = rows
            .into_iter()
            .map(|(item, vector)| {
                Ok(StoredVector {
                    feature_set: set.clone(),
                    image_id: CaptionKey::owner_of(&item)?,
                    item,
                    vector,
                })
            })
            .collect::<Result<Vec<_>, crate::data::InvalidId>>()?;
        for chunk in stored.chunks(2000) {
            match catalog.put_vectors(chunk).await {
                Err(crate::data::CatalogError::Db(e))
                    if crate::data::catalog::is_out_of_space(&e) =>
                {
                    log(&format!(
                        "cannot store computed features in the catalog ({e}); serving what it has (the rest is computed again at the next start)"
                    ));
                    return Ok(());
                }
                other => other?,
            }
        }
    }
    Ok(())
}

/// Items still without stored features, with what to encode for each.
type Missing = Vec<(super::cache::ItemKey, Payload)>;
/// (item, features) rows ready to store.
type Found = Vec<(String, Features)>;
/// (item, payload) still to encode.
type ToEncode = Vec<(String, Payload)>;

/// Split `missing` into rows the extract cache has and items still to encode.
fn from_cache(
    data: &DataDir,
    spec: &FeatureSpec,
    missing: Missing,
) -> anyhow::Result<(Found, ToEncode)> {
    let cache = FeatureCache::new(&data.features(), &spec.id());
    let cached = cache.load(&Device::Cpu).ok();
    let cached_rows = cached.as_ref().map(|c| c.index()).unwrap_or_default();
    let mut found = Vec::new();
    let mut to_encode = Vec::new();
    for (key, payload) in missing {
        match (cached_rows.get(key.key.as_str()), &cached) {
            (Some(&row), Some(c)) => {
                found.push((key.key, Features::new(c.matrix.get(row)?.to_vec1::<f32>()?)))
            }
            _ => to_encode.push((key.key, payload)),
        }
    }
    Ok((found, to_encode))
}
