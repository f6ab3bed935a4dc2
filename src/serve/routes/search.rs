//! Caption → images, image → captions, and "more like this": parse and validate, call the
//! service, shape the JSON.

use std::time::Instant;

use axum::{
    body::Bytes,
    extract::{Path, State},
    Json,
};

use super::super::{
    api::{
        terms, CaptionResults, ImageResults, Page, PageParams, TextSearchRequest, MAX_QUERY_CHARS,
    },
    error::ApiError,
    input::{ApiJson, ApiQuery, Form, ImageBody},
    state::AppState,
};
use crate::index::SearchRequest;

/// An image query's page and image bytes. The form stays with the handler: it holds one of the
/// image-request slots, which must last until the request is answered.
fn image_query(params: &PageParams, form: &mut Form) -> Result<(Page, Bytes), ApiError> {
    let page = params.page()?;
    if let Some((name, _)) = form.fields.first() {
        return Err(ApiError::Invalid(format!(
            "unknown field `{name}`: an image query takes only the `image` field (paging and `filter` go in the query string)"
        )));
    }
    let bytes = form
        .image
        .take()
        .ok_or_else(|| ApiError::Invalid("missing the `image` field".into()))?;
    Ok((page, bytes))
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
    let filter = req.filter()?;
    let request = SearchRequest {
        page: page.query(),
        filter: filter.as_ref(),
    };
    let order = req.order.map(Into::into).unwrap_or_default();
    let service = state.service()?;
    let ranked = match (&req.query, &req.terms) {
        (Some(query), None) => {
            let text: String = query.trim().chars().take(MAX_QUERY_CHARS).collect();
            if text.is_empty() {
                return Err(ApiError::Invalid("query must not be empty".into()));
            }
            service
                .search_text(req.model.as_deref(), text, request, order)
                .await?
        }
        (None, Some(terms)) => {
            let terms = terms::validate(terms).map_err(ApiError::Invalid)?;
            service
                .search_terms(req.model.as_deref(), terms, request, order)
                .await?
        }
        _ => {
            return Err(ApiError::Invalid(
                "give `query` (a caption) or `terms` (a weighted query), one of them".into(),
            ))
        }
    };
    Ok(Json(ImageResults::new(ranked, page, started)))
}

#[utoipa::path(post, path = "/v1/search/image", tag = "search", params(PageParams),
    request_body(content = super::super::api::ImageQueryForm, content_type = "multipart/form-data", description = "a multipart `image` field, or a raw body with Content-Type image/*"),
    responses((status = 200, body = CaptionResults), (status = 400, body = super::super::error::ErrorBody), (status = 413, body = super::super::error::ErrorBody), (status = 415, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody), (status = 429, body = super::super::error::ErrorBody), (status = 503, body = super::super::error::ErrorBody)))]
/// Image → ranked captions.
pub async fn search_image(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PageParams>,
    ImageBody(mut form): ImageBody,
) -> Result<Json<CaptionResults>, ApiError> {
    let started = Instant::now();
    let (page, bytes) = image_query(&params, &mut form)?;
    let filter = params.filter()?;
    let ranked = state
        .service()?
        .search_image(
            params.model.as_deref(),
            bytes,
            SearchRequest {
                page: page.query(),
                filter: filter.as_ref(),
            },
        )
        .await?;
    Ok(Json(CaptionResults::new(ranked, page, started)))
}

#[utoipa::path(post, path = "/v1/search/similar", tag = "search", params(PageParams),
    request_body(content = super::super::api::ImageQueryForm, content_type = "multipart/form-data", description = "a multipart `image` field, or a raw body with Content-Type image/*"),
    responses((status = 200, body = ImageResults), (status = 400, body = super::super::error::ErrorBody), (status = 413, body = super::super::error::ErrorBody), (status = 415, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody), (status = 429, body = super::super::error::ErrorBody), (status = 503, body = super::super::error::ErrorBody)))]
/// Image → the most similar images in the collection ("more like this" for an upload).
pub async fn search_similar(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PageParams>,
    ImageBody(mut form): ImageBody,
) -> Result<Json<ImageResults>, ApiError> {
    let started = Instant::now();
    let (page, bytes) = image_query(&params, &mut form)?;
    let filter = params.filter()?;
    let ranked = state
        .service()?
        .search_similar(
            params.model.as_deref(),
            bytes,
            SearchRequest {
                page: page.query(),
                filter: filter.as_ref(),
            },
        )
        .await?;
    Ok(Json(ImageResults::new(ranked, page, started)))
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
    let page = params.page()?;
    let filter = params.filter()?;
    let id = super::images::parse_id(&id)?;
    let ranked = state
        .service()?
        .captions_of(
            params.model.as_deref(),
            &id,
            SearchRequest {
                page: page.query(),
                filter: filter.as_ref(),
            },
        )
        .await?;
    Ok(Json(CaptionResults::new(ranked, page, started)))
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
    let page = params.page()?;
    let filter = params.filter()?;
    let id = super::images::parse_id(&id)?;
    let ranked = state
        .service()?
        .similar(
            params.model.as_deref(),
            &id,
            SearchRequest {
                page: page.query(),
                filter: filter.as_ref(),
            },
        )
        .await?;
    Ok(Json(ImageResults::new(ranked, page, started)))
}
