//! The catalog: SQLite (WAL, synchronous FULL, foreign keys on) by default, or Postgres for
//! deployments with several replicas; versioned migrations per backend applied at start-up. It is
//! the source of truth; indexes and feature caches are derived from it.
//!
//! One set of queries serves both backends through sqlx's `Any` driver: placeholders are `$N`
//! (numbered in order of first use, which SQLite reads as positional too), nullable parameters
//! are cast, and upserts use `ON CONFLICT`, which both speak.

mod import;
mod migrations;

use std::{collections::BTreeMap, path::Path, time::Duration};

use sqlx::{any::AnyPoolOptions, AnyPool, Executor, Row};

pub use import::ImportOutcome;
pub use migrations::SCHEMA_VERSION;

use super::{ImageId, Split};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("catalog schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("catalog schema version {found} is newer than this binary supports ({supported}); upgrade xmodal")]
    TooNew { found: i64, supported: i64 },
    #[error("catalog holds an invalid value: {0}")]
    Corrupt(String),
}

/// An image as ingest hands it to the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct NewImage {
    pub id: ImageId,
    pub location: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sha256: Option<String>,
    pub split: Option<Split>,
    pub captions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: ImageId,
    pub dataset: String,
    pub location: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sha256: Option<String>,
    pub split: Option<Split>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaptionRecord {
    pub id: i64,
    pub image_id: ImageId,
    pub ordinal: u32,
    pub text: String,
}

/// What an upsert did, for ingest's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    Updated,
    Unchanged,
    /// The id belongs to another dataset; nothing was written.
    Conflict,
}

/// Which images to list.
#[derive(Debug, Clone, Default)]
pub struct ImageFilter {
    pub dataset: Option<String>,
    pub split: Option<Split>,
}

/// Which database holds the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to reach Postgres: pool size and timeouts (SQLite needs none of this).
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// Waiting for a free connection (or a new one) longer than this is an error, not a hang.
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
    backend: Backend,
}

