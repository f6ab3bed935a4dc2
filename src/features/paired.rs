//! Images and captions of one split, with their cached features lined up: what training,
//! evaluation and index building consume.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::{
    cache::{CacheError, FeatureCache},
    FeatureSetId,
};
use crate::data::{catalog::ImageFilter, CaptionKey, Catalog, CatalogError, ImageId};

#[derive(Debug, thiserror::Error)]
pub enum PairedError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error("no images with features in this selection (run `xmodal extract` for it)")]
    Empty,
}

pub struct PairedSet {
    pub image_ids: Vec<ImageId>,
    /// `[images, image_dims]`
    pub images: Tensor,
    pub captions: Vec<String>,
    /// `[captions, text_dims]`
    pub texts: Tensor,
    /// For each caption, the row of its image.
    pub text_image: Vec<usize>,
    /// Catalog items without features (extraction failed or not run), for reports.
    pub missing: usize,
}

impl PairedSet {
    pub async fn load(
        catalog: &Catalog,
        filter: &ImageFilter,
        features_root: &std::path::Path,
        image_set: &FeatureSetId,
        text_set: &FeatureSetId,
        device: &Device,
    ) -> Result<Self, PairedError> {
        let image_features = FeatureCache::new(features_root, image_set).load(&Device::Cpu)?;
        let text_features = FeatureCache::new(features_root, text_set).load(&Device::Cpu)?;
        let image_rows = image_features.index();
        let text_rows = text_features.index();
        let mut missing = 0;
        let mut image_ids = Vec::new();
        let mut image_pick = Vec::new();
        let mut row_of: HashMap<ImageId, usize> = HashMap::new();
        for img in catalog.images(filter).await? {
            match image_rows.get(img.id.as_str()) {
                Some(&r) => {
                    row_of.insert(img.id.clone(), image_ids.len());
                    image_ids.push(img.id);
                    image_pick.push(r as u32);
                }
                None => missing += 1,
            }
        }
        if image_ids.is_empty() {
            return Err(PairedError::Empty);
        }
        let (mut captions, mut text_pick, mut text_image) = (Vec::new(), Vec::new(), Vec::new());
        for c in catalog.captions(filter).await? {
            let (Some(&img_row), Some(&r)) = (
                row_of.get(&c.image_id),
                text_rows.get(
                    CaptionKey::new(c.image_id.clone(), c.ordinal)
                        .to_string()
                        .as_str(),
                ),
            ) else {
                missing += 1;
                continue;
            };
            captions.push(c.text);
            text_pick.push(r as u32);
            text_image.push(img_row);
        }
        let pick = |m: &Tensor, idx: Vec<u32>| -> candle_core::Result<Tensor> {
            let n = idx.len();
            m.index_select(&Tensor::from_vec(idx, n, &Device::Cpu)?, 0)?
                .to_device(device)
        };
        Ok(Self {
            images: pick(&image_features.matrix, image_pick)?,
            texts: pick(&text_features.matrix, text_pick)?,
            image_ids,
            captions,
            text_image,
            missing,
        })
    }
}
