//! `/api/v1/admin/apps/{app_id}/dead-letters` and
//! `/api/v1/admin/dead-letters/{dead_letter_id}/{replay,resolve}`.

use axum::extract::{Query, State};
use axum::Json;
use picloud_core::{AppId, DeadLetter, DeadLetterId, InputError};
use picloud_orchestrator::{DeadLetterFilter, DeadLetterStatus, Platform};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{script_id_field, Authenticated, ListParams, PathIds};
use crate::List;

/// `?status=unresolved|resolved|all&script_id=…&limit=…&cursor=…`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
    script_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(crate) async fn list(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(app_id): PathIds<AppId>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<List<DeadLetter>>, ApiError> {
    let Query(query) = query?;
    let status = match query.status.as_deref() {
        None | Some("unresolved") => DeadLetterStatus::Unresolved,
        Some("resolved") => DeadLetterStatus::Resolved,
        Some("all") => DeadLetterStatus::All,
        Some(other) => {
            return Err(InputError::new(
                "status",
                format!(
                    "'{}' is not a dead-letter status: use 'unresolved', 'resolved' or 'all'",
                    other.chars().take(64).collect::<String>()
                ),
            )
            .into())
        }
    };
    let filter = DeadLetterFilter {
        status,
        script_id: query
            .script_id
            .as_deref()
            .map(script_id_field)
            .transpose()?,
    };
    let page = ListParams::new(query.limit, query.cursor).page()?;
    Ok(Json(
        platform
            .dead_letters()
            .list(&caller.principal, app_id, &filter, &page)
            .await?
            .into(),
    ))
}

#[derive(Serialize)]
pub(crate) struct ReplayAnswer {
    dead_letter: DeadLetter,
    /// The execution that runs the job again.
    execution_id: String,
}

pub(crate) async fn replay(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<DeadLetterId>,
) -> Result<Json<ReplayAnswer>, ApiError> {
    let replayed = platform
        .dead_letters()
        .replay(&caller.principal, id)
        .await?;
    Ok(Json(ReplayAnswer {
        dead_letter: replayed.dead_letter,
        execution_id: replayed.execution_id.to_string(),
    }))
}

pub(crate) async fn resolve(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds(id): PathIds<DeadLetterId>,
) -> Result<Json<DeadLetter>, ApiError> {
    Ok(Json(
        platform
            .dead_letters()
            .resolve(&caller.principal, id)
            .await?,
    ))
}
