//! Caption → images, image → captions, and "more like this".

use std::time::Instant;

use axum::extract::{Path, State};

use super::super::{
    api::{
        image_url, CaptionHit, CaptionResults, ImageHit, ImageResults, Page, PageParams,
        TextSearchRequest, MAX_QUERY_CHARS,
    },
    error::ApiError,
    input::{ApiJson, ApiQuery, ImageBody},
    service::{Service, Space},
    state::AppState,
};
use crate::{data::ImageId, index::Query};
use axum::Json;

fn query(page: Page) -> Query {
    Query {
        k: page.k,
        offset: page.offset,
        min_score: page.min_score,
    }
}

async fn with_timeout<T>(
    state: &AppState,
    f: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(state.0.limits.encode_timeout, f)
        .await
        .map_err(|_| ApiError::Overloaded)?
}

/// Image hits with their captions, ranked from `offset + 1`.
pub async fn image_hits(
    service: &Service,
    hits: Vec<crate::index::Hit>,
    offset: usize,
) -> Result<Vec<ImageHit>, ApiError> {
    // one catalog query for the whole page, not one per hit
    let keys: Vec<&str> = hits.iter().map(|h| h.key.as_str()).collect();
    let mut captions_by_image = service.catalog.captions_of_many(&keys).await?;
    let mut results = Vec::with_capacity(hits.len());
    for (i, hit) in hits.into_iter().enumerate() {
        let captions = captions_by_image
            .remove(&hit.key)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, text)| text)
            .collect();
        results.push(ImageHit {
            rank: offset + i + 1,
            url: image_url(&hit.key),
            image_id: hit.key,
            score: hit.score,
            captions,
        });
    }
    Ok(results)
}

#[utoipa::path(post, path = "/v1/search/text", tag = "search", request_body = TextSearchRequest,
    responses((status = 200, body = ImageResults), (status = 400, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody), (status = 429, body = super::super::error::ErrorBody), (status = 503, body = super::super::error::ErrorBody)))]
/// Caption → ranked images.
pub async fn search_text(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TextSearchRequest>,
) -> Result<Json<ImageResults>, ApiError> {
    let started = Instant::now();
    let page = Page::new(Some(req.k), Some(req.offset), req.min_score)?;
    let text: String = req.query.trim().chars().take(MAX_QUERY_CHARS).collect();
    if text.is_empty() {
        return Err(ApiError::Invalid("query must not be empty".into()));
    }
    let service = state.service()?;
    let space = service.space(req.model.as_deref())?;
    let features = with_timeout(&state, async {
        Ok(service.engine.text.encode(text).await?)
    })
    .await?;
    let q = space.project_text(features)?;
    let hits = space.images.search(&q, query(page)).await?;
    let results = image_hits(&service, hits, page.offset).await?;
    Ok(Json(ImageResults {
        results,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
        model: space.model.clone(),
    }))
}

#[utoipa::path(post, path = "/v1/search/image", tag = "search", params(PageParams),
    request_body(content = super::super::api::ImageQueryForm, content_type = "multipart/form-data", description = "a multipart `image` field, or a raw body with Content-Type image/*"),
    responses((status = 200, body = CaptionResults), (status = 400, body = super::super::error::ErrorBody), (status = 413, body = super::super::error::ErrorBody), (status = 415, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody), (status = 429, body = super::super::error::ErrorBody), (status = 503, body = super::super::error::ErrorBody)))]
/// Image → ranked captions.
pub async fn search_image(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PageParams>,
    ImageBody(form): ImageBody,
) -> Result<Json<CaptionResults>, ApiError> {
    let started = Instant::now();
    let page = Page::new(params.k, params.offset, params.min_score)?;
    let bytes = form
        .image
        .ok_or_else(|| ApiError::Invalid("missing the `image` field".into()))?;
    let service = state.service()?;
    let space = service.space(params.model.as_deref())?;
    let (encoder, image_queue) = service.image_side()?;
    let encoder = encoder.clone();
    let prepared = state.decode(move || Ok(encoder.prepare(&bytes)?)).await?;
    let features = with_timeout(&state, async { Ok(image_queue.encode(prepared).await?) }).await?;
    let q = space.project_image(features)?;
    let hits = space.captions.search(&q, query(page)).await?;
    Ok(Json(CaptionResults {
        results: caption_hits(&service, hits, page.offset).await?,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
        model: space.model.clone(),
    }))
}

