//! [`UserStore`], [`SessionStore`] and [`MembershipStore`], written once for both backends.

use async_trait::async_trait;
use picloud_core::{AppId, Membership, Role, Timestamp, User, UserId, Username};

use crate::db::{Engine, OnConstraint, WriteTx};
use crate::errors::UniqueRule;
use crate::paging::Window;
use crate::rows::{count, one, records, span, CredentialsRow, MembershipRow, RoleRow, UserRow};
use crate::{
    sql, MembershipStore, Page, PageRequest, SessionStore, StoreError, StoreResult,
    UserCredentials, UserStore,
};

#[async_trait]
impl<E: Engine> UserStore for E {
    async fn create_user(
        &self,
        username: &Username,
        password_hash: &str,
        is_instance_admin: bool,
    ) -> StoreResult<User> {
        let row: Option<UserRow> = self
            .write_optional(
                sql::CREATE_USER,
                &[
                    UserId::new().to_string().into(),
                    username.as_str().into(),
                    password_hash.into(),
                    is_instance_admin.into(),
                ],
            )
            .await
            .on_constraint(UniqueRule::Username, || {
                format!("the username '{username}' is taken")
            })?;
        one(row)?.try_into()
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = self
            .fetch_optional(sql::GET_USER, &[id.to_string().into()])
            .await?;
        row.map(User::try_from).transpose()
    }

    async fn user_credentials(&self, username: &Username) -> StoreResult<Option<UserCredentials>> {
        let row: Option<CredentialsRow> = self
            .fetch_optional(sql::USER_CREDENTIALS, &[username.as_str().into()])
            .await?;
        row.map(UserCredentials::try_from).transpose()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let (users,): (i64,) = one(self.fetch_optional(sql::COUNT_USERS, &[]).await?)?;
        count(users)
    }

    async fn set_user_disabled(&self, id: UserId, disabled: bool) -> StoreResult<User> {
        let row: Option<UserRow> = self
            .write_optional(
                sql::SET_USER_DISABLED,
                &[id.to_string().into(), disabled.into()],
            )
            .await?;
        row.ok_or(StoreError::NotFound("user"))?.try_into()
    }

    async fn list_users(&self, page: &PageRequest) -> StoreResult<Page<User>> {
        let window = Window::new(page)?;
        let rows: Vec<UserRow> = self
            .fetch_all(
                sql::LIST_USERS,
                &[(&window.after).into(), window.fetch().into()],
            )
            .await?;
        Ok(window.page(records(rows)?, |user: &User| user.id.to_string()))
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> StoreResult<User> {
        let id = id.to_string();
        let mut tx = self.begin_write().await?;
        let row: Option<UserRow> = tx
            .fetch_optional(sql::SET_PASSWORD, &[(&id).into(), password_hash.into()])
            .await?;
        let row = row.ok_or(StoreError::NotFound("user"))?;
        tx.execute(sql::DELETE_SESSIONS_OF_USER, &[(&id).into()])
            .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn set_instance_admin(&self, id: UserId, is_instance_admin: bool) -> StoreResult<User> {
        let row: Option<UserRow> = self
            .write_optional(
                sql::SET_INSTANCE_ADMIN,
                &[id.to_string().into(), is_instance_admin.into()],
            )
            .await?;
        row.ok_or(StoreError::NotFound("user"))?.try_into()
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<bool> {
        let deleted = self
            .write(sql::DELETE_USER, &[id.to_string().into()])
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_sessions_of_user(&self, id: UserId) -> StoreResult<u64> {
        Ok(self
            .write(sql::DELETE_SESSIONS_OF_USER, &[id.to_string().into()])
            .await?)
    }
}

#[async_trait]
impl<E: Engine> SessionStore for E {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: UserId,
        ttl_ms: i64,
    ) -> StoreResult<Timestamp> {
        let expires_at: Option<(i64,)> = self
            .write_optional(
                sql::CREATE_SESSION,
                &[
                    token_hash.into(),
                    user_id.to_string().into(),
                    span(ttl_ms).into(),
                ],
            )
            .await?;
        let (expires_at,) = expires_at.ok_or(StoreError::NotFound("user"))?;
        Ok(Timestamp::from_millis(expires_at))
    }

    async fn session_user(&self, token_hash: &[u8]) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = self
            .fetch_optional(sql::SESSION_USER, &[token_hash.into()])
            .await?;
        row.map(User::try_from).transpose()
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<bool> {
        let deleted = self
            .write(sql::DELETE_SESSION, &[token_hash.into()])
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_expired_sessions(&self) -> StoreResult<u64> {
        Ok(self.write(sql::DELETE_EXPIRED_SESSIONS, &[]).await?)
    }
}

#[async_trait]
impl<E: Engine> MembershipStore for E {
    async fn set_membership(
        &self,
        app_id: AppId,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<Membership> {
        let (app_id, user_id) = (app_id.to_string(), user_id.to_string());
        let mut tx = self.begin_write().await?;
        let upserted: Option<(String,)> = tx
            .fetch_optional(
                sql::UPSERT_MEMBERSHIP,
                &[(&app_id).into(), (&user_id).into(), role.as_str().into()],
            )
            .await?;
        if upserted.is_none() {
            let (apps,): (i64,) = one(tx
                .fetch_optional(sql::APP_EXISTS, &[(&app_id).into()])
                .await?)?;
            return Err(StoreError::NotFound(if apps == 0 { "app" } else { "user" }));
        }
        let row: Option<MembershipRow> = tx
            .fetch_optional(sql::GET_MEMBERSHIP, &[(&app_id).into(), (&user_id).into()])
            .await?;
        tx.commit().await?;
        one(row)?.try_into()
    }

    async fn remove_membership(&self, app_id: AppId, user_id: UserId) -> StoreResult<bool> {
        let deleted = self
            .write(
                sql::DELETE_MEMBERSHIP,
                &[app_id.to_string().into(), user_id.to_string().into()],
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn list_members(&self, app_id: AppId) -> StoreResult<Vec<Membership>> {
        let rows: Vec<MembershipRow> = self
            .fetch_all(sql::LIST_MEMBERS, &[app_id.to_string().into()])
            .await?;
        records(rows)
    }

    async fn memberships_of_user(&self, user_id: UserId) -> StoreResult<Vec<(AppId, Role)>> {
        let rows: Vec<RoleRow> = self
            .fetch_all(sql::MEMBERSHIPS_OF_USER, &[user_id.to_string().into()])
            .await?;
        records(rows)
    }
}
