//! `/healthz` (the process answers), `/readyz` (the database answers): on both surfaces.
//! `/metrics` (Prometheus): on the admin surface only, behind a bearer token when
//! [`ServerConfig::metrics_token`](crate::ServerConfig::metrics_token) is set.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use picloud_orchestrator::auth::{secrets_match, token_hash};
use picloud_orchestrator::{Platform, Readiness};
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode};
use crate::extract::bearer_token;

/// The bearer token `/metrics` asks for (`PICLOUD_METRICS_TOKEN`), kept as its SHA-256: the
/// comparison takes as long whatever the length and the leading bytes of what is presented.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken {
    hash: Vec<u8>,
}

impl MetricsToken {
    pub fn new(token: &str) -> Self {
        Self {
            hash: token_hash(token),
        }
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        bearer_token(headers).is_some_and(|given| secrets_match(&self.hash, &token_hash(given)))
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(…)")
    }
}

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `/metrics`; with a `token`, only for requests that present it.
pub fn metrics_router(token: Option<MetricsToken>) -> Router<Platform> {
    Router::new()
        .route("/metrics", get(metrics))
        .layer(Extension(token))
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

async fn metrics(
    State(platform): State<Platform>,
    Extension(token): Extension<Option<MetricsToken>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if token.is_some_and(|token| !token.admits(&headers)) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "send 'Authorization: Bearer <token>' with the metrics token (PICLOUD_METRICS_TOKEN)",
        ));
    }
    let content_type =
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        platform.metrics().scrape().await,
    )
        .into_response())
}
