//! `/api/v1/admin/users`: the instance admin manages users.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_core::{User, UserId, Username};
use picloud_orchestrator::{Platform, UserChanges};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Authenticated, JsonBody, Paging, PathIds};
use crate::List;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    username: String,
    password: String,
    #[serde(default)]
    is_instance_admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBody {
    disabled: Option<bool>,
    is_instance_admin: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordBody {
    password: String,
}

pub(crate) async fn create(
    State(platform): State<Platform>,
    caller: Authenticated,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let username = Username::parse(&body.username)?;
    let user = platform
        .users()
        .create(
            &caller.principal,
            &username,
            &body.password,
            body.is_instance_admin,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    Paging(page): Paging,
) -> Result<Json<List<User>>, ApiError> {
    Ok(Json(
        platform
            .users()
            .list(&caller.principal, &page)
            .await?
            .into(),
    ))
}

pub(crate) async fn read(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<UserId>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(platform.users().get(&caller.principal, id).await?))
}

pub(crate) async fn update(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<UserId>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<User>, ApiError> {
    let changes = UserChanges {
        disabled: body.disabled,
        is_instance_admin: body.is_instance_admin,
    };
    Ok(Json(
        platform
            .users()
            .update(&caller.principal, id, changes)
            .await?,
    ))
}

pub(crate) async fn set_password(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<UserId>,
    JsonBody(body): JsonBody<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    platform
        .users()
        .set_password(&caller.principal, id, &body.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<UserId>,
) -> Result<StatusCode, ApiError> {
    platform.users().delete(&caller.principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
