//! The `image_metadata` and `image_fields` tables: written with the image row (same
//! transaction), read back for image details and results.

use std::collections::HashMap;

use sqlx::Row;

use super::{Catalog, CatalogError};
use crate::data::metadata::{FieldValue, GeoPoint, PhotoMetadata, TakenAt};

/// Replace an image's metadata inside the caller's transaction.
pub(super) async fn write_metadata(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    image_id: &str,
    m: &PhotoMetadata,
) -> Result<(), CatalogError> {
    for table in ["image_metadata", "image_fields"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE image_id = $1"
        )))
        .bind(image_id)
        .execute(&mut **tx)
        .await?;
    }
    if *m == PhotoMetadata::default() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO image_metadata (image_id, taken_at, taken_local_s, taken_utc_s, camera_make,
           camera_model, latitude, longitude, orientation, folder, file_name, file_size, file_modified_s)
         VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS DOUBLE PRECISION), CAST($8 AS DOUBLE PRECISION),
                 $9, $10, $11, $12, $13)",
    )
    .bind(image_id)
    .bind(m.taken_at.map(|t| t.to_string()))
    .bind(m.taken_at.map(|t| t.local_seconds()))
    .bind(m.taken_at.map(|t| t.utc_seconds()))
    .bind(m.camera_make.as_deref())
    .bind(m.camera_model.as_deref())
    .bind(m.gps.map(|g| real(g.lat)))
    .bind(m.gps.map(|g| real(g.lon)))
    .bind(m.orientation.map(i64::from))
    .bind(m.folder.as_deref())
    .bind(m.file_name.as_deref())
    .bind(m.file_size.map(|s| s as i64))
    .bind(m.file_modified)
    .execute(&mut **tx)
    .await?;
    for (ordinal, (name, value)) in m.fields.iter().enumerate() {
        let (kind, text, number) = match value {
            FieldValue::Text(s) => ("text", Some(s.clone()), None),
            FieldValue::Number(n) => ("number", None, Some(*n)),
            FieldValue::Bool(b) => ("bool", Some(b.to_string()), Some(f64::from(u8::from(*b)))),
            FieldValue::Date { text, seconds } => {
                ("date", Some(text.clone()), Some(*seconds as f64))
            }
        };
        sqlx::query(
            "INSERT INTO image_fields (image_id, name, ordinal, kind, text_value, number_value)
             VALUES ($1, $2, $3, $4, $5, CAST($6 AS DOUBLE PRECISION))",
        )
        .bind(image_id)
        .bind(name)
        .bind(ordinal as i64)
        .bind(kind)
        .bind(text)
        .bind(number.map(real))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A nullable float as a parameter. sqlx 0.9's `Any` driver sends a NULL f64 to Postgres typed
/// as float4, and the statement it prepared then refuses the next row's 8-byte float8 ("incorrect
/// binary data format"); text cast in SQL is exact (Rust prints the shortest round-tripping form)
/// and means the same on SQLite.
fn real(v: f64) -> String {
    v.to_string()
}

impl Catalog {
    /// Metadata of these images (those with none are absent), in two queries.
    pub async fn metadata_of_many(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, PhotoMetadata>, CatalogError> {
        let mut conn = self.pool.acquire().await?;
        read_metadata(&mut conn, ids).await
    }
}

/// Metadata of these images on one connection (a transaction's, when an upsert compares).
pub(super) async fn read_metadata(
    conn: &mut sqlx::AnyConnection,
    ids: &[&str],
) -> Result<HashMap<String, PhotoMetadata>, CatalogError> {
    {
        let mut out: HashMap<String, PhotoMetadata> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        // bounded by the page size the callers pass (≤ 100 results)
        let params = (1..=ids.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT image_id, taken_at, camera_make, camera_model, latitude, longitude, orientation,
               folder, file_name, file_size, file_modified_s FROM image_metadata WHERE image_id IN ({params})"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let lat: Option<f64> = r.get(4);
            let lon: Option<f64> = r.get(5);
            out.insert(
                r.get(0),
                PhotoMetadata {
                    taken_at: r
                        .get::<Option<String>, _>(1)
                        .and_then(|t| t.parse::<TakenAt>().ok()),
                    camera_make: r.get(2),
                    camera_model: r.get(3),
                    gps: lat.zip(lon).and_then(|(a, o)| GeoPoint::new(a, o)),
                    orientation: r.get::<Option<i64>, _>(6).map(|o| o as u16),
                    folder: r.get(7),
                    file_name: r.get(8),
                    file_size: r.get::<Option<i64>, _>(9).map(|s| s as u64),
                    file_modified: r.get(10),
                    fields: Default::default(),
                },
            );
        }
        let sql = format!(
            "SELECT image_id, name, kind, text_value, number_value FROM image_fields
             WHERE image_id IN ({params}) ORDER BY image_id, ordinal"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let text: Option<String> = r.get(3);
            let number: Option<f64> = r.get(4);
            let value = match r.get::<String, _>(2).as_str() {
                "number" => FieldValue::Number(number.unwrap_or_default()),
                "bool" => FieldValue::Bool(number.unwrap_or_default() != 0.0),
                "date" => FieldValue::Date {
                    text: text.unwrap_or_default(),
                    seconds: number.unwrap_or_default() as i64,
                },
                _ => FieldValue::Text(text.unwrap_or_default()),
            };
            out.entry(r.get(0))
                .or_default()
                .fields
                .push(r.get(1), value);
        }
        Ok(out)
    }
}
