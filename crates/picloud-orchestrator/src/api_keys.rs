//! API keys: `pk_<prefix>_<secret>`.
//!
//! - The prefix (8 characters of `a-z0-9`) is visible in lists and finds the key; the secret is
//!   32 random bytes (base64url). The store keeps only the SHA-256 of the whole key — a secret
//!   this random needs no slow hash — and the comparison runs in constant time.
//! - A key holds its scopes, intersected with what its user may do *when the key is used*, and,
//!   when bound to an app, nothing outside it (see [`picloud_core::auth`]).
//! - `last_used_at` is written at most once a minute per key, so a busy key does not turn every
//!   request into a database write.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use picloud_core::{
    ApiKey, ApiKeyId, ApiKeyName, AppId, Capability, Credential, InputError, Principal, Scope,
    Timestamp,
};
use picloud_store::{NewApiKey, Store, StoreError};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::auth::{principal_of, require, require_on, secrets_match};
use crate::error::{ServiceError, ServiceResult};

/// How every API key begins; a bearer token that does not is a session token.
pub const KEY_MARK: &str = "pk_";
const PREFIX_LEN: usize = 8;
const PREFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// `last_used_at` is refreshed when older than this.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A new key as its creator asks for it.
#[derive(Debug, Clone)]
pub struct NewApiKeyInput {
    pub name: ApiKeyName,
    pub scopes: Vec<Scope>,
    pub app_id: Option<AppId>,
    pub expires_at: Option<Timestamp>,
}

/// A key just made: the record and the secret, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

#[derive(Clone)]
pub struct ApiKeyService {
    store: Arc<dyn Store>,
}

impl ApiKeyService {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Creates a key of the caller's own. A key bound to an app needs the caller to see the app.
    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        actor: &Principal,
        input: NewApiKeyInput,
    ) -> ServiceResult<CreatedApiKey> {
        require(actor, Capability::ApiKeysManage)?;
        if input.scopes.is_empty() {
            return Err(InputError::new("scopes", "give the key at least one scope").into());
        }
        let mut scopes = input.scopes;
        scopes.sort();
        scopes.dedup();
        if let Some(app_id) = input.app_id {
            require(actor, Capability::AppRead(app_id))?;
        }
        if input
            .expires_at
            .is_some_and(|at| at.as_millis() <= Timestamp::now().as_millis())
        {
            return Err(InputError::new("expires_at", "the expiry must be in the future").into());
        }
        let (prefix, secret) = new_key();
        let key = self
            .store
            .create_api_key(&NewApiKey {
                user_id: actor.user_id,
                name: input.name,
                prefix,
                secret_hash: key_hash(&secret),
                scopes,
                app_id: input.app_id,
                expires_at: input.expires_at,
            })
            .await
            .map_err(|err| match (err, input.app_id) {
                (StoreError::NotFound("app"), Some(app)) => ServiceError::not_found("app", app),
                (other, _) => other.into(),
            })?;
        tracing::info!(key_id = %key.id, prefix = %key.prefix, "API key created");
        Ok(CreatedApiKey { key, secret })
    }

    /// The caller's keys; the instance admin sees everyone's.
    pub async fn list(&self, actor: &Principal) -> ServiceResult<Vec<ApiKey>> {
        require(actor, Capability::ApiKeysManage)?;
        let owner = (!actor.can(Capability::InstanceAdmin)).then_some(actor.user_id);
        Ok(self.store.list_api_keys(owner).await?)
    }

    /// Revokes one of the caller's keys (the instance admin: anyone's). Someone else's key is
    /// "not found", like a key that never was.
    #[tracing::instrument(skip_all, fields(key_id = %id))]
    pub async fn revoke(&self, actor: &Principal, id: ApiKeyId) -> ServiceResult<()> {
        require(actor, Capability::ApiKeysManage)?;
        let key = self
            .store
            .get_api_key(id)
            .await?
            .filter(|key| key.user_id == actor.user_id || actor.can(Capability::InstanceAdmin))
            .ok_or_else(|| ServiceError::not_found("API key", id))?;
        if let Some(app) = key.app_id {
            require_on(actor, Capability::AppRead(app), "API key", id)?;
        }
        if !self.store.revoke_api_key(id).await? && !key.revoked {
            return Err(ServiceError::not_found("API key", id));
        }
        tracing::info!("API key revoked");
        Ok(())
    }
}

/// The principal an API key stands for, or `None` (unknown, revoked, expired, wrong secret,
/// user disabled).
pub(crate) async fn authenticate(
    store: &dyn Store,
    presented: &str,
) -> ServiceResult<Option<Principal>> {
    let Some(prefix) = prefix_of(presented) else {
        return Ok(None);
    };
    let Some(found) = store.api_key_credentials(prefix).await? else {
        return Ok(None);
    };
    if !secrets_match(&found.secret_hash, &key_hash(presented)) {
        return Ok(None);
    }
    let key = found.key;
    let Some(user) = store.get_user(key.user_id).await?.filter(|u| !u.disabled) else {
        return Ok(None);
    };
    let now = Timestamp::now().as_millis();
    if key
        .last_used_at
        .is_none_or(|at| now - at.as_millis() >= TOUCH_EVERY_MS)
    {
        if let Err(err) = store.touch_api_key(key.id).await {
            tracing::warn!(key_id = %key.id, "cannot record the use of an API key: {err}");
        }
    }
    let principal = principal_of(store, user).await?;
    Ok(Some(principal.with_credential(Credential::ApiKey {
        key_id: key.id,
        scopes: key.scopes,
        app_id: key.app_id,
    })))
}

/// `pk_<prefix>_<secret>` → the prefix.
fn prefix_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_MARK)?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == PREFIX_LEN && !secret.is_empty()).then_some(prefix)
}

/// A new prefix and the whole key.
fn new_key() -> (String, String) {
    let prefix: String = (0..PREFIX_LEN)
        .map(|_| char::from(PREFIX_ALPHABET[OsRng.gen_range(0..PREFIX_ALPHABET.len())]))
        .collect();
    let mut secret = [0_u8; 32];
    OsRng.fill_bytes(&mut secret);
    let key = format!("{KEY_MARK}{prefix}_{}", URL_SAFE_NO_PAD.encode(secret));
    (prefix, key)
}

/// What the store keeps of a key: the SHA-256 of the whole key.
pub fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_carries_its_prefix_and_32_random_bytes() {
        let (prefix, key) = new_key();
        assert_eq!(
            prefix_of(&key),
            Some(prefix.as_str()),
            "the prefix is found in the key"
        );
        let secret = key
            .strip_prefix(&format!("{KEY_MARK}{prefix}_"))
            .expect("a secret part after the prefix");
        let bytes = URL_SAFE_NO_PAD.decode(secret).expect("base64url");
        assert_eq!(bytes.len(), 32, "32 bytes of entropy");
        assert_ne!(new_key().1, key, "two keys differ");
        assert_eq!(key_hash(&key).len(), 32, "the stored form is a SHA-256");
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        for bad in [
            "pk_",
            "pk_short_x",
            "pk_abcdefgh_",
            "xx_abcdefgh_secret",
            "pk_abcdefgh",
        ] {
            assert_eq!(prefix_of(bad), None, "{bad} is no key");
        }
    }
}
