//! Karpathy's Flickr30k/COCO release: `dataset_*.json` (images, captions, splits) with
//! `vgg_feats.mat` (`feats`, 4096 × images, one column per image in the json's order).

use std::path::Path;

use super::{
    check_finite, format_error, matlab, source_file, ImportError, ImportPlan, ImportedImage,
};
use crate::data::{ingest::split::read_karpathy, ImageId, Split};

pub fn plan(json: &Path, mat: &Path, variable: &str) -> Result<ImportPlan, ImportError> {
    let karpathy = read_karpathy(json).map_err(|e| format_error(json, e.to_string()))?;
    let mut images = Vec::with_capacity(karpathy.images.len());
    for (i, img) in karpathy.images.iter().enumerate() {
        let id = ImageId::new(img.filename.clone())
            .map_err(|e| format_error(json, format!("image #{i}: {e}")))?;
        let split: Split = img
            .split
            .parse()
            .map_err(|e: String| format_error(json, format!("image #{i}: {e}")))?;
        let captions: Vec<String> = img
            .sentences
            .iter()
            .map(|s| s.raw.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if captions.is_empty() {
            return Err(format_error(
                json,
                format!("image #{i} ({}) has no captions", img.filename),
            ));
        }
        images.push(ImportedImage {
            id,
            split: Some(split),
            captions,
        });
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = images.iter().find(|i| !seen.insert(i.id.clone())) {
        return Err(format_error(
            json,
            format!("image {} appears twice", dup.id),
        ));
    }
    let matrix = matlab::read_images_matrix(mat, variable, images.len())?;
    check_finite(mat, &matrix.data, matrix.dims)?;
    let mut notes = Vec::new();
    if matrix.transposed {
        notes.push(format!(
            "{} is stored images × dims; read it as one row per image",
            mat.display()
        ));
    }
    Ok(ImportPlan {
        format: "karpathy-mat",
        source: format!("{} + {}", json.display(), mat.display()),
        images,
        features: matrix.data,
        dims: matrix.dims,
        files: vec![source_file(json)?, source_file(mat)?],
        notes,
    })
}
