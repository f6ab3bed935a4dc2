//! The `vectors` table: each item's encoder features per feature set, stored with the item (the
//! source every index is built and reconciled from).

use sqlx::Row;

use super::{numbered_placeholders, Catalog, CatalogError};
use crate::{data::ImageId, vectors::Features};

/// Features of one searchable item, stored with the item.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector {
    pub feature_set: String,
    pub item: String,
    pub image_id: ImageId,
    pub vector: Features,
}

fn to_blob(v: &Features) -> Vec<u8> {
    v.as_slice().iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Store (or replace) vectors inside the caller's transaction.
pub(super) async fn write_vectors(
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

fn from_blob(b: &[u8]) -> Features {
    Features::new(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

impl Catalog {
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
        let sql = format!(
            "SELECT feature_set, item, image_id, vector FROM vectors WHERE feature_set = $1 AND item IN ({}) ORDER BY item",
            numbered_placeholders(2, items.len())
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
    ) -> Result<Option<Features>, CatalogError> {
        let blob: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT vector FROM vectors WHERE feature_set = $1 AND item = $2")
                .bind(feature_set)
                .bind(item)
                .fetch_optional(&self.pool)
                .await?;
        Ok(blob.map(|b| from_blob(&b)))
    }
}
