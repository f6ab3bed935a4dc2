//! A running server's folder library: the rescan at start-up (before any index opens) and, with
//! `--watch`, rescans while serving, applied to the catalog and every space's indexes at once.

use std::path::PathBuf;

use axum::body::Bytes;

use super::{Service, ServiceError};
use crate::{
    data::{
        catalog::{Backend, LibraryChanges},
        CaptionKey, Catalog, DataDir, ImageId,
    },
    index::IndexWrites,
    library::{self, ApplyChanges, BatchEncoder, CatalogSink, Encoded, LocalEncoder, SyncReport},
    serve::engine::Engine,
    vectors::Embedding,
};

/// `serve --library DIR [--library-dataset NAME] [--watch]`.
#[derive(Debug, Clone)]
pub struct LibraryConfig {
    pub root: PathBuf,
    pub dataset: String,
    pub watch: bool,
}

/// The library a running service keeps in sync.
pub(super) struct Library {
    pub config: LibraryConfig,
    pub dataset_id: i64,
}

/// The rescan before the service exists: straight into the catalog, encoded in this process.
/// A changed file keeps its key, so the persisted in-process index is dropped to be rebuilt.
pub(super) async fn rescan_at_start(
    catalog: &Catalog,
    data: &DataDir,
    config: &LibraryConfig,
    encoder: &crate::encode::ImageEncoder,
    image_set: &str,
    log: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Library> {
    let dataset_id = library::dataset_id(catalog, &config.dataset, &config.root).await?;
    log(&format!("scanning the library {}", config.root.display()));
    let scan = library::scan(&config.root)?;
    let entries = catalog.library_entries(&config.dataset).await?;
    let sink = CatalogSink {
        catalog,
        dataset_id,
    };
    let report = library::sync(
        scan,
        &entries,
        image_set,
        &LocalEncoder(encoder),
        &sink,
        library::BATCH,
        &|_| {},
    )
    .await?;
    log(&format!("library {}: {report}", config.dataset));
    if report.changed > 0 && catalog.backend() == Backend::Sqlite && data.index().exists() {
        std::fs::remove_dir_all(data.index())?;
    }
    Ok(Library {
        config: config.clone(),
        dataset_id,
    })
}

/// Encodes through the running engine (its queue, its bounded decode pool).
struct EngineEncoder<'a>(&'a Engine);

impl BatchEncoder for EngineEncoder<'_> {
    async fn encode(&self, images: Vec<Vec<u8>>) -> Vec<Result<Encoded, String>> {
        let mut out = Vec::with_capacity(images.len());
        for bytes in images {
            out.push(
                self.0
                    .encode_image(Bytes::from(bytes))
                    .await
                    .map(|e| Encoded {
                        features: e.features,
                        width: e.width,
                        height: e.height,
                    })
                    .map_err(|e| e.to_string()),
            );
        }
        out
    }
}

impl Service {
    /// Rescan the library while serving: added and changed images are encoded and indexed in every
    /// space, removed ones leave every index, in one catalog transaction per batch.
    pub async fn rescan_library(&self) -> anyhow::Result<SyncReport> {
        let lib = self
            .library
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this server has no --library"))?;
        let scan = library::scan(&lib.config.root)?;
        let entries = self.catalog.library_entries(&lib.config.dataset).await?;
        library::sync(
            scan,
            &entries,
            &self.image_spec.id().0,
            &EngineEncoder(&self.engine),
            self,
            library::BATCH,
            &|_| {},
        )
        .await
    }

    async fn apply_changes(&self, changes: &LibraryChanges) -> Result<(), ServiceError> {
        let lib = self.library.as_ref().expect("only called with a library");
        let _write = self.write_lock.lock().await;
        // caption keys of images leaving (removed, or replaced by new content)
        let leaving: Vec<&ImageId> = changes
            .remove
            .iter()
            .chain(changes.add.iter().map(|a| &a.image.id))
            .collect();
        let mut leaving_captions = Vec::new();
        for id in &leaving {
            for c in self.catalog.captions_of(id).await? {
                leaving_captions.push(CaptionKey::new((*id).clone(), c.ordinal).to_string());
            }
        }
        // every space's embedding of every added image
        let mut embeddings: Vec<Vec<(&ImageId, Embedding)>> = Vec::new();
        for space in &self.spaces {
            let mut rows = Vec::new();
            for add in &changes.add {
                if let Some(v) = add.vectors.iter().find(|v| v.item == add.image.id.as_str()) {
                    rows.push((&add.image.id, space.project_image(&v.vector)?));
                }
            }
            embeddings.push(rows);
        }
        let mut writes = IndexWrites::default();
        for (space, rows) in self.spaces.iter().zip(&embeddings) {
            for id in &leaving {
                writes.remove(&space.images, id.as_str());
            }
            for (id, e) in rows {
                writes.upsert(&space.images, id.as_str(), id, e);
            }
            for key in &leaving_captions {
                writes.remove(&space.captions, key.as_str());
            }
        }
        self.catalog
            .apply_library_changes(lib.dataset_id, changes, &writes)
            .await?;
        writes.apply_committed()?;
        self.update_index_gauges().await;
        Ok(())
    }
}

impl ApplyChanges for Service {
    async fn apply(&self, changes: LibraryChanges) -> anyhow::Result<()> {
        Ok(self.apply_changes(&changes).await?)
    }
}
