//! The inference backend: worker threads per encoder (`text_workers`, `image_workers`), fed by
//! a bounded queue. A worker takes the first waiting request, gathers more for up to `max_wait`
//! or `max_batch` items, runs one batched forward pass and answers each request. A request may
//! carry several items (an upload's captions), which always stay in one batch. Requests whose
//! client has gone are skipped.
//!
//! Callers hand in text and encoded image bytes and get [`Features`] back: decoding (bounded, off
//! the async runtime, at most one per core) and preprocessing happen here. HTTP never touches a
//! tensor; this layer never sees JSON.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use candle_core::Tensor;
use tokio::sync::{oneshot, Semaphore};

use crate::{
    encode::{image::preprocess, EncodeError, ImageEncoder, ImageError, TextEncoder},
    vectors::Features,
};

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Largest text batch.
    pub max_batch: usize,
    /// Largest image batch. Smaller than text: a CNN's activations grow with the batch and its
    /// throughput does not (scripts/bench/bench-serve, image queries at concurrency 32 on 2 cores:
    /// batch 32 peaked at 1.6 GB RSS with p99 1.8 s, batch 4 at 0.9 GB with p99 0.86 s and
    /// more queries per second, 51.9 vs 49.4).
    pub max_image_batch: usize,
    pub max_wait: Duration,
    /// Text encoder workers, each a forward pass of its own on `cores / text_workers` threads.
    /// Small batches use two cores better as two single-threaded passes than as one pass split
    /// in two: caption queries at concurrency 32 on 2 cores, 10k images, 227 → 256 req/s with 2
    /// workers (a shared pool: 243), at the cost of concurrency-1 p50 9.5 → 12.3 ms (a lone
    /// query gets one core). Default: 2 where there are 2 cores or more.
    pub text_workers: usize,
    /// Image encoder workers, the same way (each holds one batch's CNN activations). Default: 2
    /// where there are 2 cores or more. Once the CNN's element-wise work ran in our own kernels
    /// (no allocating candle ops on candle's spinning pool), two single-threaded passes beat one
    /// split across both cores: image queries at c32 on 2 cores, 10k images, 39.2/51.7 →
    /// 67.3/72.4 req/s in two alternating 15 s runs, at the cost of c1 p50 21.4 → 28.6 ms and
    /// ~70 MiB of peak RSS (with the older CNN path a second worker had lost, 30.3 → 25.7).
    pub image_workers: usize,
    /// Requests waiting per encoder before new ones are refused (429).
    pub queue_capacity: usize,
    /// The longest a request waits for its batch (queue + forward pass) before giving up.
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_image_batch: 4,
            // Continuous batching: a batch is whatever queued while the previous one ran. Waiting
            // to fill batches cost latency and bought no throughput (scripts/bench/bench-serve, 30k
            // images: max_wait 2 ms → p50 8.2 ms at concurrency 1 and 287 req/s at 32; 0 ms →
            // 6.4 ms and 299 req/s).
            max_wait: Duration::ZERO,
            text_workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            image_workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            queue_capacity: 256,
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the {0} encoder queue is full")]
    Overloaded(&'static str),
    #[error("the {0} encoder did not answer in time")]
    TimedOut(&'static str),
    #[error("the {0} encoder stopped")]
    Stopped(&'static str),
    #[error("this server has no image encoder")]
    NoImageEncoder,
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The batch this request was in failed (shared by every request of the batch).
    #[error(transparent)]
    Encode(Arc<EncodeError>),
}

type Rows = Result<Vec<Vec<f32>>, Arc<EncodeError>>;

struct Job<I> {
    inputs: Vec<I>,
    reply: oneshot::Sender<Rows>,
}

/// A queue in front of one encoder.
struct Queue<I> {
    name: &'static str,
    tx: SyncSender<Job<I>>,
    depth: Arc<AtomicUsize>,
    timeout: Duration,
}

impl<I: Send + 'static> Queue<I> {
    /// `workers` threads take batches from the queue; each runs its forward passes on a rayon
    /// pool of its own share of the cores (one worker: the global pool).
    fn start(
        name: &'static str,
        config: BatchConfig,
        workers: usize,
        run: impl Fn(Vec<I>) -> Result<Vec<Vec<f32>>, EncodeError> + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job<I>>(config.queue_capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        let workers = workers.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..workers {
            let (rx, run, depth) = (rx.clone(), run.clone(), depth.clone());
            let pool = (workers > 1).then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads((cores / workers).max(1))
                    .thread_name(move |t| format!("xmodal-{name}-{i}-{t}"))
                    .build()
                    .expect("encoder thread pool")
            });
            std::thread::Builder::new()
                .name(format!("xmodal-{name}-encoder-{i}"))
                .spawn(move || {
                    let run = |inputs| match &pool {
                        Some(pool) => pool.install(|| run(inputs)),
                        None => run(inputs),
                    };
                    worker(name, &rx, config, &depth, run)
                })
                .expect("spawn encoder thread");
        }
        Self {
            name,
            tx,
            depth,
            timeout: config.timeout,
        }
    }

    /// Encode several inputs in one batch (with whatever else is waiting), one row each.
    /// Refuses at once when the queue is full.
    async fn encode(&self, inputs: Vec<I>) -> Result<Vec<Features>, EngineError> {
        self.submit(inputs)?.wait().await
    }

    /// Queue one request now (or refuse it: 429); its rows come from [`Pending::wait`]. Several
    /// requests submitted before waiting run side by side, on as many workers as there are.
    fn submit(&self, inputs: Vec<I>) -> Result<Pending, EngineError> {
        let (reply, rx) = oneshot::channel();
        if inputs.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
        } else {
            // count the job before the worker can see it, so the worker's decrement never runs
            // first
            let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
            if let Err(e) = self.tx.try_send(Job { inputs, reply }) {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(match e {
                    TrySendError::Full(_) => EngineError::Overloaded(self.name),
                    TrySendError::Disconnected(_) => EngineError::Stopped(self.name),
                });
            }
            metrics::gauge!("xmodal_queue_depth", "encoder" => self.name).set(depth as f64);
        }
        Ok(Pending {
            rx,
            name: self.name,
            timeout: self.timeout,
        })
    }
}

