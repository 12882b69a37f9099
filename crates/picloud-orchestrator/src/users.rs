//! Users, for the instance admin: create, list, read, disable, promote, set a password, delete.
//! An admin cannot disable, demote or delete itself, so an instance cannot lose its last way in
//! through the API (the CLI's `picloud user passwd` is the way back for a locked-out admin).

use std::sync::Arc;

use picloud_core::{Capability, Principal, User, UserId, Username};
use picloud_store::{Page, PageRequest, Store, StoreError};

use crate::auth::{require, Auth};
use crate::error::{ServiceError, ServiceResult};
use crate::page::check_page;

/// Changes to a user; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub disabled: Option<bool>,
    pub is_instance_admin: Option<bool>,
}

#[derive(Clone)]
pub struct UserService {
    store: Arc<dyn Store>,
    auth: Auth,
}

impl UserService {
    pub(crate) fn new(store: Arc<dyn Store>, auth: Auth) -> Self {
        Self { store, auth }
    }

    #[tracing::instrument(skip_all, fields(username = %username))]
    pub async fn create(
        &self,
        actor: &Principal,
        username: &Username,
        password: &str,
        is_instance_admin: bool,
    ) -> ServiceResult<User> {
        require(actor, Capability::InstanceAdmin)?;
        let user = self
            .auth
            .create_user(username, password, is_instance_admin)
            .await?;
        tracing::info!(user_id = %user.id, "user created");
        Ok(user)
    }

    pub async fn list(&self, actor: &Principal, page: &PageRequest) -> ServiceResult<Page<User>> {
        require(actor, Capability::InstanceAdmin)?;
        check_page(page)?;
        Ok(self.store.list_users(page).await?)
    }

    pub async fn get(&self, actor: &Principal, id: UserId) -> ServiceResult<User> {
        require(actor, Capability::InstanceAdmin)?;
        self.load(id).await
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn update(
        &self,
        actor: &Principal,
        id: UserId,
        changes: UserChanges,
    ) -> ServiceResult<User> {
        require(actor, Capability::InstanceAdmin)?;
        let mut user = self.load(id).await?;
        let locks_out_self = id == actor.user_id
            && (changes.disabled == Some(true) || changes.is_instance_admin == Some(false));
        if locks_out_self {
            return Err(ServiceError::Conflict(
                "you cannot disable or demote yourself; ask another instance admin".to_owned(),
            ));
        }
        if let Some(disabled) = changes.disabled {
            user = self
                .store
                .set_user_disabled(id, disabled)
                .await
                .map_err(|err| missing(err, id))?;
            if disabled {
                self.store.delete_sessions_of_user(id).await?;
            }
        }
        if let Some(flag) = changes.is_instance_admin {
            user = self
                .store
                .set_instance_admin(id, flag)
                .await
                .map_err(|err| missing(err, id))?;
        }
        tracing::info!(
            disabled = user.disabled,
            is_instance_admin = user.is_instance_admin,
            "user updated"
        );
        Ok(user)
    }

    /// Sets a user's password and ends its sessions.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn set_password(
        &self,
        actor: &Principal,
        id: UserId,
        password: &str,
    ) -> ServiceResult<()> {
        require(actor, Capability::InstanceAdmin)?;
        self.auth.set_password(id, password).await?;
        tracing::info!("password changed");
        Ok(())
    }

    /// Deletes the user with its sessions, memberships and API keys.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn delete(&self, actor: &Principal, id: UserId) -> ServiceResult<()> {
        require(actor, Capability::InstanceAdmin)?;
        if id == actor.user_id {
            return Err(ServiceError::Conflict(
                "you cannot delete yourself; ask another instance admin".to_owned(),
            ));
        }
        if !self.store.delete_user(id).await? {
            return Err(ServiceError::not_found("user", id));
        }
        tracing::info!("user deleted");
        Ok(())
    }

    async fn load(&self, id: UserId) -> ServiceResult<User> {
        self.store
            .get_user(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", id))
    }
}

fn missing(err: StoreError, id: UserId) -> ServiceError {
    match err {
        StoreError::NotFound(_) => ServiceError::not_found("user", id),
        other => other.into(),
    }
}
