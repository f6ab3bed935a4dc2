//! The catalog: SQLite (WAL, synchronous FULL, foreign keys on) by default, or Postgres for
//! deployments with several replicas; versioned migrations per backend applied at start-up. It is
//! the source of truth; indexes and feature caches are derived from it.
//!
//! One set of queries serves both backends through sqlx's `Any` driver: placeholders are `$N`
//! (numbered in order of first use, which SQLite reads as positional too), nullable parameters
//! are cast, and upserts use `ON CONFLICT`, which both speak. One file per table family:
//! `images.rs`, `captions.rs`, `feature_sets.rs`, `vectors.rs` (and `import.rs` for imports).

mod captions;
mod feature_sets;
pub mod filter;
mod images;
mod import;
mod library;
mod metadata;
mod migrations;
mod vectors;

use std::{path::Path, time::Duration};

use sqlx::{any::AnyPoolOptions, AnyPool, Executor};

pub use feature_sets::FeatureSetRow;
pub use images::LinkedWrites;
pub use import::ImportOutcome;
pub use library::{FileStamp, LibraryAdd, LibraryChanges, LibraryEntry};
pub use migrations::SCHEMA_VERSION;
pub use vectors::{stored_vector, StoredVector};

use super::{metadata::PhotoMetadata, ImageId, Split};

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
    pub metadata: PhotoMetadata,
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
    /// Where it is, for messages: the SQLite file, or the Postgres host and database (never
    /// the credentials).
    location: String,
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
            location: path.display().to_string(),
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Connect to a Postgres catalog (`postgres://…`), retrying while the database is still
    /// starting, and bring its schema up to date. Several replicas may do this at once: sqlx
    /// serialises migrations with an advisory lock.
    pub async fn connect_postgres(url: &str, config: PoolConfig) -> Result<Self, CatalogError> {
        sqlx::any::install_default_drivers();
        let location = postgres_location(url);
        // a database that is down (not one that refuses us) is waited for, however long: a
        // replica started before it is useful once it comes up, and says so once per attempt
        let mut attempt = 0u32;
        let pool = loop {
            // a server that refuses connections is down: no need to wait out the pool's
            // connection timeout to learn it
            let result = if accepts_connections(&location).await {
                AnyPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .connect(url)
                    .await
            } else {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "it does not accept connections",
                )))
            };
            match result {
                Ok(pool) => break pool,
                Err(e) if is_transient(&e) => {
                    attempt += 1;
                    let wait =
                        Duration::from_millis(200 << attempt.min(5)).min(CONNECT_BACKOFF_MAX);
                    tracing::warn!(
                        "database not reachable at {location} (attempt {attempt}, next in {:.1}s): {e}",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let catalog = Self {
            pool,
            backend: Backend::Postgres,
            location,
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

    /// Where the catalog is, for messages (no credentials).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether the database server accepts a TCP connection within a moment: the quick check
    /// that lets requests fail at once while it is down, instead of each waiting out the
    /// pool's connection timeout (sqlx retries refused connections until then). True for
    /// SQLite, and where the address cannot be read from the URL.
    pub async fn reachable(&self) -> bool {
        self.backend != Backend::Postgres || accepts_connections(&self.location).await
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
}

/// `$from, $from+1, …` for `count` values: an `IN (…)` list of bound parameters. (sqlx's
/// QueryBuilder writes `?` placeholders through the Any driver, which Postgres rejects.)
fn numbered_placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connection refused/reset or a server still starting up: worth another try.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        // a full disk is no outage: it is answered as such (507), not retried as one (503)
        sqlx::Error::Io(io) => !crate::fsutil::is_out_of_space(io),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            // 57P01-57P03 admin / crash shutdown and cannot_connect_now (the server stopping,
            // crashing or starting), 53300 too_many_connections, 08xxx connection exceptions,
            // 40001/40P01 serialization failure / deadlock
            db.code().is_some_and(|c| {
                c.starts_with("57P")
                    || c == "53300"
                    || c.starts_with("08")
                    || c == "40001"
                    || c == "40P01"
            })
        }
        _ => false,
    }
}

/// The database could not write for lack of space: SQLite's SQLITE_FULL (13), Postgres'
/// disk_full (53100), or ENOSPC / EDQUOT from the filesystem.
pub fn is_out_of_space(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(io) => crate::fsutil::is_out_of_space(io),
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c == "13" || c == "53100"),
        _ => false,
    }
}

/// Whether the server at a Postgres location (`host[:port]/db`) accepts a TCP connection within
/// [`REACHABLE_WITHIN`]; true where no address can be read from it.
async fn accepts_connections(location: &str) -> bool {
    let Some(addr) = location.split('/').next().filter(|a| !a.is_empty()) else {
        return true;
    };
    let addr = if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:5432")
    };
    let connect = tokio::net::TcpStream::connect(addr);
    matches!(
        tokio::time::timeout(REACHABLE_WITHIN, connect).await,
        Ok(Ok(_))
    )
}

/// How long [`Catalog::reachable`] waits for the database server to accept a connection.
const REACHABLE_WITHIN: Duration = Duration::from_millis(300);

/// Longest wait between connection attempts to a database that is down.
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// `host:port/db` of a Postgres URL, for messages (the user and password left out).
fn postgres_location(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('?').next().unwrap_or(rest).to_string()
}
