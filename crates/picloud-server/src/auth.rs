//! `/api/v1/auth`: login, logout, who am I, change my password.
//!
//! A login answers the bearer token and the session's CSRF token, and sets two cookies for the
//! dashboard: `picloud_session` (HttpOnly, SameSite=Strict) and `picloud_csrf` (readable by the
//! dashboard's script, which echoes it in `X-CSRF-Token`). Logout ends the session server-side.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use picloud_core::{Timestamp, User};
use picloud_orchestrator::Platform;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{Authenticated, ClientAddr, JsonBody, CSRF_COOKIE, SESSION_COOKIE};

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
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let login = platform
        .auth()
        .login_from(&body.username, &body.password, client)
        .await?;
    let max_age = platform.auth().session_ttl_ms() / 1000;
    let headers = cookies(&login.token, &login.csrf_token, max_age)?;
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
    caller: Authenticated,
) -> Result<Response, ApiError> {
    platform.auth().logout(&caller.token).await?;
    Ok((StatusCode::NO_CONTENT, cookies("", "", 0)?).into_response())
}

async fn me(
    State(platform): State<Platform>,
    caller: Authenticated,
) -> Result<Json<User>, ApiError> {
    Ok(Json(platform.auth().user(&caller.principal).await?))
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

fn cookies(token: &str, csrf: &str, max_age_secs: i64) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    for value in [
        format!(
            "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}"
        ),
        format!("{CSRF_COOKIE}={csrf}; SameSite=Strict; Path=/; Max-Age={max_age_secs}"),
    ] {
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_str(&value).map_err(ApiError::internal)?,
        );
    }
    Ok(headers)
}
