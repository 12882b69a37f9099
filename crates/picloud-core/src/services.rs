//! What scripts read beyond the sandbox: the KV store, the document store and dead letters. The executor calls these
//! through [`ScriptServices`]; the store crate implements it over the database. Every call is
//! scoped by the [`AppId`] of the running execution, never by a name the script passed.

use async_trait::async_trait;

use crate::docs::{Query, StoredDoc};
use crate::events::{CollectionName, KvKey};
use crate::exec::ScriptRef;
use crate::tx::{Version, VersionedPage};
use crate::{AppId, DeadLetterId, DocumentId};

/// Where a data change comes from: its app, the trigger depth of the execution that makes it (the
/// jobs its triggers enqueue run one level deeper), and how many trigger jobs that execution may
/// enqueue (a commit that would fire more is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOrigin {
    pub app_id: AppId,
    pub trigger_depth: u32,
    pub trigger_jobs_left: u32,
}

/// One page of KV entries (or documents), keys ascending; `cursor` is `None` after the last
/// page.
#[derive(Debug, Clone, PartialEq)]
pub struct KvPage<V = serde_json::Value> {
    pub items: Vec<(String, V)>,
    pub cursor: Option<String>,
}

/// What a `find` found: the documents, each with its version, in the query's order, and the
/// version of their collection when it looked — the commit that last wrote any document of it
/// (0 before any): a commit that finds it unchanged knows the find still holds without running it
/// again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    pub collection_version: Version,
    pub docs: Vec<(DocumentId, StoredDoc, Version)>,
}

/// Which KV entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// What the call would bring back is more than the execution may hold: a limit, not an
    /// error of the script's input.
    TooLarge,
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

/// Where `import` finds module scripts (the changelog's `ModuleSource`): the module script named
/// `name` of the app `app_id` — the running execution's app, never one a script names, so an
/// import cannot cross apps. `None` when the app has no module of that name (an endpoint of that
/// name is not a module).
#[async_trait]
pub trait ModuleSource: Send + Sync {
    async fn lookup(&self, app_id: AppId, name: &str) -> ServiceResult<Option<ScriptRef>>;
}

/// What a script reads beyond the sandbox. Reads only: a run's writes and dead-letter actions
/// go to its [`crate::tx::Transaction`] and are committed after it returns, together, by the
/// orchestrator. `Services::default()`-style bundles for tests that touch no data are
/// [`NoServices`].
#[async_trait]
pub trait ScriptServices: ModuleSource {
    /// The entry's value and the version of the commit that wrote it.
    async fn kv_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<Option<(serde_json::Value, Version)>>;
    /// The entry's version, without its value.
    async fn kv_version(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<Option<Version>>;
    async fn kv_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> ServiceResult<VersionedPage>;
    /// The document and the version of the commit that wrote it.
    async fn doc_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        id: DocumentId,
    ) -> ServiceResult<Option<(StoredDoc, Version)>>;
    /// A page of the collection's documents by id (`request.prefix` is not used).
    async fn doc_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> ServiceResult<VersionedPage<StoredDoc>>;
    /// The first `fetch` documents `query` finds, in its order (its own `limit` is not used).
    async fn doc_find(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        query: &Query,
        fetch: u32,
    ) -> ServiceResult<Found>;
    /// `Ok` when the dead letter is the app's and still open (a replay or a resolve may close
    /// it); `NotFound` when it is not the app's, `Conflict` with the sentence when it is closed.
    async fn dead_letter_open(&self, app_id: AppId, id: DeadLetterId) -> ServiceResult<()>;
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
impl ModuleSource for NoServices {
    async fn lookup(&self, _: AppId, _: &str) -> ServiceResult<Option<ScriptRef>> {
        not_configured()
    }
}

#[async_trait]
impl ScriptServices for NoServices {
    async fn kv_get(
        &self,
        _: AppId,
        _: &CollectionName,
        _: &KvKey,
    ) -> ServiceResult<Option<(serde_json::Value, Version)>> {
        not_configured()
    }
    async fn kv_version(
        &self,
        _: AppId,
        _: &CollectionName,
        _: &KvKey,
    ) -> ServiceResult<Option<Version>> {
        not_configured()
    }
    async fn kv_list(
        &self,
        _: AppId,
        _: &CollectionName,
        _: &KvListRequest,
    ) -> ServiceResult<VersionedPage> {
        not_configured()
    }
    async fn doc_get(
        &self,
        _: AppId,
        _: &CollectionName,
        _: DocumentId,
    ) -> ServiceResult<Option<(StoredDoc, Version)>> {
        not_configured()
    }
    async fn doc_list(
        &self,
        _: AppId,
        _: &CollectionName,
        _: &KvListRequest,
    ) -> ServiceResult<VersionedPage<StoredDoc>> {
        not_configured()
    }
    async fn doc_find(
        &self,
        _: AppId,
        _: &CollectionName,
        _: &Query,
        _: u32,
    ) -> ServiceResult<Found> {
        not_configured()
    }
    async fn dead_letter_open(&self, _: AppId, _: DeadLetterId) -> ServiceResult<()> {
        not_configured()
    }
}
