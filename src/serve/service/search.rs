//! Searches: caption → images, image → captions, "more like this", and an indexed image's
//! captions. Each returns ranked matches with what the page shows (captions, caption texts).

use axum::body::Bytes;

use super::{ResultOrder, Service, ServiceError, Space, Tag};
use crate::{
    data::{filter::Filter, metadata::PhotoMetadata},
    data::{CaptionKey, ImageId},
    index::{Hit, SearchRequest},
    vectors::{Embedding, Features},
};

/// An image found, with its captions (or, when it has none, its tags).
pub struct ImageMatch {
    pub image: ImageId,
    pub score: f32,
    pub captions: Vec<String>,
    pub tags: Vec<Tag>,
    pub metadata: Option<PhotoMetadata>,
}

/// A caption found, with its text.
pub struct CaptionMatch {
    pub caption: CaptionKey,
    pub text: String,
    pub score: f32,
}

/// A page of matches, best first, and the model that scored them.
pub struct Ranked<T> {
    pub hits: Vec<T>,
    pub model: String,
    /// An image query's own tags (image → text even where no caption exists yet).
    pub query_tags: Vec<Tag>,
    /// The score a date-ordered query kept results down to.
    pub cutoff: Option<f32>,
}

impl Service {
    /// Caption → images, in `order`.
    pub async fn search_text(
        &self,
        model: Option<&str>,
        text: String,
        request: SearchRequest<'_>,
        order: ResultOrder,
    ) -> Result<Ranked<ImageMatch>, ServiceError> {
        let space = self.space(model)?;
        let q = space.project_text(&self.text_features(text).await?)?;
        self.images_in_order(space, &q, request, order).await
    }

    /// Image (encoded bytes) → ranked captions.
    pub async fn search_image(
        &self,
        model: Option<&str>,
        bytes: Bytes,
        request: SearchRequest<'_>,
    ) -> Result<Ranked<CaptionMatch>, ServiceError> {
        let space = self.space(model)?;
        let image = self.engine.encode_image(bytes).await?;
        let q = space.project_image(&image.features)?;
        let hits = space.captions.search(&q, request).await?;
        let mut ranked = self.ranked_captions(space, hits).await?;
        ranked.query_tags = self.tags(vec![image.features]).await?.remove(0);
        Ok(ranked)
    }

    /// Image (encoded bytes) → the most similar images in the collection.
    pub async fn search_similar(
        &self,
        model: Option<&str>,
        bytes: Bytes,
        request: SearchRequest<'_>,
    ) -> Result<Ranked<ImageMatch>, ServiceError> {
        let space = self.space(model)?;
        let image = self.engine.encode_image(bytes).await?;
        let q = space.project_image(&image.features)?;
        let hits = space.images.search(&q, request).await?;
        let mut ranked = self.ranked_images(space, hits).await?;
        ranked.query_tags = self.tags(vec![image.features]).await?.remove(0);
        Ok(ranked)
    }

    /// An indexed image's captions by its stored features (no upload; works where image features
    /// were imported without an encoder).
    pub async fn captions_of(
        &self,
        model: Option<&str>,
        id: &ImageId,
        request: SearchRequest<'_>,
    ) -> Result<Ranked<CaptionMatch>, ServiceError> {
        let space = self.space(model)?;
        let q = self.stored_image(space, id).await?;
        let hits = space.captions.search(&q, request).await?;
        self.ranked_captions(space, hits).await
    }

    /// Images nearest to an indexed image, without the image itself.
    pub async fn similar(
        &self,
        model: Option<&str>,
        id: &ImageId,
        request: SearchRequest<'_>,
    ) -> Result<Ranked<ImageMatch>, ServiceError> {
        let space = self.space(model)?;
        let q = self.stored_image(space, id).await?;
        // the image is its own nearest neighbour: left out by the filter, so pages stay aligned
        let not_itself = Filter::NotImage(id.clone());
        let filter = match request.filter {
            Some(f) => f.clone().and(not_itself),
            None => not_itself,
        };
        let hits = space
            .images
            .search(
                &q,
                SearchRequest {
                    page: request.page,
                    filter: Some(&filter),
                },
            )
            .await?;
        self.ranked_images(space, hits).await
    }

