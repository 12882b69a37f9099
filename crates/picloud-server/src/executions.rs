//! `/api/v1/admin/apps/{app_id}/executions` and `/api/v1/admin/executions/{execution_id}`: the
//! records of what executions did (issue #18).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use picloud_core::exec::ExecErrorKind;
use picloud_core::records::{ExecutionFilter, ExecutionRecord, ExecutionSource};
use picloud_core::{AppId, ExecutionId, InputError, Timestamp};
use picloud_orchestrator::Platform;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::extract::{script_id_field, Authenticated, ListParams, PathIds};
use crate::List;

/// `?script_id=&outcome=&source=&since=&until=&limit=&cursor=`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    script_id: Option<String>,
    outcome: Option<String>,
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<List<ExecutionRecord>>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::new(ErrorCode::InvalidInput, r.body_text()))?;
    let filter = ExecutionFilter {
        script_id: query
            .script_id
            .as_deref()
            .map(script_id_field)
            .transpose()?,
        outcome: query.outcome.map(outcome).transpose()?,
        source: query.source.as_deref().map(source).transpose()?,
        since: query
            .since
            .as_deref()
            .map(|t| time("since", t))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|t| time("until", t))
            .transpose()?,
    };
    let page = ListParams::new(query.limit, query.cursor).page()?;
    Ok(Json(
        platform
            .executions()
            .list(&caller.principal, app_id, &filter, &page)
            .await?
            .into(),
    ))
}

/// Every recorded attempt of one execution.
#[derive(Serialize)]
pub(crate) struct Attempts {
    execution_id: ExecutionId,
    attempts: Vec<ExecutionRecord>,
}

pub(crate) async fn read(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(execution_id): PathIds<ExecutionId>,
) -> Result<Json<Attempts>, ApiError> {
    let attempts = platform
        .executions()
        .get(&caller.principal, execution_id)
        .await?;
    Ok(Json(Attempts {
        execution_id,
        attempts,
    }))
}

fn outcome(value: String) -> Result<String, ApiError> {
    if value == "ok"
        || value == ExecutionFilter::ANY_ERROR
        || ExecErrorKind::parse(&value).is_some()
    {
        return Ok(value);
    }
    let kinds: Vec<&str> = ExecErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    Err(InputError::new(
        "outcome",
        format!(
            "'{}' is not an outcome: use ok, {} (any error), {}",
            shown(&value),
            ExecutionFilter::ANY_ERROR,
            kinds.join(", ")
        ),
    )
    .into())
}

fn source(value: &str) -> Result<ExecutionSource, ApiError> {
    ExecutionSource::parse(value).ok_or_else(|| {
        let sources: Vec<&str> = ExecutionSource::ALL.iter().map(|s| s.as_str()).collect();
        InputError::new(
            "source",
            format!(
                "'{}' is not a source: use {}",
                shown(value),
                sources.join(", ")
            ),
        )
        .into()
    })
}

fn time(field: &'static str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(value).map_err(|_| {
        InputError::new(
            field,
            format!(
                "'{}' is not a time: use RFC 3339, such as 2026-12-06T10:00:00Z",
                shown(value)
            ),
        )
        .into()
    })
}

/// At most 64 characters of what the caller sent, to quote it back.
fn shown(value: &str) -> String {
    value.chars().take(64).collect()
}
