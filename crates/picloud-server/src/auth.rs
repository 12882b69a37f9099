//! `/api/v1/auth`: login, logout, who am I, change my password.
//!
//! A login answers the bearer token and the session's CSRF token, and sets the session cookie for
//! the dashboard: `HttpOnly`, `SameSite=Strict`; over TLS `__Host-picloud_session` with `Secure`
//! and `Path=/`, over plain HTTP `picloud_session` twice, with `Path=/api/` and with
//! `Path=/admin` (the dashboard's pages): tenants' paths on the same host never receive it, as
//! `api` and `admin` are reserved slugs. No cookie holds the CSRF token: the dashboard keeps it from the login
//! answer or `GET /api/v1/auth/me`, which no other origin can read, and echoes it in
//! `X-CSRF-Token`. Logout ends the session server-side and clears the cookies.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use picloud_core::{Timestamp, User};
use picloud_orchestrator::{Login, Platform};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{
    is_https, Authenticated, ClientAddr, JsonBody, SECURE_SESSION_COOKIE, SESSION_COOKIE,
};

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/auth/password", post(change_password))
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct LoginAnswer {
    token: String,
    csrf_token: String,
    user: User,
    expires_at: Timestamp,
}

async fn login(
    State(platform): State<Platform>,
    ClientAddr(client): ClientAddr,
    request_headers: HeaderMap,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let (login, headers) = start_session(
        &platform,
        client,
        &request_headers,
        &body.username,
        &body.password,
    )
    .await?;
    let answer = LoginAnswer {
        token: login.token,
        csrf_token: login.csrf_token,
        user: login.user,
        expires_at: login.expires_at,
    };
    Ok((headers, Json(answer)).into_response())
}

async fn logout(
    State(platform): State<Platform>,
    request_headers: HeaderMap,
    caller: Authenticated,
) -> Result<Response, ApiError> {
    let headers = end_session(&platform, &caller, &request_headers).await?;
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// Signs `username` in from `client` (the login throttle counts both): the login, and the
/// cookies that carry its session to the API and the dashboard. The API's login and the
/// dashboard's both open sessions here.
pub(crate) async fn start_session(
    platform: &Platform,
    client: Option<std::net::IpAddr>,
    request_headers: &HeaderMap,
    username: &str,
    password: &str,
) -> Result<(Login, HeaderMap), ApiError> {
    let login = platform
        .auth()
        .login_from(username, password, client)
        .await?;
    let max_age = platform.auth().session_ttl_ms() / 1000;
    let headers = cookies(&login.token, max_age, is_https(request_headers))?;
    Ok((login, headers))
}

/// Ends the caller's session server-side; the headers that clear its cookies.
pub(crate) async fn end_session(
    platform: &Platform,
    caller: &Authenticated,
    request_headers: &HeaderMap,
) -> Result<HeaderMap, ApiError> {
    platform.auth().logout(&caller.token).await?;
    cookies("", 0, is_https(request_headers))
}

#[derive(Serialize)]
struct MeAnswer {
    #[serde(flatten)]
    user: User,
    /// The session's CSRF token, for a dashboard page that reloaded; `null` for an API key.
    csrf_token: Option<String>,
}

async fn me(
    State(platform): State<Platform>,
    caller: Authenticated,
) -> Result<Json<MeAnswer>, ApiError> {
    let user = platform.auth().user(&caller.principal).await?;
    let csrf_token = (!caller
        .token
        .starts_with(picloud_orchestrator::auth::API_KEY_MARK))
    .then(|| picloud_orchestrator::auth::csrf_token(&caller.token));
    Ok(Json(MeAnswer { user, csrf_token }))
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// The caller's own password; every session of the user ends, this one included.
async fn change_password(
    State(platform): State<Platform>,
    caller: Authenticated,
    JsonBody(body): JsonBody<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    platform
        .auth()
        .change_own_password(
            &caller.principal,
            &body.current_password,
            &body.new_password,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The session cookies (`token`, or cleared with an empty token and no age) for a request that
/// came over TLS (`https`) or not: over TLS one host-only cookie for every path, over plain HTTP
/// one for the API's paths and one for the dashboard's, and no other path. Also clears
/// `picloud_csrf`, the JS-readable cookie that versions before 1.1.2 set.
fn cookies(token: &str, max_age_secs: i64, https: bool) -> Result<HeaderMap, ApiError> {
    let sessions = if https {
        vec![format!(
            "{SECURE_SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age_secs}"
        )]
    } else {
        ["/api/", "/admin"]
            .iter()
            .map(|path| {
                format!(
                    "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age_secs}"
                )
            })
            .collect()
    };
    let mut headers = HeaderMap::new();
    let old_csrf = "picloud_csrf=; SameSite=Strict; Path=/; Max-Age=0".to_owned();
    for value in sessions.into_iter().chain([old_csrf]) {
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_str(&value).map_err(ApiError::internal)?,
        );
    }
    Ok(headers)
}
