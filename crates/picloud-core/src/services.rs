//! What scripts reach beyond the sandbox: the KV store and dead letters. The executor calls these
//! through [`ScriptServices`]; the store crate implements it over the database. Every call is
//! scoped by the [`AppId`] of the running execution, never by a name the script passed.

use async_trait::async_trait;

use crate::events::{CollectionName, KvKey};
use crate::{AppId, DeadLetterId, ExecutionId};

/// Where a data change comes from: its app, the trigger depth of the execution that makes it (the
/// jobs its triggers enqueue run one level deeper), and how many trigger jobs that execution may
/// still enqueue (a change that would fire more is refused: [`ServiceErrorKind::TriggerJobLimit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOrigin {
    pub app_id: AppId,
    pub trigger_depth: u32,
    pub trigger_jobs_left: u32,
}

/// What a KV write did: whether the entry existed before, and how many trigger jobs it enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvChanged {
    pub existed: bool,
    pub trigger_jobs: u32,
}

/// One page of KV entries, keys ascending; `cursor` is `None` after the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct KvPage {
    pub items: Vec<(String, serde_json::Value)>,
    pub cursor: Option<String>,
}

/// Which KV entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvListRequest {
    pub prefix: Option<String>,
    pub limit: u32,
    pub cursor: Option<String>,
}

/// Why a service call failed, in a sentence the script's author can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceCallError {
    pub kind: ServiceErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorKind {
    /// The input was refused (a bad cursor, a value too large…).
    Invalid,
    NotFound,
    /// The call conflicts with the state (a dead letter already resolved).
    Conflict,
    /// The app is at one of its quotas (stored bytes, queued jobs); the sentence says which,
    /// where the app stands, and what frees room. Nothing was written.
    QuotaExceeded,
    /// The write would fire more trigger jobs than its execution may still enqueue (its
    /// `WriteOrigin::trigger_jobs_left`). Nothing was written; the execution has reached a limit.
    TriggerJobLimit,
    /// The database could not be reached; trying again later may work.
    Unavailable,
    /// This executor has no data services (a test bundle, a misconfigured executor).
    NotConfigured,
}

impl ServiceCallError {
    pub fn new(kind: ServiceErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceCallError>;

/// The services a script calls. `Services::default()`-style bundles for tests that touch no data
/// are [`NoServices`].
#[async_trait]
pub trait ScriptServices: Send + Sync {
    async fn kv_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<Option<serde_json::Value>>;
    async fn kv_has(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<bool>;
    /// Stores the value (JSON text checked against the size limit) and enqueues the jobs of the
    /// matching triggers in the same transaction; refused, with nothing written, when the write
    /// would take the app past a quota or its execution past `origin.trigger_jobs_left`.
    async fn kv_set(
        &self,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
        value: serde_json::Value,
    ) -> ServiceResult<KvChanged>;
    /// `existed: false` when there was no such entry (and then no trigger fires). Refused like
    /// `kv_set`, except that freeing bytes is always allowed.
    async fn kv_delete(
        &self,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<KvChanged>;
    async fn kv_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> ServiceResult<KvPage>;
    /// Sends the dead letter's job through the outbox again; returns the new execution's id.
    async fn dead_letter_replay(
        &self,
        app_id: AppId,
        id: DeadLetterId,
    ) -> ServiceResult<ExecutionId>;
    async fn dead_letter_resolve(&self, app_id: AppId, id: DeadLetterId) -> ServiceResult<()>;
}

/// A bundle without data: every call fails with `NotConfigured`. For executors and tests that
/// run scripts touching no data.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoServices;

fn not_configured<T>() -> ServiceResult<T> {
    Err(ServiceCallError::new(
        ServiceErrorKind::NotConfigured,
        "this executor has no data services: it was started without a database",
    ))
}

#[async_trait]
impl ScriptServices for NoServices {
    async fn kv_get(
        &self,
        _: AppId,
        _: &CollectionName,
        _: &KvKey,
    ) -> ServiceResult<Option<serde_json::Value>> {
        not_configured()
    }
    async fn kv_has(&self, _: AppId, _: &CollectionName, _: &KvKey) -> ServiceResult<bool> {
        not_configured()
    }
    async fn kv_set(
        &self,
        _: WriteOrigin,
        _: &CollectionName,
        _: &KvKey,
        _: serde_json::Value,
    ) -> ServiceResult<KvChanged> {
        not_configured()
    }
    async fn kv_delete(
        &self,
        _: WriteOrigin,
        _: &CollectionName,
        _: &KvKey,
    ) -> ServiceResult<KvChanged> {
        not_configured()
    }
    async fn kv_list(
        &self,
        _: AppId,
        _: &CollectionName,
        _: &KvListRequest,
    ) -> ServiceResult<KvPage> {
        not_configured()
    }
    async fn dead_letter_replay(&self, _: AppId, _: DeadLetterId) -> ServiceResult<ExecutionId> {
        not_configured()
    }
    async fn dead_letter_resolve(&self, _: AppId, _: DeadLetterId) -> ServiceResult<()> {
        not_configured()
    }
}
