//! What a searchable side is in a running server: the in-process HNSW index (embedded default)
//! or pgvector tables shared by replicas (Postgres deployments).

use super::{pgvector::PgVectorIndex, Hit, IndexError, Query, VectorIndex};
use crate::vectors::Embedding;

pub enum SearchIndex {
    Memory(VectorIndex),
    Postgres(PgVectorIndex),
}

impl SearchIndex {
    pub async fn search(&self, q: &Embedding, query: Query) -> Result<Vec<Hit>, IndexError> {
        match self {
            Self::Memory(index) => index.search(q, query),
            Self::Postgres(index) => {
                if q.dims() != index.dims() {
                    return Err(IndexError::Dims {
                        expected: index.dims(),
                        got: q.dims(),
                    });
                }
                Ok(index.search(q, query).await?)
            }
        }
    }

    /// Items searchable now (a count query on Postgres; 0 when the database does not answer).
    pub async fn count(&self) -> usize {
        match self {
            Self::Memory(index) => index.len(),
            Self::Postgres(index) => index.count().await.unwrap_or(0),
        }
    }

    /// The in-process index, which the server updates itself after each committed write; `None`
    /// on Postgres, where writes and deletes reach the index inside the catalog's transaction.
    pub fn memory(&self) -> Option<&VectorIndex> {
        match self {
            Self::Memory(index) => Some(index),
            Self::Postgres(_) => None,
        }
    }

    pub fn postgres(&self) -> Option<&PgVectorIndex> {
        match self {
            Self::Memory(_) => None,
            Self::Postgres(index) => Some(index),
        }
    }
}
