//! Folder libraries in the catalog: what it remembers of each file (size and modification time as
//! last seen, content hash) and one transaction per batch of changes, so a scan killed mid-way
//! keeps every batch it finished and redoes none of them.

use sqlx::Row;

use super::{
    images::insert_image, vectors::write_vectors, Catalog, CatalogError, LinkedWrites, NewImage,
    StoredVector,
};
use crate::data::ImageId;

/// A file's size and modification time: equal stamps mean "unchanged" without reading the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
}

/// What the catalog holds for one library file.
#[derive(Debug, Clone, PartialEq)]
pub struct LibraryEntry {
    pub id: ImageId,
    pub location: Option<String>,
    pub sha256: Option<String>,
    pub stamp: Option<FileStamp>,
}

/// An image added (or replacing its changed predecessor) with its stamp and features.
pub struct LibraryAdd {
    pub image: NewImage,
    pub stamp: FileStamp,
    pub vectors: Vec<StoredVector>,
}

/// One batch of a rescan, applied in one transaction.
#[derive(Default)]
pub struct LibraryChanges {
    /// Gone from the folder: their rows, captions, features and embeddings go (cascade).
    pub remove: Vec<ImageId>,
    /// New files, and changed files (their old rows go first).
    pub add: Vec<LibraryAdd>,
    /// Same content under a new stamp (touched, copied back): only the stamp changes.
    pub restamp: Vec<(ImageId, FileStamp)>,
}

impl Catalog {
    /// Every image of `dataset` with its file's last-seen stamp.
    pub async fn library_entries(&self, dataset: &str) -> Result<Vec<LibraryEntry>, CatalogError> {
        let rows = sqlx::query(
            "SELECT i.id, i.location, i.sha256, i.file_size, i.file_mtime_ns FROM images i
             JOIN datasets d ON d.id = i.dataset_id WHERE d.name = $1 ORDER BY i.id",
        )
        .bind(dataset)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let stamp = match (r.get::<Option<i64>, _>(3), r.get::<Option<i64>, _>(4)) {
                    (Some(size), Some(mtime_ns)) => Some(FileStamp {
                        size: size as u64,
                        mtime_ns,
                    }),
                    _ => None,
                };
                Ok(LibraryEntry {
                    id: ImageId::new(r.get::<String, _>(0))
                        .map_err(|e| CatalogError::Corrupt(e.to_string()))?,
                    location: r.get(1),
                    sha256: r.get(2),
                    stamp,
                })
            })
            .collect()
    }

    /// Apply one batch of a rescan in one transaction (durable on return), with `linked` rows
    /// (pgvector embeddings of the added images) in the same transaction.
    pub async fn apply_library_changes(
        &self,
        dataset_id: i64,
        changes: &LibraryChanges,
        linked: &impl LinkedWrites,
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool().begin().await?;
        let replaced = changes.add.iter().map(|a| &a.image.id);
        for id in changes.remove.iter().chain(replaced) {
            sqlx::query("DELETE FROM images WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for add in &changes.add {
            insert_image(&mut tx, dataset_id, &add.image, Some(add.stamp)).await?;
            write_vectors(&mut tx, &add.vectors).await?;
        }
        for (id, stamp) in &changes.restamp {
            sqlx::query("UPDATE images SET file_size = $1, file_mtime_ns = $2 WHERE id = $3")
                .bind(stamp.size as i64)
                .bind(stamp.mtime_ns)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        linked.write(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
