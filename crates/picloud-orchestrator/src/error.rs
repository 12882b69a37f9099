//! The one error type of the services: every admin call, login and start-up answers with it, and
//! the HTTP layer maps it to a status and a stable code in exactly one place.

use picloud_core::{Capability, InputError};
use picloud_store::StoreError;

use crate::gate::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A value the caller sent is unusable; the field and a sentence saying why.
    #[error(transparent)]
    Invalid(#[from] InputError),
    /// A script's source does not compile (or is not a valid script of its kind).
    #[error("{message}")]
    InvalidScript {
        message: String,
        line: Option<u32>,
        column: Option<u32>,
    },
    /// The thing named does not exist; the message names its kind, e.g. "no app with the id '…'".
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what exists (a taken slug, a route pattern that overlaps…).
    #[error("{0}")]
    Conflict(String),
    /// The principal is authenticated but lacks the capability.
    #[error("you are not allowed to {}", describe(.0))]
    Forbidden(Capability),
    /// Login refused: unknown user or wrong password (deliberately indistinguishable).
    #[error("the username or password is wrong")]
    InvalidCredentials,
    /// Too many failed logins for this account or address; try again after the delay.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// The execution gate, or the app's share of it, stayed full; nothing ran.
    #[error(transparent)]
    Overloaded(Refusal),
    /// The app is at one of its quotas (queued jobs); nothing was done. The message says where
    /// it stands.
    #[error("{0}")]
    OverQuota(String),
    /// The password was right but the account is disabled.
    #[error("this account is disabled")]
    AccountDisabled,
    /// The database cannot be reached; the cause is for the log, not for the client.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A bug or a corrupt row; the cause is for the log, not for the client.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub(crate) fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("no {kind} with the id '{id}'"))
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(kind) => Self::NotFound(format!("{kind} not found")),
            StoreError::Conflict(message) => Self::Conflict(message),
            StoreError::InvalidInput(message) => Self::Invalid(InputError::new("cursor", message)),
            StoreError::OverLimit(over) => Self::OverQuota(over.to_string()),
            StoreError::ReadTooLarge(_) => Self::Invalid(InputError::new("limit", err.to_string())),
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Internal(cause) => Self::Internal(cause),
        }
    }
}

fn describe(capability: &Capability) -> String {
    match capability {
        Capability::AppCreate => "create apps".to_owned(),
        Capability::ApiKeysManage => "manage API keys".to_owned(),
        Capability::AppDelete(id) => format!("delete the app '{id}'"),
        Capability::AppScriptsExecute(id) => format!("run the scripts of the app '{id}'"),
        Capability::AppKvRead(id) => format!("read the KV data of the app '{id}'"),
        Capability::AppKvWrite(id) => format!("change the KV data of the app '{id}'"),
        Capability::AppDocsRead(id) => format!("read the documents of the app '{id}'"),
        Capability::AppDocsWrite(id) => format!("change the documents of the app '{id}'"),
        Capability::AppManageTriggers(id) => format!("manage the triggers of the app '{id}'"),
        Capability::AppDeadLetterManage(id) => {
            format!("manage the dead letters of the app '{id}'")
        }
        Capability::AppManageMembers(id) => format!("manage the members of the app '{id}'"),
        Capability::AppRead(id) => format!("read the app '{id}'"),
        Capability::AppWrite(id) => format!("change the app '{id}'"),
        Capability::AppScriptsRead(id) => format!("read the scripts of the app '{id}'"),
        Capability::AppScriptsWrite(id) => format!("change the scripts of the app '{id}'"),
        Capability::InstanceAdmin => "administer this instance".to_owned(),
    }
}