impl Catalog {
    /// Open (creating if needed) the SQLite catalog at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, CatalogError> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers never wait for the writer. FULL: a committed transaction
                    // survives power loss, not just a process crash.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let catalog = Self {
            pool,
            backend: Backend::Sqlite,
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Connect to a Postgres catalog (`postgres://…`), retrying while the database is still
    /// starting, and bring its schema up to date. Several replicas may do this at once: sqlx
    /// serialises migrations with an advisory lock.
    pub async fn connect_postgres(url: &str, config: PoolConfig) -> Result<Self, CatalogError> {
        sqlx::any::install_default_drivers();
        let mut attempt = 0;
        let pool = loop {
            let result = AnyPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.acquire_timeout)
                .connect(url)
                .await;
            match result {
                Ok(pool) => break pool,
                Err(e) if attempt < 10 && is_transient(&e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "database not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let catalog = Self {
            pool,
            backend: Backend::Postgres,
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// SQLite at a path, or Postgres for a `postgres://` / `postgresql://` URL.
    pub async fn open_location(location: &str, config: PoolConfig) -> Result<Self, CatalogError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Self::connect_postgres(location, config).await
        } else {
            Self::open(Path::new(location.trim_start_matches("sqlite://"))).await
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (for readiness).
    pub async fn ping(&self) -> Result<(), CatalogError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), CatalogError> {
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten();
        if let Some(found) = applied.filter(|&v| v > SCHEMA_VERSION) {
            return Err(CatalogError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        sqlx::migrate::Migrator::new(migrations::Embedded(self.backend))
            .await?
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn schema_version(&self) -> Result<i64, CatalogError> {
        Ok(
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The dataset's row id, creating it on first use.
    pub async fn dataset(
        &self,
        name: &str,
        format: &str,
        source: &str,
    ) -> Result<i64, CatalogError> {
        sqlx::query("INSERT INTO datasets (name, format, source) VALUES ($1, $2, $3) ON CONFLICT(name) DO UPDATE SET source = excluded.source")
            .bind(name)
            .bind(format)
            .bind(source)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT id FROM datasets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Insert or update images with their captions, all in one transaction (durable on return).
    /// Re-ingesting the same data changes nothing.
    pub async fn upsert_images(
        &self,
        dataset_id: i64,
        images: &[NewImage],
    ) -> Result<Vec<Upsert>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(images.len());
        for img in images {
            let existing = sqlx::query("SELECT dataset_id, location, width, height, sha256, split FROM images WHERE id = $1")
                .bind(img.id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let old_captions: Vec<String> = sqlx::query_scalar(
                "SELECT text FROM captions WHERE image_id = $1 ORDER BY ordinal",
            )
            .bind(img.id.as_str())
            .fetch_all(&mut *tx)
            .await?;
            if existing
                .as_ref()
                .is_some_and(|r| r.get::<i64, _>(0) != dataset_id)
            {
                outcomes.push(Upsert::Conflict);
                continue;
            }
            let same_row = existing.as_ref().is_some_and(|r| {
                r.get::<i64, _>(0) == dataset_id
                    && r.get::<Option<String>, _>(1) == img.location
                    && r.get::<Option<i64>, _>(2) == img.width.map(i64::from)
                    && r.get::<Option<i64>, _>(3) == img.height.map(i64::from)
                    && r.get::<Option<String>, _>(4) == img.sha256
                    && r.get::<Option<String>, _>(5).as_deref() == img.split.map(Split::as_str)
            });
            if same_row && old_captions == img.captions {
                outcomes.push(Upsert::Unchanged);
                continue;
            }
            sqlx::query(
                "INSERT INTO images (id, dataset_id, location, width, height, sha256, split) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT(id) DO UPDATE SET dataset_id = excluded.dataset_id, location = excluded.location,
                   width = excluded.width, height = excluded.height, sha256 = excluded.sha256, split = excluded.split",
            )
            .bind(img.id.as_str())
            .bind(dataset_id)
            .bind(&img.location)
            .bind(img.width.map(i64::from))
            .bind(img.height.map(i64::from))
            .bind(&img.sha256)
            .bind(img.split.map(Split::as_str))
            .execute(&mut *tx)
            .await?;
            if old_captions != img.captions {
                sqlx::query("DELETE FROM captions WHERE image_id = $1")
                    .bind(img.id.as_str())
                    .execute(&mut *tx)
                    .await?;
                insert_captions(&mut tx, img).await?;
            }
            outcomes.push(if existing.is_some() {
                Upsert::Updated
            } else {
                Upsert::Inserted
            });
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Remove an image and its captions; false if it did not exist.
    pub async fn delete_image(&self, id: &ImageId) -> Result<bool, CatalogError> {
        let done = sqlx::query("DELETE FROM images WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn image(&self, id: &ImageId) -> Result<Option<ImageRecord>, CatalogError> {
        let row = sqlx::query(IMAGE_SELECT_BY_ID)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| image_record(&r)).transpose()
    }

    /// Images in id order.
    pub async fn images(&self, filter: &ImageFilter) -> Result<Vec<ImageRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT i.id, d.name, i.location, i.width, i.height, i.sha256, i.split FROM images i JOIN datasets d ON d.id = i.dataset_id
             WHERE (CAST($1 AS TEXT) IS NULL OR d.name = $1) AND (CAST($2 AS TEXT) IS NULL OR i.split = $2) ORDER BY i.id",
        )
        .bind(&filter.dataset)
        .bind(filter.split.map(Split::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(image_record).collect()
    }

    /// Captions of the selected images, in (image id, ordinal) order.
    pub async fn captions(&self, filter: &ImageFilter) -> Result<Vec<CaptionRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT c.id, c.image_id, c.ordinal, c.text FROM captions c JOIN images i ON i.id = c.image_id JOIN datasets d ON d.id = i.dataset_id
             WHERE (CAST($1 AS TEXT) IS NULL OR d.name = $1) AND (CAST($2 AS TEXT) IS NULL OR i.split = $2) ORDER BY c.image_id, c.ordinal",
        )
        .bind(&filter.dataset)
        .bind(filter.split.map(Split::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(caption_record).collect()
    }

    pub async fn captions_of(&self, id: &ImageId) -> Result<Vec<CaptionRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, image_id, ordinal, text FROM captions WHERE image_id = $1 ORDER BY ordinal",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(caption_record).collect()
    }

    /// The captions of several images in one query (search results): image id → texts in
    /// ordinal order. Unknown ids are simply absent.
    pub async fn captions_of_many(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<(u32, String)>>, CatalogError> {
        let mut out: std::collections::HashMap<String, Vec<(u32, String)>> = Default::default();
        if ids.is_empty() {
            return Ok(out);
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT image_id, ordinal, text FROM captions WHERE image_id IN ({}) ORDER BY image_id, ordinal",
            placeholders.join(", ")
        );
        // only numbered placeholders are formatted in; the ids are bound
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&self.pool).await? {
            out.entry(r.get::<String, _>(0))
                .or_default()
                .push((r.get::<i64, _>(1) as u32, r.get::<String, _>(2)));
        }
        Ok(out)
    }

    /// (images, captions) per split of a dataset (or all); images without a split count as "none".
    pub async fn counts(
        &self,
        dataset: Option<&str>,
    ) -> Result<BTreeMap<String, (u64, u64)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT COALESCE(i.split, 'none'), COUNT(DISTINCT i.id), COUNT(c.id) FROM images i
             JOIN datasets d ON d.id = i.dataset_id LEFT JOIN captions c ON c.image_id = i.id
             WHERE (CAST($1 AS TEXT) IS NULL OR d.name = $1) GROUP BY 1",
        )
        .bind(dataset)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    (r.get::<i64, _>(1) as u64, r.get::<i64, _>(2) as u64),
                )
            })
            .collect())
    }

    /// Record a feature set (idempotent).
    pub async fn register_feature_set(&self, fs: &FeatureSetRow) -> Result<(), CatalogError> {
        write_feature_set(&self.pool, fs).await
    }

    pub async fn feature_sets(&self) -> Result<Vec<FeatureSetRow>, CatalogError> {
        let rows = sqlx::query("SELECT id, encoder, modality, manifest_sha256, dims, options FROM feature_sets ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| FeatureSetRow {
                id: r.get(0),
                encoder: r.get(1),
                modality: r.get(2),
                manifest_sha256: r.get(3),
                dims: r.get::<i64, _>(4) as usize,
                options: r.get(5),
            })
            .collect())
    }
}

/// Derived data that must land in the same transaction as its item (pgvector embeddings on
/// Postgres): a statement taking three text parameters.
#[derive(Debug, Clone)]
pub struct LinkedRow {
    pub sql: String,
    pub params: [String; 3],
}

/// Features of one searchable item, stored with the item.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector {
    pub feature_set: String,
    pub item: String,
    pub image_id: ImageId,
    pub vector: Vec<f32>,
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An image's captions, numbered from 0, inside the caller's transaction.
async fn insert_captions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    image: &NewImage,
) -> Result<(), CatalogError> {
    for (ordinal, text) in image.captions.iter().enumerate() {
        sqlx::query("INSERT INTO captions (image_id, ordinal, text) VALUES ($1, $2, $3)")
            .bind(image.id.as_str())
            .bind(ordinal as i64)
            .bind(text)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Record a feature set (idempotent), on the pool or inside a transaction.
async fn write_feature_set<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    fs: &FeatureSetRow,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO feature_sets (id, encoder, modality, manifest_sha256, dims, options) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT(id) DO NOTHING",
    )
    .bind(&fs.id)
    .bind(&fs.encoder)
    .bind(&fs.modality)
    .bind(&fs.manifest_sha256)
    .bind(fs.dims as i64)
    .bind(&fs.options)
    .execute(executor)
    .await?;
    Ok(())
}

