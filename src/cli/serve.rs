//! `xmodal serve`

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;

use crate::{
    data::{catalog::PoolConfig, DataDir},
    device::DeviceSpec,
    features::encoders::EncoderSpec,
    index::IndexParams,
    serve::{self, engine::BatchConfig, Limits, ServerConfig, ServiceConfig},
};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(long, env = "XMODAL_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Heads to serve: trained heads directories and/or `zero-shot` (repeat the flag, or
    /// separate with commas); requests choose one by name, the first is the default.
    #[arg(long, env = "XMODAL_HEADS", value_delimiter = ',')]
    pub heads: Vec<String>,
    #[command(flatten)]
    pub encoders: EncoderSpec,
    /// Postgres connections per replica.
    #[arg(long, env = "XMODAL_DB_MAX_CONNECTIONS", default_value_t = PoolConfig::default().max_connections)]
    pub db_max_connections: u32,
    /// Waiting longer than this for a database connection fails the request (503).
    #[arg(long, env = "XMODAL_DB_TIMEOUT_MS", default_value_t = PoolConfig::default().acquire_timeout.as_millis() as u64)]
    pub db_timeout_ms: u64,
    /// When set, writes need `Authorization: Bearer KEY`.
    #[arg(long, env = "XMODAL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Largest request body in MiB (image uploads and queries).
    #[arg(long, env = "XMODAL_MAX_BODY_MB", default_value_t = Limits::default().max_body_bytes >> 20)]
    pub max_body_mb: usize,
    /// Requests in flight before new ones get 429.
    #[arg(long, env = "XMODAL_MAX_IN_FLIGHT", default_value_t = Limits::default().max_in_flight)]
    pub max_in_flight: usize,
    /// Image requests (uploads, image queries) held at once before new ones get 429; with
    /// --max-body-mb it bounds the memory image bodies can take.
    #[arg(long, env = "XMODAL_MAX_IMAGE_REQUESTS", default_value_t = Limits::default().max_image_requests)]
    pub max_image_requests: usize,
    /// Largest text-encoder batch.
    #[arg(long, env = "XMODAL_MAX_BATCH", default_value_t = BatchConfig::default().max_batch)]
    pub max_batch: usize,
    /// Largest image-encoder batch (CNN activations grow with it; throughput does not).
    #[arg(long, env = "XMODAL_MAX_IMAGE_BATCH", default_value_t = BatchConfig::default().max_image_batch)]
    pub max_image_batch: usize,
    /// Text encoder workers, each on its share of the cores (2 on 2 cores: two single-threaded
    /// passes beat one pass split across both; see README's "Serving under load").
    #[arg(long, env = "XMODAL_TEXT_WORKERS", default_value_t = BatchConfig::default().text_workers)]
    pub text_workers: usize,
    /// Image encoder workers, the same way (2 on 2 cores; each holds one batch's
    /// activations; 1 gives a lone image query both cores: lower latency at low load).
    #[arg(long, env = "XMODAL_IMAGE_WORKERS", default_value_t = BatchConfig::default().image_workers)]
    pub image_workers: usize,
    /// How long an encoder waits to fill a batch, in milliseconds (0: batch whatever queued
    /// while the previous batch ran; measured best on CPU).
    #[arg(long, env = "XMODAL_MAX_WAIT_MS", default_value_t = BatchConfig::default().max_wait.as_millis() as u64)]
    pub max_wait_ms: u64,
    /// Zero-shot head: top ImageNet classes per image.
    #[arg(long, env = "XMODAL_ZERO_SHOT_TOP", default_value_t = crate::heads::conse::DEFAULT_TOP)]
    pub zero_shot_top: usize,
    /// A folder of photos to index (recursively: JPEG, PNG, WebP) and serve, rescanned at
    /// start-up; files stay where they are.
    #[arg(long, env = "XMODAL_LIBRARY")]
    pub library: Option<PathBuf>,
    /// The catalog dataset of `--library`.
    #[arg(long, env = "XMODAL_LIBRARY_DATASET", default_value = crate::library::DEFAULT_DATASET)]
    pub library_dataset: String,
    /// Keep `--library` in sync while serving: files added, changed or deleted are indexed or
    /// dropped within a moment.
    #[arg(long, env = "XMODAL_WATCH", requires = "library")]
    pub watch: bool,
    /// MiB of recent queries' text features to keep: a repeated query skips the text encoder
    /// (0: off; benchmarks run with it off).
    #[arg(long, env = "XMODAL_QUERY_CACHE_MB", default_value_t = 64)]
    pub query_cache_mb: u64,
    /// HNSW links per node.
    #[arg(long, env = "XMODAL_INDEX_M", default_value_t = IndexParams::default().m)]
    pub index_m: usize,
    #[arg(long, env = "XMODAL_INDEX_EF_CONSTRUCTION", default_value_t = IndexParams::default().ef_construction)]
    pub index_ef_construction: usize,
    #[arg(long, env = "XMODAL_INDEX_EF_SEARCH", default_value_t = IndexParams::default().ef_search)]
    pub index_ef_search: usize,
}

