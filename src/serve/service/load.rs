//! How a server gets ready: catalog → encoders → stored features → one space per head (projector
//! and its indexes) → engine. Each step is a call into the module that owns it.

use std::{path::PathBuf, sync::Arc};

use candle_core::Device;

use super::{tags::ZeroShotTags, Service, Space, UPLOADS_DATASET};
use crate::{
    data::{catalog::Backend, Catalog, DataDir, ImageId},
    features::{
        backfill::fill_vectors,
        encoders::{EncoderSpec, Encoders},
    },
    heads::{self, conse::ClassText, Score, ZERO_SHOT},
    index::{
        open::{open_side, Side},
        pgvector, IndexParams,
    },
    serve::engine::{BatchConfig, Engine},
};

/// How the service is put together (from CLI flags / env).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub data: DataDir,
    /// `postgres://…`: catalog in Postgres and indexes in pgvector, shared by replicas. `None`:
    /// the embedded default (SQLite under the data dir, in-process HNSW).
    pub database: Option<String>,
    pub pool: crate::data::catalog::PoolConfig,
    pub models_dir: PathBuf,
    pub encoders: EncoderSpec,
    /// Heads to serve, each with its own indexes: trained heads directories and/or `zero-shot`
    /// (the ConSE default when empty). Requests pick one by name; the first is the default.
    pub heads: Vec<String>,
    pub zero_shot_top: usize,
    pub index: IndexParams,
    pub batch: BatchConfig,
    pub device: Device,
    /// A folder of photos to index at start-up (and watch, if asked).
    pub library: Option<super::LibraryConfig>,
    /// Bytes of recent queries' text features to keep (0: no cache).
    pub query_cache_bytes: u64,
}

impl Service {
    pub async fn load(config: &ServiceConfig, log: &(dyn Fn(&str) + Sync)) -> anyhow::Result<Self> {
        let catalog = open_catalog(config, log).await?;
        log("loading encoders");
        let encoders =
            config
                .encoders
                .load(&config.models_dir, &config.data.features(), &config.device)?;
        if encoders.image.is_none() {
            log(&format!(
                "serving imported image features {} ({}); no image encoder",
                encoders.image_spec.id(),
                encoders.image_spec.encoder
            ));
        }
        let library = match (&config.library, &encoders.image) {
            (Some(lib), Some(image)) => Some(
                super::library::rescan_at_start(
                    &catalog,
                    &config.data,
                    lib,
                    image,
                    &encoders.image_spec.id().0,
                    log,
                )
                .await?,
            ),
            (Some(_), None) => {
                anyhow::bail!("--library needs an image encoder (drop --image-features)")
            }
            (None, _) => None,
        };
        fill_vectors(&catalog, &config.data, &encoders, log).await?;
        let heads = if config.heads.is_empty() {
            vec![ZERO_SHOT.to_string()]
        } else {
            config.heads.clone()
        };
        let mut spaces: Vec<Space> = Vec::new();
        for h in &heads {
            let space = open_space(&catalog, config, &encoders, h, spaces.is_empty(), log).await?;
            anyhow::ensure!(
                spaces.iter().all(|s| s.name != space.name),
                "two heads are both named {:?}",
                space.name
            );
            spaces.push(space);
        }
        catalog
            .register_feature_set(&encoders.image_spec.row())
            .await?;
        catalog
            .register_feature_set(&encoders.text_spec.row())
            .await?;
        let uploads_dataset = catalog.dataset(UPLOADS_DATASET, "upload", "http").await?;
        let zero_shot_tags = zero_shot_tags(&encoders, config, log)?;
        let Encoders {
            image,
            text,
            image_spec,
            text_spec,
        } = encoders;
        let text_spec_id = text_spec.id().0;
        let engine = Engine::start(Arc::new(text), image.map(Arc::new), config.batch);
        let device = crate::device::name(&config.device);
        metrics::gauge!("xmodal_device_info", "device" => device.clone()).set(1.0);
        let service = Self {
            catalog,
            engine,
            image_spec,
            text_spec,
            device,
            spaces,
            data: config.data.clone(),
            uploads_dataset,
            library,
            query_cache: crate::serve::query_cache::QueryCache::new(
                text_spec_id,
                config.query_cache_bytes,
            ),
            write_lock: tokio::sync::Mutex::new(()),
            zero_shot_tags,
            writable: std::sync::atomic::AtomicBool::new(true),
        };
        service.update_index_gauges().await;
        Ok(service)
    }
}

