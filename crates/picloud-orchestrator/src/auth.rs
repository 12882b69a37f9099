//! Who is calling, and whether they may.
//!
//! - Passwords are hashed with argon2id (the argon2 crate's default parameters), on a blocking
//!   thread: a hash costs tens of milliseconds of CPU. Every password that is set — a new user,
//!   an admin's reset, a user's own change, the first admin, the CLI — passes the
//!   [`PasswordPolicy`] here; a login checks only the hash, so passwords set before a stricter
//!   policy still log in.
//! - A login gives a session token: `ps_` and 32 random bytes, base64url. The store keeps only its SHA-256,
//!   so a leaked database does not leak sessions. The dashboard's CSRF token is derived from the
//!   session token ([`csrf_token`]): only someone who holds the session can compute it.
//! - An unknown user and a wrong password give the same error after about the same work (an
//!   unknown user is verified against a dummy hash). Repeated failures are slowed down per
//!   account and per address ([`crate::throttle`]).
//! - A bearer token that starts with `pk_` is an API key ([`crate::api_keys`]); anything else is
//!   a session token. Either way the caller becomes a [`Principal`] holding its memberships, so
//!   [`Principal::can`] answers without I/O.
//! - Every permission check goes through [`require`] (or [`require_on`] for an object found by
//!   its own id), which asks [`Principal::can`] and applies the existence rule: a caller who may
//!   not even read the app gets "not found", as if the object were absent; a caller who may read
//!   it but lacks the capability gets "forbidden".

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use picloud_core::{Capability, InputError, Principal, Timestamp, User, UserId, Username};
use picloud_store::Store;
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api_keys;
use crate::config::ThrottleConfig;
use crate::error::{ServiceError, ServiceResult};
use crate::throttle::LoginThrottle;

/// The name of the user the first start creates.
pub const INSTANCE_ADMIN: &str = "admin";

pub use crate::api_keys::KEY_MARK as API_KEY_MARK;

/// How a session token starts, so that a session token and an API key ([`API_KEY_MARK`]) can
/// both be told from anyone else's credentials ([`is_credential`]).
pub const SESSION_MARK: &str = "ps_";

/// Whether `token` is a PiCloud credential (a session token or an API key) by its form. Public
/// routes drop such an `Authorization` before a script sees it.
pub fn is_credential(token: &str) -> bool {
    token.starts_with(API_KEY_MARK) || token.starts_with(SESSION_MARK)
}

/// Length of a generated password, unless the policy asks for more.
const GENERATED_PASSWORD_LEN: usize = 24;

/// The longest password accepted, in bytes: argon2 reads all of it, so a longer one would only
/// cost CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What a new password must be: at least [`PasswordPolicy::min_chars`] characters (Unicode
/// scalar values: `é` counts once, as a person counts it) and at most [`MAX_PASSWORD_BYTES`]
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_chars: usize,
}

impl PasswordPolicy {
    /// The minimum unless the operator sets another (`PICLOUD_MIN_PASSWORD_LENGTH`).
    pub const DEFAULT_MIN_CHARS: usize = 12;
    /// The minimums an operator may set: below 8 a password falls to guessing too easily.
    pub const MIN_CHARS_RANGE: RangeInclusive<usize> = 8..=128;

    /// A policy of at least `min_chars` characters, one of [`Self::MIN_CHARS_RANGE`].
    pub fn new(min_chars: usize) -> Result<Self, InputError> {
        if Self::MIN_CHARS_RANGE.contains(&min_chars) {
            Ok(Self { min_chars })
        } else {
            Err(InputError::new(
                "min_password_length",
                format!(
                    "{min_chars} is outside the accepted range {}..={}",
                    Self::MIN_CHARS_RANGE.start(),
                    Self::MIN_CHARS_RANGE.end()
                ),
            ))
        }
    }

    pub fn min_chars(self) -> usize {
        self.min_chars
    }

