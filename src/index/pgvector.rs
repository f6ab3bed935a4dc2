//! The scale-out index: projected embeddings in Postgres tables searched with pgvector's HNSW
//! (cosine ops), shared by every replica. A table per vector space and side (its width depends on
//! the heads), created on first start under an advisory lock, so replicas starting together
//! neither race on DDL nor project the same rows twice; later starts only add what is missing.
//! Rows reference `images` with ON DELETE CASCADE: a delete through any replica is a delete
//! everywhere, in the same transaction.

use std::time::Duration;

use candle_core::Tensor;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::project_stored;
use super::{ann::IndexParams, FilterPlan, Hit, Query};
use crate::{
    data::{
        catalog::{filter::ImageSelection, is_transient, stored_vector},
        filter::Filter,
        Catalog, CatalogError, ImageId,
    },
    vectors::Embedding,
};

#[derive(Debug, thiserror::Error)]
pub enum PgIndexError {
    #[error("vector database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("projecting stored features: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{0}")]
    Unusable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_backend_is_reported_with_the_servers_versions_and_cpu_flags() {
        let versions = (
            "PostgreSQL 18.3 on x86_64-pc-linux-gnu, compiled by gcc".to_string(),
            Some("0.8.2".to_string()),
        );
        let eof = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "expected to read 5 bytes, got 0 bytes at EOF",
        ));
        let message = probe_failure(&eof, &versions);
        assert!(
            message.contains("PostgreSQL 18.3, pgvector 0.8.2"),
            "{message}"
        );
        assert!(message.contains("SIGILL"), "{message}");
        assert!(
            message.contains(&crate::simd::host_cpu_flags()),
            "{message}"
        );
        let other = probe_failure(&sqlx::Error::RowNotFound, &(versions.0, None));
        assert!(other.contains("pgvector not installed") && !other.contains("SIGILL"));
    }
}

impl PgIndexError {
    fn is_pool_timeout(&self) -> bool {
        matches!(
            self,
            Self::Db(sqlx::Error::PoolTimedOut)
                | Self::Catalog(CatalogError::Db(sqlx::Error::PoolTimedOut))
        )
    }

    /// The database is unreachable or busy (worth a retry, or a 503), rather than broken.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Db(e) | Self::Catalog(CatalogError::Db(e)) => is_transient(e),
            _ => false,
        }
    }
}

/// The start-up check that pgvector's HNSW works on this database server: build a small index in
/// a temporary table and search it. A pgvector binary built for a newer CPU than the server's
/// (e.g. with AVX-512 instructions on an AVX2-only machine) kills its backend with SIGILL while
/// building an index; without this check that surfaces later as a bare "0 bytes at EOF" and 503s.
pub async fn probe_hnsw(pool: &AnyPool) -> Result<(), PgIndexError> {
    // versions first, on their own: after a backend crash the server restarts every connection
    let versions: (String, Option<String>) = sqlx::query_as(
        "SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector')",
    )
    .fetch_one(pool)
    .await?;
    let result: Result<i64, sqlx::Error> = async {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(
            "CREATE TEMP TABLE xmodal_hnsw_probe (v vector(8)) ON COMMIT DROP;
             INSERT INTO xmodal_hnsw_probe
                 SELECT CAST(ARRAY[i, 1, i % 3, 2, i % 5, 3, i % 7, 4] AS vector(8))
                 FROM generate_series(1, 200) AS i;
             CREATE INDEX ON xmodal_hnsw_probe USING hnsw (v vector_cosine_ops);
             SET LOCAL enable_seqscan = off;",
        )
        .execute(&mut *tx)
        .await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT v FROM xmodal_hnsw_probe
             ORDER BY v <=> CAST('[1,1,1,1,1,1,1,1]' AS vector(8)) LIMIT 5) AS nearest",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        Ok(n)
    }
    .await;
    match result {
        Ok(5) => Ok(()),
        Ok(n) => Err(PgIndexError::Unusable(format!(
            "pgvector's HNSW test search returned {n} of 5 rows ({})",
            describe_server(&versions)
        ))),
        Err(e) => Err(PgIndexError::Unusable(probe_failure(&e, &versions))),
    }
}

fn describe_server((version, vector): &(String, Option<String>)) -> String {
    let pg = version.split(" on ").next().unwrap_or(version);
    format!(
        "{pg}, pgvector {}",
        vector.as_deref().unwrap_or("not installed")
    )
}

