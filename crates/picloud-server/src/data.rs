//! The data browser: `/api/v1/admin/apps/{app_id}/kv/{collection}` (KV entries by key, with a
//! prefix and a cursor), `/api/v1/admin/apps/{app_id}/docs/{collection}` (documents by id, or
//! those a filter finds: `?filter=<JSON>` or `POST …/find {"filter": …}`), and the collection's
//! declared indexes, `…/docs/{collection}/indexes[/{path}]`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use picloud_core::docs::StoredDoc;
use picloud_core::events::{parse_key_prefix, KV_MAX_LIST_LIMIT};
use picloud_core::services::KvListRequest;
use picloud_core::{AppId, CollectionName, InputError, Timestamp};
use picloud_orchestrator::{DocIndex, DocsBrowse, Platform};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{Authenticated, JsonBody, PathIds};
use crate::List;

/// `?prefix=&limit=&cursor=`, and for documents `&filter=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BrowseQuery {
    prefix: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    filter: Option<String>,
}

type BrowseParams = Result<Query<BrowseQuery>, axum::extract::rejection::QueryRejection>;

fn params(query: BrowseParams) -> Result<BrowseQuery, ApiError> {
    let Query(query) = query?;
    Ok(query)
}

/// `limit` as a list of the data browser takes it: 1 to 1000; 0 (the default) when left out.
fn limit(value: Option<&str>) -> Result<u32, ApiError> {
    let Some(value) = value else { return Ok(0) };
    value
        .parse::<u32>()
        .ok()
        .filter(|limit| (1..=KV_MAX_LIST_LIMIT).contains(limit))
        .ok_or_else(|| {
            InputError::new(
                "limit",
                format!("the limit must be a whole number from 1 to {KV_MAX_LIST_LIMIT}"),
            )
            .into()
        })
}

/// A KV entry as the browser shows it.
#[derive(Serialize)]
pub(crate) struct Entry {
    key: String,
    value: serde_json::Value,
}

pub(crate) async fn kv(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds((app_id, collection)): PathIds<(AppId, CollectionName)>,
    query: BrowseParams,
) -> Result<Json<List<Entry>>, ApiError> {
    let query = params(query)?;
    if query.filter.is_some() {
        return Err(InputError::new("filter", "KV entries are listed by key: use prefix").into());
    }
    let request = KvListRequest {
        prefix: query.prefix.as_deref().map(parse_key_prefix).transpose()?,
        limit: limit(query.limit.as_deref())?,
        cursor: query.cursor.filter(|cursor| !cursor.is_empty()),
    };
    let page = platform
        .data()
        .kv(&caller.principal, app_id, &collection, &request)
        .await?;
    Ok(Json(page.map(|(key, value)| Entry { key, value }).into()))
}

/// A document as the browser shows it: the SDK's envelope, with RFC 3339 times.
#[derive(Serialize)]
pub(crate) struct Document {
    id: String,
    data: serde_json::Value,
    created_at: Timestamp,
    updated_at: Timestamp,
}

async fn browse_docs(
    platform: &Platform,
    caller: &Authenticated,
    app_id: AppId,
    collection: &CollectionName,
    browse: DocsBrowse,
) -> Result<Json<List<Document>>, ApiError> {
    let page = platform
        .data()
        .docs(&caller.principal, app_id, collection, &browse)
        .await?;
    let page = page.map(|(id, doc): (String, StoredDoc)| Document {
        id,
        data: doc.data,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
    });
    Ok(Json(page.into()))
}

pub(crate) async fn docs(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds((app_id, collection)): PathIds<(AppId, CollectionName)>,
    query: BrowseParams,
) -> Result<Json<List<Document>>, ApiError> {
    let query = params(query)?;
    if query.prefix.is_some() {
        return Err(InputError::new(
            "prefix",
            "documents are listed by id: use filter to choose them",
        )
        .into());
    }
    let filter = query.filter.as_deref().map(parse_filter).transpose()?;
    if filter.is_some() && query.limit.is_some() {
        return Err(InputError::new(
            "limit",
            "a filter says how many documents it wants: put \"$limit\" in the filter",
        )
        .into());
    }
    let browse = DocsBrowse {
        filter,
        limit: limit(query.limit.as_deref())?,
        cursor: query.cursor.filter(|cursor| !cursor.is_empty()),
    };
    browse_docs(&platform, &caller, app_id, &collection, browse).await
}

/// A documents filter given as text (a query parameter, a form field): JSON, or an error that
/// says so.
pub(crate) fn parse_filter(text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text)
        .map_err(|err| InputError::new("filter", format!("the filter is not JSON: {err}")).into())
}

/// `POST …/docs/{collection}/find`: `{"filter": …}`, for filters too long for a URL.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindBody {
    filter: serde_json::Value,
}

pub(crate) async fn find(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds((app_id, collection)): PathIds<(AppId, CollectionName)>,
    JsonBody(body): JsonBody<FindBody>,
) -> Result<Json<List<Document>>, ApiError> {
    let browse = DocsBrowse {
        filter: Some(body.filter),
        ..DocsBrowse::default()
    };
    browse_docs(&platform, &caller, app_id, &collection, browse).await
}

/// A declared index as the API shows it.
#[derive(Serialize)]
pub(crate) struct Index {
    path: String,
    created_at: Timestamp,
}

impl From<DocIndex> for Index {
    fn from(index: DocIndex) -> Self {
        Self {
            path: index.path.to_string(),
            created_at: index.created_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndexBody {
    path: String,
}

pub(crate) async fn declare_index(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds((app_id, collection)): PathIds<(AppId, CollectionName)>,
    JsonBody(body): JsonBody<IndexBody>,
) -> Result<(StatusCode, Json<Index>), ApiError> {
    let index = platform
        .data()
        .declare_index(&caller.principal, app_id, &collection, &body.path)
        .await?;
    Ok((StatusCode::CREATED, Json(index.into())))
}

pub(crate) async fn drop_index(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds((app_id, collection, path)): PathIds<(AppId, CollectionName, String)>,
) -> Result<StatusCode, ApiError> {
    platform
        .data()
        .drop_index(&caller.principal, app_id, &collection, &path)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn indexes(
    State(platform): State<Platform>,
    caller: Authenticated,
    PathIds((app_id, collection)): PathIds<(AppId, CollectionName)>,
) -> Result<Json<List<Index>>, ApiError> {
    let indexes = platform
        .data()
        .indexes(&caller.principal, app_id, &collection)
        .await?;
    Ok(Json(List {
        items: indexes.into_iter().map(Index::from).collect(),
        next_cursor: None,
    }))
}
