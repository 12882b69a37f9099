//! [`AppStore`], written once for both backends.

use async_trait::async_trait;
use picloud_core::{App, AppId, AppName, AppSlug};

use crate::db::{Engine, OnConstraint, WriteTx};
use crate::errors::UniqueRule;
use crate::paging::Window;
use crate::rows::{one, records, AppRow, UsageRow};
use crate::{
    sql, AppPatch, AppStore, AppUsage, NewApp, Page, PageRequest, StoreError, StoreResult,
};

/// The sentence a user reads when the slug is taken.
fn slug_taken(slug: Option<&AppSlug>) -> impl FnOnce() -> String + '_ {
    move || match slug {
        Some(slug) => format!("an app with the slug '{slug}' already exists"),
        None => "an app with this slug already exists".to_owned(),
    }
}

#[async_trait]
impl<E: Engine> AppStore for E {
    async fn create_app(&self, app: &NewApp) -> StoreResult<App> {
        let id = AppId::new().to_string();
        let mut tx = self.begin_write().await?;
        let row: Option<AppRow> = tx
            .fetch_optional(
                sql::CREATE_APP,
                &[
                    (&id).into(),
                    app.slug.as_str().into(),
                    app.name.as_str().into(),
                    app.expose_errors.into(),
                ],
            )
            .await
            .on_constraint(UniqueRule::AppSlug, slug_taken(Some(&app.slug)))?;
        for usage in [sql::INSERT_APP_USAGE, sql::INSERT_APP_JOB_COUNTS] {
            tx.execute(usage, &[(&id).into()]).await?;
        }
        tx.commit().await?;
        one(row)?.try_into()
    }

    async fn get_app(&self, id: AppId) -> StoreResult<Option<App>> {
        let row: Option<AppRow> = self
            .fetch_optional(sql::GET_APP, &[id.to_string().into()])
            .await?;
        row.map(App::try_from).transpose()
    }

    async fn get_app_by_slug(&self, slug: &str) -> StoreResult<Option<App>> {
        let row: Option<AppRow> = self
            .fetch_optional(sql::GET_APP_BY_SLUG, &[slug.into()])
            .await?;
        row.map(App::try_from).transpose()
    }

    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>> {
        let window = Window::new(page)?;
        let rows: Vec<AppRow> = self
            .fetch_all(
                sql::LIST_APPS,
                &[(&window.after).into(), window.fetch().into()],
            )
            .await?;
        Ok(window.page(records(rows)?, |app: &App| app.id.to_string()))
    }

    async fn update_app(&self, id: AppId, patch: &AppPatch) -> StoreResult<App> {
        let row: Option<AppRow> = self
            .write_optional(
                sql::UPDATE_APP,
                &[
                    id.to_string().into(),
                    patch.slug.as_ref().map(AppSlug::as_str).into(),
                    patch.name.as_ref().map(AppName::as_str).into(),
                    patch.expose_errors.into(),
                ],
            )
            .await
            .on_constraint(UniqueRule::AppSlug, slug_taken(patch.slug.as_ref()))?;
        row.ok_or(StoreError::NotFound("app"))?.try_into()
    }

    async fn delete_app(&self, id: AppId) -> StoreResult<bool> {
        let deleted = self
            .write(sql::DELETE_APP, &[id.to_string().into()])
            .await?;
        Ok(deleted > 0)
    }

    async fn app_usage(&self, id: AppId) -> StoreResult<Option<AppUsage>> {
        let row: Option<UsageRow> = self
            .fetch_optional(sql::APP_USAGE, &[id.to_string().into()])
            .await?;
        Ok(row.map(AppUsage::from))
    }
}
