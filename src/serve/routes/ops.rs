//! Liveness, readiness and metrics.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use std::time::Duration;

use super::super::{error::ApiError, state::AppState};
use crate::data::catalog::Backend;

#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Status)))]
/// 200 while the process is alive.
pub async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub model: String,
    /// Names of the heads this server can search with (`model` in requests); the first is the default.
    pub models: Vec<String>,
    pub images: usize,
    pub captions: usize,
    /// Where encoders and heads run: `cpu` or `cuda:N`.
    pub device: String,
    /// The feature sets this server computes: encoder and the options that change its outputs.
    pub features: FeatureSets,
    /// Whether writes get through: false after one found no space (a full disk), until one
    /// succeeds again (reads and searches go on either way).
    pub writable: bool,
}

#[derive(Serialize, ToSchema)]
pub struct FeatureSets {
    pub image: FeatureInfo,
    pub text: FeatureInfo,
}

#[derive(Serialize, ToSchema)]
pub struct FeatureInfo {
    /// The feature set's id (a hash of the encoder's files and options).
    pub feature_set: String,
    pub encoder: String,
    /// What runs the encoder: `candle` (xmodal's own code) or `onnxruntime` (an ONNX directory).
    pub backend: String,
    /// Options that change the outputs (pooling, preprocessing, …).
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

impl From<&crate::features::FeatureSpec> for FeatureInfo {
    fn from(spec: &crate::features::FeatureSpec) -> Self {
        Self {
            feature_set: spec.id().0,
            encoder: spec.encoder.clone(),
            backend: spec
                .options
                .get("backend")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("candle")
                .to_string(),
            options: spec.options.clone(),
        }
    }
}

#[utoipa::path(get, path = "/ready", tag = "ops", responses((status = 200, body = Readiness), (status = 503, body = super::super::error::ErrorBody)))]
/// 200 once models and indexes are loaded, 503 before.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let service = state.service()?;
    // a replica whose database does not answer cannot serve: let the load balancer know
    if service.catalog.backend() == Backend::Postgres {
        let ping = async {
            // a server that refuses connections is down: no need to wait for the ping
            if !service.catalog.reachable().await {
                return false;
            }
            let ping = tokio::time::timeout(Duration::from_secs(2), service.catalog.ping());
            matches!(ping.await, Ok(Ok(())))
        };
        if !ping.await {
            return Err(ApiError::DatabaseUnavailable(
                "the database does not answer".into(),
            ));
        }
    }
    Ok(Json(Readiness {
        status: "ready",
        model: service.spaces[0].model.clone(),
        models: service.spaces.iter().map(|s| s.name.clone()).collect(),
        images: service.spaces[0].images.count().await,
        captions: service.spaces[0].captions.count().await,
        device: service.device.clone(),
        features: FeatureSets {
            image: (&service.image_spec).into(),
            text: (&service.text_spec).into(),
        },
        writable: service.writable(),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
/// Prometheus metrics.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(free) = state.0.service.get().and_then(|s| s.free_bytes()) {
        metrics::gauge!("xmodal_data_dir_free_bytes").set(free as f64);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.0.prometheus.render(),
    )
}
