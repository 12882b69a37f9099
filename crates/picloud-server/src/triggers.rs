//! `/api/v1/admin/apps/{app_id}/triggers[/kv|/docs|/dead_letter]` and `/api/v1/admin/triggers/{trigger_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_core::{AppId, ScriptId, Trigger, TriggerId};
use picloud_orchestrator::{NewDocsTriggerInput, NewKvTriggerInput, Platform};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{script_id_field, Authenticated, JsonBody, Paging, PathIds};
use crate::List;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KvBody {
    script_id: String,
    collection: String,
    key_prefix: Option<String>,
    /// `["set"]`, `["delete"]` or both; both when left out.
    ops: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocsBody {
    script_id: String,
    collection: String,
    /// Any of `"create"`, `"update"`, `"delete"`; all three when left out.
    ops: Option<Vec<String>>,
    /// Field paths one of which a change must touch; every change when left out.
    fields: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadLetterBody {
    script_id: String,
}

/// A KV trigger of `script_id` on `collection`; every op when `ops` is left out. The API and the
/// dashboard both make them here.
pub(crate) fn kv_input(
    script_id: ScriptId,
    collection: String,
    key_prefix: Option<String>,
    ops: Option<Vec<String>>,
) -> NewKvTriggerInput {
    NewKvTriggerInput {
        script_id,
        collection,
        key_prefix,
        ops: ops.unwrap_or_else(|| vec!["set".to_owned(), "delete".to_owned()]),
    }
}

/// A docs trigger of `script_id` on `collection`; every op when `ops` is left out, every change
/// when `fields` is.
pub(crate) fn docs_input(
    script_id: ScriptId,
    collection: String,
    ops: Option<Vec<String>>,
    fields: Option<Vec<String>>,
) -> NewDocsTriggerInput {
    NewDocsTriggerInput {
        script_id,
        collection,
        ops: ops.unwrap_or_else(|| {
            picloud_core::DocsOp::ALL
                .iter()
                .map(|op| op.as_str().to_owned())
                .collect()
        }),
        fields,
    }
}

pub(crate) async fn create_kv(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    JsonBody(body): JsonBody<KvBody>,
) -> Result<(StatusCode, Json<Trigger>), ApiError> {
    let input = kv_input(
        script_id_field(&body.script_id)?,
        body.collection,
        body.key_prefix,
        body.ops,
    );
    let trigger = platform
        .triggers()
        .create_kv(&caller.principal, app_id, input)
        .await?;
    Ok((StatusCode::CREATED, Json(trigger)))
}

pub(crate) async fn create_docs(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    JsonBody(body): JsonBody<DocsBody>,
) -> Result<(StatusCode, Json<Trigger>), ApiError> {
    let input = docs_input(
        script_id_field(&body.script_id)?,
        body.collection,
        body.ops,
        body.fields,
    );
    let trigger = platform
        .triggers()
        .create_docs(&caller.principal, app_id, input)
        .await?;
    Ok((StatusCode::CREATED, Json(trigger)))
}

pub(crate) async fn create_dead_letter(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    JsonBody(body): JsonBody<DeadLetterBody>,
) -> Result<(StatusCode, Json<Trigger>), ApiError> {
    let script_id: ScriptId = script_id_field(&body.script_id)?;
    let trigger = platform
        .triggers()
        .create_dead_letter(&caller.principal, app_id, script_id)
        .await?;
    Ok((StatusCode::CREATED, Json(trigger)))
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    Paging(page): Paging,
) -> Result<Json<List<Trigger>>, ApiError> {
    Ok(Json(
        platform
            .triggers()
            .list(&caller.principal, app_id, &page)
            .await?
            .into(),
    ))
}

pub(crate) async fn remove(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<TriggerId>,
) -> Result<StatusCode, ApiError> {
    platform.triggers().delete(&caller.principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
