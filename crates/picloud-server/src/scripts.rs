//! `/api/v1/admin/apps/{app_id}/scripts`, `/api/v1/admin/scripts/{script_id}` and its test run,
//! `/api/v1/admin/scripts/{script_id}/execute`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use std::collections::BTreeMap;

use picloud_core::exec::{ExecError, HttpRequest, LogLine, ScriptResponse};
use picloud_core::{AppId, ExecutionId, RouteMethod, Script, ScriptId, ScriptKind};
use picloud_orchestrator::{NewScriptInput, Platform, ScriptChanges, ScriptLink};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::extract::{Authenticated, JsonBody, Paging, PathIds};
use crate::List;

#[derive(Deserialize)]
pub(crate) struct CreateBody {
    name: String,
    source: String,
    /// `endpoint` (the default) or `module`.
    kind: Option<String>,
}

/// Every field is optional: what is left out keeps its value.
#[derive(Deserialize)]
pub(crate) struct UpdateBody {
    name: Option<String>,
    source: Option<String>,
    kind: Option<String>,
}

pub(crate) async fn create(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Script>), ApiError> {
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

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    Paging(page): Paging,
) -> Result<Json<List<Script>>, ApiError> {
    Ok(Json(
        platform
            .scripts()
            .list(&caller.principal, app_id, &page)
            .await?
            .into(),
    ))
}

/// A script with the modules it imports and the scripts that import it.
#[derive(Serialize)]
pub(crate) struct ScriptView {
    #[serde(flatten)]
    script: Script,
    imports: Vec<Link>,
    imported_by: Vec<Link>,
}

#[derive(Serialize)]
pub(crate) struct Link {
    id: ScriptId,
    name: String,
}

impl From<ScriptLink> for Link {
    fn from(link: ScriptLink) -> Self {
        Self {
            id: link.id,
            name: link.name,
        }
    }
}

pub(crate) async fn read(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<ScriptId>,
) -> Result<Json<ScriptView>, ApiError> {
    let detail = platform.scripts().get(&caller.principal, id).await?;
    Ok(Json(ScriptView {
        script: detail.script,
        imports: detail.imports.into_iter().map(Link::from).collect(),
        imported_by: detail.imported_by.into_iter().map(Link::from).collect(),
    }))
}

pub(crate) async fn update(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<ScriptId>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<Script>, ApiError> {
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

/// `?force=true` deletes a module that other scripts import.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    force: Option<bool>,
}

pub(crate) async fn delete(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<ScriptId>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(query) = query?;
    platform
        .scripts()
        .delete(&caller.principal, id, query.force.unwrap_or(false))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A test run's request, for the API and the dashboard: `GET` and `/` unless given, the route's
/// `params` and the `query`; `headers` come with their names in lower case.
pub(crate) fn test_request(
    method: Option<&str>,
    path: Option<String>,
    (params, query): (BTreeMap<String, String>, BTreeMap<String, String>),
    headers: BTreeMap<String, String>,
    body: String,
) -> Result<HttpRequest, ApiError> {
    Ok(HttpRequest {
        method: RouteMethod::parse(method.unwrap_or("GET"))?
            .as_str()
            .to_owned(),
        path: path.unwrap_or_else(|| "/".to_owned()),
        params,
        query,
        headers,
        body,
    })
}

/// A test run's request; everything is optional (`GET /` with no body).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecuteBody {
    method: Option<String>,
    path: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The body as text…
    body: Option<String>,
    /// …or as JSON (sent with `content-type: application/json`).
    json: Option<serde_json::Value>,
}

#[derive(Serialize)]
pub(crate) struct ExecuteAnswer {
    execution_id: ExecutionId,
    /// What the script answered, when it did.
    response: Option<ScriptResponse>,
    /// Why it did not.
    error: Option<ExecError>,
    logs: Vec<LogLine>,
    duration_us: u64,
}

/// `POST /api/v1/admin/scripts/{script_id}/execute`: runs the script now, with the caller's
/// authority, and answers 200 with the response or the error, and the log lines, either way.
pub(crate) async fn execute(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<ScriptId>,
    JsonBody(body): JsonBody<ExecuteBody>,
) -> Result<Json<ExecuteAnswer>, ApiError> {
    let mut headers: BTreeMap<String, String> = body
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    let text = match (body.body, body.json) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::InvalidInput,
                "give either 'body' or 'json', not both",
            )
            .with_field("body"))
        }
        (Some(text), None) => text,
        (None, Some(json)) => {
            headers
                .entry("content-type".to_owned())
                .or_insert_with(|| "application/json".to_owned());
            json.to_string()
        }
        (None, None) => String::new(),
    };
    let request = test_request(
        body.method.as_deref(),
        body.path,
        (body.params, body.query),
        headers,
        text,
    )?;
    let run = platform
        .scripts()
        .execute(&caller.principal, id, request)
        .await?;
    let (response, error) = match run.outcome.result {
        Ok(response) => (Some(response), None),
        Err(error) => (None, Some(error)),
    };
    Ok(Json(ExecuteAnswer {
        execution_id: run.execution_id,
        response,
        error,
        logs: run.outcome.logs,
        duration_us: run.outcome.duration_us,
    }))
}
