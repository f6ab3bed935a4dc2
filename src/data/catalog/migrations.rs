//! Migrations compiled into the binary (sqlx's `migrate!` macro needs its `macros` feature,
//! which builds bundled SQLite a second time), so a deployed binary never reads them from disk.

use std::{borrow::Cow, future::Future, pin::Pin};

use sqlx::{
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType},
    SqlSafeStr,
};

const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "catalog",
        include_str!("../../../migrations/sqlite/0001_catalog.sql"),
    ),
    (
        2,
        "vectors",
        include_str!("../../../migrations/sqlite/0002_vectors.sql"),
    ),
    (
        3,
        "library_files",
        include_str!("../../../migrations/sqlite/0003_library_files.sql"),
    ),
    (
        4,
        "photo_metadata",
        include_str!("../../../migrations/sqlite/0004_photo_metadata.sql"),
    ),
];

const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "catalog",
        include_str!("../../../migrations/postgres/0001_catalog.sql"),
    ),
    (
        2,
        "vectors",
        include_str!("../../../migrations/postgres/0002_vectors.sql"),
    ),
    (
        3,
        "library_files",
        include_str!("../../../migrations/postgres/0003_library_files.sql"),
    ),
    (
        4,
        "photo_metadata",
        include_str!("../../../migrations/postgres/0004_photo_metadata.sql"),
    ),
];

/// The newest schema version this binary knows (the same on both backends).
pub const SCHEMA_VERSION: i64 = SQLITE[SQLITE.len() - 1].0;
const _: () = assert!(POSTGRES[POSTGRES.len() - 1].0 == SCHEMA_VERSION);

/// The migrations of one backend.
#[derive(Debug)]
pub struct Embedded(pub super::Backend);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move {
            let list = match self.0 {
                super::Backend::Sqlite => SQLITE,
                super::Backend::Postgres => POSTGRES,
            };
            Ok(list
                .iter()
                .map(|&(version, name, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(name),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect())
        })
    }
}
