//! [`ApiKeyStore`], written once for both backends.

use async_trait::async_trait;
use picloud_core::{ApiKey, ApiKeyId, Timestamp, UserId};

use crate::db::{Engine, OnConstraint, WriteTx};
use crate::errors::UniqueRule;
use crate::rows::{one, records, scopes_column, ApiKeyCredentialsRow, ApiKeyRow};
use crate::{sql, ApiKeyCredentials, ApiKeyStore, NewApiKey, StoreError, StoreResult};

#[async_trait]
impl<E: Engine> ApiKeyStore for E {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let user_id = key.user_id.to_string();
        let mut tx = self.begin_write().await?;
        let row: Option<ApiKeyRow> = tx
            .fetch_optional(
                sql::INSERT_API_KEY,
                &[
                    ApiKeyId::new().to_string().into(),
                    (&user_id).into(),
                    key.name.as_str().into(),
                    key.prefix.as_str().into(),
                    key.secret_hash.as_slice().into(),
                    scopes_column(&key.scopes).into(),
                    key.app_id.map(|id| id.to_string()).into(),
                    key.expires_at.map(Timestamp::as_millis).into(),
                ],
            )
            .await
            .on_constraint(UniqueRule::ApiKeyPrefix, || {
                "an API key with this prefix exists already".to_owned()
            })?;
        let Some(row) = row else {
            let (users,): (i64,) = one(tx
                .fetch_optional(sql::USER_EXISTS, &[(&user_id).into()])
                .await?)?;
            return Err(StoreError::NotFound(if users == 0 {
                "user"
            } else {
                "app"
            }));
        };
        tx.commit().await?;
        row.try_into()
    }

    async fn get_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = self
            .fetch_optional(sql::GET_API_KEY, &[id.to_string().into()])
            .await?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn api_key_credentials(&self, prefix: &str) -> StoreResult<Option<ApiKeyCredentials>> {
        let row: Option<ApiKeyCredentialsRow> = self
            .fetch_optional(sql::API_KEY_CREDENTIALS, &[prefix.into()])
            .await?;
        row.map(ApiKeyCredentials::try_from).transpose()
    }

    async fn touch_api_key(&self, id: ApiKeyId) -> StoreResult<()> {
        self.write(sql::TOUCH_API_KEY, &[id.to_string().into()])
            .await?;
        Ok(())
    }

    async fn list_api_keys(&self, user_id: Option<UserId>) -> StoreResult<Vec<ApiKey>> {
        let rows: Vec<ApiKeyRow> = self
            .fetch_all(
                sql::LIST_API_KEYS,
                &[user_id.map(|id| id.to_string()).into()],
            )
            .await?;
        records(rows)
    }

    async fn revoke_api_key(&self, id: ApiKeyId) -> StoreResult<bool> {
        let revoked = self
            .write(sql::REVOKE_API_KEY, &[id.to_string().into()])
            .await?;
        Ok(revoked > 0)
    }
}
