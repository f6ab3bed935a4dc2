//! Encoder throughput on synthetic batches: what `xmodal embed throughput` prints and
//! benches/encoders.rs compares with PyTorch. It runs where the encoder runs (CPU or GPU), so a
//! GPU machine with nothing but the binary can measure itself (scripts/gpu-check).
//!
//! Text: captions of ~12 words made from fixed word lists, tokenisation included. Images: already
//! normalised `[3, side, side]` tensors (decoding excluded). Each timed pass reads the features
//! back to the host, which waits for the device to finish.

use std::time::Instant;

use candle_core::{Device, Tensor};

use super::{EncodeError, ImageEncoder, TextEncoder};

const SUBJECTS: [&str; 8] = [
    "a young boy",
    "two dogs",
    "a woman in a red coat",
    "an old man",
    "a group of cyclists",
    "a small brown cat",
    "three children",
    "a street musician",
];
const ACTIONS: [&str; 6] = [
    "is running along",
    "are playing near",
    "stands beside",
    "sits quietly on",
    "walks slowly across",
    "waits next to",
];
const PLACES: [&str; 6] = [
    "the sandy beach at sunset",
    "a busy city street",
    "the old stone bridge",
    "a green park bench",
    "the frozen lake in winter",
    "a crowded market stall",
];

/// `n` distinct-enough captions of 8–14 words.
pub fn captions(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{} {} {}",
                SUBJECTS[i % 8],
                ACTIONS[(i / 8) % 6],
                PLACES[(i / 48 + i) % 6]
            )
        })
        .collect()
}

/// Median seconds of one call of `f` over `reps` timed calls, after one untimed warm-up.
pub fn median_seconds(
    reps: usize,
    mut f: impl FnMut() -> Result<(), EncodeError>,
) -> Result<f64, EncodeError> {
    f()?;
    let mut times = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Captions per second for batches of `batch`.
pub fn text(encoder: &TextEncoder, batch: usize, reps: usize) -> Result<f64, EncodeError> {
    let texts = captions(batch);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let seconds = median_seconds(reps, || {
        encoder.encode(&refs)?.to_vec2::<f32>()?;
        Ok(())
    })?;
    Ok(batch as f64 / seconds)
}

/// Images per second for batches of `batch` prepared images (the model's input side: 224 for
/// the kit's CNNs).
pub fn image(
    encoder: &ImageEncoder,
    batch: usize,
    reps: usize,
    device: &Device,
) -> Result<f64, EncodeError> {
    let side = encoder.preprocess().crop as usize;
    let images: Vec<Tensor> = (0..batch)
        .map(|_| Tensor::randn(0f32, 1.0, (3, side, side), device))
        .collect::<Result<_, _>>()?;
    let seconds = median_seconds(reps, || {
        encoder.encode_prepared(&images)?.to_vec2::<f32>()?;
        Ok(())
    })?;
    Ok(batch as f64 / seconds)
}