/// Store (or replace) vectors inside the caller's transaction.
async fn write_vectors(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    vectors: &[StoredVector],
) -> Result<(), CatalogError> {
    for v in vectors {
        sqlx::query("INSERT INTO vectors (feature_set, item, image_id, vector) VALUES ($1, $2, $3, $4)
             ON CONFLICT (feature_set, item) DO UPDATE SET image_id = excluded.image_id, vector = excluded.vector")
            .bind(&v.feature_set)
            .bind(&v.item)
            .bind(v.image_id.as_str())
            .bind(to_blob(&v.vector))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A `vectors` row (feature_set, item, image_id, vector) read back.
pub fn stored_vector(r: &sqlx::any::AnyRow) -> Result<StoredVector, CatalogError> {
    Ok(StoredVector {
        feature_set: r.get(0),
        item: r.get(1),
        image_id: ImageId::new(r.get::<String, _>(2))
            .map_err(|e| CatalogError::Corrupt(e.to_string()))?,
        vector: from_blob(&r.get::<Vec<u8>, _>(3)),
    })
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Catalog {
    /// Insert one image with its captions and their feature vectors in a single transaction:
    /// when this returns, all of it is durable, or none of it was written.
    pub async fn insert_with_vectors(
        &self,
        dataset_id: i64,
        image: &NewImage,
        vectors: &[StoredVector],
        linked: &[LinkedRow],
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM images WHERE id = $1")
            .bind(image.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        sqlx::query("INSERT INTO images (id, dataset_id, location, width, height, sha256, split) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(image.id.as_str())
            .bind(dataset_id)
            .bind(&image.location)
            .bind(image.width.map(i64::from))
            .bind(image.height.map(i64::from))
            .bind(&image.sha256)
            .bind(image.split.map(Split::as_str))
            .execute(&mut *tx)
            .await?;
        insert_captions(&mut tx, image).await?;
        write_vectors(&mut tx, vectors).await?;
        for row in linked {
            let [a, b, c] = &row.params;
            // LinkedRow statements are built by the index module from generated table names
            sqlx::query(sqlx::AssertSqlSafe(row.sql.clone()))
                .bind(a)
                .bind(b)
                .bind(c)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Store vectors for existing items (bulk, one transaction).
    pub async fn put_vectors(&self, vectors: &[StoredVector]) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        write_vectors(&mut tx, vectors).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every stored vector of a feature set.
    pub async fn vectors(&self, feature_set: &str) -> Result<Vec<StoredVector>, CatalogError> {
        let rows = sqlx::query("SELECT feature_set, item, image_id, vector FROM vectors WHERE feature_set = $1 ORDER BY item").bind(feature_set).fetch_all(&self.pool).await?;
        rows.iter().map(stored_vector).collect()
    }

    /// The stored vectors of some items of a feature set (at most a few thousand per call).
    pub async fn vectors_of(
        &self,
        feature_set: &str,
        items: &[String],
    ) -> Result<Vec<StoredVector>, CatalogError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (2..items.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT feature_set, item, image_id, vector FROM vectors WHERE feature_set = $1 AND item IN ({}) ORDER BY item",
            placeholders.join(", ")
        );
        // only numbered placeholders are formatted in; the values are bound
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(feature_set);
        for item in items {
            query = query.bind(item);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(stored_vector)
            .collect()
    }

    /// The items of a feature set that have a stored vector (keys only: no blobs read).
    pub async fn vector_items(&self, feature_set: &str) -> Result<Vec<String>, CatalogError> {
        Ok(
            sqlx::query_scalar("SELECT item FROM vectors WHERE feature_set = $1")
                .bind(feature_set)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The vector of one item, if stored.
    pub async fn vector(
        &self,
        feature_set: &str,
        item: &str,
    ) -> Result<Option<Vec<f32>>, CatalogError> {
        let blob: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT vector FROM vectors WHERE feature_set = $1 AND item = $2")
                .bind(feature_set)
                .bind(item)
                .fetch_optional(&self.pool)
                .await?;
        Ok(blob.map(|b| from_blob(&b)))
    }

    /// How many images reference a stored file (to know when it may be removed).
    pub async fn images_at(&self, location: &str) -> Result<i64, CatalogError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE location = $1")
                .bind(location)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSetRow {
    pub id: String,
    pub encoder: String,
    pub modality: String,
    pub manifest_sha256: String,
    pub dims: usize,
    pub options: String,
}

static IMAGE_SELECT_BY_ID: &str =
    "SELECT i.id, d.name, i.location, i.width, i.height, i.sha256, i.split FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE i.id = $1";

fn image_record(r: &sqlx::any::AnyRow) -> Result<ImageRecord, CatalogError> {
    let id: String = r.get(0);
    Ok(ImageRecord {
        id: ImageId::new(id).map_err(|e| CatalogError::Corrupt(e.to_string()))?,
        dataset: r.get(1),
        location: r.get(2),
        width: r.get::<Option<i64>, _>(3).map(|v| v as u32),
        height: r.get::<Option<i64>, _>(4).map(|v| v as u32),
        sha256: r.get(5),
        split: r
            .get::<Option<String>, _>(6)
            .map(|s| s.parse())
            .transpose()
            .map_err(CatalogError::Corrupt)?,
    })
}

fn caption_record(r: &sqlx::any::AnyRow) -> Result<CaptionRecord, CatalogError> {
    Ok(CaptionRecord {
        id: r.get(0),
        image_id: ImageId::new(r.get::<String, _>(1))
            .map_err(|e| CatalogError::Corrupt(e.to_string()))?,
        ordinal: r.get::<i64, _>(2) as u32,
        text: r.get(3),
    })
}

/// Connection refused/reset or a server still starting up: worth another try.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            // 57P03 cannot_connect_now (starting up), 53300 too_many_connections,
            // 08xxx connection exceptions, 40001/40P01 serialization failure / deadlock
            db.code().is_some_and(|c| {
                c == "57P03" || c == "53300" || c.starts_with("08") || c == "40001" || c == "40P01"
            })
        }
        _ => false,
    }
}
