//! The `images` table: ingest's upserts, an upload's one-transaction insert, reads and deletes.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{
    captions::insert_captions,
    metadata::{read_metadata, write_metadata},
    vectors::write_vectors,
    Catalog, CatalogError, ImageFilter, ImageRecord, NewImage, StoredVector, Upsert,
};
use crate::data::{ImageId, Split};

/// One new image row inside the caller's transaction (callers check or delete first), with its
/// file's stamp when a folder library tracks it.
pub(super) async fn insert_image(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dataset_id: i64,
    img: &NewImage,
    stamp: Option<super::FileStamp>,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO images (id, dataset_id, location, width, height, sha256, split, file_size, file_mtime_ns)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(img.id.as_str())
    .bind(dataset_id)
    .bind(&img.location)
    .bind(img.width.map(i64::from))
    .bind(img.height.map(i64::from))
    .bind(&img.sha256)
    .bind(img.split.map(Split::as_str))
    .bind(stamp.map(|s| s.size as i64))
    .bind(stamp.map(|s| s.mtime_ns))
    .execute(&mut **tx)
    .await?;
    write_metadata(tx, img.id.as_str(), &img.metadata).await
}

/// Derived rows that must land in the same transaction as an inserted image (pgvector
/// embeddings on Postgres). The index module implements it; no SQL crosses the border.
pub trait LinkedWrites {
    fn write<'c>(
        &'c self,
        conn: &'c mut sqlx::AnyConnection,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c;
}

/// Nothing linked (the embedded backend updates its in-process indexes after the commit).
impl LinkedWrites for () {
    async fn write(&self, _: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

impl Catalog {
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
            let old_metadata = read_metadata(&mut tx, &[img.id.as_str()])
                .await?
                .remove(img.id.as_str())
                .unwrap_or_default();
            if same_row && old_captions == img.captions && old_metadata == img.metadata {
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
            if old_metadata != img.metadata {
                write_metadata(&mut tx, img.id.as_str(), &img.metadata).await?;
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

    /// Insert one image with its captions and their feature vectors in a single transaction:
    /// when this returns, all of it is durable, or none of it was written.
    pub async fn insert_with_vectors(
        &self,
        dataset_id: i64,
        image: &NewImage,
        vectors: &[StoredVector],
        linked: &impl LinkedWrites,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM images WHERE id = $1")
            .bind(image.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        insert_image(&mut tx, dataset_id, image, None).await?;
        insert_captions(&mut tx, image).await?;
        write_vectors(&mut tx, vectors).await?;
        linked.write(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
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
