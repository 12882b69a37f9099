//! `/api/v1/auth`: login, logout, who am I.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use picloud_core::{Timestamp, User};
use picloud_orchestrator::Platform;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{Authenticated, JsonBody};

/// The cookie a login sets, for the dashboard (the admin API reads only the bearer header).
pub const SESSION_COOKIE: &str = "picloud_session";

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct LoginAnswer {
    token: String,
    user: User,
    expires_at: Timestamp,
}

async fn login(
    State(platform): State<Platform>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let login = platform
        .auth()
        .login(&body.username, &body.password)
        .await?;
    let max_age = platform.auth().session_ttl_ms() / 1000;
    let cookie = session_cookie(&login.token, max_age)?;
    let answer = LoginAnswer {
        token: login.token,
        user: login.user,
        expires_at: login.expires_at,
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(answer)).into_response())
}

async fn logout(
    State(platform): State<Platform>,
    caller: Authenticated,
) -> Result<Response, ApiError> {
    platform.auth().logout(&caller.token).await?;
    let cookie = session_cookie("", 0)?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

async fn me(
    State(platform): State<Platform>,
    caller: Authenticated,
) -> Result<Json<User>, ApiError> {
    Ok(Json(platform.auth().user(&caller.principal).await?))
}

fn session_cookie(token: &str, max_age_secs: i64) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}"
    ))
    .map_err(ApiError::internal)
}
