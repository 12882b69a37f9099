//! `/healthz` (the process answers), `/readyz` (the database answers): on both surfaces.
//! `/metrics` (Prometheus): on the admin surface only.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use picloud_orchestrator::{Platform, Readiness};
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode};

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

pub fn metrics_router() -> Router<Platform> {
    Router::new().route("/metrics", get(metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(platform): State<Platform>) -> Result<Json<Value>, ApiError> {
    match platform.readiness().await {
        Readiness::Ready => Ok(Json(json!({"status": "ok"}))),
        Readiness::NotReady { reason } => Err(ApiError::new(ErrorCode::Unavailable, reason)),
    }
}

async fn metrics(State(platform): State<Platform>) -> Response {
    let content_type =
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    (
        [(header::CONTENT_TYPE, content_type)],
        platform.metrics().encode(),
    )
        .into_response()
}
