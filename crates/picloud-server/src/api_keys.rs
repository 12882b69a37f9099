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
    let name = ApiKeyName::parse(&body.name)?;
    let scopes = body
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let app_id = body
        .app_id
        .as_deref()
        .map(|id| AppId::parse(id).map_err(unknown_id))
        .transpose()?;
    let input = NewApiKeyInput {
        name,
        scopes,
        app_id,
        expires_at: body.expires_at,
    };
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
