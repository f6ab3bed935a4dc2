//! Retrieval metrics on an exact score matrix (no index approximations), both directions, on the
//! Flickr convention: several captions per image; image→text counts any of them as relevant.
//!
//! - R@K: percentage of queries with a relevant item in the top K.
//! - median / mean rank of the first relevant item (1-based).
//! - mAP@k as the original study defined it: walk the top-k list; at each position i holding a
//!   relevant item add (hits so far)/i; divide by min(#relevant, k); mean over queries.
//!
//! Ties are broken by item index (lower first), so results never depend on sort stability.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionMetrics {
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
    pub medr: f64,
    pub meanr: f64,
    #[serde(rename = "map@1")]
    pub map1: f64,
    #[serde(rename = "map@5")]
    pub map5: f64,
    #[serde(rename = "map@10")]
    pub map10: f64,
    pub queries: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub i2t: DirectionMetrics,
    pub t2i: DirectionMetrics,
}

impl Metrics {
    /// R@1 + R@5 + R@10 both ways: the model-selection criterion of VSE++.
    pub fn rsum(&self) -> f64 {
        self.i2t.r1 + self.i2t.r5 + self.i2t.r10 + self.t2i.r1 + self.t2i.r5 + self.t2i.r10
    }
}

/// 1-based ranks of `relevant` items among all of `scores`.
fn ranks_of(scores: &[f32], relevant: &[usize]) -> Vec<usize> {
    let mut ranks: Vec<usize> = relevant
        .iter()
        .map(|&r| {
            let s = scores[r];
            1 + scores
                .iter()
                .enumerate()
                .filter(|&(j, &x)| x > s || (x == s && j < r))
                .count()
        })
        .collect();
    ranks.sort_unstable();
    ranks
}

/// AP@k from the sorted ranks of a query's relevant items.
pub fn average_precision_at(ranks: &[usize], k: usize) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    let sum: f64 = ranks
        .iter()
        .enumerate()
        .filter(|(_, &r)| r <= k)
        .map(|(hits, &r)| (hits + 1) as f64 / r as f64)
        .sum();
    // `+ 0.0`: an empty float sum is -0.0 in Rust, which would print as "-0.000"
    sum / ranks.len().min(k) as f64 + 0.0
}

fn summarise(per_query: &[Vec<usize>]) -> DirectionMetrics {
    let n = per_query.len();
    if n == 0 {
        return DirectionMetrics::default();
    }
    let first: Vec<usize> = per_query
        .iter()
        .map(|r| r.first().copied().unwrap_or(usize::MAX))
        .collect();
    let recall = |k: usize| 100.0 * first.iter().filter(|&&r| r <= k).count() as f64 / n as f64;
    let map = |k: usize| {
        per_query
            .iter()
            .map(|r| average_precision_at(r, k))
            .sum::<f64>()
            / n as f64
            + 0.0
    };
    let mut sorted: Vec<f64> = first.iter().map(|&r| r as f64).collect();
    sorted.sort_by(f64::total_cmp);
    let medr = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    DirectionMetrics {
        r1: recall(1),
        r5: recall(5),
        r10: recall(10),
        medr,
        meanr: sorted.iter().sum::<f64>() / n as f64,
        map1: map(1),
        map5: map(5),
        map10: map(10),
        queries: n,
    }
}

/// `scores[i][t]`: image `i` against text `t`; `text_image[t]`: the image text `t` describes.
pub fn evaluate(scores: &[Vec<f32>], text_image: &[usize]) -> Metrics {
    Ranks::of(scores, text_image).metrics()
}

/// Sorted 1-based ranks of each query's relevant items, both directions.
pub struct Ranks {
    pub i2t: Vec<Vec<usize>>,
    pub t2i: Vec<Vec<usize>>,
}

/// R@k for k = 1..=max_k, both directions (percent): the data of a recall curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallCurve {
    pub k: Vec<usize>,
    pub i2t: Vec<f64>,
    pub t2i: Vec<f64>,
}

impl Ranks {
    pub fn of(scores: &[Vec<f32>], text_image: &[usize]) -> Self {
        let images = scores.len();
        let texts = text_image.len();
        let mut captions_of = vec![Vec::new(); images];
        for (t, &i) in text_image.iter().enumerate() {
            captions_of[i].push(t);
        }
        let i2t: Vec<Vec<usize>> = (0..images)
            .map(|i| ranks_of(&scores[i], &captions_of[i]))
            .collect();
        let t2i: Vec<Vec<usize>> = (0..texts)
            .map(|t| {
                let column: Vec<f32> = (0..images).map(|i| scores[i][t]).collect();
                ranks_of(&column, &[text_image[t]])
            })
            .collect();
        Self { i2t, t2i }
    }

