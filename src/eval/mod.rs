//! Evaluation: exact scores of every image against every caption of a split, through a projector.

pub mod metrics;

pub use metrics::{evaluate, DirectionMetrics, Metrics, Ranks, RecallCurve};

use candle_core::Tensor;

use crate::{
    features::paired::PairedSet,
    heads::{similarity, Projector, Score},
};

/// Metrics of `projector` on `set` (brute force, so no index approximation leaks in).
pub fn evaluate_projector(projector: &Projector, set: &PairedSet) -> candle_core::Result<Metrics> {
    Ok(rank_projector(projector, set)?.metrics())
}

/// Metrics of already-projected embeddings (`text_image[t]`: the image row text `t` describes).
pub fn evaluate_embeddings(
    images: &Tensor,
    texts: &Tensor,
    score: Score,
    text_image: &[usize],
) -> candle_core::Result<Metrics> {
    Ok(evaluate(
        &similarity(images, texts, score)?.to_vec2()?,
        text_image,
    ))
}

/// Every image of `set` against every caption under `projector`: `scores[i][t]`.
pub fn score_matrix(projector: &Projector, set: &PairedSet) -> candle_core::Result<Vec<Vec<f32>>> {
    similarity(
        &projector.images(&set.images)?,
        &projector.texts(&set.texts)?,
        projector.score(),
    )?
    .to_vec2()
}

/// Ranks of every query of `set` under `projector` (for metrics and recall curves).
pub fn rank_projector(projector: &Projector, set: &PairedSet) -> candle_core::Result<Ranks> {
    Ok(Ranks::of(&score_matrix(projector, set)?, &set.text_image))
}

/// The markdown table `xmodal eval` prints.
pub fn markdown(name: &str, m: &Metrics) -> String {
    let mut s = format!("| {name} | R@1 | R@5 | R@10 | medR | meanR | mAP@1 | mAP@5 | mAP@10 |\n|---|---|---|---|---|---|---|---|---|\n");
    for (dir, d) in [("image→text", &m.i2t), ("text→image", &m.t2i)] {
        s += &format!(
            "| {dir} ({} queries) | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.3} | {:.3} | {:.3} |\n",
            d.queries, d.r1, d.r5, d.r10, d.medr, d.meanr, d.map1, d.map5, d.map10
        );
    }
    s
}
