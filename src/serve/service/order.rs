//! Date order among the relevant: a caption query's nearest images, cut where that query's
//! relevant results end, then sorted by when they were taken. A flat score threshold fails
//! because relevant scores vary by query (Immich's maintainers' reason to refuse one, their
//! issue #5996), so the cut-off is chosen per query from the shape of its own scores: the top
//! candidates are split in two where the split best separates a high group from the rest
//! (Otsu's rule: largest between-group variance), and the high group is kept. Its precision on
//! the generated benchmark is measured by `scripts/bench/bench-order` (README "Date order").

use super::{search::ImageMatch, Ranked, Service, ServiceError, Space};
use crate::{
    index::{Query, SearchRequest},
    vectors::Embedding,
};

/// How a caption query's images are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultOrder {
    /// Best match first.
    #[default]
    Relevance,
    /// The relevant results (above the query's cut-off), newest first; undated ones last.
    TakenAtNewest,
    /// The same, oldest first.
    TakenAtOldest,
}

/// Candidates a date-ordered query considers: its cut-off is chosen among them, so the kept set
/// (and its pages) has at most this many images.
pub const ORDER_CANDIDATES: usize = 200;

/// How many of `scores` (best first) form the high group: the split with the largest
/// between-group variance, w_high · w_low · (mean_high − mean_low)², ties to the smaller group.
/// Fewer than three scores, or all equal: all are kept.
pub fn relevant_count(scores: &[f32]) -> usize {
    let n = scores.len();
    if n < 3 {
        return n;
    }
    let total: f64 = scores.iter().map(|&s| f64::from(s)).sum();
    let (mut best, mut best_at, mut high) = (0.0f64, n, 0.0f64);
    for t in 1..n {
        high += f64::from(scores[t - 1]);
        let (wh, wl) = (t as f64, (n - t) as f64);
        let gap = high / wh - (total - high) / wl;
        let between = wh * wl * gap * gap;
        if between > best * (1.0 + 1e-9) {
            best = between;
            best_at = t;
        }
    }
    best_at
}

impl Service {
    /// Images for the query embedding `q`, in `order`: by relevance, the page the index gives;
    /// by date, the page of the relevant candidates sorted by taken-at. Returns the cut-off
    /// score a date order applied.
    pub(super) async fn images_in_order(
        &self,
        space: &Space,
        q: &Embedding,
        request: SearchRequest<'_>,
        order: ResultOrder,
    ) -> Result<Ranked<ImageMatch>, ServiceError> {
        if order == ResultOrder::Relevance {
            let hits = space.images.search(q, request).await?;
            return self.ranked_images(space, hits).await;
        }
        let candidates = SearchRequest {
            page: Query {
                k: ORDER_CANDIDATES,
                offset: 0,
                min_score: request.page.min_score,
            },
            filter: request.filter,
        };
        let mut hits = space.images.search(q, candidates).await?;
        let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
        hits.truncate(relevant_count(&scores));
        let cutoff = hits.last().map(|h| h.score);
        let keys: Vec<&str> = hits.iter().map(|h| h.key.as_str()).collect();
        let metadata = self.catalog.metadata_of_many(&keys).await?;
        let taken = |key: &str| {
            metadata
                .get(key)
                .and_then(|m| m.taken_at.as_ref())
                .map(|t| t.utc_seconds())
        };
        hits.sort_by(|x, y| {
            let (tx, ty) = (taken(&x.key), taken(&y.key));
            let by_date = match (tx, ty) {
                (Some(a), Some(b)) if order == ResultOrder::TakenAtNewest => b.cmp(&a),
                (Some(a), Some(b)) => a.cmp(&b),
                // undated last, whichever way dates run
                (a, b) => b.is_some().cmp(&a.is_some()),
            };
            by_date.then(y.score.total_cmp(&x.score))
        });
        let page: Vec<_> = hits
            .into_iter()
            .skip(request.page.offset)
            .take(request.page.k)
            .collect();
        let mut ranked = self.ranked_images(space, page).await?;
        ranked.cutoff = cutoff;
        Ok(ranked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_high_group_is_split_from_the_bulk() {
        let scores = [0.62, 0.60, 0.59, 0.31, 0.30, 0.30, 0.29, 0.28, 0.27];
        assert_eq!(relevant_count(&scores), 3);
    }

    #[test]
    fn one_standout_is_kept_alone() {
        let scores = [0.9, 0.4, 0.39, 0.38, 0.38, 0.37];
        assert_eq!(relevant_count(&scores), 1);
    }

    #[test]
    fn the_split_moves_with_the_query_not_with_a_flat_threshold() {
        // the same shape shifted down by 0.3: the same count, where a flat 0.5 would keep none
        let high = [0.8, 0.79, 0.78, 0.77, 0.5, 0.49, 0.48, 0.47, 0.46, 0.45];
        let low: Vec<f32> = high.iter().map(|s| s - 0.3).collect();
        assert_eq!(relevant_count(&high), 4);
        assert_eq!(relevant_count(&low), 4);
    }

    #[test]
    fn few_or_flat_scores_are_all_kept() {
        assert_eq!(relevant_count(&[0.5, 0.4]), 2);
        assert_eq!(relevant_count(&[0.5; 6]), 6);
        assert_eq!(relevant_count(&[]), 0);
    }
}
