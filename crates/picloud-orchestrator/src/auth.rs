//! Who is calling, and whether they may.
//!
//! - Passwords are hashed with argon2id (the argon2 crate's default parameters), on a blocking
//!   thread: a hash costs tens of milliseconds of CPU.
//! - A login gives a session token: 32 random bytes, base64url. The store keeps only its SHA-256,
//!   so a leaked database does not leak sessions.
//! - An unknown user and a wrong password give the same error after about the same work (an
//!   unknown user is verified against a dummy hash).
//! - Every permission check goes through [`require`], which asks [`Principal::can`]: when API
//!   keys and per-app roles arrive they change what a [`Principal`] holds, not the call sites.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use picloud_core::{Capability, Principal, Timestamp, User, Username};
use picloud_store::Store;
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::error::{ServiceError, ServiceResult};

/// The name of the user the first start creates.
pub const INSTANCE_ADMIN: &str = "admin";

/// Length of a generated admin password.
const GENERATED_PASSWORD_LEN: usize = 24;

/// An argon2id hash (default parameters) of a random password nobody knows: logins of unknown
/// users are verified against it, so they cost what a wrong password costs.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$6MRNGZwYTxtLHDv3eMq+ZA$MIBQqUDV5VMMOIo4ecbgJJOjnOCNdkCaQwbyiZL3/vs";

/// The one place a capability is checked.
pub fn require(principal: &Principal, capability: Capability) -> ServiceResult<()> {
    if principal.can(capability) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(capability))
    }
}

/// A new session.
#[derive(Debug, Clone)]
pub struct Login {
    /// The bearer token; shown to the caller once, stored only as a hash.
    pub token: String,
    pub user: User,
    pub expires_at: Timestamp,
}

/// Users, passwords and sessions.
#[derive(Clone)]
pub struct Auth {
    store: Arc<dyn Store>,
    session_ttl_ms: i64,
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, session_ttl_ms: i64) -> Self {
        Self {
            store,
            session_ttl_ms,
        }
    }

    /// On a database without users, creates the instance admin `admin` with `password`, or with a
    /// random password that is returned (to be shown once). `None` when users already exist.
    #[tracing::instrument(skip_all)]
    pub async fn ensure_instance_admin(
        &self,
        password: Option<&str>,
    ) -> ServiceResult<Option<String>> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(given) => (given.to_owned(), false),
            None => (generate_password(), true),
        };
        let username = Username::parse(INSTANCE_ADMIN)?;
        match self.create_user(&username, &password, true).await {
            Ok(_) => Ok(generated.then_some(password)),
            // Another node created it between our count and our insert.
            Err(ServiceError::Conflict(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Creates a user with a password (hashed here, never stored as given).
    pub async fn create_user(
        &self,
        username: &Username,
        password: &str,
        is_instance_admin: bool,
    ) -> ServiceResult<User> {
        if password.is_empty() {
            return Err(picloud_core::InputError::new(
                "password",
                "the password must not be empty",
            )
            .into());
        }
        let hash = hash_password(password.to_owned()).await?;
        Ok(self
            .store
            .create_user(username, &hash, is_instance_admin)
            .await?)
    }

    /// Checks a username and password and opens a session.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, username: &str, password: &str) -> ServiceResult<Login> {
        let credentials = match Username::parse(username) {
            Ok(username) => self.store.user_credentials(&username).await?,
            Err(_) => None,
        };
        let (hash, user) = match credentials {
            Some(found) => (found.password_hash, Some(found.user)),
            None => (DUMMY_HASH.to_owned(), None),
        };
        let verified = verify_password(password.to_owned(), hash).await?;
        let user = match (user, verified) {
            (Some(user), true) => user,
            _ => return Err(ServiceError::InvalidCredentials),
        };
        if user.disabled {
            return Err(ServiceError::AccountDisabled);
        }
        let token = new_token();
        let expires_at = self
            .store
            .create_session(&token_hash(&token), user.id, self.session_ttl_ms)
            .await?;
        // Logins are rare, so this is where expired sessions are swept; a failure costs nothing
        // but a larger table.
        if let Err(err) = self.store.delete_expired_sessions().await {
            tracing::warn!("cannot remove expired sessions: {err}");
        }
        tracing::info!(user_id = %user.id, username = %user.username, "logged in");
        Ok(Login {
            token,
            user,
            expires_at,
        })
    }

    /// The principal a bearer token stands for, or `None` when the token is unknown, expired,
    /// logged out or its user disabled.
    pub async fn authenticate(&self, bearer_token: &str) -> ServiceResult<Option<Principal>> {
        if bearer_token.is_empty() || bearer_token.len() > 256 {
            return Ok(None);
        }
        let user = self.store.session_user(&token_hash(bearer_token)).await?;
        Ok(user.filter(|u| !u.disabled).map(|u| Principal {
            user_id: u.id,
            username: u.username,
            is_instance_admin: u.is_instance_admin,
        }))
    }

    /// Ends the session of a token; `false` when there was none.
    pub async fn logout(&self, bearer_token: &str) -> ServiceResult<bool> {
        Ok(self.store.delete_session(&token_hash(bearer_token)).await?)
    }

    /// The user behind a principal.
    pub async fn user(&self, principal: &Principal) -> ServiceResult<User> {
        self.store
            .get_user(principal.user_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", principal.user_id))
    }

    pub fn session_ttl_ms(&self) -> i64 {
        self.session_ttl_ms
    }
}

fn generate_password() -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(GENERATED_PASSWORD_LEN)
        .map(char::from)
        .collect()
}

fn new_token() -> String {
    let mut bytes = [0_u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// An argon2id PHC string of `password`, computed on a blocking thread.
pub async fn hash_password(password: String) -> ServiceResult<String> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|err| ServiceError::Internal(format!("cannot hash a password: {err}")))
    })
    .await
    .map_err(|err| ServiceError::Internal(format!("the hashing task failed: {err}")))?
}

