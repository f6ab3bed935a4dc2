//! What a running server holds, and how it gets there: catalog → encoders → projector → stored
//! vectors (filled from the extract cache or encoded now) → indexes (loaded if they match,
//! rebuilt if not, then reconciled with the catalog, which is the source of truth).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use super::engine::{BatchConfig, Engine};
use crate::{
    data::{
        catalog::{Backend, ImageFilter, StoredVector},
        Catalog, ImageId,
    },
    encode::{ImageEncoder, Pooling, TextEncoder, TextOptions},
    features::{
        cache::FeatureCache,
        extract::{caption_items, caption_key, image_items, Encoder, Payload},
        FeatureSpec,
    },
    index::{
        pgvector::{PgVectorIndex, TableSpec},
        project_stored, IndexParams, SearchIndex, VectorIndex,
    },
    project::{ConSE, Projector, Score, TrainedHeads, HEADS_CONFIG, HEADS_WEIGHTS},
};

/// How the service is put together (from CLI flags / env).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub data_dir: PathBuf,
    /// `postgres://…`: catalog in Postgres and indexes in pgvector, shared by replicas. `None`:
    /// the embedded default (SQLite under the data dir, in-process HNSW).
    pub database: Option<String>,
    pub pool: crate::data::catalog::PoolConfig,
    pub models_dir: PathBuf,
    pub image_model: Option<PathBuf>,
    pub text_model: Option<PathBuf>,
    /// Text pooling override (`--pooling`); `None`: the model's own.
    pub pooling: Option<Pooling>,
    /// Imported image features (`xmodal import`) to serve instead of an image encoder's.
    pub image_features: Option<String>,
    /// Heads to serve, each with its own indexes: trained heads directories and/or `zero-shot`
    /// (the ConSE default when empty). Requests pick one by name; the first is the default.
    pub heads: Vec<String>,
    pub zero_shot_top: usize,
    pub index: IndexParams,
    pub batch: BatchConfig,
    pub device: Device,
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
    index_dir: PathBuf,
}

impl Space {
    /// Project one feature row into this space.
    pub fn project_text(&self, features: Vec<f32>) -> candle_core::Result<Vec<f32>> {
        project_row(features, |m| self.projector.texts(m))
    }

    pub fn project_image(&self, features: Vec<f32>) -> candle_core::Result<Vec<f32>> {
        project_row(features, |m| self.projector.images(m))
    }
}

pub struct Service {
    pub catalog: Catalog,
    pub engine: Engine,
    /// `None` when serving imported image features: image queries and uploads are refused.
    pub image_encoder: Option<Arc<ImageEncoder>>,
    pub image_spec: FeatureSpec,
    pub text_spec: FeatureSpec,
    /// At least one; the first is the default.
    pub spaces: Vec<Space>,
    pub data_dir: PathBuf,
    pub uploads_dataset: i64,
    /// Writes are serialised: one upload or delete at a time keeps catalog and index in step.
    pub write_lock: tokio::sync::Mutex<()>,
}

pub const UPLOADS_DATASET: &str = "uploads";

