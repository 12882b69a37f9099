//! `/api/v1/admin/apps/{app_id}/members`: who holds which role on an app.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use picloud_core::{AppId, Membership, Role, UserId};
use picloud_orchestrator::Platform;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{path_id, Authenticated, JsonBody};
use crate::List;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetBody {
    role: String,
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    Path(app_id): Path<String>,
) -> Result<Json<List<Membership>>, ApiError> {
    let app_id = path_id(&app_id, "app", AppId::parse)?;
    let items = platform.members().list(&caller.principal, app_id).await?;
    Ok(Json(List {
        items,
        next_cursor: None,
    }))
}

pub(crate) async fn set(
    State(platform): State<Platform>,
    caller: Authenticated,
    Path((app_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<SetBody>,
) -> Result<Json<Membership>, ApiError> {
    let app_id = path_id(&app_id, "app", AppId::parse)?;
    let user_id = path_id(&user_id, "user", UserId::parse)?;
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
    Path((app_id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let app_id = path_id(&app_id, "app", AppId::parse)?;
    let user_id = path_id(&user_id, "user", UserId::parse)?;
    platform
        .members()
        .remove(&caller.principal, app_id, user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