    /// A random password of letters and digits (easy to copy) that passes this policy: 24
    /// characters, or the minimum when that is more.
    pub fn generate(self) -> String {
        OsRng
            .sample_iter(&Alphanumeric)
            .take(GENERATED_PASSWORD_LEN.max(self.min_chars))
            .map(char::from)
            .collect()
    }

    /// Checks a new password that came in `field`.
    pub fn check(self, field: &'static str, password: &str) -> Result<(), InputError> {
        let chars = password.chars().count();
        if chars < self.min_chars {
            return Err(InputError::new(
                field,
                format!(
                    "the password must be at least {} characters long; this one has {chars}",
                    self.min_chars
                ),
            ));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(InputError::new(
                field,
                format!("the password is longer than {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: Self::DEFAULT_MIN_CHARS,
        }
    }
}

/// An argon2id hash (default parameters) of a random password nobody knows: logins of unknown
/// users are verified against it, so they cost what a wrong password costs.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$6MRNGZwYTxtLHDv3eMq+ZA$MIBQqUDV5VMMOIo4ecbgJJOjnOCNdkCaQwbyiZL3/vs";

/// The one place a capability is checked. An app-scoped capability the caller lacks is "not
/// found" when the caller may not read the app at all (no existence leak), "forbidden" otherwise.
pub fn require(actor: &Principal, capability: Capability) -> ServiceResult<()> {
    match capability.app() {
        Some(app) => require_on(actor, capability, "app", app),
        None if actor.can(capability) => Ok(()),
        None => Err(ServiceError::Forbidden(capability)),
    }
}

/// [`require`] for an object the caller named by its own id (`kind`, `id`): when the caller may
/// not read the object's app, the answer is the one a missing object gets.
pub fn require_on(
    actor: &Principal,
    capability: Capability,
    kind: &str,
    id: impl std::fmt::Display,
) -> ServiceResult<()> {
    if actor.can(capability) {
        return Ok(());
    }
    match capability.app() {
        Some(app) if !actor.can(Capability::AppRead(app)) => Err(ServiceError::not_found(kind, id)),
        _ => Err(ServiceError::Forbidden(capability)),
    }
}

/// A new session.
#[derive(Debug, Clone)]
pub struct Login {
    /// The bearer token; shown to the caller once, stored only as a hash.
    pub token: String,
    /// The dashboard's CSRF token for this session.
    pub csrf_token: String,
    pub user: User,
    pub expires_at: Timestamp,
}

/// Users, passwords and sessions.
#[derive(Clone)]
pub struct Auth {
    store: Arc<dyn Store>,
    session_ttl_ms: i64,
    throttle: Arc<LoginThrottle>,
    password_policy: PasswordPolicy,
}

impl Auth {
    pub fn new(
        store: Arc<dyn Store>,
        session_ttl_ms: i64,
        throttle: ThrottleConfig,
        password_policy: PasswordPolicy,
    ) -> Self {
        Self {
            store,
            session_ttl_ms,
            throttle: Arc::new(LoginThrottle::new(throttle)),
            password_policy,
        }
    }

    /// On a database without users, creates the instance admin `admin` with `password`, or with a
    /// random password that is returned (to be shown once). `None` when users already exist: the
    /// password is then not used, nor checked against the policy.
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
            None => (self.password_policy.generate(), true),
        };
        let username = Username::parse(INSTANCE_ADMIN)?;
        match self.create_user(&username, &password, true).await {
            Ok(_) => Ok(generated.then_some(password)),
            // Another node created it between our count and our insert.
            Err(ServiceError::Conflict(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Creates a user with a password (hashed here, never stored as given). No permission check:
    /// the admin API goes through [`crate::UserService`], the CLI works on the database directly.
    pub async fn create_user(
        &self,
        username: &Username,
        password: &str,
        is_instance_admin: bool,
    ) -> ServiceResult<User> {
        self.password_policy.check("password", password)?;
        let hash = hash_password(password.to_owned()).await?;
        Ok(self
            .store
            .create_user(username, &hash, is_instance_admin)
            .await?)
    }

    /// Replaces a user's password and ends its sessions. No permission check (see `create_user`).
    pub async fn set_password(&self, user_id: UserId, password: &str) -> ServiceResult<User> {
        self.password_policy.check("password", password)?;
        self.store_password(user_id, password).await
    }

    /// Hashes and stores a password that passed the policy, ending the user's sessions.
    async fn store_password(&self, user_id: UserId, password: &str) -> ServiceResult<User> {
        let hash = hash_password(password.to_owned()).await?;
        self.store
            .set_password(user_id, &hash)
            .await
            .map_err(|err| match err {
                picloud_store::StoreError::NotFound(_) => ServiceError::not_found("user", user_id),
                other => other.into(),
            })
    }

    /// The signed-in user changes its own password, proving it knows the current one.
    pub async fn change_own_password(
        &self,
        actor: &Principal,
        current: &str,
        new: &str,
    ) -> ServiceResult<User> {
        self.password_policy.check("new_password", new)?;
        let credentials = self
            .store
            .user_credentials(&actor.username)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", actor.user_id))?;
        if !verify_password(current.to_owned(), credentials.password_hash).await? {
            return Err(ServiceError::InvalidCredentials);
        }
        self.store_password(actor.user_id, new).await
    }

    /// Checks a username and password and opens a session.
    pub async fn login(&self, username: &str, password: &str) -> ServiceResult<Login> {
        self.login_from(username, password, None).await
    }

    /// [`Auth::login`] from a client address, which the throttle counts too.
    #[tracing::instrument(skip_all)]
    pub async fn login_from(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> ServiceResult<Login> {
        if let Err(wait) = self.throttle.check(username, client) {
            return Err(ServiceError::Throttled {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
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
            _ => {
                self.throttle.failed(username, client);
                tracing::info!(client = ?client, "a login failed");
                return Err(ServiceError::InvalidCredentials);
            }
        };
        self.throttle.succeeded(username);
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
            csrf_token: csrf_token(&token),
            token,
            user,
            expires_at,
        })
    }

    /// The principal a bearer token (a session token or an API key) stands for, or `None` when
    /// it is unknown, expired, logged out or revoked, or its user disabled.
    pub async fn authenticate(&self, bearer_token: &str) -> ServiceResult<Option<Principal>> {
        if bearer_token.is_empty() || bearer_token.len() > 256 {
            return Ok(None);
        }
        if bearer_token.starts_with(api_keys::KEY_MARK) {
            return api_keys::authenticate(self.store.as_ref(), bearer_token).await;
        }
        let Some(user) = self.store.session_user(&token_hash(bearer_token)).await? else {
            return Ok(None);
        };
        if user.disabled {
            return Ok(None);
        }
        Ok(Some(principal_of(self.store.as_ref(), user).await?))
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

/// A user as a principal with a session: its memberships read now.
pub(crate) async fn principal_of(store: &dyn Store, user: User) -> ServiceResult<Principal> {
    let memberships = store.memberships_of_user(user.id).await?;
    Ok(Principal::user(
        user.id,
        user.username,
        user.is_instance_admin,
        memberships.into_iter().collect(),
    ))
}

/// The CSRF token of a session: the SHA-256 of a label and the session token, base64url. The
/// dashboard reads it from the login answer (or `GET /api/v1/auth/me`) and sends it back in
/// `X-CSRF-Token`; no other origin can read either answer, and no cookie holds it.
pub fn csrf_token(session_token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"picloud-csrf\0");
    hasher.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Whether `presented` is the CSRF token of `session_token`, compared in constant time.
pub fn csrf_matches(session_token: &str, presented: &str) -> bool {
    secrets_match(csrf_token(session_token).as_bytes(), presented.as_bytes())
}

/// Compares two secrets (or their hashes) in constant time: how long it takes says nothing about
/// how many leading bytes matched.
pub fn secrets_match(expected: &[u8], presented: &[u8]) -> bool {
    expected.ct_eq(presented).into()
}

fn new_token() -> String {
    let mut bytes = [0_u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{SESSION_MARK}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 of a token: what the store keeps of sessions, and what a token is compared by.
pub fn token_hash(token: &str) -> Vec<u8> {
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
    fn tokens_are_the_session_mark_and_32_random_bytes_in_base64url() {
        let token = new_token();
        let encoded = token.strip_prefix(SESSION_MARK).expect("the session mark");
        assert!(
            is_credential(&token),
            "a session token is a PiCloud credential"
        );
        let bytes = URL_SAFE_NO_PAD.decode(encoded).expect("base64url");
        assert_eq!(bytes.len(), 32, "32 bytes of entropy");
        assert_ne!(token, new_token(), "two tokens differ");
        assert_eq!(token_hash(&token).len(), 32, "the stored form is a SHA-256");
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session_and_is_compared_in_constant_time() {
        let session = new_token();
        let csrf = csrf_token(&session);
        assert!(csrf_matches(&session, &csrf), "its own session");
        assert!(!csrf_matches(&new_token(), &csrf), "another session");
        assert!(!csrf_matches(&session, ""), "an empty header");
        assert!(
            !csrf_matches(&session, &csrf[..csrf.len() - 1]),
            "a prefix of it"
        );
        assert_ne!(csrf, session, "not the session token itself");
    }

    #[test]
    fn the_policy_counts_characters_not_bytes() {
        let policy = PasswordPolicy::default();
        assert_eq!(policy.min_chars(), 12, "twelve characters by default");
        let err = policy
            .check("password", &"é".repeat(11))
            .expect_err("11 characters, though 22 bytes");
        assert_eq!(err.field, "password", "the field is named: {err}");
        assert!(
            err.message.contains("at least 12 characters"),
            "the message gives the minimum: {err}"
        );
        assert_eq!(
            policy.check("password", &"é".repeat(12)),
            Ok(()),
            "12 characters pass"
        );
        assert_eq!(
            policy.check("password", ""),
            Err(InputError::new(
                "password",
                "the password must be at least 12 characters long; this one has 0"
            )),
            "an empty password is a short one"
        );
    }

    #[test]
    fn the_policy_keeps_the_byte_limit() {
        let policy = PasswordPolicy::default();
        assert!(
            policy
                .check("password", &"a".repeat(MAX_PASSWORD_BYTES))
                .is_ok(),
            "{MAX_PASSWORD_BYTES} bytes pass"
        );
        let err = policy
            .check("new_password", &"a".repeat(MAX_PASSWORD_BYTES + 1))
            .expect_err("one byte too many");
        assert_eq!(err.field, "new_password", "the given field is named: {err}");
    }

    #[test]
    fn an_operator_may_set_a_minimum_from_8_to_128() {
        for ok in [8, 12, 128] {
            assert_eq!(
                PasswordPolicy::new(ok).map(PasswordPolicy::min_chars),
                Ok(ok),
                "{ok} is accepted"
            );
        }
        for bad in [0, 7, 129] {
            assert!(PasswordPolicy::new(bad).is_err(), "{bad} is refused");
        }
        let strict = PasswordPolicy::new(16).expect("16 is in range");
        assert!(
            strict.check("password", "fifteen chars!!").is_err(),
            "a higher minimum refuses what the default accepts"
        );
    }

    #[test]
    fn generated_passwords_are_long_and_alphanumeric() {
        let password = PasswordPolicy::default().generate();
        assert_eq!(password.len(), GENERATED_PASSWORD_LEN, "24 characters");
        assert!(
            password.chars().all(|c| c.is_ascii_alphanumeric()),
            "easy to copy: {password}"
        );
    }

    #[test]
    fn a_generated_password_passes_a_minimum_above_its_usual_length() {
        let policy = PasswordPolicy::new(40).expect("40 is in range");
        let password = policy.generate();
        assert_eq!(password.len(), 40, "as long as the minimum");
        assert_eq!(
            policy.check("password", &password),
            Ok(()),
            "it passes its own policy"
        );
    }
}
