//! `xmodal serve`: the HTTP service. Layers, outside in: tracing and request ids → metrics →
//! backpressure (429 beyond the in-flight limit) → body limit → handlers (`routes/`: parse,
//! validate, map to JSON and status codes) → service (`service/`: the domain flow) → engine
//! (batching queues, one thread per encoder) → heads → index → catalog.

pub mod api;
pub mod engine;
pub mod error;
mod input;
pub mod openapi;
pub mod query_cache;
pub mod routes;
pub mod service;
pub mod state;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::HeaderValue,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

pub use service::{Service, ServiceConfig};
pub use state::{AppState, Limits};

use error::ApiError;

/// Everything `run` needs besides the service itself.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub api_key: Option<String>,
    pub limits: Limits,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.0.limits.max_body_bytes;
    // each route once: its handler's #[utoipa::path] gives both the axum route and its OpenAPI
    let (api, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::search::search_text))
        .routes(routes!(routes::search::search_image))
        .routes(routes!(routes::search::search_similar))
        .routes(routes!(routes::images::upload))
        .routes(routes!(
            routes::images::get_image,
            routes::images::delete_image
        ))
        .routes(routes!(routes::images::get_file))
        .routes(routes!(routes::search::similar))
        .routes(routes!(routes::search::captions_for_image))
        .routes(routes!(routes::duplicates::duplicates))
        .routes(routes!(routes::embeddings::embeddings))
        .routes(routes!(routes::embeddings::models))
        .layer(middleware::from_fn_with_state(state.clone(), database_gate))
        .layer(middleware::from_fn_with_state(state.clone(), backpressure))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_oversized,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .split_for_parts();
    let (ops, ops_doc) = OpenApiRouter::new()
        .routes(routes!(routes::ops::health))
        .routes(routes!(routes::ops::ready))
        .routes(routes!(routes::ops::metrics))
        .split_for_parts();
    let mut doc = doc;
    doc.merge(ops_doc);
    Router::new()
        .merge(api)
        .merge(ops)
        .route("/", get(routes::web::page))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(error::not_found)
        .layer(middleware::from_fn(record_metrics))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                // a 503 from /ready while loading, or during a database outage, is an answer, not
                // an error; real failures are logged once, by error.rs, with their cause
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// A declared Content-Length over the limit is refused before a byte of the body is read (the
/// body limit still guards chunked uploads while they are read).
async fn refuse_oversized(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(n) if n > state.0.limits.max_body_bytes => ApiError::TooLarge(format!(
            "request body of {n} bytes is over the {}-byte limit",
            state.0.limits.max_body_bytes
        ))
        .into_response(),
        _ => next.run(req).await,
    }
}

/// A bounded number of requests in flight; beyond it, 429 at once rather than a growing queue.
async fn backpressure(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.0.in_flight.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::Overloaded.into_response(),
    }
}

/// While the database is known down, answer 503 at once when it still does not accept
/// connections, instead of letting each request wait out the pool's connection timeout; the
/// first request that finds it reachable goes through and clears the mark.
async fn database_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(service) = state.0.service.get().cloned() else {
        return next.run(req).await;
    };
    if state.0.database_down.load(Relaxed) {
        if !service.catalog.reachable().await {
            return error::ApiError::DatabaseUnavailable(format!(
                "the database at {} does not accept connections; retry shortly",
                service.catalog.location()
            ))
            .into_response();
        }
        state.0.database_down.store(false, Relaxed);
    }
    let response = next.run(req).await;
    if response.extensions().get::<error::DatabaseDown>().is_some() {
        state.0.database_down.store(true, Relaxed);
    }
    response
}

/// Request counts and latency per route and status; server timing as a response header.
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let mut response = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    metrics::counter!("xmodal_http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("xmodal_http_request_duration_seconds", "route" => route).record(seconds);
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={:.2}", seconds * 1e3)) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

/// Histogram buckets: durations ×1.5 from 100 µs, batch sizes in powers of two.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let durations: Vec<f64> = (0..30).map(|i| 1e-4 * 1.5f64.powi(i)).collect();
    let sizes: Vec<f64> = (0..11).map(|i| 2f64.powi(i)).collect();
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &durations)?
        .set_buckets_for_metric(Matcher::Full("xmodal_encoder_batch_size".into()), &sizes)?
        .install_recorder()?;
    metrics::gauge!("xmodal_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Serve until SIGINT/SIGTERM: bind first (so /health answers and /ready says 503), load the
/// service in the background, finish in-flight requests on shutdown, then save the indexes.
pub async fn run(
    server: ServerConfig,
    service: ServiceConfig,
    on_ready: impl FnOnce(&Service, SocketAddr) + Send + 'static,
) -> anyhow::Result<()> {
    let prometheus = install_metrics()?;
    let state = AppState::new(server.api_key.clone(), server.limits.clone(), prometheus);
    let listener = tokio::net::TcpListener::bind(server.addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening; loading models and indexes");
    // on stdout, for scripts and tests that bind port 0
    println!("xmodal listening on http://{addr}/");
    let loader_state = state.clone();
    tokio::spawn(async move {
        match Service::load(&service, &|m| tracing::info!("{m}")).await {
            Ok(s) => {
                let s = Arc::new(s);
                if let Some(root) = s.watched_library() {
                    let watched = s.clone();
                    let result = crate::library::watch::watch(root, move || {
                        let service = watched.clone();
                        async move {
                            match service.rescan_library().await {
                                Ok(report) => tracing::info!("library rescan: {report}"),
                                Err(e) => tracing::error!("library rescan failed: {e:#}"),
                            }
                        }
                    });
                    if let Err(e) = result {
                        tracing::error!("cannot watch {}: {e}", root.display());
                    }
                }
                // ready first, then say so: whoever reads the message may call /ready at once
                let _ = loader_state.0.service.set(s.clone());
                on_ready(&s, addr);
            }
            Err(e) => {
                // a service that can never become ready should not keep answering 503
                tracing::error!("cannot load the service: {e:#}");
                eprintln!("error: cannot load the service: {e:#}");
                std::process::exit(1);
            }
        }
    });
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    if let Some(s) = state.0.service.get() {
        tracing::info!("saving indexes");
        s.save_indexes()?;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
