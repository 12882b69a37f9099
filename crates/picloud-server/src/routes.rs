//! `/api/v1/admin/scripts/{script_id}/routes`, `/api/v1/admin/apps/{app_id}/routes` and
//! `/api/v1/admin/routes/{route_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_core::{
    AppId, DispatchMode, KeptHeaders, Route, RouteId, RouteMethod, RoutePath, ScriptId,
};
use picloud_orchestrator::{NewRouteInput, Platform};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Authenticated, JsonBody, Paging, PathIds};
use crate::List;

#[derive(Deserialize)]
pub(crate) struct CreateBody {
    method: String,
    path: String,
    /// `sync` (the default) or `async` (`202` at once; the dispatcher runs it with retries).
    dispatch_mode: Option<String>,
    /// Redacted request headers an async route keeps in its stored payload (`["authorization"]`).
    #[serde(default)]
    keep_headers: Vec<String>,
}

pub(crate) async fn create(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(script_id): PathIds<ScriptId>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Route>), ApiError> {
    let input = NewRouteInput {
        method: RouteMethod::parse(&body.method)?,
        path: RoutePath::parse(&body.path)?,
        dispatch_mode: body
            .dispatch_mode
            .as_deref()
            .map(DispatchMode::parse)
            .transpose()?
            .unwrap_or_default(),
        keep_headers: KeptHeaders::parse(&body.keep_headers)?,
    };
    let route = platform
        .routes()
        .create(&caller.principal, script_id, input)
        .await?;
    Ok((StatusCode::CREATED, Json(route)))
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    Paging(page): Paging,
) -> Result<Json<List<Route>>, ApiError> {
    Ok(Json(
        platform
            .routes()
            .list(&caller.principal, app_id, &page)
            .await?
            .into(),
    ))
}

pub(crate) async fn remove(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<RouteId>,
) -> Result<StatusCode, ApiError> {
    platform.routes().delete(&caller.principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
