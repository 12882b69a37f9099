//! PiCloud's HTTP surface, in axum. Handlers are thin: extract, call one service of the
//! [`Platform`], map the result; every rule lives in `picloud-orchestrator`.
//!
//! | module | holds |
//! |---|---|
//! | [`error`] | [`ApiError`] and the table of error codes |
//! | [`extract`] | the JSON body, the authenticated caller, path ids, paging |
//! | `auth` | `/api/v1/auth/{login,logout,me}` |
//! | [`admin`] | the admin API's route table ([`admin_routes`]): path, method, capability, status |
//! | `apps`, `scripts`, `routes`, `triggers`, `dead_letters`, `members`, `users`, `api_keys` | the admin API's handlers |
//! | `health` | `/healthz`, `/readyz`, `/metrics` |
//! | `public` | `ANY /{app_slug}/{path…}`: the apps' routes (the router's fallback) |
//! | `layers` | request counting, JSON for axum's own errors, the panic guard |

pub mod admin;
mod api_keys;
mod apps;
mod auth;
mod dead_letters;
pub mod error;
pub mod extract;
mod health;
mod layers;
mod members;
mod public;
mod routes;
mod scripts;
mod triggers;
mod users;

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::{middleware, Router};
use picloud_orchestrator::{Page, Platform};
use serde::Serialize;

pub use crate::admin::{admin_routes, Need, RouteSpec};
pub use crate::error::{ApiError, ErrorCode, EXECUTION_ID_HEADER};
pub use crate::extract::{CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE};

/// The HTTP layer's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Every endpoint, with its layers.
pub fn router(platform: Platform, config: ServerConfig) -> Router {
    Router::new()
        .merge(health::router())
        .merge(auth::router())
        .merge(admin::router())
        .fallback(public::invoke)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            layers::finish_response,
        ))
        .with_state(platform)
}

/// Serves `listener` until `shutdown` completes, then lets in-flight requests finish. Handlers
/// see the client's address (the login throttle counts failures per address).
pub async fn serve(
    listener: tokio::net::TcpListener,
    platform: Platform,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(platform, config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// A page of a list, as every list endpoint answers it.
#[derive(Debug, Serialize)]
pub struct List<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> From<Page<T>> for List<T> {
    fn from(page: Page<T>) -> Self {
        Self {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}
