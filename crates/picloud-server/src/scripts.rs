//! `/api/v1/admin/apps/{app_id}/scripts` and `/api/v1/admin/scripts/{script_id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use picloud_core::{AppId, Script, ScriptId, ScriptKind};
use picloud_orchestrator::{NewScriptInput, Platform, ScriptChanges};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{path_id, Authenticated, JsonBody, Paging};
use crate::List;

pub fn router() -> Router<Platform> {
    Router::new()
        .route(
            "/api/v1/admin/apps/{app_id}/scripts",
            get(list).post(create),
        )
        .route(
            "/api/v1/admin/scripts/{script_id}",
            get(read).put(update).delete(delete),
        )
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    source: String,
    /// `endpoint` (the default) or `module`.
    kind: Option<String>,
}

/// Every field is optional: what is left out keeps its value.
#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    source: Option<String>,
    kind: Option<String>,
}

async fn create(
    State(platform): State<Platform>,
    caller: Authenticated,
    Path(app_id): Path<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Script>), ApiError> {
    let app_id = path_id(&app_id, "app", AppId::parse)?;
    let kind = body
        .kind
        .as_deref()
        .map(ScriptKind::parse)
        .transpose()?
        .unwrap_or_default();
    let input = NewScriptInput {
        name: body.name,
        kind,
        source: body.source,
    };
    let script = platform
        .scripts()
        .create(&caller.principal, app_id, input)
        .await?;
    Ok((StatusCode::CREATED, Json(script)))
}

async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    Path(app_id): Path<String>,
    Paging(page): Paging,
) -> Result<Json<List<Script>>, ApiError> {
    let app_id = path_id(&app_id, "app", AppId::parse)?;
    Ok(Json(
        platform
            .scripts()
            .list(&caller.principal, app_id, &page)
            .await?
            .into(),
    ))
}

async fn read(
    State(platform): State<Platform>,
    caller: Authenticated,
    Path(script_id): Path<String>,
) -> Result<Json<Script>, ApiError> {
    let id = path_id(&script_id, "script", ScriptId::parse)?;
    Ok(Json(platform.scripts().get(&caller.principal, id).await?))
}

async fn update(
    State(platform): State<Platform>,
    caller: Authenticated,
    Path(script_id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<Script>, ApiError> {
    let id = path_id(&script_id, "script", ScriptId::parse)?;
    let kind = body.kind.as_deref().map(ScriptKind::parse).transpose()?;
    let changes = ScriptChanges {
        name: body.name,
        kind,
        source: body.source,
    };
    Ok(Json(
        platform
            .scripts()
            .update(&caller.principal, id, changes)
            .await?,
    ))
}

async fn delete(
    State(platform): State<Platform>,
    caller: Authenticated,
    Path(script_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&script_id, "script", ScriptId::parse)?;
    platform.scripts().delete(&caller.principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