    /// A caption's features, from the query cache when it was asked recently.
    pub(super) async fn text_features(&self, text: String) -> Result<Features, ServiceError> {
        if let Some(features) = self.query_cache.as_ref().and_then(|c| c.get(&text)) {
            return Ok(features);
        }
        let features = self.engine.encode_text(text.clone()).await?;
        if let Some(cache) = &self.query_cache {
            cache.insert(&text, features.clone());
        }
        Ok(features)
    }

    /// An indexed image as a query: its stored features projected into `space`.
    pub(super) async fn stored_image(
        &self,
        space: &Space,
        id: &ImageId,
    ) -> Result<Embedding, ServiceError> {
        let features = self
            .catalog
            .vector(&self.image_spec.id().0, id.as_str())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no image with id {:?}", id.as_str())))?;
        space.project_image(&features)
    }

    /// Image hits with their captions (one catalog query for the whole page), and tags for the
    /// ones without captions.
    pub(super) async fn ranked_images(
        &self,
        space: &Space,
        hits: Vec<Hit>,
    ) -> Result<Ranked<ImageMatch>, ServiceError> {
        let keys: Vec<&str> = hits.iter().map(|h| h.key.as_str()).collect();
        let mut captions = self.catalog.captions_of_many(&keys).await?;
        let uncaptioned: Vec<String> = keys
            .iter()
            .filter(|k| !captions.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        let mut tags = self.stored_tags(&uncaptioned).await?;
        let mut metadata = self.catalog.metadata_of_many(&keys).await?;
        let matches: Vec<ImageMatch> = hits
            .into_iter()
            .map(|hit| {
                let texts = captions
                    .remove(&hit.key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, text)| text)
                    .collect();
                Ok(ImageMatch {
                    tags: tags.remove(&hit.key).unwrap_or_default(),
                    metadata: metadata.remove(&hit.key),
                    image: ImageId::new(hit.key)
                        .map_err(|e| ServiceError::Corrupt(e.to_string()))?,
                    score: hit.score,
                    captions: texts,
                })
            })
            .collect::<Result<_, ServiceError>>()?;
        Ok(Ranked {
            hits: matches,
            model: space.model.clone(),
            query_tags: Vec::new(),
            cutoff: None,
        })
    }

    /// Tags of stored images, by id (from their stored features).
    pub(super) async fn stored_tags(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<Tag>>, ServiceError> {
        if ids.is_empty() || !self.engine.has_image_encoder() {
            return Ok(Default::default());
        }
        let stored = self
            .catalog
            .vectors_of(&self.image_spec.id().0, ids)
            .await?;
        let items: Vec<String> = stored.iter().map(|v| v.item.clone()).collect();
        let tags = self
            .tags(stored.into_iter().map(|v| v.vector).collect())
            .await?;
        Ok(items.into_iter().zip(tags).collect())
    }

    /// Caption hits with their texts (one catalog query for the whole page).
    async fn ranked_captions(
        &self,
        space: &Space,
        hits: Vec<Hit>,
    ) -> Result<Ranked<CaptionMatch>, ServiceError> {
        let keys = hits
            .iter()
            .map(|h| {
                h.key
                    .parse::<CaptionKey>()
                    .map_err(|e| ServiceError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let images: Vec<&str> = keys.iter().map(|k| k.image.as_str()).collect();
        let texts = self.catalog.captions_of_many(&images).await?;
        let matches = hits
            .into_iter()
            .zip(keys)
            .map(|(hit, key)| CaptionMatch {
                text: texts
                    .get(key.image.as_str())
                    .and_then(|caps| caps.iter().find(|(o, _)| *o == key.ordinal))
                    .map(|(_, t)| t.clone())
                    .unwrap_or_default(),
                caption: key,
                score: hit.score,
            })
            .collect();
        Ok(Ranked {
            hits: matches,
            model: space.model.clone(),
            query_tags: Vec::new(),
            cutoff: None,
        })
    }
}
