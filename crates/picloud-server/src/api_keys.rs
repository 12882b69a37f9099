//! `/api/v1/admin/api-keys`: the caller's API keys. The secret is in the creation answer only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_core::{ApiKey, ApiKeyId, ApiKeyName, AppId, Scope, Timestamp};
use picloud_orchestrator::{NewApiKeyInput, Platform};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{unknown_id, Authenticated, JsonBody, PathIds};
use crate::List;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    scopes: Vec<String>,
    app_id: Option<String>,
    expires_at: Option<Timestamp>,
}

/// A new key as the admin API's body or the dashboard's form names it: its name, its scopes,
/// the app it is bound to (none: every app its owner may reach) and when it expires.
pub(crate) fn key_input<'a>(
    name: &str,
    scopes: impl Iterator<Item = &'a str>,
    app_id: Option<&str>,
    expires_at: Option<Timestamp>,
) -> Result<NewApiKeyInput, ApiError> {
    Ok(NewApiKeyInput {
        name: ApiKeyName::parse(name)?,
        scopes: scopes.map(Scope::parse).collect::<Result<Vec<_>, _>>()?,
        app_id: app_id
            .map(|id| AppId::parse(id).map_err(unknown_id))
            .transpose()?,
        expires_at,
    })
}

#[derive(Serialize)]
pub(crate) struct Created {
    #[serde(flatten)]
    key: ApiKey,
    /// The whole key, `pk_<prefix>_<secret>`: shown this once, never again.
    secret: String,
}

pub(crate) async fn create(
    State(platform): State<Platform>,
    caller: Authenticated,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let input = key_input(
        &body.name,
        body.scopes.iter().map(String::as_str),
        body.app_id.as_deref(),
        body.expires_at,
    )?;
    let created = platform.api_keys().create(&caller.principal, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            key: created.key,
            secret: created.secret,
        }),
    ))
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
) -> Result<Json<List<ApiKey>>, ApiError> {
    let items = platform.api_keys().list(&caller.principal).await?;
    Ok(Json(List {
        items,
        next_cursor: None,
    }))
}

pub(crate) async fn revoke(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<ApiKeyId>,
) -> Result<StatusCode, ApiError> {
    platform.api_keys().revoke(&caller.principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
