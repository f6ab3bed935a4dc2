//! The `feature_sets` table: which encoder (and options) each stored feature set came from.

use sqlx::Row;

use super::{Catalog, CatalogError};

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSetRow {
    pub id: String,
    pub encoder: String,
    pub modality: String,
    pub manifest_sha256: String,
    pub dims: usize,
    pub options: String,
}

impl Catalog {
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

/// Record a feature set (idempotent), on the pool or inside a transaction.
pub(super) async fn write_feature_set<'e>(
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
