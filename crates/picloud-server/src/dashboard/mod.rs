//! The dashboard: the web UI at `/admin` on the admin origin, served from the binary itself.
//!
//! | module | holds |
//! |---|---|
//! | `app` | `/admin/apps/{id}/…`: an app's page and tabs (scripts, routes, dead letters, executions), an execution |
//! | `editor` | `/admin/scripts/{id}`: the script editor, saving with inline errors, adding a route |
//! | `apps` | `/admin`: the apps, their dead-letter badges, creating one |
//! | `triggers` | an app's triggers tab, and the triggers section of a script's page |
//! | `health` | `/admin/health`: readiness and the metrics' totals, for the instance admin |
//! | `data` | an app's data tab: its KV entries and documents |
//! | `members` | an app's members tab: roles, set by its owners |
//! | `people` | `/admin/api-keys` (the secret shown once), `/admin/users` (for the instance admin) |
//! | `session` | the signed-in caller of a page, a form's CSRF check, the error page; login and logout |
//! | `layout` | the page shell (head, navigation, the CSRF `<meta>`) and the small parts pages share |
//! | `assets` | the embedded CSS and JavaScript (own and vendored), with ETags and gzip |
//!
//! Pages are rendered on the server with [maud]: the templates are Rust, checked when the binary
//! is compiled (a typo in a field is a build error, not a blank page), they escape every value
//! by default (a script named `<img onerror=…>` renders as text; nothing is marked safe), and
//! there are no template files to ship or find at run time. A little JavaScript improves them
//! (htmx, our `dashboard.js`); every form works without it.
//!
//! Every page calls the same services of the [`Platform`] as the admin API, as the signed-in
//! caller, so `picloud_orchestrator::auth::require` decides for both; a page hides the controls
//! the caller's role does not grant, and the server refuses them anyway. A page is signed in by
//! the session cookie through the API's own check ([`Authenticated::check`]): the request must
//! come from the admin origin's pages, and a form that changes state carries the session's CSRF
//! token (its `csrf_token` field, or `X-CSRF-Token` from `dashboard.js`).
//!
//! Every answer carries a Content Security Policy without `unsafe-inline` (no inline script or
//! style anywhere) that forbids framing, and `Referrer-Policy: same-origin`; the admin surface
//! adds `X-Frame-Options: DENY` and `Cache-Control: no-store` to pages.
//!
//! [`Authenticated::check`]: crate::extract::Authenticated::check

mod app;
mod apps;
mod assets;
mod data;
mod editor;
mod health;
mod layout;
mod members;
mod people;
mod session;
mod triggers;

use axum::http::{header, HeaderValue};
use axum::response::{Redirect, Response};
use axum::routing::get;
use axum::{middleware, Router};
use picloud_orchestrator::Platform;

/// The policy of every dashboard answer: our own scripts, styles and images only, no framing,
/// forms posting only to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'; object-src 'none'";

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin") }))
        .merge(session::router())
        .merge(apps::router())
        .merge(app::router())
        .merge(editor::router())
        .merge(people::router())
        .merge(triggers::router())
        .merge(members::router())
        .merge(data::router())
        .merge(health::router())
        .merge(assets::router())
        .layer(middleware::map_response(page_headers))
}

/// The CSP, and a referrer policy that names the page to its own origin only: under the admin
/// surface's `no-referrer`, a browser sends `Origin: null` with a form, which the same-origin
/// check must refuse.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