#[utoipa::path(get, path = "/v1/images/{id}/captions", tag = "search", params(("id" = String, Path, description = "image id"), PageParams),
    responses((status = 200, body = CaptionResults), (status = 404, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody)))]
/// Image → ranked captions for an image already in the collection (its stored features; no
/// upload, and works where image features were imported without an encoder).
pub async fn captions_for_image(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<CaptionResults>, ApiError> {
    let started = Instant::now();
    let page = Page::new(params.k, params.offset, params.min_score)?;
    let service = state.service()?;
    let space = service.space(params.model.as_deref())?;
    let (_, q) = stored_image_query(&service, space, &id).await?;
    let hits = space.captions.search(&q, query(page)).await?;
    Ok(Json(CaptionResults {
        results: caption_hits(&service, hits, page.offset).await?,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
        model: space.model.clone(),
    }))
}

/// An indexed image as a query: its stored features projected into `space`.
async fn stored_image_query(
    service: &Service,
    space: &Space,
    raw_id: &str,
) -> Result<(ImageId, Vec<f32>), ApiError> {
    let id = super::images::parse_id(raw_id)?;
    let features = service
        .catalog
        .vector(&service.image_spec.id().0, id.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no image with id {:?}", id.as_str())))?;
    let q = space.project_image(features)?;
    Ok((id, q))
}

/// Caption hits with their texts, ranked from `offset + 1`.
async fn caption_hits(
    service: &Service,
    hits: Vec<crate::index::Hit>,
    offset: usize,
) -> Result<Vec<CaptionHit>, ApiError> {
    let mut parsed = Vec::with_capacity(hits.len());
    for hit in &hits {
        let (image_id, ordinal) = hit
            .key
            .rsplit_once('#')
            .ok_or_else(|| ApiError::Internal(format!("bad caption key {}", hit.key)))?;
        let ordinal: u32 = ordinal
            .parse()
            .map_err(|_| ApiError::Internal(format!("bad caption key {}", hit.key)))?;
        parsed.push((image_id.to_string(), ordinal));
    }
    let images: Vec<&str> = parsed.iter().map(|(i, _)| i.as_str()).collect();
    let captions_by_image = service.catalog.captions_of_many(&images).await?;
    let mut results = Vec::with_capacity(hits.len());
    for (i, (hit, (image_id, ordinal))) in hits.into_iter().zip(&parsed).enumerate() {
        let text = captions_by_image
            .get(image_id)
            .and_then(|caps| caps.iter().find(|(o, _)| o == ordinal))
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        results.push(CaptionHit {
            rank: offset + i + 1,
            caption_id: hit.key.clone(),
            image_id: image_id.to_string(),
            text,
            score: hit.score,
        });
    }
    Ok(results)
}

#[utoipa::path(get, path = "/v1/images/{id}/similar", tag = "search", params(("id" = String, Path, description = "image id"), PageParams),
    responses((status = 200, body = ImageResults), (status = 404, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody)))]
/// Images nearest to an indexed image.
pub async fn similar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ImageResults>, ApiError> {
    let started = Instant::now();
    let page = Page::new(params.k, params.offset, params.min_score)?;
    let service = state.service()?;
    let space = service.space(params.model.as_deref())?;
    let (id, q) = stored_image_query(&service, space, &id).await?;
    // The image itself is (usually) its own nearest neighbour and is left out, so the page is
    // cut from the list without it: ranks 0..offset+k+1 with the image, then skip and take.
    // (Asking the index for `offset` onwards would shift every page after the image's own rank.)
    let hits: Vec<_> = space
        .images
        .search(
            &q,
            Query {
                k: page.offset + page.k + 1,
                offset: 0,
                min_score: page.min_score,
            },
        )
        .await?
        .into_iter()
        .filter(|h| h.key != id.as_str())
        .skip(page.offset)
        .take(page.k)
        .collect();
    let results = image_hits(&service, hits, page.offset).await?;
    Ok(Json(ImageResults {
        results,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
        model: space.model.clone(),
    }))
}
