//! Pairs of items whose embeddings lie close: what near-duplicate grouping reads from an index.
//! Each item's few nearest neighbours above a similarity are found by the index's own search
//! (the HNSW walk in process, pgvector's index from a lateral join in Postgres), so the cost is
//! one search per item rather than a comparison of every pair.

use std::ops::Range;

use sqlx::{AssertSqlSafe, Row};

use super::{
    pgvector::{PgIndexError, PgVectorIndex},
    VectorIndex,
};

/// Two items and their similarity, `a < b`.
#[derive(Debug, Clone, PartialEq)]
pub struct NearPair {
    pub a: String,
    pub b: String,
    pub score: f32,
}

impl NearPair {
    /// The pair in key order (each pair is found from both ends).
    pub fn new(x: String, y: String, score: f32) -> Self {
        if x <= y {
            Self { a: x, b: y, score }
        } else {
            Self { a: y, b: x, score }
        }
    }
}

impl VectorIndex {
    /// Internal ids the next [`Self::near_pairs_among`] calls walk through (live and dead; a
    /// caller steps through it in chunks, so a long scan holds the lock only a chunk at a time).
    pub fn id_span(&self) -> usize {
        self.inner.read().expect("index lock").keys.len()
    }

    /// For each live item with an internal id in `ids`: its up to `per_item` nearest other live
    /// items scoring at least `min_score`.
    pub fn near_pairs_among(
        &self,
        ids: Range<usize>,
        min_score: f32,
        per_item: usize,
    ) -> Vec<NearPair> {
        let inner = self.inner.read().expect("index lock");
        let ef = self.params.ef_search.max(per_item + 1);
        let mut pairs = Vec::new();
        for id in ids.start..ids.end.min(inner.keys.len()) {
            if inner.dead.contains(&id) {
                continue;
            }
            let q = inner.ann.vector(self.dims, id);
            let keep = |other: usize| other != id && !inner.dead.contains(&other);
            for (other, score) in inner.ann.search_keep(q, per_item, ef, &keep) {
                if score < min_score {
                    break;
                }
                pairs.push(NearPair::new(
                    inner.keys[id].clone(),
                    inner.keys[other].clone(),
                    score,
                ));
            }
        }
        pairs
    }
}

impl PgVectorIndex {
    /// For up to `chunk` items after `after` in key order: their up to `per_item` nearest other
    /// items scoring at least `min_score` (pgvector's index serves each lateral search), and the
    /// last item read (`None` at the end of the table).
    pub async fn near_pairs_after(
        &self,
        after: &str,
        chunk: usize,
        min_score: f32,
        per_item: usize,
    ) -> Result<(Vec<NearPair>, Option<String>), PgIndexError> {
        let mut tx = self.pool.begin().await?;
        let ef = self.ef_search.max(per_item + 1);
        sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL hnsw.ef_search = {ef}")))
            .execute(&mut *tx)
            .await?;
        let table = &self.table;
        let items: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT item FROM {table} WHERE item > $1 ORDER BY item LIMIT $2"
        )))
        .bind(after)
        .bind(chunk as i64)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = items.last().cloned() else {
            tx.commit().await?;
            return Ok((Vec::new(), None));
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT a.item, n.item, n.score FROM {table} a CROSS JOIN LATERAL (
                 SELECT b.item, CAST(1 - (b.embedding <=> a.embedding) AS DOUBLE PRECISION) AS score
                 FROM {table} b WHERE b.item <> a.item
                 ORDER BY b.embedding <=> a.embedding LIMIT $3) AS n
             WHERE a.item > $1 AND a.item <= $2 AND n.score >= $4"
        )))
        .bind(after)
        .bind(last.as_str())
        .bind(per_item as i64)
        .bind(min_score as f64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let pairs = rows
            .iter()
            .map(|r| NearPair::new(r.get(0), r.get(1), r.get::<f64, _>(2) as f32))
            .collect();
        let more = items.len() == chunk;
        Ok((pairs, more.then_some(last)))
    }
}