/// For a CLIP-family model, the zero-shot ImageNet classifier its tags come from (class prompt
/// embeddings kept beside the feature cache, made on first start).
fn zero_shot_tags(
    encoders: &Encoders,
    config: &ServiceConfig,
    log: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Option<Arc<ZeroShotTags>>> {
    let (Some(_), Some((scale, bias))) = (
        encoders.joint(),
        encoders.image.as_ref().and_then(|i| i.zero_shot_logits()),
    ) else {
        return Ok(None);
    };
    log("tags: the model's zero-shot classifier over ImageNet's class prompts");
    let classes = heads::class_cache::load_or_make(
        &config.data.features(),
        &encoders.text,
        &encoders.text_spec.id(),
        ClassText::ClipPrompt,
        &config.device,
    )?;
    Ok(Some(Arc::new(ZeroShotTags {
        classes,
        scale,
        bias,
    })))
}

async fn open_catalog(
    config: &ServiceConfig,
    log: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Catalog> {
    let catalog = match &config.database {
        Some(url) => {
            log("connecting to the Postgres catalog");
            Catalog::open_location(url, config.pool).await?
        }
        None => Catalog::open(&config.data.catalog()).await?,
    };
    if catalog.backend() == Backend::Postgres {
        log("checking that pgvector's HNSW index works on this database");
        pgvector::probe_hnsw(catalog.pool()).await?;
    }
    Ok(catalog)
}

/// One head's space: its projector and both sides' indexes.
async fn open_space(
    catalog: &Catalog,
    config: &ServiceConfig,
    encoders: &Encoders,
    heads: &str,
    first: bool,
    log: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Space> {
    if heads == ZERO_SHOT {
        log("opening the zero-shot head (class embeddings from the feature cache, or made on first start)");
    }
    let opened = heads::open(
        heads,
        encoders,
        config.zero_shot_top,
        &config.data.features(),
        &config.device,
    )?;
    anyhow::ensure!(
        opened.projector.score() == Score::Cosine,
        "heads trained with squared-L2 geometry (loss triplet) cannot be served by the cosine index; train with --loss hardest or infonce"
    );
    let (image_spec, text_spec) = (&encoders.image_spec, &encoders.text_spec);
    let id = format!("{}|{}|{}", opened.id, image_spec.id(), text_spec.id());
    let model = match opened.projector {
        heads::Projector::Joint => {
            format!("{} zero-shot (its own joint space)", image_spec.encoder)
        }
        ref p => format!(
            "{} over {} + {}",
            p.name(),
            image_spec.encoder,
            text_spec.encoder
        ),
    };
    // the first space keeps the plain layout; others get a directory of their own
    let index_dir = if first {
        config.data.index()
    } else {
        config.data.index().join(
            ImageId::sanitized(&opened.name)
                .map(|i| i.to_string())
                .unwrap_or_else(|_| "heads".into()),
        )
    };
    let projector = opened.projector;
    let side = |name, features| Side {
        name,
        dir: &index_dir,
        features,
        space_id: &id,
    };
    let images = open_side(
        catalog,
        side("images", image_spec),
        config.index,
        log,
        |m| projector.images(m),
        &config.device,
    )
    .await?;
    let captions = open_side(
        catalog,
        side("captions", text_spec),
        config.index,
        log,
        |m| projector.texts(m),
        &config.device,
    )
    .await?;
    Ok(Space {
        name: opened.name,
        model,
        projector,
        images,
        captions,
        id,
        index_dir,
        device: config.device.clone(),
    })
}