/// A queued request's answer, to be awaited.
struct Pending {
    rx: oneshot::Receiver<Rows>,
    name: &'static str,
    timeout: Duration,
}

impl Pending {
    async fn wait(self) -> Result<Vec<Features>, EngineError> {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(Ok(rows))) => Ok(rows.into_iter().map(Features::new).collect()),
            Ok(Ok(Err(e))) => Err(EngineError::Encode(e)),
            Ok(Err(_)) => Err(EngineError::Stopped(self.name)),
            Err(_) => Err(EngineError::TimedOut(self.name)),
        }
    }
}

fn worker<I>(
    name: &'static str,
    rx: &Mutex<Receiver<Job<I>>>,
    config: BatchConfig,
    depth: &AtomicUsize,
    run: impl Fn(Vec<I>) -> Result<Vec<Vec<f32>>, EncodeError>,
) {
    // a job that would overflow the batch waits for this worker's next one
    let mut held: Option<Job<I>> = None;
    loop {
        // The queue is this worker's while it gathers a batch; the others wait for the next.
        // A held job never waits for the lock: another worker may hold it while it blocks for
        // new requests, and the held one would then stall until one came (or time out).
        let (first, rx) = match held.take() {
            Some(job) => (job, rx.try_lock().ok()),
            None => {
                let Ok(rx) = rx.lock() else { return };
                match rx.recv() {
                    Ok(job) => (job, Some(rx)),
                    Err(_) => return,
                }
            }
        };
        let mut items = first.inputs.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while let (Some(rx), true) = (&rx, items < config.max_batch) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) if items + job.inputs.len() > config.max_batch => {
                    held = Some(job);
                    break;
                }
                Ok(job) => {
                    items += job.inputs.len();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        drop(rx);
        let taken = jobs.len();
        let now = depth
            .fetch_sub(taken, Ordering::Relaxed)
            .saturating_sub(taken);
        metrics::gauge!("xmodal_queue_depth", "encoder" => name).set(now as f64);
        // clients that gave up (timeout, disconnect) cost nothing
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        let mut inputs = Vec::with_capacity(items);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push((job.reply, job.inputs.len()));
            inputs.extend(job.inputs);
        }
        let batch = inputs.len();
        let result = run(inputs);
        metrics::histogram!("xmodal_encoder_batch_size", "encoder" => name).record(batch as f64);
        metrics::histogram!("xmodal_encoder_seconds", "encoder" => name)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(rows) => {
                let mut rows = rows.into_iter();
                for (reply, n) in replies {
                    let _ = reply.send(Ok(rows.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for (reply, _) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// An image decoded and encoded: its features and its displayed size.
pub struct EncodedImage {
    pub features: Features,
    pub width: u32,
    pub height: u32,
}

struct ImageSide {
    encoder: Arc<ImageEncoder>,
    /// Inputs are preprocessed images `[3, crop, crop]` on the encoder's device.
    queue: Queue<Tensor>,
}

/// Both encoders behind their queues, and the pool that decodes images for them.
pub struct Engine {
    text: Queue<String>,
    /// The text encoder itself, for work that is not a forward pass (counting tokens).
    text_encoder: Arc<TextEncoder>,
    /// Images per batch: a request with more goes as several batches.
    max_image_batch: usize,
    /// `None` when image features were imported and no image encoder is loaded.
    image: Option<ImageSide>,
    /// Image decodes running at once. Decoding is CPU-bound: more decodes than cores only add
    /// threads, each holding its decoded pixels (tokio's blocking pool grows to 512 threads;
    /// 32 concurrent image queries held ~350 MB more than one at a time, scripts/bench/bench-serve).
    decoders: Semaphore,
}

impl Engine {
    pub fn start(
        text: Arc<TextEncoder>,
        image: Option<Arc<ImageEncoder>>,
        config: BatchConfig,
    ) -> Self {
        let text_encoder = text.clone();
        let text_queue = Queue::start(
            "text",
            config,
            config.text_workers,
            move |texts: Vec<String>| {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                rows(text.encode(&refs)?)
            },
        );
        let image = image.map(|encoder| {
            let config = BatchConfig {
                max_batch: config.max_image_batch,
                ..config
            };
            let worker_encoder = encoder.clone();
            let workers = config.image_workers;
            let queue = Queue::start("image", config, workers, move |images: Vec<Tensor>| {
                rows(worker_encoder.encode_prepared(&images)?)
            });
            ImageSide { encoder, queue }
        });
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            text: text_queue,
            text_encoder,
            max_image_batch: config.max_image_batch.max(1),
            image,
            decoders: Semaphore::new(cores),
        }
    }

    pub fn has_image_encoder(&self) -> bool {
        self.image.is_some()
    }

    pub fn image_encoder(&self) -> Option<&Arc<ImageEncoder>> {
        self.image.as_ref().map(|side| &side.encoder)
    }

    pub async fn encode_text(&self, text: String) -> Result<Features, EngineError> {
        let mut rows = self.text.encode(vec![text]).await?;
        Ok(rows.pop().expect("one row per input"))
    }

    /// Several texts in one batch (an upload's captions).
    pub async fn encode_texts(&self, texts: Vec<String>) -> Result<Vec<Features>, EngineError> {
        self.text.encode(texts).await
    }

    /// Tokens each text becomes in the text encoder (off the async runtime: tokenizing is CPU
    /// work in proportion to the texts).
    pub async fn count_tokens(&self, texts: Vec<String>) -> Result<Vec<usize>, EngineError> {
        let encoder = self.text_encoder.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            encoder.count_tokens(&refs)
        })
        .await
        .map_err(|_| EngineError::Stopped("tokenizer"))?
        .map_err(|e| EngineError::Encode(Arc::new(e)))
    }

    /// Several images: each decoded and preprocessed on the bounded pool, then encoded in
    /// batches of at most `max_image_batch` (one queue request each, side by side with other
    /// traffic), in input order.
    pub async fn encode_images(
        &self,
        images: Vec<axum::body::Bytes>,
    ) -> Result<Vec<Features>, EngineError> {
        let side = self.image.as_ref().ok_or(EngineError::NoImageEncoder)?;
        let mut inputs = Vec::with_capacity(images.len());
        for bytes in images {
            let encoder = side.encoder.clone();
            inputs.push(
                self.decode(move || {
                    let decoded = preprocess::decode(&bytes)?;
                    encoder
                        .prepare_decoded(&decoded)
                        .map_err(|e| EngineError::Encode(Arc::new(e)))
                })
                .await?,
            );
        }
        let mut pending = Vec::new();
        while !inputs.is_empty() {
            let rest = inputs.split_off(inputs.len().min(self.max_image_batch));
            pending.push(side.queue.submit(std::mem::replace(&mut inputs, rest))?);
        }
        let mut features = Vec::new();
        for batch in pending {
            features.extend(batch.wait().await?);
        }
        Ok(features)
    }

    /// Decode (every limit checked from the header first), preprocess and encode one image.
    pub async fn encode_image(
        &self,
        bytes: axum::body::Bytes,
    ) -> Result<EncodedImage, EngineError> {
        let side = self.image.as_ref().ok_or(EngineError::NoImageEncoder)?;
        let encoder = side.encoder.clone();
        let (input, (width, height)) = self
            .decode(move || {
                let decoded = preprocess::decode(&bytes)?;
                let input = encoder
                    .prepare_decoded(&decoded)
                    .map_err(|e| EngineError::Encode(Arc::new(e)))?;
                Ok((input, decoded.dimensions()))
            })
            .await?;
        let mut rows = side.queue.encode(vec![input]).await?;
        Ok(EncodedImage {
            features: rows.pop().expect("one row per input"),
            width,
            height,
        })
    }

    /// A JPEG thumbnail fitting in `max_side`×`max_side`, decoded on the same bounded pool.
    pub async fn thumbnail_jpeg(
        &self,
        bytes: Vec<u8>,
        max_side: u32,
    ) -> Result<Vec<u8>, EngineError> {
        self.decode(move || {
            let thumb = preprocess::decode(&bytes)?.thumbnail(max_side);
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
                .encode_image(&thumb)
                .map_err(|e| ImageError::Decode(e.to_string()))?;
            Ok(out)
        })
        .await
    }

    /// Run CPU-bound image work off the async runtime, at most one per core.
    async fn decode<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let _permit = self
            .decoders
            .acquire()
            .await
            .map_err(|_| EngineError::Stopped("image decode"))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| EngineError::Stopped("image decode"))?
    }
}

