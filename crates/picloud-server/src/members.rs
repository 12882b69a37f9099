//! `/api/v1/admin/apps/{app_id}/members`: who holds which role on an app.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_core::{AppId, Membership, Role, UserId};
use picloud_orchestrator::Platform;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Authenticated, JsonBody, PathIds};
use crate::List;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetBody {
    role: String,
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
) -> Result<Json<List<Membership>>, ApiError> {
    let items = platform.members().list(&caller.principal, app_id).await?;
    Ok(Json(List {
        items,
        next_cursor: None,
    }))
}

pub(crate) async fn set(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds((app_id, user_id)): PathIds<(AppId, UserId)>,
    JsonBody(body): JsonBody<SetBody>,
) -> Result<Json<Membership>, ApiError> {
    let role = Role::parse(&body.role)?;
    Ok(Json(
        platform
            .members()
            .set(&caller.principal, app_id, user_id, role)
            .await?,
    ))
}

pub(crate) async fn remove(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds((app_id, user_id)): PathIds<(AppId, UserId)>,
) -> Result<StatusCode, ApiError> {
    platform
        .members()
        .remove(&caller.principal, app_id, user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
