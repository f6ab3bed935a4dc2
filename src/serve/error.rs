//! The one place where errors become HTTP: every failure a handler can meet is an [`ApiError`],
//! answered as `{"error": {"code", "message"}}` with a stable snake_case code clients can switch on.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{engine::EngineError, service::ServiceError};
use crate::{
    data::{catalog::is_transient, CatalogError},
    encode::{EncodeError, ImageError},
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// An embeddings call named a space this server does not have (OpenAI's 404).
    #[error("{0}")]
    ModelNotFound(String),
    #[error("an image with id {0:?} already exists")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("this server serves imported image features and has no image encoder: image queries and uploads are unavailable (search by caption, or by an indexed image's id)")]
    NoImageEncoder,
    #[error("missing or wrong API key")]
    Unauthorized,
    #[error("the service is at capacity; retry shortly")]
    Overloaded,
    #[error("the service is starting: models and indexes are loading")]
    NotReady,
    #[error("{0}")]
    Unavailable(String),
    /// The database is down or unreachable: the request was fine; retry shortly.
    #[error("{0}")]
    DatabaseUnavailable(String),
    /// A write found no space left (disk or quota full).
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Internal(String),
}

/// Marks a response that met the database down (read by `serve::database_gate`).
#[derive(Debug, Clone, Copy)]
pub struct DatabaseDown;

/// The error body, for OpenAPI.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case.
    pub code: &'static str,
    /// A human sentence; free to change.
    pub message: String,
    /// OpenAI's error class (`invalid_request_error`, `authentication_error`,
    /// `rate_limit_error`, `server_error`), so OpenAI's clients show the message.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::ModelNotFound(_) => (StatusCode::NOT_FOUND, "model_not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "already_exists"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMedia(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            // the request is fine; this deployment cannot compute image features
            Self::NoImageEncoder => (StatusCode::UNPROCESSABLE_ENTITY, "no_image_encoder"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            Self::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::DatabaseUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            // the request was fine; the server's disk is full: retry once space is freed
            Self::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match status {
            // states, not bugs: the client is told what to do, the operator sees metrics
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE => {
                tracing::debug!(error = %self, "request refused")
            }
            s if s.is_server_error() => tracing::error!(error = %self, "request failed"),
            _ => {}
        }
        let kind = match status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code,
                    message: self.to_string(),
                    kind,
                },
            }),
        )
            .into_response();
        if matches!(self, Self::DatabaseUnavailable(_)) {
            response.extensions_mut().insert(DatabaseDown);
        }
        if matches!(
            self,
            Self::Overloaded | Self::NotReady | Self::Unavailable(_) | Self::DatabaseUnavailable(_)
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Unsupported => Self::UnsupportedMedia(e.to_string()),
            ImageError::TooLarge { .. } | ImageError::OverBudget { .. } => {
                Self::TooLarge(e.to_string())
            }
            // a valid image this service cannot use: say why, as a 422
            ImageError::AspectRatio { .. } => Self::Invalid(e.to_string()),
            ImageError::Empty | ImageError::Decode(_) => Self::Malformed(e.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded(_) | EngineError::TimedOut(_) => Self::Overloaded,
            EngineError::NoImageEncoder => Self::NoImageEncoder,
            EngineError::Image(img) => img.into(),
            EngineError::Encode(ref enc) => match enc.as_ref() {
                EncodeError::Image(img) => ImageError::clone(img).into(),
                _ => Self::Internal(e.to_string()),
            },
            EngineError::Stopped(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match &e {
            // the database is down or busy: the request was fine, try again shortly
            CatalogError::Db(db) if is_transient(db) => Self::DatabaseUnavailable(format!(
                "the database is unavailable ({e}); retry shortly"
            )),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(message) => Self::NotFound(message),
            ServiceError::Invalid(message) => Self::Invalid(message),
            ServiceError::Conflict(id) => Self::Conflict(id.to_string()),
            ServiceError::UnknownModel { .. } => Self::Invalid(e.to_string()),
            ServiceError::Engine(e) => e.into(),
            ServiceError::Catalog(e) => e.into(),
            ServiceError::Index(ref index) if index.is_transient() => Self::DatabaseUnavailable(
                format!("the database is unavailable ({e}); retry shortly"),
            ),
            ServiceError::OutOfSpace { .. } => Self::InsufficientStorage(e.to_string()),
            ServiceError::Index(_)
            | ServiceError::Projection(_)
            | ServiceError::Storage { .. }
            | ServiceError::Task(_)
            | ServiceError::Corrupt(_) => Self::Internal(e.to_string()),
        }
    }
}

/// Fallback for unknown routes: JSON 404 like every other error.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}
