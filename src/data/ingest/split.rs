//! Splits: Karpathy's split files (`dataset_flickr30k.json`, `dataset_coco.json`) and, without
//! one, a deterministic split of Karpathy's sizes.

use std::{collections::HashMap, path::Path};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{read_file, IngestError};
use crate::data::Split;

/// Karpathy's Flickr30k test and validation sizes (the rest, 29000 of the usual 31014, is train).
pub const KARPATHY_TEST: usize = 1000;
pub const KARPATHY_VAL: usize = 1014;
pub const KARPATHY_TOTAL: usize = 31014;

#[derive(Debug, Deserialize)]
pub struct KarpathyFile {
    pub images: Vec<KarpathyImage>,
}

#[derive(Debug, Deserialize)]
pub struct KarpathyImage {
    pub filename: String,
    pub split: String,
    #[serde(default)]
    pub sentences: Vec<KarpathySentence>,
}

#[derive(Debug, Deserialize)]
pub struct KarpathySentence {
    pub raw: String,
}

pub fn read_karpathy(path: &Path) -> Result<KarpathyFile, IngestError> {
    serde_json::from_str(&read_file(path)?).map_err(|e| {
        IngestError::Format(format!(
            "{}: not a Karpathy split file: {e}",
            path.display()
        ))
    })
}

/// file name → split, from a Karpathy file.
pub fn karpathy_splits(file: &KarpathyFile) -> Result<HashMap<String, Split>, IngestError> {
    file.images
        .iter()
        .map(|i| {
            i.split
                .parse()
                .map(|s| (i.filename.clone(), s))
                .map_err(IngestError::Format)
        })
        .collect()
}

/// A deterministic split of `names` with Karpathy's proportions: 1000 test and 1014 val out of
/// 31014 (exactly those counts for the full Flickr30k, scaled for smaller sets; the rest is
/// train). Names are ordered by a seeded hash, so the split does not depend on input order.
pub fn derived_splits(names: &[String], seed: u64) -> HashMap<String, Split> {
    let mut order: Vec<(Vec<u8>, &String)> = names
        .iter()
        .map(|n| {
            (
                Sha256::new()
                    .chain_update(seed.to_le_bytes())
                    .chain_update(n.as_bytes())
                    .finalize()
                    .to_vec(),
                n,
            )
        })
        .collect();
    order.sort();
    let n = names.len();
    let (test, val) = if n >= KARPATHY_TOTAL {
        (KARPATHY_TEST, KARPATHY_VAL)
    } else {
        let scale = |k: usize| ((n * k) as f64 / KARPATHY_TOTAL as f64).round() as usize;
        (scale(KARPATHY_TEST), scale(KARPATHY_VAL))
    };
    order
        .into_iter()
        .enumerate()
        .map(|(i, (_, name))| {
            let split = if i < test {
                Split::Test
            } else if i < test + val {
                Split::Val
            } else {
                Split::Train
            };
            (name.clone(), split)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_split_has_karpathy_sizes_and_ignores_order() {
        let names: Vec<String> = (0..31783).map(|i| format!("{i}.jpg")).collect();
        let s = derived_splits(&names, 7);
        let count = |x: Split| s.values().filter(|&&v| v == x).count();
        assert_eq!(
            (count(Split::Test), count(Split::Val), count(Split::Train)),
            (1000, 1014, 29769)
        );
        let mut reversed = names.clone();
        reversed.reverse();
        assert_eq!(derived_splits(&reversed, 7), s);
        assert_ne!(derived_splits(&names, 8), s);
    }
}
