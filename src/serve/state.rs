//! Shared server state: the service once loaded (readiness), limits, auth, backpressure.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::{error::ApiError, service::Service};

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (uploads, image queries).
    pub max_body_bytes: usize,
    /// Requests handled at once before new ones get 429.
    pub max_in_flight: usize,
    /// Image requests (uploads, image queries) whose bodies are held at once before new ones
    /// get 429: with `max_body_bytes` it bounds the memory image bodies can take.
    pub max_image_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 20 << 20,
            max_in_flight: 256,
            max_image_requests: 32,
        }
    }
}

pub struct Shared {
    pub service: OnceLock<Arc<Service>>,
    pub api_key: Option<String>,
    pub limits: Limits,
    pub prometheus: PrometheusHandle,
    pub in_flight: Semaphore,
    /// Image request bodies held at once (see [`Limits::max_image_requests`]).
    pub image_requests: Arc<Semaphore>,
    /// A request met the database down: later ones check it is reachable before waiting on it
    /// (see `serve::database_gate`).
    pub database_down: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Shared>);

impl AppState {
    pub fn new(api_key: Option<String>, limits: Limits, prometheus: PrometheusHandle) -> Self {
        let in_flight = Semaphore::new(limits.max_in_flight);
        let image_requests = limits.max_image_requests;
        Self(Arc::new(Shared {
            service: OnceLock::new(),
            api_key: api_key.filter(|k| !k.is_empty()),
            limits,
            prometheus,
            in_flight,
            image_requests: Arc::new(Semaphore::new(image_requests)),
            database_down: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    pub fn service(&self) -> Result<Arc<Service>, ApiError> {
        self.0.service.get().cloned().ok_or(ApiError::NotReady)
    }

    pub fn ready(&self) -> bool {
        self.0.service.get().is_some()
    }

    /// Writes need `Authorization: Bearer KEY` when a key is configured.
    pub fn authorize(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.0.api_key else {
            return Ok(());
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // constant-time comparison (subtle): do not leak the key's prefix through timing
        match given {
            Some(g) if bool::from(g.as_bytes().ct_eq(key.as_bytes())) => Ok(()),
            _ => Err(ApiError::Unauthorized),
        }
    }
}
