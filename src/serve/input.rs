//! Extractors that turn malformed input into our JSON errors instead of axum's plain-text ones.

use axum::body::Bytes;
use axum::{
    extract::{
        multipart::MultipartError,
        rejection::{JsonRejection, QueryRejection},
        FromRequest, FromRequestParts, Multipart, Request,
    },
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;

use tokio::sync::OwnedSemaphorePermit;

use super::{error::ApiError, state::AppState};

/// `Json<T>` with our error mapping: bad syntax → 400, wrong shape or types → 422, wrong
/// Content-Type → 415, over the body limit → 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::Invalid(e.body_text())),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::Malformed(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMedia(
                "expected Content-Type: application/json".into(),
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(body_error(e.body_text())),
            Err(other) => Err(ApiError::Malformed(other.body_text())),
        }
    }
}

fn body_error(text: String) -> ApiError {
    if text.to_ascii_lowercase().contains("length limit") || text.contains("too large") {
        ApiError::TooLarge("request body over the size limit".into())
    } else {
        ApiError::Malformed(text)
    }
}

/// `Query<T>` with our error mapping (bad values → 422).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::Invalid(e.body_text()))
            }
            Err(e) => Err(ApiError::Malformed(e.body_text())),
        }
    }
}

/// An uploaded form: the image bytes plus any text fields.
pub struct Form {
    pub image: Option<Bytes>,
    pub fields: Vec<(String, String)>,
    /// One of the image-request slots, held while the form (its body) lives.
    _slot: OwnedSemaphorePermit,
}

/// Bodies up to this size are read without an image-request slot: a JSON call this small holds
/// little (256 in flight: 64 MiB); larger ones may carry images and take a slot, as uploads do.
pub const SMALL_BODY: u64 = 256 << 10;

/// An image-request slot for a JSON body that may carry images (`POST /v1/embeddings`): taken
/// before the body is read when it is declared over [`SMALL_BODY`] or not declared (429 when
/// none is free), so such bodies are bounded like image uploads.
pub struct LargeBodySlot(pub Option<OwnedSemaphorePermit>);

impl FromRequestParts<AppState> for LargeBodySlot {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n <= SMALL_BODY) {
            return Ok(Self(None));
        }
        let slot = state
            .0
            .image_requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)?;
        Ok(Self(Some(slot)))
    }
}

fn multipart_error(e: MultipartError) -> ApiError {
    body_error(e.body_text())
}

/// A `multipart/form-data` body, or a raw body whose Content-Type is `image/*`. At most
/// `max_image_requests` are held at once (429 beyond), so image bodies take bounded memory.
pub struct ImageBody(pub Form);

impl FromRequest<AppState> for ImageBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let slot = state
            .0
            .image_requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)?;
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(req, state)
                .await
                .map_err(|e| ApiError::Malformed(e.body_text()))?;
            let mut form = Form {
                image: None,
                fields: Vec::new(),
                _slot: slot,
            };
            while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
                let name = field.name().unwrap_or_default().to_string();
                if name == "image" {
                    if form.image.is_some() {
                        return Err(ApiError::Invalid("send one image field".into()));
                    }
                    form.image = Some(field.bytes().await.map_err(multipart_error)?);
                } else {
                    let text = field.text().await.map_err(multipart_error)?;
                    form.fields.push((name, text));
                }
            }
            Ok(Self(form))
        } else if content_type.starts_with("image/") || content_type == "application/octet-stream" {
            let bytes = Bytes::from_request(req, state)
                .await
                .map_err(|e| body_error(e.body_text()))?;
            Ok(Self(Form {
                image: Some(bytes),
                fields: Vec::new(),
                _slot: slot,
            }))
        } else {
            Err(ApiError::UnsupportedMedia(format!(
                "expected multipart/form-data or an image/* body, got {:?}",
                if content_type.is_empty() {
                    "nothing"
                } else {
                    &content_type
                }
            )))
        }
    }
}
