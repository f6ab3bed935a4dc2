//! A server's indexes at start-up, per side of each space: pgvector tables on Postgres (created
//! and filled once, shared by replicas), else the in-process HNSW under the data directory —
//! loaded when it matches the space, rebuilt when not, then reconciled with the catalog (the
//! source of truth) and saved if anything changed.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::{
    pgvector::{PgVectorIndex, TableSpec},
    project_stored, IndexError, IndexParams, SearchIndex, VectorIndex,
};
use crate::{
    data::{catalog::Backend, Catalog},
    features::FeatureSpec,
};

/// One searchable side of a space.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// `images` or `captions`.
    pub name: &'static str,
    /// The space's index directory (the side's index is `dir/name`).
    pub dir: &'a Path,
    /// The feature set whose stored vectors this side projects.
    pub features: &'a FeatureSpec,
    /// Identity of the space (projector + feature sets): an index is valid only for it.
    pub space_id: &'a str,
}

/// The index of one side on this deployment's backend, with every stored vector of its feature
/// set projected by `project` (on `device`).
pub async fn open_side(
    catalog: &Catalog,
    side: Side<'_>,
    params: IndexParams,
    log: &(dyn Fn(&str) + Sync),
    project: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    device: &Device,
) -> Result<SearchIndex, IndexError> {
    let out_dims = project_dims(&project, side.features.dims, device)?;
    if catalog.backend() == Backend::Postgres {
        let table = TableSpec {
            space_id: side.space_id,
            side: side.name,
            dims: out_dims,
            feature_set: &side.features.id().0,
        };
        let index = PgVectorIndex::open(catalog, table, params, log, project, device).await?;
        return Ok(SearchIndex::Postgres(index));
    }
    let dir = side.dir.join(side.name);
    let set = side.features.id().0;
    let index = match VectorIndex::load(&dir, side.space_id) {
        Ok(index) if index.dims() == out_dims => {
            reconcile(catalog, &index, side, &project, device, log).await?;
            index
        }
        result => {
            match result {
                Err(e) => log(&format!("{e}; building it from the catalog")),
                Ok(_) => log(&format!(
                    "{}: built for other embedding dims; rebuilding",
                    dir.display()
                )),
            }
            // fetched and projected a chunk at a time: stored features (384-1280 floats each)
            // are wider than embeddings, and all of them at once would set the process's peak
            let keys = catalog.vector_items(&set).await?;
            let mut items = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(4096) {
                let stored = catalog.vectors_of(&set, chunk).await?;
                items.extend(project_stored(&stored, &project, device)?);
            }
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let index = VectorIndex::build(out_dims, params, items, &|_| {})?;
            keep(&index, &dir, side.space_id, log);
            index
        }
    };
    Ok(SearchIndex::Memory {
        index,
        catalog: catalog.clone(),
    })
}

/// Make a loaded index agree with the catalog by keys, fetching only the vectors it lacks (a
/// restart does not hold every stored vector in memory at once); save it if anything changed.
async fn reconcile(
    catalog: &Catalog,
    index: &VectorIndex,
    side: Side<'_>,
    project: &impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    device: &Device,
    log: &(dyn Fn(&str) + Sync),
) -> Result<(), IndexError> {
    let set = side.features.id().0;
    let dir = side.dir.join(side.name);
    let items = catalog.vector_items(&set).await?;
    let (missing, removed) = index.reconcile_keys(&items.iter().map(String::as_str).collect());
    for chunk in missing.chunks(2048) {
        let stored = catalog.vectors_of(&set, chunk).await?;
        for (key, v) in project_stored(&stored, project, device)? {
            index.upsert(&key, &v)?;
        }
    }
    if removed > 0 || !missing.is_empty() {
        log(&format!(
            "{}: reconciled with the catalog (+{}, -{removed})",
            dir.display(),
            missing.len(),
        ));
        keep(index, &dir, side.space_id, log);
    }
    Ok(())
}

/// Save an index built or reconciled at start-up; if that fails (a full disk) it is served from
/// memory and rebuilt at the next start, which says so.
fn keep(index: &VectorIndex, dir: &Path, space_id: &str, log: &(dyn Fn(&str) + Sync)) {
    if let Err(e) = index.save(dir, space_id) {
        log(&format!("cannot keep the index at {}: {e}; serving it from memory (it is rebuilt at the next start)", dir.display()));
    }
}

/// The projector's output width, probed with a zero input on its device (an empty collection
/// has no vectors to look at).
fn project_dims(
    project: &impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    input: usize,
    device: &Device,
) -> candle_core::Result<usize> {
    project(&Tensor::zeros((1, input), candle_core::DType::F32, device)?)?.dim(1)
}
