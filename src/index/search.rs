//! What a searchable side is in a running server: the in-process HNSW index (embedded default)
//! or pgvector tables shared by replicas (Postgres deployments). Both take the same
//! [`SearchRequest`], filter included, so the service never asks which one it has for a search.

use std::collections::HashSet;

use super::{
    duplicates::NearPair, pgvector::PgVectorIndex, FilterPlan, Hit, IndexError, Query, VectorIndex,
};

/// Items searched per step of a whole-index scan.
const NEAR_PAIRS_CHUNK: usize = 256;
use crate::{
    data::{filter::Filter, Catalog},
    vectors::Embedding,
};

/// A page of nearest items, optionally only among the images a filter keeps.
#[derive(Debug, Clone, Copy)]
pub struct SearchRequest<'a> {
    pub page: Query,
    pub filter: Option<&'a Filter>,
}

impl From<Query> for SearchRequest<'_> {
    fn from(page: Query) -> Self {
        Self { page, filter: None }
    }
}

pub enum SearchIndex {
    /// The in-process index, and the catalog that resolves its filters.
    Memory {
        index: VectorIndex,
        catalog: Catalog,
    },
    Postgres(PgVectorIndex),
}

impl SearchIndex {
    pub async fn search(
        &self,
        q: &Embedding,
        request: SearchRequest<'_>,
    ) -> Result<Vec<Hit>, IndexError> {
        match self {
            Self::Memory { index, catalog } => match request.filter {
                None => index.search(q, request.page),
                // "more like this": one item left out needs no catalog round trip
                Some(Filter::NotImage(id)) if index.contains(id.as_str()) => {
                    index.search_without(q, request.page, id.as_str())
                }
                Some(filter) => {
                    let images: HashSet<String> =
                        catalog.images_matching(filter).await?.into_iter().collect();
                    Ok(index
                        .search_filtered(q, request.page, &images, FilterPlan::Auto)?
                        .0)
                }
            },
            Self::Postgres(index) => {
                if q.dims() != index.dims() {
                    return Err(IndexError::Dims {
                        expected: index.dims(),
                        got: q.dims(),
                    });
                }
                Ok(index.search(q, request.page, request.filter).await?)
            }
        }
    }

    /// Every item's up to `per_item` nearest other items scoring at least `min_score`, each pair
    /// once. One index search per item, in chunks: the in-process index lets other tasks run
    /// between chunks, Postgres answers a chunk per lateral-join query.
    pub async fn near_pairs(
        &self,
        min_score: f32,
        per_item: usize,
    ) -> Result<Vec<NearPair>, IndexError> {
        let mut pairs = Vec::new();
        match self {
            Self::Memory { index, .. } => {
                let span = index.id_span();
                for start in (0..span).step_by(NEAR_PAIRS_CHUNK) {
                    let ids = start..(start + NEAR_PAIRS_CHUNK).min(span);
                    pairs.extend(index.near_pairs_among(ids, min_score, per_item));
                    tokio::task::yield_now().await;
                }
            }
            Self::Postgres(index) => {
                let mut after = String::new();
                loop {
                    let (chunk, last) = index
                        .near_pairs_after(&after, NEAR_PAIRS_CHUNK, min_score, per_item)
                        .await?;
                    pairs.extend(chunk);
                    match last {
                        Some(last) => after = last,
                        None => break,
                    }
                }
            }
        }
        // each pair is found from both ends (and, after a rebuild between chunks, maybe twice)
        pairs.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
        pairs.dedup_by(|x, y| x.a == y.a && x.b == y.b);
        Ok(pairs)
    }

    /// Items searchable now (a count query on Postgres; 0 when the database does not answer).
    pub async fn count(&self) -> usize {
        match self {
            Self::Memory { index, .. } => index.len(),
            Self::Postgres(index) => index.count().await.unwrap_or(0),
        }
    }

    /// The in-process index, which the server updates itself after each committed write; `None`
    /// on Postgres, where writes and deletes reach the index inside the catalog's transaction.
    pub fn memory(&self) -> Option<&VectorIndex> {
        match self {
            Self::Memory { index, .. } => Some(index),
            Self::Postgres(_) => None,
        }
    }

    pub fn postgres(&self) -> Option<&PgVectorIndex> {
        match self {
            Self::Memory { .. } => None,
            Self::Postgres(index) => Some(index),
        }
    }
}
