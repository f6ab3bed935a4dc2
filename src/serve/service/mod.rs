//! The domain flow of a running server, between HTTP and the models. A caption's walk:
//! route (`routes/search.rs`) → [`Service::search_text`] (`service/search.rs`) → engine
//! (`engine.rs`: queue, batch, text encoder) → [`Space`] (the head projects features into its
//! space) → index (`index/`: HNSW or pgvector) → catalog (captions of the hits) → back to the route
//! as [`Ranked`] matches. Handlers call one method each and map its result; nothing here knows
//! HTTP, and nothing below knows JSON.

mod arithmetic;
mod collection;
mod duplicates;
mod embeddings;
mod library;
mod load;
mod order;
mod search;
mod tags;

use std::sync::Arc;

use candle_core::{Device, Tensor};

pub use arithmetic::{QueryTerm, WeightedTerm};
pub use collection::{ImageDetails, ImageFile, Upload};
pub use duplicates::{DuplicateGroup, DuplicateImage, Duplicates, DEFAULT_DUPLICATE_SCORE};
pub use embeddings::{EmbedInput, Embedded};
pub use library::LibraryConfig;
pub use load::ServiceConfig;
pub use order::{relevant_count, ResultOrder, ORDER_CANDIDATES};
pub use search::{CaptionMatch, ImageMatch, Ranked};
pub use tags::Tag;

