//! Store-level fixtures for the store's conformance suites (the HTTP ones are on
//! [`Admin`](crate::http::Admin), the platform's in `platform`): an app, an endpoint script, a
//! page request, and the `Conflict` a refused write expects.

use std::sync::Arc;

use picloud_core::{App, AppId, AppName, AppSlug, Script, ScriptKind, ScriptName};
use picloud_store::{NewApp, NewScript, PageRequest, Store, StoreError};

/// Creates the app `slug` (named the same), its errors not exposed.
pub async fn app(store: &Arc<dyn Store>, slug: &str) -> anyhow::Result<App> {
    Ok(store
        .create_app(&NewApp {
            slug: AppSlug::parse(slug).expect("a valid slug"),
            name: AppName::parse(slug).expect("a valid app name"),
            expose_errors: false,
        })
        .await?)
}

/// Creates the endpoint script `name` of the app, answering `"hi"`.
pub async fn endpoint(store: &Arc<dyn Store>, app_id: AppId, name: &str) -> anyhow::Result<Script> {
    Ok(store
        .create_script(&NewScript {
            app_id,
            name: ScriptName::parse(name, ScriptKind::Endpoint).expect("a valid script name"),
            kind: ScriptKind::Endpoint,
            source: "\"hi\"".to_owned(),
            imports: Vec::new(),
        })
        .await?)
}

pub fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

/// Expects a `Conflict` and returns its message.
pub fn conflict<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    what: &str,
) -> anyhow::Result<String> {
    match result {
        Err(StoreError::Conflict(message)) => Ok(message),
        other => anyhow::bail!("expected {what} to be refused with Conflict, got {other:?}"),
    }
}
