//! Apps: create, list, read, change (slug, name, `expose_errors`), delete. A change or a deletion
//! takes effect on the public routes at once (the route index is rebuilt for the app). The
//! creator of an app becomes its owner.

use std::sync::Arc;

use picloud_core::{App, AppId, AppName, AppSlug, Capability, Principal, Role};
use picloud_store::{AppPatch, AppQuotas, AppUsage, NewApp, Page, PageRequest, Store};

use crate::auth::require;
use crate::error::{ServiceError, ServiceResult};
use crate::index::RouteIndex;
use crate::page::check_page;

/// Changes to an app; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct AppChanges {
    pub slug: Option<AppSlug>,
    pub name: Option<AppName>,
    pub expose_errors: Option<bool>,
}

#[derive(Clone)]
pub struct AppService {
    store: Arc<dyn Store>,
    index: Arc<RouteIndex>,
}

impl AppService {
    pub(crate) fn new(store: Arc<dyn Store>, index: Arc<RouteIndex>) -> Self {
        Self { store, index }
    }

    #[tracing::instrument(skip_all, fields(slug = %new.slug))]
    pub async fn create(&self, actor: &Principal, new: &NewApp) -> ServiceResult<App> {
        require(actor, Capability::AppCreate)?;
        let _writes = self.index.lock_writes().await;
        let app = self.store.create_app(new).await?;
        if let Err(err) = self
            .store
            .set_membership(app.id, actor.user_id, Role::Owner)
            .await
        {
            // An app nobody owns is one only the instance admin could reach: undo it.
            if let Err(undo) = self.store.delete_app(app.id).await {
                tracing::error!(app_id = %app.id, "cannot remove an app without owner: {undo}");
            }
            return Err(err.into());
        }
        self.index.refresh_app(self.store.as_ref(), app.id).await?;
        tracing::info!(app_id = %app.id, "app created");
        Ok(app)
    }

    /// The apps the actor may read, oldest first.
    pub async fn list(&self, actor: &Principal, page: &PageRequest) -> ServiceResult<Page<App>> {
        check_page(page)?;
        let mut apps = self.store.list_apps(page).await?;
        apps.items
            .retain(|app| actor.can(Capability::AppRead(app.id)));
        Ok(apps)
    }

    pub async fn get(&self, actor: &Principal, id: AppId) -> ServiceResult<App> {
        require(actor, Capability::AppRead(id))?;
        self.store
            .get_app(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("app", id))
    }

    /// What the app holds against its quotas, and the quotas.
    pub async fn usage(
        &self,
        actor: &Principal,
        id: AppId,
    ) -> ServiceResult<(AppUsage, AppQuotas)> {
        require(actor, Capability::AppRead(id))?;
        let usage = self
            .store
            .app_usage(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("app", id))?;
        Ok((usage, *self.store.quotas()))
    }

    #[tracing::instrument(skip_all, fields(app_id = %id))]
    pub async fn update(
        &self,
        actor: &Principal,
        id: AppId,
        changes: AppChanges,
    ) -> ServiceResult<App> {
        require(actor, Capability::AppWrite(id))?;
        let patch = AppPatch {
            slug: changes.slug,
            name: changes.name,
            expose_errors: changes.expose_errors,
        };
        let _writes = self.index.lock_writes().await;
        let app = self
            .store
            .update_app(id, &patch)
            .await
            .map_err(|err| match err {
                picloud_store::StoreError::NotFound(_) => ServiceError::not_found("app", id),
                other => other.into(),
            })?;
        self.index.refresh_app(self.store.as_ref(), id).await?;
        tracing::info!(slug = %app.slug, expose_errors = app.expose_errors, "app updated");
        Ok(app)
    }

    /// Deletes the app with its scripts and routes.
    #[tracing::instrument(skip_all, fields(app_id = %id))]
    pub async fn delete(&self, actor: &Principal, id: AppId) -> ServiceResult<()> {
        require(actor, Capability::AppDelete(id))?;
        let _writes = self.index.lock_writes().await;
        let deleted = self.store.delete_app(id).await?;
        self.index.remove_app(id);
        if !deleted {
            return Err(ServiceError::not_found("app", id));
        }
        tracing::info!("app deleted");
        Ok(())
    }
}
