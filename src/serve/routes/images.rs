//! The image collection over HTTP: add (durable before 201), describe, fetch bytes, delete.
//! Parse and validate the request, call the service, shape the response.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use super::super::{
    api::{image_url, Created, FileParams, ImageInfo},
    error::ApiError,
    input::{ApiQuery, ImageBody},
    service::Upload,
    state::AppState,
};
use crate::data::{metadata::UserFields, ImageId};

/// Path ids go through the same validation as stored ids, so none can name a file.
pub fn parse_id(raw: &str) -> Result<ImageId, ApiError> {
    ImageId::new(raw).map_err(|e| ApiError::Malformed(e.to_string()))
}

const MAX_CAPTIONS: usize = 32;
const MAX_CAPTION_CHARS: usize = 2000;

#[utoipa::path(post, path = "/v1/images", tag = "images",
    request_body(content = super::super::api::UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = Created), (status = 400, body = super::super::error::ErrorBody), (status = 401, body = super::super::error::ErrorBody), (status = 409, body = super::super::error::ErrorBody), (status = 413, body = super::super::error::ErrorBody), (status = 415, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody)),
    security(("bearer" = [])))]
/// Add an image with captions. Searchable at once; durable before the 201.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    ImageBody(form): ImageBody,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    state.authorize(&headers)?;
    let service = state.service()?;
    let bytes = form
        .image
        .ok_or_else(|| ApiError::Invalid("missing the `image` field".into()))?;
    let mut captions = Vec::new();
    let mut id = None;
    let mut fields = UserFields::default();
    for (name, value) in form.fields {
        match name.as_str() {
            "caption" => {
                let text = value.trim().to_string();
                if text.is_empty() {
                    return Err(ApiError::Invalid("captions must not be empty".into()));
                }
                if text.chars().count() > MAX_CAPTION_CHARS {
                    return Err(ApiError::Invalid(format!(
                        "a caption is limited to {MAX_CAPTION_CHARS} characters"
                    )));
                }
                captions.push(text);
            }
            "id" => {
                id = Some(ImageId::new(value.trim()).map_err(|e| ApiError::Invalid(e.to_string()))?)
            }
            "metadata" => {
                let json: serde_json::Value = serde_json::from_str(&value)
                    .map_err(|e| ApiError::Invalid(format!("metadata is not JSON: {e}")))?;
                fields =
                    UserFields::from_json(&json).map_err(|e| ApiError::Invalid(e.to_string()))?;
            }
            other => {
                return Err(ApiError::Invalid(format!(
                    "unknown form field {other:?} (expected image, caption, id, metadata)"
                )))
            }
        }
    }
    if captions.len() > MAX_CAPTIONS {
        return Err(ApiError::Invalid(format!(
            "at most {MAX_CAPTIONS} captions per image"
        )));
    }
    let id = service
        .add_image(Upload {
            bytes,
            captions,
            id,
            fields,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            image_id: id.to_string(),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/images/{id}", tag = "images", params(("id" = String, Path)),
    responses((status = 200, body = ImageInfo), (status = 400, body = super::super::error::ErrorBody), (status = 404, body = super::super::error::ErrorBody)))]
/// An image's captions and size.
pub async fn get_image(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ImageInfo>, ApiError> {
    let id = parse_id(&id)?;
    let details = state.service()?.image(&id).await?;
    Ok(Json(ImageInfo {
        url: image_url(id.as_str()),
        image_id: id.to_string(),
        captions: details.captions,
        tags: details
            .tags
            .into_iter()
            .map(|t| super::super::api::Tag {
                label: t.label,
                score: t.score,
            })
            .collect(),
        width: details.record.width,
        height: details.record.height,
        dataset: details.record.dataset,
        metadata: details.metadata.into(),
    }))
}

#[utoipa::path(get, path = "/v1/images/{id}/file", tag = "images", params(("id" = String, Path), FileParams),
    responses((status = 200, description = "the image bytes (or a JPEG thumbnail with ?size=)", content_type = "image/*"), (status = 404, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody)))]
/// The stored image, or a thumbnail.
pub async fn get_file(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<FileParams>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    if let Some(size) = params.size {
        if !(16..=1024).contains(&size) {
            return Err(ApiError::Invalid(format!(
                "size must be between 16 and 1024, got {size}"
            )));
        }
    }
    let file = state.service()?.image_file(&id, params.size).await?;
    Ok((
        [
            (header::CONTENT_TYPE, file.content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        Body::from(file.bytes),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/v1/images/{id}", tag = "images", params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 401, body = super::super::error::ErrorBody), (status = 404, body = super::super::error::ErrorBody)),
    security(("bearer" = [])))]
/// Delete an image: gone from results at once, durably.
pub async fn delete_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.authorize(&headers)?;
    let id = parse_id(&id)?;
    state.service()?.delete_image(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
