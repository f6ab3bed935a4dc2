//! A folder of photos as a library: `xmodal ingest --format folder DIR` indexes it (recursive,
//! JPEG/PNG/WebP, ids from the relative path, content hashes stored, features computed), and
//! running it again is a rescan. `serve --library DIR` rescans at start-up and, with `--watch`,
//! keeps a running service in sync. Files stay where they are: the catalog records their paths.

pub mod scan;
pub mod sync;
pub mod watch;

use std::path::Path;

use rayon::prelude::*;

pub use scan::{scan, LibraryFile, Scan, SkipReason, Skipped};
pub use sync::{sync, ApplyChanges, BatchEncoder, Encoded, SyncReport};

use crate::{
    data::{catalog::LibraryChanges, Catalog},
    encode::{image::preprocess, ImageEncoder},
    vectors::Features,
};

/// The catalog's dataset name for a folder library (`--dataset` overrides).
pub const DEFAULT_DATASET: &str = "photos";

/// Files per catalog transaction.
pub const BATCH: usize = 32;

/// Images per CNN forward pass: activations grow with the batch and throughput does not.
const FORWARD_BATCH: usize = 8;

/// Encodes in this process (the CLI): decodes in parallel on rayon's threads (each decode within
/// its budget), one forward pass per batch.
pub struct LocalEncoder<'a>(pub &'a ImageEncoder);

impl BatchEncoder for LocalEncoder<'_> {
    async fn encode(&self, images: Vec<Vec<u8>>) -> Vec<Result<Encoded, String>> {
        tokio::task::block_in_place(|| encode_now(self.0, &images))
    }
}

fn encode_now(encoder: &ImageEncoder, images: &[Vec<u8>]) -> Vec<Result<Encoded, String>> {
    let prepared: Vec<Result<_, String>> = images
        .par_iter()
        .map(|bytes| {
            let decoded = preprocess::decode(bytes).map_err(|e| e.to_string())?;
            let input = encoder
                .prepare_decoded(&decoded)
                .map_err(|e| e.to_string())?;
            Ok((input, decoded.dimensions()))
        })
        .collect();
    let inputs: Vec<_> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok().map(|(t, _)| t.clone()))
        .collect();
    let rows = inputs
        .chunks(FORWARD_BATCH)
        .map(|chunk| {
            encoder
                .encode_prepared(chunk)
                .and_then(|m| Ok(m.to_device(&candle_core::Device::Cpu)?.to_vec2::<f32>()?))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|parts| parts.concat());
    let mut rows = match rows {
        Ok(rows) => rows.into_iter(),
        Err(e) => return images.iter().map(|_| Err(e.to_string())).collect(),
    };
    prepared
        .into_iter()
        .map(|p| {
            let (_, (width, height)) = p?;
            Ok(Encoded {
                features: Features::new(rows.next().expect("one row per input")),
                width,
                height,
            })
        })
        .collect()
}

/// Changes straight into the catalog (no server running).
pub struct CatalogSink<'a> {
    pub catalog: &'a Catalog,
    pub dataset_id: i64,
}

impl ApplyChanges for CatalogSink<'_> {
    async fn apply(&self, changes: LibraryChanges) -> anyhow::Result<()> {
        Ok(self
            .catalog
            .apply_library_changes(self.dataset_id, &changes, &())
            .await?)
    }
}

/// The catalog dataset of a folder: created on first use, its source the folder's path.
pub async fn dataset_id(catalog: &Catalog, dataset: &str, root: &Path) -> anyhow::Result<i64> {
    let root = std::fs::canonicalize(root)?;
    Ok(catalog
        .dataset(dataset, "folder", &root.display().to_string())
        .await?)
}
