//! Imported datasets (precomputed features without image files) enter the catalog in a single
//! transaction: either every image, caption and the feature set's record land, or none do.

use sqlx::Row;

use super::{
    captions::insert_captions, feature_sets::write_feature_set, Catalog, CatalogError,
    FeatureSetRow, NewImage,
};
use crate::data::Split;

/// What an import did to the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub inserted: usize,
    /// Images the dataset already had (e.g. Flickr30k ingested with its files): their rows, files
    /// and captions are kept; the imported features attach to them by id.
    pub existing: usize,
    /// Ids held by another dataset: when any exist, nothing was written.
    pub conflicts: Vec<String>,
}

impl Catalog {
    pub async fn import_images(
        &self,
        dataset: (&str, &str, &str),
        images: &[NewImage],
        feature_set: &FeatureSetRow,
    ) -> Result<ImportOutcome, CatalogError> {
        let (name, format, source) = dataset;
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO datasets (name, format, source) VALUES ($1, $2, $3) ON CONFLICT(name) DO NOTHING")
            .bind(name)
            .bind(format)
            .bind(source)
            .execute(&mut *tx)
            .await?;
        let dataset_id: i64 = sqlx::query_scalar("SELECT id FROM datasets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        let mut outcome = ImportOutcome::default();
        for img in images {
            let owner: Option<i64> = sqlx::query("SELECT dataset_id FROM images WHERE id = $1")
                .bind(img.id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0));
            match owner {
                Some(d) if d == dataset_id => {
                    outcome.existing += 1;
                    continue;
                }
                Some(_) => {
                    outcome.conflicts.push(img.id.to_string());
                    continue;
                }
                None => {}
            }
            sqlx::query(
                "INSERT INTO images (id, dataset_id, location, split) VALUES ($1, $2, NULL, $3)",
            )
            .bind(img.id.as_str())
            .bind(dataset_id)
            .bind(img.split.map(Split::as_str))
            .execute(&mut *tx)
            .await?;
            insert_captions(&mut tx, img).await?;
            outcome.inserted += 1;
        }
        if !outcome.conflicts.is_empty() {
            tx.rollback().await?;
            outcome.inserted = 0;
            outcome.existing = 0;
            return Ok(outcome);
        }
        write_feature_set(&mut *tx, feature_set).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}