/// Whether `password` matches the PHC string `hash`, checked on a blocking thread.
async fn verify_password(password: String, hash: String) -> ServiceResult<bool> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        match PasswordHash::new(&hash) {
            Ok(parsed) => Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()),
            Err(err) => Err(ServiceError::Internal(format!(
                "a stored password hash is malformed: {err}"
            ))),
        }
    })
    .await
    .map_err(|err| ServiceError::Internal(format!("the verification task failed: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_dummy_hash_is_a_valid_argon2id_hash_with_default_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("the dummy hash parses");
        assert_eq!(
            parsed.algorithm.as_str(),
            "argon2id",
            "the dummy must cost what a real hash costs"
        );
        let real = hash_password("x".to_owned()).await.expect("hash");
        let real = PasswordHash::new(&real).expect("parse");
        assert_eq!(
            parsed.params, real.params,
            "the dummy uses the same parameters as real hashes"
        );
        let ok = verify_password("anything".to_owned(), DUMMY_HASH.to_owned())
            .await
            .expect("verify");
        assert!(!ok, "no password opens the dummy hash");
    }

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_only() {
        let hash = hash_password("s3cret".to_owned()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"), "argon2id is used: {hash}");
        assert!(
            verify_password("s3cret".to_owned(), hash.clone())
                .await
                .expect("verify"),
            "right password"
        );
        assert!(
            !verify_password("S3cret".to_owned(), hash)
                .await
                .expect("verify"),
            "wrong password"
        );
    }

    #[test]
    fn tokens_are_32_random_bytes_in_base64url() {
        let token = new_token();
        let bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64url");
        assert_eq!(bytes.len(), 32, "32 bytes of entropy");
        assert_ne!(token, new_token(), "two tokens differ");
        assert_eq!(token_hash(&token).len(), 32, "the stored form is a SHA-256");
    }

    #[test]
    fn generated_passwords_are_long_and_alphanumeric() {
        let password = generate_password();
        assert_eq!(password.len(), GENERATED_PASSWORD_LEN, "24 characters");
        assert!(
            password.chars().all(|c| c.is_ascii_alphanumeric()),
            "easy to copy: {password}"
        );
    }
}
