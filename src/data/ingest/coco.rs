//! COCO captions: the standard annotation JSON (`images[]` with `id` and `file_name`,
//! `annotations[]` with `image_id` and `caption`). The split comes from a Karpathy
//! `dataset_coco.json` when given, else one split for the whole file.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::{
    read_file,
    split::{karpathy_splits, read_karpathy},
    Candidate, IngestError, Parsed, SkipReason,
};
use crate::data::{ImageId, Split};

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    #[serde(default)]
    id: u64,
    caption: String,
}

pub fn parse(
    annotations: &Path,
    images: &Path,
    karpathy: Option<&Path>,
    split: Option<Split>,
) -> Result<Parsed, IngestError> {
    let file = annotations.display().to_string();
    let coco: CocoFile = serde_json::from_str(&read_file(annotations)?)
        .map_err(|e| IngestError::Format(format!("{file}: not a COCO captions file: {e}")))?;
    let splits = karpathy
        .map(read_karpathy)
        .transpose()?
        .map(|k| karpathy_splits(&k))
        .transpose()?;
    let mut parsed = Parsed {
        read: coco.images.len() + coco.annotations.len(),
        ..Default::default()
    };
    let mut caps: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    let known: std::collections::HashSet<u64> = coco.images.iter().map(|i| i.id).collect();
    for (i, a) in coco.annotations.into_iter().enumerate() {
        if !known.contains(&a.image_id) {
            parsed.problems.push((
                format!("{file}#annotations[{i}]"),
                SkipReason::Malformed(format!("caption for unknown image_id {}", a.image_id)),
            ));
        } else if a.caption.trim().is_empty() {
            parsed.problems.push((
                format!("{file}#annotations[{i}]"),
                SkipReason::Malformed("empty caption".into()),
            ));
        } else {
            caps.entry(a.image_id)
                .or_default()
                .push((a.id, a.caption.trim().to_string()));
        }
    }
    for (i, img) in coco.images.into_iter().enumerate() {
        let at = format!("{file}#images[{i}]");
        let mut texts = caps.remove(&img.id).unwrap_or_default();
        if texts.is_empty() {
            parsed.problems.push((at, SkipReason::NoCaptions));
            continue;
        }
        texts.sort();
        let id = match ImageId::sanitized(&img.file_name) {
            Ok(id) => id,
            Err(e) => {
                parsed
                    .problems
                    .push((at, SkipReason::InvalidId(e.to_string())));
                continue;
            }
        };
        let split = match &splits {
            Some(s) => s.get(&img.file_name).copied(),
            None => split,
        };
        parsed.candidates.push(Candidate {
            id,
            file: Some(images.join(&img.file_name)),
            captions: texts.into_iter().map(|(_, t)| t).collect(),
            split,
            fields: Default::default(),
            origin: at,
        });
    }
    Ok(parsed)
}
