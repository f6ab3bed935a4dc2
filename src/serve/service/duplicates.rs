//! Near-duplicate groups: images whose embeddings lie within a similarity of each other (the
//! same photo re-encoded, resized or lightly edited), found from the searchable space's image
//! index and grouped by linking every close pair (union-find), so a copy of a copy joins its
//! original's group.

use std::collections::HashMap;

use super::{Service, ServiceError};
use crate::{
    data::{metadata::PhotoMetadata, ImageId},
    index::NearPair,
};

/// Default similarity for two images to count as copies: measured by
/// `scripts/bench/bench-duplicates` on the demo gallery (README "Near-duplicates").
pub const DEFAULT_DUPLICATE_SCORE: f32 = 0.92;

/// Nearest neighbours looked at per image: a group larger than this still forms, through its
/// members' links to each other.
const NEIGHBOURS_PER_IMAGE: usize = 8;

/// One image of a group, with what tells copies apart.
pub struct DuplicateImage {
    pub image: ImageId,
    /// Its highest similarity to another member.
    pub score: f32,
    pub metadata: Option<PhotoMetadata>,
}

/// Images that are copies of each other, the largest file first (most often the original).
pub struct DuplicateGroup {
    pub images: Vec<DuplicateImage>,
    /// The closest pair's similarity.
    pub score: f32,
}

/// A page of groups, most members first, then closest first.
pub struct Duplicates {
    pub groups: Vec<DuplicateGroup>,
    /// Groups on all pages.
    pub total: usize,
    pub threshold: f32,
    pub model: String,
}

/// Connected groups of `pairs` (each with the best score of each member), members in key order.
pub fn group_pairs(pairs: &[NearPair]) -> Vec<Vec<(String, f32)>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut keys: Vec<&str> = Vec::new();
    for p in pairs {
        for k in [&p.a, &p.b] {
            index.entry(k.as_str()).or_insert_with(|| {
                keys.push(k.as_str());
                keys.len() - 1
            });
        }
    }
    let mut parent: Vec<usize> = (0..keys.len()).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut best = vec![f32::NEG_INFINITY; keys.len()];
    for p in pairs {
        let (x, y) = (index[p.a.as_str()], index[p.b.as_str()]);
        best[x] = best[x].max(p.score);
        best[y] = best[y].max(p.score);
        let (rx, ry) = (root(&mut parent, x), root(&mut parent, y));
        if rx != ry {
            parent[rx.max(ry)] = rx.min(ry);
        }
    }
    let mut groups: HashMap<usize, Vec<(String, f32)>> = HashMap::new();
    for x in 0..keys.len() {
        let r = root(&mut parent, x);
        groups
            .entry(r)
            .or_default()
            .push((keys[x].to_string(), best[x]));
    }
    let mut groups: Vec<Vec<(String, f32)>> = groups.into_values().collect();
    for g in &mut groups {
        g.sort_by(|x, y| x.0.cmp(&y.0));
    }
    groups
}

impl Service {
    /// Groups of near-duplicate images in `model`'s space, `offset..offset + limit` of them.
    /// One index search per image: the cost grows with the collection, not with the page.
    pub async fn duplicates(
        &self,
        model: Option<&str>,
        threshold: Option<f32>,
        limit: usize,
        offset: usize,
    ) -> Result<Duplicates, ServiceError> {
        let space = self.space(model)?;
        let threshold = threshold.unwrap_or(DEFAULT_DUPLICATE_SCORE);
        let pairs = space
            .images
            .near_pairs(threshold, NEIGHBOURS_PER_IMAGE)
            .await?;
        let mut groups = group_pairs(&pairs);
        let closest = |g: &[(String, f32)]| g.iter().map(|m| m.1).fold(f32::NEG_INFINITY, f32::max);
        groups.sort_by(|x, y| {
            y.len()
                .cmp(&x.len())
                .then(closest(y).total_cmp(&closest(x)))
                .then(x[0].0.cmp(&y[0].0))
        });
        let total = groups.len();
        let page: Vec<Vec<(String, f32)>> = groups.into_iter().skip(offset).take(limit).collect();
        let ids: Vec<&str> = page.iter().flatten().map(|(k, _)| k.as_str()).collect();
        let mut metadata = self.catalog.metadata_of_many(&ids).await?;
        let groups = page
            .into_iter()
            .map(|members| {
                let score = closest(&members);
                let mut images = members
                    .into_iter()
                    .map(|(key, score)| {
                        Ok(DuplicateImage {
                            metadata: metadata.remove(&key),
                            image: ImageId::new(key)
                                .map_err(|e| ServiceError::Corrupt(e.to_string()))?,
                            score,
                        })
                    })
                    .collect::<Result<Vec<_>, ServiceError>>()?;
                let size = |i: &DuplicateImage| i.metadata.as_ref().and_then(|m| m.file_size);
                images.sort_by(|x, y| size(y).cmp(&size(x)).then(x.image.cmp(&y.image)));
                Ok(DuplicateGroup { images, score })
            })
            .collect::<Result<_, ServiceError>>()?;
        Ok(Duplicates {
            groups,
            total,
            threshold,
            model: space.model.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str, s: f32) -> NearPair {
        NearPair::new(a.into(), b.into(), s)
    }

    #[test]
    fn chained_pairs_form_one_group_and_separate_pairs_stay_apart() {
        let groups = group_pairs(&[
            pair("a", "b", 0.99),
            pair("b", "c", 0.97),
            pair("x", "y", 0.96),
        ]);
        let mut names: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|m| m.0.as_str()).collect())
            .collect();
        names.sort();
        assert_eq!(names, vec![vec!["a", "b", "c"], vec!["x", "y"]]);
        let abc = groups.iter().find(|g| g.len() == 3).unwrap();
        // each member carries its own best link
        assert_eq!(
            abc.iter().map(|m| m.1).collect::<Vec<_>>(),
            vec![0.99, 0.99, 0.97]
        );
    }

    #[test]
    fn no_pairs_no_groups() {
        assert!(group_pairs(&[]).is_empty());
    }
}
