//! An app's data tab: the data browser for its KV entries (by key, with a prefix) and its
//! documents (by id, or those a filter finds), read through the data service as the caller.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use picloud_core::events::parse_key_prefix;
use picloud_core::services::KvListRequest;
use picloud_core::{AppId, CollectionName};
use picloud_orchestrator::{DocsBrowse, Platform};
use serde::Deserialize;

use super::app::{app_page, Tab};
use super::layout::{pager, time};
use super::session::{AppOf, PageResult, Session};
use crate::data::parse_filter;
use crate::error::ApiError;

pub fn router() -> Router<Platform> {
    Router::new().route("/admin/apps/{app_id}/data", get(tab))
}

/// `?store=kv|docs&collection=…&prefix=…&filter=…&cursor=…`; nothing shown without a collection.
#[derive(Deserialize, Default)]
struct Browse {
    store: Option<String>,
    collection: Option<String>,
    prefix: Option<String>,
    filter: Option<String>,
    cursor: Option<String>,
}

/// `Some` of a field that was filled in.
fn given(field: Option<&String>) -> Option<&str> {
    field.map(String::as_str).filter(|value| !value.is_empty())
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

async fn tab(
    State(platform): State<Platform>,
    AppOf { session, app }: AppOf,
    Query(browse): Query<Browse>,
) -> PageResult {
    let app_id = app.id;
    let docs = browse.store.as_deref() == Some("docs");
    let results = match given(browse.collection.as_ref()) {
        Some(collection) => {
            Some(results(&platform, &session, app_id, collection, docs, &browse).await?)
        }
        None => None,
    };
    let content = html! {
        form.inline method="get" action=(Tab::Data.path(app_id)) {
            div {
                label for="data-store" { "Store" }
                select #data-store name="store" {
                    option value="kv" selected[!docs] { "kv" }
                    option value="docs" selected[docs] { "docs" }
                }
            }
            div { label for="data-collection" { "Collection" } input #data-collection name="collection" required value=[browse.collection.as_deref()] autocomplete="off"; }
            div { label for="data-prefix" { "Key prefix (kv)" } input #data-prefix name="prefix" value=[browse.prefix.as_deref()] autocomplete="off"; }
            div { label for="data-filter" { "Filter (docs, JSON)" } input #data-filter name="filter" value=[browse.filter.as_deref()] placeholder=r#"{"status": "open"}"# autocomplete="off"; }
            button type="submit" { "Show" }
        }
        @if let Some(results) = results { (results) }
    };
    app_page(&platform, &session, &app, Tab::Data, content).await
}

/// The page of entries or documents the form asked for.
async fn results(
    platform: &Platform,
    session: &Session,
    app_id: AppId,
    collection: &str,
    docs: bool,
    browse: &Browse,
) -> Result<Markup, super::session::PageError> {
    let principal = session.principal();
    let name = CollectionName::parse(collection).map_err(ApiError::from)?;
    let cursor = given(browse.cursor.as_ref()).map(str::to_owned);
    if docs {
        let filter = given(browse.filter.as_ref())
            .map(parse_filter)
            .transpose()?;
        let request = DocsBrowse {
            filter,
            limit: 0,
            cursor,
        };
        let page = platform
            .data()
            .docs(principal, app_id, &name, &request)
            .await?;
        let next = format!("{}?store=docs&collection={name}&", Tab::Data.path(app_id));
        return Ok(html! {
            @if page.items.is_empty() { p.muted { "No documents." } }
            @for (id, doc) in &page.items {
                details.document {
                    summary { code { (id) } " · updated " (time(doc.updated_at)) }
                    pre { (pretty(&doc.data)) }
                }
            }
            (pager(&next, page.next_cursor.as_deref()))
        });
    }
    let prefix = given(browse.prefix.as_ref());
    let request = KvListRequest {
        prefix: prefix
            .map(parse_key_prefix)
            .transpose()
            .map_err(ApiError::from)?,
        limit: 0,
        cursor,
    };
    let page = platform
        .data()
        .kv(principal, app_id, &name, &request)
        .await?;
    let next = format!(
        "{}?store=kv&collection={name}&prefix={}&",
        Tab::Data.path(app_id),
        prefix
            .map(|p| utf8_percent_encode(p, NON_ALPHANUMERIC).to_string())
            .unwrap_or_default()
    );
    Ok(html! {
        @if page.items.is_empty() { p.muted { "No entries." } }
        @if !page.items.is_empty() {
            div.scroll {
                table {
                    thead { tr { th { "Key" } th { "Value" } } }
                    tbody {
                        @for (key, value) in &page.items {
                            tr { td.name { code { (key) } } td { pre { (pretty(value)) } } }
                        }
                    }
                }
            }
        }
        (pager(&next, page.next_cursor.as_deref()))
    })
}
