//! The `captions` table.

use sqlx::Row;

use super::{numbered_placeholders, CaptionRecord, Catalog, CatalogError, ImageFilter, NewImage};
use crate::data::{ImageId, Split};

impl Catalog {
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
        let sql = format!(
            "SELECT image_id, ordinal, text FROM captions WHERE image_id IN ({}) ORDER BY image_id, ordinal",
            numbered_placeholders(1, ids.len())
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
}

/// An image's captions, numbered from 0, inside the caller's transaction.
pub(super) async fn insert_captions(
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

pub(super) fn caption_record(r: &sqlx::any::AnyRow) -> Result<CaptionRecord, CatalogError> {
    Ok(CaptionRecord {
        id: r.get(0),
        image_id: ImageId::new(r.get::<String, _>(1))
            .map_err(|e| CatalogError::Corrupt(e.to_string()))?,
        ordinal: r.get::<i64, _>(2) as u32,
        text: r.get(3),
    })
}
