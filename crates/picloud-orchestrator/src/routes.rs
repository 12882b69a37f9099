//! Routes: bind an HTTP method and path pattern of an app to one of its endpoint scripts. The
//! rules:
//! - the target must be an endpoint (a module is a library, not a handler);
//! - `keep_headers` (redacted request headers kept in the stored payload) is for async routes: a
//!   sync request's headers are never stored;
//! - a pattern the app's routes cannot hold beside the others (same method, overlapping) is a
//!   conflict, found in the route index before the row is written;
//! - creating or deleting a route rebuilds the app's routes in the index at once.

use std::sync::Arc;

use picloud_core::{
    AppId, Capability, DispatchMode, InputError, KeptHeaders, Principal, Route, RouteId,
    RouteMethod, RoutePath, ScriptId, ScriptKind,
};
use picloud_store::{NewRoute, Page, PageRequest, Store, StoreError};

use crate::auth::{require, require_on};
use crate::error::{ServiceError, ServiceResult};
use crate::index::RouteIndex;
use crate::page::check_page;

/// A new route, parsed.
#[derive(Debug, Clone)]
pub struct NewRouteInput {
    pub method: RouteMethod,
    pub path: RoutePath,
    pub dispatch_mode: DispatchMode,
    pub keep_headers: KeptHeaders,
}

#[derive(Clone)]
pub struct RouteService {
    store: Arc<dyn Store>,
    index: Arc<RouteIndex>,
}

impl RouteService {
    pub(crate) fn new(store: Arc<dyn Store>, index: Arc<RouteIndex>) -> Self {
        Self { store, index }
    }

    #[tracing::instrument(skip_all, fields(script_id = %script_id))]
    pub async fn create(
        &self,
        actor: &Principal,
        script_id: ScriptId,
        input: NewRouteInput,
    ) -> ServiceResult<Route> {
        let script = self
            .store
            .get_script(script_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("script", script_id))?;
        require_on(
            actor,
            Capability::AppWrite(script.app_id),
            "script",
            script_id,
        )?;
        if script.kind == ScriptKind::Module {
            return Err(InputError::new(
                "script",
                format!(
                    "'{}' is a module script; a route needs an endpoint script",
                    script.name
                ),
            )
            .into());
        }
        if input.dispatch_mode == DispatchMode::Sync && !input.keep_headers.is_empty() {
            return Err(InputError::new(
                "keep_headers",
                "a sync request's headers are never stored, so there is nothing to keep: \
                 keep_headers is for async routes",
            )
            .into());
        }
        let _writes = self.index.lock_writes().await;
        self.index
            .check_new_route(script.app_id, input.method, &input.path)?;
        let new = NewRoute {
            app_id: script.app_id,
            script_id,
            method: input.method,
            path: input.path,
            dispatch_mode: input.dispatch_mode,
            keep_headers: input.keep_headers,
        };
        let route = self
            .store
            .create_route(&new)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => ServiceError::not_found("script", script_id),
                other => other.into(),
            })?;
        self.index
            .refresh_app(self.store.as_ref(), route.app_id)
            .await?;
        tracing::info!(route_id = %route.id, app_id = %route.app_id, method = %route.method, path = %route.path, "route created");
        Ok(route)
    }

    /// The routes of an app, oldest first.
    pub async fn list(
        &self,
        actor: &Principal,
        app_id: AppId,
        page: &PageRequest,
    ) -> ServiceResult<Page<Route>> {
        require(actor, Capability::AppRead(app_id))?;
        check_page(page)?;
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
        Ok(self.store.list_routes(app_id, page).await?)
    }

    #[tracing::instrument(skip_all, fields(route_id = %id))]
    pub async fn delete(&self, actor: &Principal, id: RouteId) -> ServiceResult<()> {
        let route = self
            .store
            .get_route(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("route", id))?;
        require_on(actor, Capability::AppWrite(route.app_id), "route", id)?;
        let _writes = self.index.lock_writes().await;
        if !self.store.delete_route(id).await? {
            return Err(ServiceError::not_found("route", id));
        }
        self.index
            .refresh_app(self.store.as_ref(), route.app_id)
            .await?;
        tracing::info!(app_id = %route.app_id, "route deleted");
        Ok(())
    }
}
