//! Per-app memberships: who holds which [`Role`] on an app. Reading the list needs only to see
//! the app; changing it needs `AppManageMembers` (owners). An app always keeps one owner: the
//! last owner cannot be removed or demoted.

use std::sync::Arc;

use picloud_core::{AppId, Capability, Membership, Principal, Role, UserId};
use picloud_store::{Store, StoreError};

use crate::auth::require;
use crate::error::{ServiceError, ServiceResult};

#[derive(Clone)]
pub struct MemberService {
    store: Arc<dyn Store>,
}

impl MemberService {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn list(&self, actor: &Principal, app_id: AppId) -> ServiceResult<Vec<Membership>> {
        require(actor, Capability::AppRead(app_id))?;
        self.app_exists(app_id).await?;
        Ok(self.store.list_members(app_id).await?)
    }

    #[tracing::instrument(skip_all, fields(app_id = %app_id, user_id = %user_id, role = %role))]
    pub async fn set(
        &self,
        actor: &Principal,
        app_id: AppId,
        user_id: UserId,
        role: Role,
    ) -> ServiceResult<Membership> {
        require(actor, Capability::AppManageMembers(app_id))?;
        if role != Role::Owner {
            self.keep_an_owner(app_id, user_id).await?;
        }
        let membership = self
            .store
            .set_membership(app_id, user_id, role)
            .await
            .map_err(|err| match err {
                StoreError::NotFound("app") => ServiceError::not_found("app", app_id),
                StoreError::NotFound(_) => ServiceError::not_found("user", user_id),
                other => other.into(),
            })?;
        tracing::info!("membership set");
        Ok(membership)
    }

    #[tracing::instrument(skip_all, fields(app_id = %app_id, user_id = %user_id))]
    pub async fn remove(
        &self,
        actor: &Principal,
        app_id: AppId,
        user_id: UserId,
    ) -> ServiceResult<()> {
        require(actor, Capability::AppManageMembers(app_id))?;
        self.keep_an_owner(app_id, user_id).await?;
        if !self.store.remove_membership(app_id, user_id).await? {
            return Err(ServiceError::NotFound(format!(
                "the user '{user_id}' is no member of this app"
            )));
        }
        tracing::info!("membership removed");
        Ok(())
    }

    /// Refuses a change that would leave the app without an owner.
    async fn keep_an_owner(&self, app_id: AppId, changed: UserId) -> ServiceResult<()> {
        let members = self.store.list_members(app_id).await?;
        let owners: Vec<_> = members.iter().filter(|m| m.role == Role::Owner).collect();
        if owners.len() == 1 && owners[0].user_id == changed {
            return Err(ServiceError::Conflict(
                "this is the app's last owner; make someone else an owner first".to_owned(),
            ));
        }
        Ok(())
    }

    async fn app_exists(&self, app_id: AppId) -> ServiceResult<()> {
        match self.store.get_app(app_id).await? {
            Some(_) => Ok(()),
            None => Err(ServiceError::not_found("app", app_id)),
        }
    }
}