/// What to tell an operator when the HNSW probe failed with `e`.
fn probe_failure(e: &sqlx::Error, versions: &(String, Option<String>)) -> String {
    let server = describe_server(versions);
    let connection_died = match e {
        sqlx::Error::Io(_) => true,
        // the server ends every other connection after a backend crashes
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P02"),
        _ => false,
    };
    if connection_died {
        format!(
            "the database server process died while building a test HNSW index ({server}): {e}. \
             The server's log names the signal; SIGILL (signal 4) means its pgvector was built for \
             instructions the server's CPU lacks (often AVX-512). If the database runs on this \
             host, this CPU {}. Use a pgvector built for any x86-64-v3 CPU (scripts/fetch_postgres \
             pins one; the pgvector/pgvector Docker images are built portably).",
            crate::simd::host_cpu_flags()
        )
    } else {
        format!("pgvector's HNSW index does not work on this database ({server}): {e}")
    }
}

pub struct PgVectorIndex {
    pub(super) pool: AnyPool,
    pub(super) table: String,
    dims: usize,
    pub(super) ef_search: usize,
}

/// pgvector's text form, `[1,2.5,-3]`: bound as text and cast, so no driver extension is needed.
fn vector_literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

/// The embeddings table of one space and side: a short hash keeps the name a valid identifier.
pub fn table_name(space_id: &str, side: &str) -> String {
    let h = format!("{:x}", Sha256::digest(space_id.as_bytes()));
    format!("xm_emb_{}_{side}", &h[..12])
}

/// The statement that stores one embedding.
fn insert_statement(table: &str) -> String {
    format!(
        "INSERT INTO {table} (item, image_id, embedding) VALUES ($1, $2, CAST($3 AS vector))
         ON CONFLICT (item) DO UPDATE SET embedding = excluded.embedding"
    )
}

const FILL_BATCH: usize = 512;

/// Which table: a vector space's side, its embedding width, and the feature set it projects.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec<'a> {
    pub space_id: &'a str,
    /// `images` or `captions`.
    pub side: &'a str,
    pub dims: usize,
    pub feature_set: &'a str,
}

