//! PiCloud's HTTP surface, in axum. Handlers are thin: extract, call one service of the
//! [`Platform`], map the result; every rule lives in `picloud-orchestrator`.
//!
//! | module | holds |
//! |---|---|
//! | [`error`] | [`ApiError`] and the table of error codes |
//! | [`extract`] | the JSON body, the authenticated caller, path ids, paging |
//! | `auth` | `/api/v1/auth/{login,logout,me}`, and the session cookies the dashboard shares |
//! | `dashboard` | the web UI at `/admin` (server-rendered HTML, embedded assets) |
//! | [`admin`] | the admin API's endpoint table ([`admin_endpoints`]): path, method, capability, status |
//! | `apps`, `scripts`, `routes`, `triggers`, `dead_letters`, `members`, `users`, `api_keys` | the admin API's handlers |
//! | `health` | `/healthz`, `/readyz` (both surfaces), `/metrics` (the admin surface) |
//! | `public` | `ANY /{app_slug}/{path…}` or `<slug>.<apps domain>`: the apps' routes |
//! | [`origins`] | which surface and which app a request reaches |
//! | `listen` | the accept loop, and JSON for the requests hyper cannot parse |
//! | `slow_clients` | the header timeout and the minimum body rate |
//! | `layers` | request counting, JSON for axum's own errors, the panic guard, admin headers |
//!
//! Two surfaces, never on one origin (`docs/security.md`): [`admin_router`] (the admin API,
//! auth, the dashboard, `/metrics`) and [`public_router`] (the apps' routes). [`serve`] answers each listener
//! with its surface.

pub mod admin;
mod api_keys;
mod apps;
mod auth;
mod dashboard;
mod data;
mod dead_letters;
pub mod error;
mod executions;
pub mod extract;
mod health;
mod layers;
mod listen;
mod members;
pub mod origins;
mod public;
mod routes;
mod scripts;
mod sdk;
mod slow_clients;
mod triggers;
mod users;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{middleware, Extension, Router};
use picloud_orchestrator::{Page, Platform};
use serde::Serialize;

pub use crate::admin::{admin_endpoints, Endpoint, Need};
pub use crate::error::{ApiError, ErrorCode, EXECUTION_ID_HEADER};
pub use crate::extract::{CSRF_HEADER, SESSION_COOKIE};
pub use crate::health::MetricsToken;
pub use crate::listen::Listeners;
pub use crate::origins::Origins;
pub use crate::slow_clients::HttpTimeouts;

/// The HTTP layer's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Where the admin surface and the apps are served besides their listeners.
    pub origins: Origins,
    /// How slow a client may send its request.
    pub timeouts: HttpTimeouts,
    /// The bearer token `/metrics` asks for; `None`: it answers anyone who reaches the admin
    /// surface.
    pub metrics_token: Option<MetricsToken>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            origins: Origins::default(),
            timeouts: HttpTimeouts::default(),
            metrics_token: None,
        }
    }
}

/// The tenants' surface: the apps' routes, and the health checks.
pub fn public_router(platform: Platform, config: &ServerConfig) -> Router {
    Router::new()
        .merge(health::router())
        .fallback(public::invoke)
        .layer(Extension(Arc::new(config.origins.clone())))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            layers::finish_response,
        ))
        .with_state(platform)
}

/// The surface of the people who run PiCloud: the admin API, auth, the dashboard, metrics and
/// health. It never runs a tenant's route.
pub fn admin_router(platform: Platform, config: &ServerConfig) -> Router {
    Router::new()
        .merge(health::router())
        .merge(health::metrics_router(config.metrics_token.clone()))
        .merge(auth::router())
        .merge(sdk::router())
        .merge(admin::router())
        .merge(dashboard::router())
        .fallback(layers::not_on_the_admin_origin)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::map_response(layers::admin_headers))
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            layers::finish_response,
        ))
        .with_state(platform)
}

/// Serves each listener with its surface until `shutdown` completes, then lets in-flight
/// requests finish. Handlers see the client's address (the login throttle counts failures per
/// address).
pub async fn serve(
    listeners: Listeners,
    platform: Platform,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Live tails never end by themselves: they end first, so the connections can drain.
    let tails = platform.clone();
    let shutdown = async move {
        shutdown.await;
        tails.executions().close_tails();
    };
    let surfaces = listen::Surfaces {
        public: public_router(platform.clone(), &config),
        admin: admin_router(platform, &config),
        origins: Arc::new(config.origins),
        timeouts: config.timeouts,
    };
    listen::run(listeners, surfaces, shutdown).await
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