/// An encoder's `[n, dims]` output as host rows (one copy back per batch).
fn rows(m: Tensor) -> Result<Vec<Vec<f32>>, EncodeError> {
    Ok(m.to_device(&candle_core::Device::Cpu)?.to_vec2::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue over a fake encoder that records its batches: rows come back to the right
    /// requests, a multi-item request stays in one batch, and a failure reaches every request of
    /// its batch as the encoder's own error.
    #[tokio::test]
    async fn batches_keep_requests_together_and_rows_in_order() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = batches.clone();
        let config = BatchConfig {
            max_batch: 4,
            ..Default::default()
        };
        let queue = Queue::start("test", config, 1, move |items: Vec<i32>| {
            seen.lock().unwrap().push(items.len());
            if items.contains(&-1) {
                return Err(EncodeError::Config("bad item".into()));
            }
            Ok(items
                .iter()
                .map(|&i| vec![i as f32, 2.0 * i as f32])
                .collect())
        });
        let rows = queue.encode(vec![1, 2, 3]).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].as_slice(), &[3.0, 6.0]);
        // more items than max_batch still go as one batch
        let six = queue.encode((10..16).collect()).await.unwrap();
        assert_eq!(six[5].as_slice(), &[15.0, 30.0]);
        assert_eq!(*batches.lock().unwrap(), vec![3, 6]);
        assert!(queue.encode(Vec::new()).await.unwrap().is_empty());
        match queue.encode(vec![-1]).await {
            Err(EngineError::Encode(e)) => assert!(e.to_string().contains("bad item")),
            other => panic!(
                "expected the encoder's error, got {:?}",
                other.map(|r| r.len())
            ),
        }
    }

    /// Two workers: concurrent requests each get their own rows, and the passes run on both
    /// workers' pools (one thread each here), never on the caller's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_workers_answer_every_request_with_its_rows() {
        let pools = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let seen = pools.clone();
        let config = BatchConfig {
            max_batch: 3,
            ..Default::default()
        };
        let queue = Arc::new(Queue::start("test", config, 2, move |items: Vec<i32>| {
            seen.lock()
                .unwrap()
                .insert(std::thread::current().name().unwrap_or("").to_string());
            std::thread::sleep(Duration::from_millis(2)); // let requests pile up behind a pass
            Ok(items.iter().map(|&i| vec![i as f32]).collect())
        }));
        let answers = join_all(
            (0..40)
                .map(|i| {
                    let queue = queue.clone();
                    tokio::spawn(async move { (i, queue.encode(vec![i, i + 1000]).await) })
                })
                .collect(),
        )
        .await;
        for (i, rows) in answers {
            let rows = rows.unwrap();
            assert_eq!(rows[0].as_slice(), &[i as f32]);
            assert_eq!(rows[1].as_slice(), &[(i + 1000) as f32]);
        }
        let pools = pools.lock().unwrap();
        assert!(
            pools.iter().all(|n| n.starts_with("xmodal-test-")),
            "passes ran off the workers' pools: {pools:?}"
        );
    }

    async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}