impl ServeArgs {
    pub fn configs(
        &self,
        data: &DataDir,
        models_dir: &Path,
        database: Option<&str>,
        device: DeviceSpec,
    ) -> anyhow::Result<(ServerConfig, ServiceConfig)> {
        let index = IndexParams {
            m: self.index_m,
            ef_construction: self.index_ef_construction,
            ef_search: self.index_ef_search,
            ..Default::default()
        };
        index.validate().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            self.max_batch >= 1
                && self.max_image_batch >= 1
                && self.max_in_flight >= 1
                && self.max_image_requests >= 1,
            "--max-batch, --max-image-batch, --max-in-flight and --max-image-requests must be at least 1"
        );
        let server = ServerConfig {
            addr: self.addr,
            api_key: self.api_key.clone(),
            limits: Limits {
                max_body_bytes: self.max_body_mb << 20,
                max_in_flight: self.max_in_flight,
                max_image_requests: self.max_image_requests,
            },
        };
        let service = ServiceConfig {
            data: data.clone(),
            database: database.map(String::from),
            pool: PoolConfig {
                max_connections: self.db_max_connections.max(1),
                acquire_timeout: Duration::from_millis(self.db_timeout_ms),
            },
            models_dir: models_dir.to_path_buf(),
            encoders: self.encoders.clone(),
            heads: self.heads.clone(),
            zero_shot_top: self.zero_shot_top,
            index,
            batch: BatchConfig {
                max_batch: self.max_batch,
                max_image_batch: self.max_image_batch,
                max_wait: Duration::from_millis(self.max_wait_ms),
                text_workers: self.text_workers.max(1),
                image_workers: self.image_workers.max(1),
                ..Default::default()
            },
            device: device.open()?,
            library: self
                .library
                .as_ref()
                .map(|root| crate::serve::service::LibraryConfig {
                    root: root.clone(),
                    dataset: self.library_dataset.clone(),
                    watch: self.watch,
                }),
            query_cache_bytes: self.query_cache_mb << 20,
        };
        Ok((server, service))
    }
}

pub async fn run(
    args: ServeArgs,
    data: &DataDir,
    models_dir: &Path,
    database: Option<&str>,
    device: DeviceSpec,
) -> anyhow::Result<()> {
    let (server, service) = args.configs(data, models_dir, database, device)?;
    serve::run(server, service, move |s, addr| {
        tracing::info!(
            images = s.spaces[0].images.memory().map(|i| i.len()),
            captions = s.spaces[0].captions.memory().map(|i| i.len()),
            "ready"
        );
        println!("xmodal is ready at http://{addr}/ ({})", s.spaces[0].model);
    })
    .await
}
