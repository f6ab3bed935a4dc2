//! The image collection: add an image with captions (durable before it returns), describe it,
//! fetch its bytes or a thumbnail, delete it.

use axum::body::Bytes;
use sha2::{Digest, Sha256};

use super::{Service, ServiceError};
use crate::{
    data::{
        catalog::{ImageRecord, NewImage, StoredVector},
        metadata::{PhotoMetadata, UserFields},
        CaptionKey, ImageId,
    },
    index::IndexWrites,
    vectors::Embedding,
};

/// A validated upload: image bytes, its captions, and the id asked for (else from the content).
pub struct Upload {
    pub bytes: Bytes,
    pub captions: Vec<String>,
    pub id: Option<ImageId>,
    /// The user's own fields (the form's `metadata` JSON object).
    pub fields: UserFields,
}

/// An image's catalog record, caption texts and tags.
pub struct ImageDetails {
    pub record: ImageRecord,
    pub metadata: PhotoMetadata,
    pub captions: Vec<String>,
    pub tags: Vec<super::Tag>,
}

/// Bytes to send and their content type.
pub struct ImageFile {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// One space's embeddings of an upload: the image's and each caption's (key, embedding).
struct SpaceEmbeddings<'s> {
    space: &'s super::Space,
    image: Embedding,
    captions: Vec<(String, Embedding)>,
}

impl Service {
    /// Encode, store and index an image with its captions. When this returns, the file, the
    /// catalog rows, the features and (on Postgres) the embeddings are durable; in-process
    /// indexes follow at once (a crash before that is repaired from the catalog at start-up).
    pub async fn add_image(&self, upload: Upload) -> Result<ImageId, ServiceError> {
        let Upload {
            bytes,
            captions,
            id,
            fields,
        } = upload;
        let sha = format!("{:x}", Sha256::digest(&bytes));
        let id = match id {
            Some(id) => id,
            None => ImageId::new(format!("img-{}", &sha[..16])).expect("hex id is valid"),
        };
        let metadata = PhotoMetadata {
            fields,
            ..PhotoMetadata::from_image_bytes(&bytes)
        };
        // decoding validates the bytes (and sniffs the real format) before anything is stored
        let image = self.engine.encode_image(bytes.clone()).await?;
        let ext = image::guess_format(&bytes)
            .ok()
            .and_then(|f| f.extensions_str().first().copied())
            .unwrap_or("img");
        let caption_features = self.engine.encode_texts(captions.clone()).await?;
        let caption_keys: Vec<String> = (0..captions.len())
            .map(|i| CaptionKey::new(id.clone(), i as u32).to_string())
            .collect();
        let embeddings = self
            .spaces
            .iter()
            .map(|space| {
                Ok(SpaceEmbeddings {
                    space,
                    image: space.project_image(&image.features)?,
                    captions: caption_keys
                        .iter()
                        .zip(&caption_features)
                        .map(|(key, f)| Ok((key.clone(), space.project_text(f)?)))
                        .collect::<Result<_, ServiceError>>()?,
                })
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;

        let _write = self.write_lock.lock().await;
        if self.catalog.image(&id).await?.is_some() {
            return Err(ServiceError::Conflict(id));
        }
        // 1. the bytes, content-addressed, durable before the catalog refers to them
        let path = self.data.upload_file(&sha, ext);
        let stored = self.store_file(&path, bytes).await;
        self.record_write("files", &stored);
        let created = stored?;
        // 2. catalog row, captions, features and pgvector embeddings in one transaction
        let mut vectors = vec![StoredVector {
            feature_set: self.image_spec.id().0,
            item: id.to_string(),
            image_id: id.clone(),
            vector: image.features,
        }];
        let text_set = self.text_spec.id().0;
        for (key, f) in caption_keys.iter().zip(caption_features) {
            vectors.push(StoredVector {
                feature_set: text_set.clone(),
                item: key.clone(),
                image_id: id.clone(),
                vector: f,
            });
        }
        let new = NewImage {
            id: id.clone(),
            location: Some(path.display().to_string()),
            width: Some(image.width),
            height: Some(image.height),
            sha256: Some(sha),
            split: None,
            captions,
            metadata,
        };
        let mut writes = IndexWrites::default();
        for e in &embeddings {
            writes.upsert(&e.space.images, id.as_str(), &id, &e.image);
            for (key, v) in &e.captions {
                writes.upsert(&e.space.captions, key.as_str(), &id, v);
            }
        }
        let inserted = self
            .catalog
            .insert_with_vectors(self.uploads_dataset, &new, &vectors, &writes)
            .await
            .map_err(|e| self.catalog_error("writing the catalog", e))
            .and_then(|done| {
                done.then_some(())
                    .ok_or_else(|| ServiceError::Conflict(id.clone()))
            });
        self.record_write("catalog", &inserted);
        if let Err(e) = inserted {
            // the file is this upload's alone (it was not there, and writes are serialised):
            // no catalog row will refer to it, so it goes with the failed request
            if created {
                if let Err(rm) = tokio::fs::remove_file(&path).await {
                    tracing::warn!(
                        "cannot remove {} after a failed upload: {rm}",
                        path.display()
                    );
                }
            }
            return Err(e);
        }
        // 3. the in-process indexes (derived data) follow the commit
        writes.apply_committed()?;
        self.update_index_gauges().await;
        Ok(id)
    }

    /// Store `bytes` at `path` (content-addressed: already there means the same bytes);
    /// whether this call created the file.
    async fn store_file(&self, path: &std::path::Path, bytes: Bytes) -> Result<bool, ServiceError> {
        let target = path.to_path_buf();
        let written = tokio::task::spawn_blocking(move || {
            if target.exists() {
                return Ok(false); // same content already stored
            }
            crate::fsutil::write_atomic(&target, &bytes).map(|()| true)
        })
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))?;
        written.map_err(|source| {
            let path = path.display().to_string();
            if crate::fsutil::is_out_of_space(&source) {
                ServiceError::OutOfSpace {
                    what: "storing the image",
                    location: path,
                    message: source.to_string(),
                }
            } else {
                ServiceError::Storage {
                    what: "storing the image",
                    path,
                    source,
                }
            }
        })
    }

