//! [`RouteStore`], written once for both backends.

use async_trait::async_trait;
use picloud_core::{AppId, Route, RouteId, ScriptId};

use crate::db::{Engine, OnConstraint};
use crate::errors::UniqueRule;
use crate::paging::Window;
use crate::rows::{keep_headers_column, one, records, FingerprintRow, RouteRow, RoutingRow};
use crate::{sql, NewRoute, Page, PageRequest, RouteStore, RoutingEntry, StoreError, StoreResult};

#[async_trait]
impl<E: Engine> RouteStore for E {
    async fn create_route(&self, route: &NewRoute) -> StoreResult<Route> {
        let row: Option<RouteRow> = self
            .write_optional(
                sql::CREATE_ROUTE,
                &[
                    RouteId::new().to_string().into(),
                    route.app_id.to_string().into(),
                    route.script_id.to_string().into(),
                    route.method.as_str().into(),
                    route.path.as_str().into(),
                    route.dispatch_mode.as_str().into(),
                    keep_headers_column(&route.keep_headers).into(),
                ],
            )
            .await
            .on_constraint(UniqueRule::RoutePattern, || {
                format!(
                    "this app already has a route {} {}",
                    route.method, route.path
                )
            })?;
        row.ok_or(StoreError::NotFound("script"))?.try_into()
    }

    async fn get_route(&self, id: RouteId) -> StoreResult<Option<Route>> {
        let row: Option<RouteRow> = self
            .fetch_optional(sql::GET_ROUTE, &[id.to_string().into()])
            .await?;
        row.map(Route::try_from).transpose()
    }

    async fn list_routes(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Route>> {
        let window = Window::new(page)?;
        let rows: Vec<RouteRow> = self
            .fetch_all(
                sql::LIST_ROUTES,
                &[
                    app_id.to_string().into(),
                    (&window.after).into(),
                    window.fetch().into(),
                ],
            )
            .await?;
        Ok(window.page(records(rows)?, |route: &Route| route.id.to_string()))
    }

    async fn list_routes_of_script(&self, script_id: ScriptId) -> StoreResult<Vec<Route>> {
        let rows: Vec<RouteRow> = self
            .fetch_all(sql::LIST_ROUTES_OF_SCRIPT, &[script_id.to_string().into()])
            .await?;
        records(rows)
    }

    async fn delete_route(&self, id: RouteId) -> StoreResult<bool> {
        let deleted = self
            .write(sql::DELETE_ROUTE, &[id.to_string().into()])
            .await?;
        Ok(deleted > 0)
    }

    async fn routing_entries(&self, app_id: Option<AppId>) -> StoreResult<Vec<RoutingEntry>> {
        let rows: Vec<RoutingRow> = self
            .fetch_all(
                sql::ROUTING_ENTRIES,
                &[app_id.map(|id| id.to_string()).into()],
            )
            .await?;
        records(rows)
    }

    async fn routing_fingerprint(&self) -> StoreResult<String> {
        let row: Option<FingerprintRow> =
            self.fetch_optional(sql::ROUTING_FINGERPRINT, &[]).await?;
        Ok(one(row)?.into_string())
    }
}
