//! The inference backend: one worker thread per encoder, fed by a bounded queue. A worker takes
//! the first waiting request, gathers more for up to `max_wait` or `max_batch` items, runs one
//! batched forward pass and answers each request. A request may carry several items (an
//! upload's captions), which always stay in one batch. Requests whose client has gone are
//! skipped.
//! The HTTP layer never touches a tensor; this layer never sees JSON.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc,
    },
    time::{Duration, Instant},
};

use candle_core::{Device, Tensor};
use tokio::sync::oneshot;

use crate::encode::{EncodeError, ImageEncoder, TextEncoder};

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Largest text batch.
    pub max_batch: usize,
    /// Largest image batch. Smaller than text: a CNN's activations grow with the batch and its
    /// throughput does not (scripts/bench-serve, image queries at concurrency 32 on 2 cores:
    /// batch 32 peaked at 1.6 GB RSS with p99 1.8 s, batch 4 at 0.9 GB with p99 0.86 s and
    /// more queries per second, 51.9 vs 49.4).
    pub max_image_batch: usize,
    pub max_wait: Duration,
    /// Requests waiting per encoder before new ones are refused (429).
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_image_batch: 4,
            // Continuous batching: a batch is whatever queued while the previous one ran. Waiting
            // to fill batches cost latency and bought no throughput (scripts/bench-serve, 30k
            // images: max_wait 2 ms → p50 8.2 ms at concurrency 1 and 287 req/s at 32; 0 ms →
            // 6.4 ms and 299 req/s).
            max_wait: Duration::ZERO,
            queue_capacity: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the {0} encoder queue is full")]
    Overloaded(&'static str),
    #[error("the {0} encoder stopped")]
    Stopped(&'static str),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

struct Job<I> {
    inputs: Vec<I>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// A queue in front of one encoder.
pub struct Queue<I> {
    name: &'static str,
    tx: SyncSender<Job<I>>,
    depth: Arc<AtomicUsize>,
}

impl<I: Send + 'static> Queue<I> {
    fn start(
        name: &'static str,
        config: BatchConfig,
        run: impl Fn(Vec<I>) -> Result<Vec<Vec<f32>>, String> + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job<I>>(config.queue_capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let worker_depth = depth.clone();
        std::thread::Builder::new()
            .name(format!("xmodal-{name}-encoder"))
            .spawn(move || worker(name, rx, config, worker_depth, run))
            .expect("spawn encoder thread");
        Self { name, tx, depth }
    }

    /// Encode one input; waits for its batch. Refuses at once when the queue is full.
    pub async fn encode(&self, input: I) -> Result<Vec<f32>, EngineError> {
        let mut rows = self.encode_many(vec![input]).await?;
        Ok(rows.pop().expect("one row per input"))
    }

    /// Encode several inputs in one batch (with whatever else is waiting), one row each.
    pub async fn encode_many(&self, inputs: Vec<I>) -> Result<Vec<Vec<f32>>, EngineError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        // count the job before the worker can see it, so the worker's decrement never runs first
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(e) = self.tx.try_send(Job { inputs, reply }) {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                TrySendError::Full(_) => EngineError::Overloaded(self.name),
                TrySendError::Disconnected(_) => EngineError::Stopped(self.name),
            });
        }
        metrics::gauge!("xmodal_queue_depth", "encoder" => self.name).set(depth as f64);
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => Err(EngineError::Encode(EncodeError::Config(message))),
            Err(_) => Err(EngineError::Stopped(self.name)),
        }
    }
}

fn worker<I>(
    name: &'static str,
    rx: Receiver<Job<I>>,
    config: BatchConfig,
    depth: Arc<AtomicUsize>,
    run: impl Fn(Vec<I>) -> Result<Vec<Vec<f32>>, String>,
) {
    // a job that would overflow the batch waits for the next one
    let mut held: Option<Job<I>> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut items = first.inputs.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while items < config.max_batch {
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
                for (reply, _) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Both encoders behind their queues.
pub struct Engine {
    pub text: Queue<String>,
    /// Inputs are preprocessed images `[3, crop, crop]` (decoding happens in the request).
    /// `None` when image features were imported and no image encoder is loaded.
    pub image: Option<Queue<Tensor>>,
}

impl Engine {
    pub fn start(
        text: Arc<TextEncoder>,
        image: Option<Arc<ImageEncoder>>,
        config: BatchConfig,
    ) -> Self {
        let t = text.clone();
        let text_queue = Queue::start("text", config, move |texts: Vec<String>| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            t.encode(&refs)
                .and_then(|m| Ok(m.to_device(&Device::Cpu)?.to_vec2::<f32>()?))
                .map_err(|e| e.to_string())
        });
        let image_queue = image.map(|i| {
            let config = BatchConfig {
                max_batch: config.max_image_batch,
                ..config
            };
            Queue::start("image", config, move |images: Vec<Tensor>| {
                i.encode_prepared(&images)
                    .and_then(|m| Ok(m.to_device(&Device::Cpu)?.to_vec2::<f32>()?))
                    .map_err(|e| e.to_string())
            })
        });
        Self {
            text: text_queue,
            image: image_queue,
        }
    }
}