    /// Delete an image: gone from every index at once, durably; its uploaded file goes when no
    /// other image refers to it.
    pub async fn delete_image(&self, id: &ImageId) -> Result<(), ServiceError> {
        let _write = self.write_lock.lock().await;
        let captions = self.catalog.captions_of(id).await?;
        let record = self.catalog.image(id).await?;
        let deleted = self
            .catalog
            .delete_image(id)
            .await
            .map_err(|e| self.catalog_error("deleting from the catalog", e));
        self.record_write("catalog", &deleted);
        if !deleted? {
            return Err(not_found(id));
        }
        // pgvector rows went with the catalog rows (ON DELETE CASCADE); in-process indexes follow
        let mut writes = IndexWrites::default();
        for space in &self.spaces {
            writes.remove(&space.images, id.as_str());
            for c in &captions {
                writes.remove(
                    &space.captions,
                    CaptionKey::new(id.clone(), c.ordinal).to_string(),
                );
            }
        }
        writes.apply_committed()?;
        let uploads = self.data.uploads().display().to_string();
        if let Some(location) = record
            .and_then(|r| r.location)
            .filter(|l| l.starts_with(&uploads))
        {
            if self.catalog.images_at(&location).await? == 0 {
                let _ = tokio::fs::remove_file(&location).await;
            }
        }
        self.update_index_gauges().await;
        Ok(())
    }

    pub async fn image(&self, id: &ImageId) -> Result<ImageDetails, ServiceError> {
        let record = self.catalog.image(id).await?.ok_or_else(|| not_found(id))?;
        let captions = self
            .catalog
            .captions_of(id)
            .await?
            .into_iter()
            .map(|c| c.text)
            .collect();
        let tags = self
            .stored_tags(&[id.to_string()])
            .await?
            .remove(id.as_str())
            .unwrap_or_default();
        let metadata = self
            .catalog
            .metadata_of_many(&[id.as_str()])
            .await?
            .remove(id.as_str())
            .unwrap_or_default();
        Ok(ImageDetails {
            record,
            metadata,
            captions,
            tags,
        })
    }

    /// The stored bytes, or a JPEG thumbnail fitting `size`×`size`.
    pub async fn image_file(
        &self,
        id: &ImageId,
        size: Option<u32>,
    ) -> Result<ImageFile, ServiceError> {
        let record = self.catalog.image(id).await?.ok_or_else(|| not_found(id))?;
        let location = record.location.ok_or_else(|| {
            ServiceError::NotFound(format!("image {:?} has no stored file", id.as_str()))
        })?;
        let bytes = tokio::fs::read(&location)
            .await
            .map_err(|_| ServiceError::NotFound("the image file is gone".into()))?;
        Ok(match size {
            None => ImageFile {
                content_type: image::guess_format(&bytes)
                    .map(|f| f.to_mime_type())
                    .unwrap_or("application/octet-stream"),
                bytes,
            },
            Some(size) => ImageFile {
                bytes: self.engine.thumbnail_jpeg(bytes, size).await?,
                content_type: "image/jpeg",
            },
        })
    }
}

fn not_found(id: &ImageId) -> ServiceError {
    ServiceError::NotFound(format!("no image with id {:?}", id.as_str()))
}