impl Service {
    pub async fn load(config: &ServiceConfig, log: &(dyn Fn(&str) + Sync)) -> anyhow::Result<Self> {
        let catalog = match &config.database {
            Some(url) => {
                log("connecting to the Postgres catalog");
                Catalog::open_location(url, config.pool).await?
            }
            None => Catalog::open(&config.data_dir.join("catalog.sqlite")).await?,
        };
        if catalog.backend() == Backend::Postgres {
            log("checking that pgvector's HNSW index works on this database");
            crate::index::pgvector::probe_hnsw(catalog.pool()).await?;
        }
        let image_dir =
            crate::kit::image_model_dir(&config.models_dir, config.image_model.as_deref());
        let text_dir = crate::kit::text_model_dir(&config.models_dir, config.text_model.as_deref());
        let (image, image_spec) = match &config.image_features {
            Some(name) => {
                let spec = crate::features::import::find_imported(
                    &config.data_dir.join("features"),
                    name,
                )?;
                log(&format!(
                    "serving imported image features {} ({}); no image encoder",
                    spec.id(),
                    spec.encoder
                ));
                (None, spec)
            }
            None => {
                log(&format!("loading image encoder {}", image_dir.display()));
                let image = Arc::new(ImageEncoder::load(&image_dir, &config.device)?);
                let spec = FeatureSpec::for_image(&image_dir, &image)?;
                (Some(image), spec)
            }
        };
        log(&format!("loading text encoder {}", text_dir.display()));
        let text = Arc::new(TextEncoder::load(
            &text_dir,
            &TextOptions {
                pooling: config.pooling,
                ..Default::default()
            },
            &config.device,
        )?);
        let text_spec = FeatureSpec::for_text(&text_dir, &text)?;

        fill_vectors(
            &catalog,
            &config.data_dir,
            &image_spec,
            &text_spec,
            image.as_deref(),
            &text,
            log,
        )
        .await?;
        let heads: Vec<String> = if config.heads.is_empty() {
            vec!["zero-shot".into()]
        } else {
            config.heads.clone()
        };
        let mut spaces: Vec<Space> = Vec::new();
        for h in &heads {
            let (name, projector, projector_id) = if h == "zero-shot" {
                log("building the zero-shot head (ImageNet class names through the text encoder)");
                let classifier = image.as_ref().and_then(|i| i.classifier().cloned()).ok_or_else(|| anyhow::anyhow!("the image model has no classifier; the zero-shot head needs one (or pass --heads)"))?;
                (
                    "zero-shot".to_string(),
                    Projector::ZeroShot(Box::new(ConSE::new(
                        classifier,
                        &text,
                        config.zero_shot_top,
                    )?)),
                    format!("conse:top{}", config.zero_shot_top),
                )
            } else {
                let dir = Path::new(h);
                let heads = TrainedHeads::load(dir, &config.device)?;
                heads.check_features(&image_spec, &text_spec)?;
                anyhow::ensure!(heads.config.score == Score::Cosine, "heads trained with squared-L2 geometry (loss triplet) cannot be served by the cosine index; train with --loss hardest or infonce");
                let weights = std::fs::read(dir.join(HEADS_WEIGHTS))?;
                let config_bytes = std::fs::read(dir.join(HEADS_CONFIG))?;
                let id = format!(
                    "heads:{:x}",
                    Sha256::new()
                        .chain_update(weights)
                        .chain_update(config_bytes)
                        .finalize()
                );
                (
                    heads.config.name.clone(),
                    Projector::Trained(Box::new(heads)),
                    id,
                )
            };
            anyhow::ensure!(
                spaces.iter().all(|s| s.name != name),
                "two heads are both named {name:?}"
            );
            let id = format!("{projector_id}|{}|{}", image_spec.id(), text_spec.id());
            let model = format!(
                "{} over {} + {}",
                projector.name(),
                image_spec.encoder,
                text_spec.encoder
            );
            // the first space keeps the plain layout; others get a directory of their own
            let index_dir = if spaces.is_empty() {
                config.data_dir.join("index")
            } else {
                config.data_dir.join("index").join(
                    crate::data::ImageId::sanitized(&name)
                        .map(|i| i.to_string())
                        .unwrap_or_else(|_| "heads".into()),
                )
            };
            let images = open_side(
                &catalog,
                Side {
                    name: "images",
                    dir: &index_dir,
                    spec: &image_spec,
                },
                &id,
                config.index,
                log,
                |m| projector.images(m),
            )
            .await?;
            let captions = open_side(
                &catalog,
                Side {
                    name: "captions",
                    dir: &index_dir,
                    spec: &text_spec,
                },
                &id,
                config.index,
                log,
                |m| projector.texts(m),
            )
            .await?;
            spaces.push(Space {
                name,
                model,
                projector,
                images,
                captions,
                id,
                index_dir,
            });
        }
        catalog.register_feature_set(&image_spec.row()).await?;
        catalog.register_feature_set(&text_spec.row()).await?;
        let uploads_dataset = catalog.dataset(UPLOADS_DATASET, "upload", "http").await?;
        let engine = Engine::start(text, image.clone(), config.batch);
        metrics::gauge!("xmodal_index_size", "side" => "images")
            .set(spaces[0].images.count().await as f64);
        metrics::gauge!("xmodal_index_size", "side" => "captions")
            .set(spaces[0].captions.count().await as f64);
        Ok(Self {
            catalog,
            engine,
            image_encoder: image,
            image_spec,
            text_spec,
            spaces,
            data_dir: config.data_dir.clone(),
            uploads_dataset,
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Persist every space's indexes (at shutdown; they are rebuilt or reconciled otherwise).
    pub fn save_indexes(&self) -> anyhow::Result<()> {
        for s in &self.spaces {
            if let (Some(images), Some(captions)) = (s.images.memory(), s.captions.memory()) {
                images.save(&s.index_dir.join("images"), &s.id)?;
                captions.save(&s.index_dir.join("captions"), &s.id)?;
            }
        }
        Ok(())
    }

    /// The image encoder and its queue, or the error for deployments without one.
    pub fn image_side(
        &self,
    ) -> Result<(&Arc<ImageEncoder>, &super::engine::Queue<Tensor>), super::error::ApiError> {
        match (&self.image_encoder, &self.engine.image) {
            (Some(e), Some(q)) => Ok((e, q)),
            _ => Err(super::error::ApiError::NoImageEncoder),
        }
    }

    /// The space a request names, or the default (first) one.
    pub fn space(&self, name: Option<&str>) -> Result<&Space, super::error::ApiError> {
        match name {
            None => Ok(&self.spaces[0]),
            Some(n) => self.spaces.iter().find(|s| s.name == n).ok_or_else(|| {
                let names: Vec<&str> = self.spaces.iter().map(|s| s.name.as_str()).collect();
                super::error::ApiError::Invalid(format!(
                    "unknown model {n:?}; this server has {names:?}"
                ))
            }),
        }
    }
}

fn project_row(
    features: Vec<f32>,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Vec<f32>> {
    let n = features.len();
    f(&Tensor::from_vec(features, (1, n), &Device::Cpu)?)?
        .flatten_all()?
        .to_vec1()
}

/// Make sure every image and caption has its features stored in the catalog: take them from the
/// extract cache when it has them, encode the rest now.
async fn fill_vectors(
    catalog: &Catalog,
    data_dir: &Path,
    image_spec: &FeatureSpec,
    text_spec: &FeatureSpec,
    image: Option<&ImageEncoder>,
    text: &TextEncoder,
    log: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let all = ImageFilter::default();
    let images = catalog.images(&all).await?;
    let captions = catalog.captions(&all).await?;
    for (spec, items, is_image) in [
        (image_spec, image_items(&images), true),
        (text_spec, caption_items(&captions), false),
    ] {
        let set = spec.id().0;
        let have: std::collections::HashSet<String> =
            catalog.vector_items(&set).await?.into_iter().collect();
        let missing: Vec<_> = items
            .into_iter()
            .filter(|(k, _)| !have.contains(&k.key))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let cache = FeatureCache::new(&data_dir.join("features"), &spec.id());
        let cached = cache.load(&Device::Cpu).ok();
        let cached_rows = cached.as_ref().map(|c| c.index()).unwrap_or_default();
        let mut from_cache = Vec::new();
        let mut to_encode = Vec::new();
        for (key, payload) in missing {
            match (cached_rows.get(key.key.as_str()), &cached) {
                (Some(&row), Some(c)) => {
                    from_cache.push((key.key, c.matrix.get(row)?.to_vec1::<f32>()?))
                }
                _ => to_encode.push((key, payload)),
            }
        }
        log(&format!(
            "{}: {} vectors from the extract cache, {} to encode",
            if is_image { "images" } else { "captions" },
            from_cache.len(),
            to_encode.len()
        ));
        let owner = |key: &str| ImageId::new(key.split('#').next().unwrap_or(key).to_string());
        let mut rows: Vec<StoredVector> = Vec::new();
        for (item, vector) in from_cache {
            rows.push(StoredVector {
                feature_set: set.clone(),
                image_id: owner(&item)?,
                item,
                vector,
            });
        }
        let encoder = match (is_image, image) {
            (false, _) => Encoder::Text(text),
            (true, Some(image)) => Encoder::Image(image),
            (true, None) => {
                if !to_encode.is_empty() {
                    log(&format!(
                        "images: {} have no imported features and no encoder can compute them; they are not searchable",
                        to_encode.len()
                    ));
                }
                to_encode.clear();
                Encoder::Text(text) // unused: nothing left to encode
            }
        };
        for chunk in to_encode.chunks(64) {
            let payloads: Vec<&Payload> = chunk.iter().map(|(_, p)| p).collect();
            let results = encoder.encode_batch(&payloads)?;
            for ((key, _), r) in chunk.iter().zip(results) {
                match r {
                    Ok(v) => rows.push(StoredVector {
                        feature_set: set.clone(),
                        image_id: owner(&key.key)?,
                        item: key.key.clone(),
                        vector: v.to_vec1()?,
                    }),
                    Err(e) => {
                        tracing::warn!(item = %key.key, error = %e, "cannot encode; it will not be searchable")
                    }
                }
            }
        }
        for chunk in rows.chunks(2000) {
            catalog.put_vectors(chunk).await?;
        }
    }
    Ok(())
}

/// One searchable side of a space: its name, the space's index directory, its feature set.
struct Side<'a> {
    name: &'static str,
    dir: &'a Path,
    spec: &'a FeatureSpec,
}

/// The index of one side on this deployment's backend: pgvector tables shared by replicas on
/// Postgres, the in-process HNSW under the data directory otherwise.
async fn open_side(
    catalog: &Catalog,
    side: Side<'_>,
    space_id: &str,
    params: IndexParams,
    log: &(dyn Fn(&str) + Sync),
    project: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> anyhow::Result<SearchIndex> {
    if catalog.backend() == Backend::Postgres {
        let table = TableSpec {
            space_id,
            side: side.name,
            dims: project_dims(&project, side.spec.dims)?,
            feature_set: &side.spec.id().0,
        };
        let index = PgVectorIndex::open(catalog, table, params, log, project).await?;
        return Ok(SearchIndex::Postgres(index));
    }
    let dir = side.dir.join(side.name);
    let index = open_index(catalog, &dir, side.spec, space_id, params, log, project).await?;
    Ok(SearchIndex::Memory(index))
}

/// Load the index for one side if it matches `space`, else build it; then reconcile it with the
/// catalog (the source of truth) and save it if anything changed. A loaded index is reconciled by
/// keys, fetching only the vectors it lacks: a restart does not hold every stored vector in
/// memory at once.
async fn open_index(
    catalog: &Catalog,
    dir: &Path,
    spec: &FeatureSpec,
    space: &str,
    params: IndexParams,
    log: &(dyn Fn(&str) + Sync),
    project: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> anyhow::Result<VectorIndex> {
    let set = spec.id().0;
    let out_dims = project_dims(&project, spec.dims)?;
    match VectorIndex::load(dir, space) {
        Ok(index) if index.dims() == out_dims => {
            let items = catalog.vector_items(&set).await?;
            let (missing, removed) =
                index.reconcile_keys(&items.iter().map(String::as_str).collect());
            for chunk in missing.chunks(2048) {
                let stored = catalog.vectors_of(&set, chunk).await?;
                for (key, v) in project_stored(&stored, &project)? {
                    index.upsert(&key, &v).map_err(anyhow::Error::msg)?;
                }
            }
            if removed > 0 || !missing.is_empty() {
                log(&format!(
                    "{}: reconciled with the catalog (+{}, -{removed})",
                    dir.display(),
                    missing.len(),
                ));
                index.save(dir, space)?;
            }
            Ok(index)
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
            let mut items: Vec<(String, Vec<f32>)> = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(4096) {
                let stored = catalog.vectors_of(&set, chunk).await?;
                items.extend(project_stored(&stored, &project)?);
            }
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let index =
                VectorIndex::build(out_dims, params, items, &|_| {}).map_err(anyhow::Error::msg)?;
            index.save(dir, space)?;
            Ok(index)
        }
    }
}

/// The projector's output width, probed with a zero input (an empty collection has no vectors).
fn project_dims(
    project: &impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    input: usize,
) -> candle_core::Result<usize> {
    project(&Tensor::zeros(
        (1, input),
        candle_core::DType::F32,
        &Device::Cpu,
    )?)?
    .dim(1)
}

/// The caption key of an image's `ordinal`-th caption (re-exported for handlers).
pub fn caption_id(image_id: &str, ordinal: u32) -> String {
    caption_key(image_id, ordinal)
}