    pub fn metrics(&self) -> Metrics {
        Metrics {
            i2t: summarise(&self.i2t),
            t2i: summarise(&self.t2i),
        }
    }

    pub fn recall_curve(&self, max_k: usize) -> RecallCurve {
        let curve = |per_query: &[Vec<usize>]| -> Vec<f64> {
            let n = per_query.len().max(1) as f64;
            (1..=max_k)
                .map(|k| {
                    100.0
                        * per_query
                            .iter()
                            .filter(|r| r.first().is_some_and(|&f| f <= k))
                            .count() as f64
                        / n
                })
                .collect()
        };
        RecallCurve {
            k: (1..=max_k).collect(),
            i2t: curve(&self.i2t),
            t2i: curve(&self.t2i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_matches_hand_computation() {
        // relevant at ranks 1, 3 and 6, k = 5: (1/1 + 2/3) / min(3, 5)
        assert!((average_precision_at(&[1, 3, 6], 5) - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // k = 10: (1 + 2/3 + 3/6) / 3
        assert!(
            (average_precision_at(&[1, 3, 6], 10) - (1.0 + 2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12
        );
        // k = 1 normalises by 1
        assert_eq!(average_precision_at(&[2, 3], 1), 0.0);
        assert_eq!(average_precision_at(&[1, 3], 1), 1.0);
        assert_eq!(average_precision_at(&[], 5), 0.0);
    }

    #[test]
    fn two_images_four_captions() {
        // image 0 has captions 0, 1; image 1 has captions 2, 3
        let text_image = [0, 0, 1, 1];
        let scores = vec![vec![0.9, 0.1, 0.8, 0.3], vec![0.2, 0.7, 0.6, 0.5]];
        let m = evaluate(&scores, &text_image);
        // i2t: image 0 ranks captions [0, 2, 3, 1]: relevant at 1 and 4; image 1: [1, 2, 3, 0]: relevant at 2, 3
        assert_eq!((m.i2t.r1, m.i2t.r5, m.i2t.medr), (50.0, 100.0, 1.5));
        assert!(
            (m.i2t.map5 - ((1.0 + 2.0 / 4.0) / 2.0 + (1.0 / 2.0 + 2.0 / 3.0) / 2.0) / 2.0).abs()
                < 1e-12
        );
        // t2i: caption 0 → image 0 first; caption 1 → image 1 first (rank 2); caption 2 → image 0 first (rank 2);
        // caption 3 → image 1 first
        assert_eq!(m.t2i.r1, 50.0);
        assert_eq!(m.t2i.meanr, 1.5);
        assert_eq!(m.t2i.map1, 0.5);
    }

    #[test]
    fn recall_curve_agrees_with_recall_at_k() {
        let text_image = [0, 0, 1, 1, 2];
        let scores = vec![
            vec![0.9, 0.1, 0.8, 0.3, 0.2],
            vec![0.2, 0.7, 0.6, 0.5, 0.1],
            vec![0.3, 0.2, 0.1, 0.9, 0.4],
        ];
        let ranks = Ranks::of(&scores, &text_image);
        let (m, c) = (ranks.metrics(), ranks.recall_curve(10));
        assert_eq!(c.k.len(), 10);
        assert_eq!(
            (c.i2t[0], c.i2t[4], c.i2t[9]),
            (m.i2t.r1, m.i2t.r5, m.i2t.r10)
        );
        assert_eq!(
            (c.t2i[0], c.t2i[4], c.t2i[9]),
            (m.t2i.r1, m.t2i.r5, m.t2i.r10)
        );
        assert!(c.t2i.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(c.t2i[2], 100.0); // three images: every caption's image is in the top 3
    }

    #[test]
    fn ties_rank_lower_index_first() {
        let m = evaluate(&[vec![0.5, 0.5]], &[0, 0]);
        assert_eq!(m.i2t.medr, 1.0);
        let m = evaluate(&[vec![0.5], vec![0.5]], &[1]);
        assert_eq!(m.t2i.medr, 2.0);
    }
}