impl PgVectorIndex {
    /// Create the table and HNSW index if needed and add embeddings for stored features that have
    /// none yet, projecting them with `project`.
    pub async fn open(
        catalog: &Catalog,
        spec: TableSpec<'_>,
        params: IndexParams,
        log: &(dyn Fn(&str) + Sync),
        project: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
        device: &candle_core::Device,
    ) -> Result<Self, PgIndexError> {
        let pool = catalog.pool().clone();
        let TableSpec {
            space_id,
            side,
            dims,
            feature_set,
        } = spec;
        let table = table_name(space_id, side);
        let mut tx = pool.begin().await?;
        // one replica at a time creates and fills a table; the others then find nothing to do
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("xmodal:{table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 item      TEXT PRIMARY KEY,
                 image_id  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                 embedding vector({dims}) NOT NULL);
             CREATE INDEX IF NOT EXISTS {table}_image ON {table} (image_id);
             CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table}
                 USING hnsw (embedding vector_cosine_ops) WITH (m = {}, ef_construction = {});",
            params.m, params.ef_construction
        )))
        .execute(&mut *tx)
        .await?;
        let missing = sqlx::query(AssertSqlSafe(format!(
            "SELECT v.feature_set, v.item, v.image_id, v.vector FROM vectors v LEFT JOIN {table} e ON e.item = v.item
             WHERE v.feature_set = $1 AND e.item IS NULL ORDER BY v.item"
        )))
        .bind(feature_set)
        .fetch_all(&mut *tx)
        .await?;
        if !missing.is_empty() {
            log(&format!(
                "{table}: projecting {} stored vectors into pgvector",
                missing.len()
            ));
        }
        let insert = insert_statement(&table);
        for chunk in missing.chunks(FILL_BATCH) {
            let stored = chunk
                .iter()
                .map(stored_vector)
                .collect::<Result<Vec<_>, _>>()?;
            for (v, (item, e)) in stored
                .iter()
                .zip(project_stored(&stored, &project, device)?)
            {
                sqlx::query(AssertSqlSafe(insert.clone()))
                    .bind(item)
                    .bind(v.image_id.as_str())
                    .bind(vector_literal(e.as_slice()))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Self {
            pool,
            table,
            dims,
            ef_search: params.ef_search,
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The planner's plan for a search (operators check that it scans the HNSW index).
    pub async fn search_plan(&self, q: &Embedding) -> Result<Vec<String>, PgIndexError> {
        Ok(sqlx::query_scalar(AssertSqlSafe(format!(
            "EXPLAIN SELECT item FROM {} ORDER BY embedding <=> CAST($1 AS vector) LIMIT 10",
            self.table
        )))
        .bind(vector_literal(q.as_slice()))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Rows in the table (a query, not a field: other replicas write too).
    pub async fn count(&self) -> Result<usize, PgIndexError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {}",
            self.table
        )))
        .fetch_one(&self.pool)
        .await?;
        Ok(n as usize)
    }

    /// The `offset..offset+k` nearest by cosine, best first, above `min_score`, among the
    /// images `filter` keeps. HNSW returns at most `hnsw.ef_search` rows, so the beam is widened
    /// to cover the page. Transient database errors are retried twice.
    pub async fn search(
        &self,
        q: &Embedding,
        query: Query,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>, PgIndexError> {
        Ok(self
            .search_planned(q, query, filter, FilterPlan::Auto)
            .await?
            .0)
    }

    /// [`Self::search`] with the filtered plan chosen by the caller (benchmarks), and the plan
    /// that answered.
    pub async fn search_planned(
        &self,
        q: &Embedding,
        query: Query,
        filter: Option<&Filter>,
        plan: FilterPlan,
    ) -> Result<(Vec<Hit>, FilterPlan), PgIndexError> {
        let mut attempt = 0;
        loop {
            match self.search_once(q, query, filter, plan).await {
                // a dropped connection is worth another try on a fresh one; a pool that found
                // no connection within its timeout would only make the client wait again
                Err(e) if attempt < 2 && e.is_transient() && !e.is_pool_timeout() => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                result => return result,
            }
        }
    }

    async fn search_once(
        &self,
        q: &Embedding,
        query: Query,
        filter: Option<&Filter>,
        plan: FilterPlan,
    ) -> Result<(Vec<Hit>, FilterPlan), PgIndexError> {
        let ef = self.ef_search.max(query.offset + query.k);
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL hnsw.ef_search = {ef}")))
            .execute(&mut *tx)
            .await?;
        let (sql, selection, plan) = match filter {
            None => (
                format!(
                    "SELECT item, {SCORE} FROM {} ORDER BY embedding <=> CAST($1 AS vector) LIMIT $2 OFFSET $3",
                    self.table
                ),
                None,
                plan,
            ),
            Some(filter) => {
                // the iterative scan answers every share kept in scripts/bench/bench-filters at
                // recall@10 1.000, ahead of scoring the kept rows exactly (and of counting them
                // first to choose): Auto walks the graph; the bench can force either plan
                let plan = match plan {
                    FilterPlan::Auto => FilterPlan::Graph,
                    chosen => chosen,
                };
                let selection = ImageSelection::new(filter, 4);
                let sql = match plan {
                    // a materialised set has no index: every kept row is scored
                    FilterPlan::Exact => format!(
                        "WITH kept AS MATERIALIZED (SELECT item, embedding FROM {} WHERE image_id IN ({}))
                         SELECT item, {SCORE} FROM kept ORDER BY embedding <=> CAST($1 AS vector) LIMIT $2 OFFSET $3",
                        self.table, selection.sql
                    ),
                    // pgvector's iterative index scan (0.8+) keeps walking the graph until the
                    // page is full of rows that pass the condition, in exact order
                    _ => {
                        sqlx::raw_sql("SET LOCAL hnsw.iterative_scan = strict_order")
                            .execute(&mut *tx)
                            .await?;
                        format!(
                            "SELECT item, {SCORE} FROM {} WHERE image_id IN ({})
                             ORDER BY embedding <=> CAST($1 AS vector) LIMIT $2 OFFSET $3",
                            self.table, selection.sql
                        )
                    }
                };
                (sql, Some(selection), plan)
            }
        };
        let mut statement = sqlx::query(AssertSqlSafe(sql))
            .bind(vector_literal(q.as_slice()))
            .bind(query.k as i64)
            .bind(query.offset as i64);
        if let Some(s) = &selection {
            statement = s.bind(statement);
        }
        let rows = statement.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let hits = rows
            .iter()
            .map(|r| Hit {
                key: r.get(0),
                score: r.get::<f64, _>(1) as f32,
            })
            .take_while(|h| query.min_score.is_none_or(|m| h.score >= m))
            .collect();
        Ok((hits, plan))
    }
}

/// The score column: cosine similarity as a double.
const SCORE: &str = "CAST(1 - (embedding <=> CAST($1 AS vector)) AS DOUBLE PRECISION)";

impl PgVectorIndex {
    /// Store one embedding on `conn` (the catalog transaction that writes its image).
    pub(super) async fn write_row(
        &self,
        conn: &mut sqlx::AnyConnection,
        item: &str,
        image: &ImageId,
        embedding: &Embedding,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(insert_statement(&self.table)))
            .bind(item)
            .bind(image.as_str())
            .bind(vector_literal(embedding.as_slice()))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
