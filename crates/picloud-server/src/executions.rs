//! `/api/v1/admin/apps/{app_id}/executions` and `/api/v1/admin/executions/{execution_id}`: the
//! records of what executions did (issue #18); `/api/v1/admin/apps/{app_id}/abandoned-executions`:
//! the sync executions whose callers had gone.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use picloud_core::exec::ExecErrorKind;
use picloud_core::records::{ExecutionFilter, ExecutionRecord, ExecutionSource};
use picloud_core::{AppId, ExecutionId, InputError, Timestamp};
use picloud_orchestrator::tail::TailEnd;
use picloud_orchestrator::{AbandonedExecution, Platform};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{script_id_field, Authenticated, ListParams, Paging, PathIds};
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

/// `?script_id=&outcome=&source=`: the live tail's filter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    script_id: Option<String>,
    outcome: Option<String>,
    source: Option<String>,
}

/// The filter of both queries (a live tail has no time window).
fn filter(
    script_id: Option<&str>,
    outcome: Option<String>,
    source: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<ExecutionFilter, ApiError> {
    Ok(ExecutionFilter {
        script_id: script_id.map(script_id_field).transpose()?,
        outcome: outcome.map(parse_outcome).transpose()?,
        source: source.map(parse_source).transpose()?,
        since: since.map(|t| time("since", t)).transpose()?,
        until: until.map(|t| time("until", t)).transpose()?,
    })
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<List<ExecutionRecord>>, ApiError> {
    let Query(query) = query?;
    let filter = filter(
        query.script_id.as_deref(),
        query.outcome,
        query.source.as_deref(),
        query.since.as_deref(),
        query.until.as_deref(),
    )?;
    let page = ListParams::new(query.limit, query.cursor).page()?;
    Ok(Json(
        platform
            .executions()
            .list(&caller.principal, app_id, &filter, &page)
            .await?
            .into(),
    ))
}

/// The app's sync executions whose callers had gone, newest first.
pub(crate) async fn abandoned(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    Paging(page): Paging,
) -> Result<Json<List<AbandonedExecution>>, ApiError> {
    Ok(Json(
        platform
            .executions()
            .abandoned(&caller.principal, app_id, &page)
            .await?
            .into(),
    ))
}

/// How often an idle live tail sends a comment, so that proxies keep it open and a client that
/// went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The app's records as they finish, as Server-Sent Events: `execution` with a record (as
/// listed), `: keep-alive` comments while idle, and `dropped` before the server closes a stream
/// that read too slowly to keep up.
pub(crate) async fn stream(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, axum::Error>>>, ApiError> {
    let Query(query) = query?;
    let filter = filter(
        query.script_id.as_deref(),
        query.outcome,
        query.source.as_deref(),
        None,
        None,
    )?;
    let tail = platform
        .executions()
        .tail(&caller.principal, app_id)
        .await?;
    let events = futures_util::stream::unfold(Some(tail), move |tail| {
        let filter = filter.clone();
        async move {
            let mut tail = tail?;
            loop {
                match tail.next().await {
                    Ok(record) if filter.matches(&record) => {
                        let event = Event::default().event("execution").json_data(&*record);
                        return Some((event, Some(tail)));
                    }
                    Ok(_) => {}
                    Err(TailEnd::Missed(missed)) => {
                        let message = format!(
                            "this stream read too slowly and missed {missed} records; it is \
                             closed (list them with GET /api/v1/admin/apps/{app_id}/executions)"
                        );
                        let event = Event::default()
                            .event("dropped")
                            .json_data(serde_json::json!({ "message": message }));
                        return Some((event, None));
                    }
                    Err(TailEnd::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
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

fn parse_outcome(value: String) -> Result<String, ApiError> {
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

fn parse_source(value: &str) -> Result<ExecutionSource, ApiError> {
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
