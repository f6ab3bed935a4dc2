//! Writes to the searchable indexes, staged around the catalog's transaction, so the service
//! says what changes and never which backend holds it: Postgres rows are written inside the
//! transaction that writes their images (`LinkedWrites`; deletes cascade from `images`), so a
//! commit makes both durable at once; the in-process indexes, derived data rebuilt from the
//! catalog at start-up, follow once the commit succeeded.

use super::{IndexError, SearchIndex};
use crate::{data::catalog::LinkedWrites, data::ImageId, vectors::Embedding};

enum Op<'a> {
    Upsert {
        key: String,
        image: &'a ImageId,
        embedding: &'a Embedding,
    },
    Remove {
        key: String,
    },
}

/// Index writes that follow one catalog write.
#[derive(Default)]
pub struct IndexWrites<'a> {
    ops: Vec<(&'a SearchIndex, Op<'a>)>,
}

impl<'a> IndexWrites<'a> {
    /// Add or replace item `key` (of `image`) in `index`.
    pub fn upsert(
        &mut self,
        index: &'a SearchIndex,
        key: impl Into<String>,
        image: &'a ImageId,
        embedding: &'a Embedding,
    ) {
        let key = key.into();
        self.ops.push((
            index,
            Op::Upsert {
                key,
                image,
                embedding,
            },
        ));
    }

    /// Drop item `key` from `index` (its catalog rows are being deleted).
    pub fn remove(&mut self, index: &'a SearchIndex, key: impl Into<String>) {
        self.ops.push((index, Op::Remove { key: key.into() }));
    }

    /// After the catalog committed: the in-process indexes take the same changes, in order.
    pub fn apply_committed(&self) -> Result<(), IndexError> {
        for (index, op) in &self.ops {
            let SearchIndex::Memory { index, .. } = index else {
                continue; // written in the transaction, or deleted with its image
            };
            match op {
                Op::Upsert { key, embedding, .. } => index.upsert(key, embedding)?,
                Op::Remove { key } => {
                    index.remove(key);
                }
            }
        }
        Ok(())
    }
}

impl LinkedWrites for IndexWrites<'_> {
    async fn write(&self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        for (index, op) in &self.ops {
            if let (
                SearchIndex::Postgres(index),
                Op::Upsert {
                    key,
                    image,
                    embedding,
                },
            ) = (index, op)
            {
                index.write_row(conn, key, image, embedding).await?;
            }
        }
        Ok(())
    }
}