use super::engine::{Engine, EngineError};
use crate::{
    data::{Catalog, CatalogError, DataDir, ImageId},
    features::FeatureSpec,
    heads::Projector,
    index::{IndexError, SearchIndex},
    vectors::{Embedding, Features},
};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    /// A request the service cannot answer as asked (its terms cancel out, say).
    #[error("{0}")]
    Invalid(String),
    #[error("an image with id {:?} already exists", .0.as_str())]
    Conflict(ImageId),
    #[error("unknown model {name:?}; this server has {available:?}")]
    UnknownModel {
        name: String,
        available: Vec<String>,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("projecting into the head's space: {0}")]
    Projection(#[from] candle_core::Error),
    #[error("{what} at {path}: {source}")]
    Storage {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// A write found no space (a full disk or quota): the request was fine; retry once space
    /// is freed.
    #[error("{what} at {location}: {message}; writes resume once space is freed")]
    OutOfSpace {
        what: &'static str,
        location: String,
        message: String,
    },
    #[error("a worker task failed: {0}")]
    Task(String),
    #[error("the catalog holds an invalid key: {0}")]
    Corrupt(String),
}

/// One searchable space: a projector and the indexes of its embeddings.
pub struct Space {
    /// What clients pass as `model` to choose it: `zero-shot` or the heads' name.
    pub name: String,
    /// What `model` says in responses.
    pub model: String,
    pub projector: Projector,
    pub images: SearchIndex,
    pub captions: SearchIndex,
    /// Identity of the vector space (projector + feature sets): indexes are valid only for it.
    pub id: String,
    index_dir: std::path::PathBuf,
    /// Where the projector's weights live; features are projected there.
    device: Device,
}

impl Space {
    pub fn project_text(&self, features: &Features) -> Result<Embedding, ServiceError> {
        self.project(features, Projector::texts)
    }

    pub fn project_image(&self, features: &Features) -> Result<Embedding, ServiceError> {
        self.project(features, Projector::images)
    }

    /// One row onto the projector's device, projected, and one copy back.
    fn project(
        &self,
        features: &Features,
        side: fn(&Projector, &Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<Embedding, ServiceError> {
        let row = Tensor::from_slice(features.as_slice(), (1, features.dims()), &self.device)?;
        let projected = side(&self.projector, &row)?.flatten_all()?.to_vec1()?;
        Ok(Embedding::new(projected))
    }
}

pub struct Service {
    pub catalog: Catalog,
    pub engine: Engine,
    pub image_spec: FeatureSpec,
    pub text_spec: FeatureSpec,
    /// Where encoders and heads run: `cpu` or `cuda:N`.
    pub device: String,
    /// At least one; the first is the default.
    pub spaces: Vec<Space>,
    data: DataDir,
    uploads_dataset: i64,
    /// The folder library this server keeps in sync (`--library`).
    library: Option<library::Library>,
    /// Recent queries' text features (`--query-cache-mb`; off at 0).
    query_cache: Option<super::query_cache::QueryCache>,
    /// Writes are serialised: one upload or delete at a time keeps catalog and index in step.
    write_lock: tokio::sync::Mutex<()>,
    /// A CLIP-family model's zero-shot classifier for tags (else the image model's own).
    zero_shot_tags: Option<Arc<tags::ZeroShotTags>>,
    /// Whether the last write found space (`/ready`'s `writable`); false from a full disk
    /// until a write succeeds again.
    writable: std::sync::atomic::AtomicBool,
}

pub const UPLOADS_DATASET: &str = "uploads";

impl Service {
    /// The space a request names, or the default (first) one.
    pub fn space(&self, name: Option<&str>) -> Result<&Space, ServiceError> {
        match name {
            None => Ok(&self.spaces[0]),
            Some(n) => {
                self.spaces
                    .iter()
                    .find(|s| s.name == n)
                    .ok_or_else(|| ServiceError::UnknownModel {
                        name: n.to_string(),
                        available: self.spaces.iter().map(|s| s.name.clone()).collect(),
                    })
            }
        }
    }

    /// Persist every space's in-process indexes (at shutdown; they are rebuilt or reconciled
    /// otherwise).
    pub fn save_indexes(&self) -> Result<(), IndexError> {
        for s in &self.spaces {
            if let (Some(images), Some(captions)) = (s.images.memory(), s.captions.memory()) {
                images.save(&s.index_dir.join("images"), &s.id)?;
                captions.save(&s.index_dir.join("captions"), &s.id)?;
            }
        }
        Ok(())
    }

    /// Whether writes are getting through (false after one found no space, until one does).
    pub fn writable(&self) -> bool {
        self.writable.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes left on the data directory's filesystem.
    pub fn free_bytes(&self) -> Option<u64> {
        crate::fsutil::free_bytes(self.data.root()).ok()
    }

    /// Account for a write's outcome: an out-of-space failure of `kind` (`files`, `catalog`) is
    /// counted and makes the service unwritable; a success makes it writable again.
    fn record_write<T>(&self, kind: &'static str, result: &Result<T, ServiceError>) {
        use std::sync::atomic::Ordering::Relaxed;
        match result {
            Ok(_) => self.writable.store(true, Relaxed),
            Err(ServiceError::OutOfSpace { .. }) => {
                metrics::counter!("xmodal_storage_errors_total", "kind" => kind).increment(1);
                if self.writable.swap(false, Relaxed) {
                    tracing::warn!("writes are failing for lack of space; reads go on");
                }
            }
            Err(_) => {}
        }
    }

    /// A catalog error, as out of space when it is one (naming the catalog).
    fn catalog_error(&self, what: &'static str, e: CatalogError) -> ServiceError {
        match &e {
            CatalogError::Db(db) if crate::data::catalog::is_out_of_space(db) => {
                ServiceError::OutOfSpace {
                    what,
                    location: self.catalog.location().to_string(),
                    message: db.to_string(),
                }
            }
            _ => e.into(),
        }
    }

    /// The folder library to watch, when `--watch` asked for it.
    pub fn watched_library(&self) -> Option<&std::path::Path> {
        self.library
            .as_ref()
            .filter(|l| l.config.watch)
            .map(|l| l.config.root.as_path())
    }

    /// The default space's index sizes, for /metrics.
    async fn update_index_gauges(&self) {
        let default = &self.spaces[0];
        metrics::gauge!("xmodal_index_size", "side" => "images")
            .set(default.images.count().await as f64);
        metrics::gauge!("xmodal_index_size", "side" => "captions")
            .set(default.captions.count().await as f64);
    }
}
