//! Evaluation: exact scores of every image against every caption of a split, through a projector.

pub mod metrics;

pub use metrics::{evaluate, DirectionMetrics, Metrics};

use crate::{
    features::paired::PairedSet,
    project::{similarity, Projector},
};

/// Metrics of `projector` on `set` (brute force, so no index approximation leaks in).
pub fn evaluate_projector(projector: &Projector, set: &PairedSet) -> candle_core::Result<Metrics> {
    let images = projector.images(&set.images)?;
    let texts = projector.texts(&set.texts)?;
    let scores: Vec<Vec<f32>> = similarity(&images, &texts, projector.score())?.to_vec2()?;
    Ok(evaluate(&scores, &set.text_image))
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
