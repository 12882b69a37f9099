//! `/api/v1/admin/apps`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_core::{App, AppId, AppName, AppSlug};
use picloud_orchestrator::{AppChanges, NewApp, Platform};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{Authenticated, JsonBody, Paging, PathIds};
use crate::List;

#[derive(Deserialize)]
pub(crate) struct CreateBody {
    slug: String,
    name: String,
    /// Whether anonymous callers see a failed execution's message and position (default false).
    #[serde(default)]
    expose_errors: bool,
}

#[derive(Deserialize)]
pub(crate) struct UpdateBody {
    slug: Option<String>,
    name: Option<String>,
    expose_errors: Option<bool>,
}

pub(crate) async fn create(
    State(platform): State<Platform>,
    caller: Authenticated,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<App>), ApiError> {
    let new = NewApp {
        slug: AppSlug::parse(&body.slug)?,
        name: AppName::parse(&body.name)?,
        expose_errors: body.expose_errors,
    };
    let app = platform.apps().create(&caller.principal, &new).await?;
    Ok((StatusCode::CREATED, Json(app)))
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    Paging(page): Paging,
) -> Result<Json<List<App>>, ApiError> {
    Ok(Json(
        platform.apps().list(&caller.principal, &page).await?.into(),
    ))
}

/// One app, with what it holds against its quotas.
#[derive(Serialize)]
pub(crate) struct AppView {
    #[serde(flatten)]
    app: App,
    usage: UsageView,
}

#[derive(Serialize)]
struct UsageView {
    kv_bytes: u64,
    kv_bytes_quota: u64,
    queued_jobs: u64,
    queued_jobs_quota: u64,
}

pub(crate) async fn read(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<AppId>,
) -> Result<Json<AppView>, ApiError> {
    let app = platform.apps().get(&caller.principal, id).await?;
    let (usage, quotas) = platform.apps().usage(&caller.principal, id).await?;
    Ok(Json(AppView {
        app,
        usage: UsageView {
            kv_bytes: usage.kv_bytes,
            kv_bytes_quota: quotas.stored_bytes,
            queued_jobs: usage.queued_jobs,
            queued_jobs_quota: quotas.queued_jobs,
        },
    }))
}

pub(crate) async fn update(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<AppId>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<App>, ApiError> {
    let changes = AppChanges {
        slug: body.slug.as_deref().map(AppSlug::parse).transpose()?,
        name: body.name.as_deref().map(AppName::parse).transpose()?,
        expose_errors: body.expose_errors,
    };
    Ok(Json(
        platform
            .apps()
            .update(&caller.principal, id, changes)
            .await?,
    ))
}

pub(crate) async fn delete(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<AppId>,
) -> Result<StatusCode, ApiError> {
    platform.apps().delete(&caller.principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
