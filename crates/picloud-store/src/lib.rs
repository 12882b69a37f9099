//! PiCloud's stores on SQLite (the embedded default) and PostgreSQL (production, several nodes).
//!
//! Every behaviour is written once: each store trait below has one implementation, for any
//! database that implements the crate's seam, `db::Engine` — in the spirit of spin's
//! `factor-sqlite` `Connection`, SQL text and bound values in, rows out, with the statements
//! written once in both dialects at compile time (`db::dialects!`). A seam low enough that the
//! behaviour above it reads the same on both backends, and small enough that each backend's
//! module holds only what truly differs: its pools and transactions, the KV writes, the
//! outbox's claim, commits and lease extension (the hot paths measured in `bench/RESULTS.md`),
//! migrate and close. Its futures are `impl Future + Send`, not boxed, so the hot paths cost
//! what they cost before; generic bodies over `sqlx::Database` would have repeated long `where`
//! clauses in every method.
//!
//! **A new store method** goes in the module of its domain below, written once against
//! `db::Engine` (its SQL in `sql`, with `now!()` and the other dialect pieces where it needs
//! them). Only if its locking or its shape truly differs does it get a hook on `db::Engine`,
//! implemented in [`sqlite`] and [`postgres`].
//!
//! | module | holds |
//! |---|---|
//! | this file | the store traits, their records, [`StoreError`], [`open`] |
//! | `config` | [`StoreConfig`] (where the data lives), [`AppQuotas`] and [`AppUsage`] (what each app may hold) |
//! | `apps`, `scripts`, `routes`, `users` (and sessions, memberships), `keys`, `kv`, `docs`, `triggers`, `outbox`, `dead_letters` | the store traits' one implementation each, by domain (`docs` also writes a filter as SQL) |
//! | `db` | the seam: `Engine`, `WriteTx`, statements in both dialects (`Sql`, `dialects!`), bound values, `on_constraint` |
//! | `sql` | the SQL text: column lists and the statements written once |
//! | `rows` | rows as they come out of either database, and their conversion into records |
//! | `errors` | database errors as [`StoreError`]s, the uniqueness rules, the sentences of refusals |
//! | `commit` | a run's commit: its reads checked, its writes, trigger jobs, dead-letter actions and job completion applied in one transaction |
//! | `jobs` | the outbox's multi-row statements: the one INSERT of jobs, the fence of attempts, the counts of queued jobs |
//! | [`sqlite`] | the SQLite engine (WAL, one writer connection, `BEGIN IMMEDIATE` for writes, group commits of runs, the outbox committer on rusqlite) |
//! | [`postgres`] | the PostgreSQL engine (one pool, `SKIP LOCKED` claims, the outbox committer on a connection of its own) |
//! | `paging` | cursors and limits (by id, or by KV key), the same on both backends |
//! | `services` | [`StoreServices`]: the KV store and dead letters as scripts reach them ([`picloud_core::ScriptServices`]) |
//! | `migrations/{sqlite,postgres}/` | numbered alike, embedded at compile time, applied by [`Store::migrate`]: `0001` apps, scripts, routes, users, sessions; `0002` memberships, API keys; `0003` KV; `0004` triggers; `0005` the outbox; `0006` dead letters; `0007` abandoned executions; `0008` the outbox (SQLite) without a rowid; `0009` routes' kept headers, apps' exposed errors; `0010` KV entry sizes and the per-app counts the quotas check; `0011` the index of the fair claim (pending jobs by app); `0012` KV versions and each app's commit sequence; `0013` documents, their declared indexes and docs triggers; `0014` each document collection's version; `0015` scripts' imports; `0016` execution records (on SQLite an empty step: they live in a file of their own, `migrations/sqlite-executions/`); `0017` the triggers that `NOTIFY` other nodes (PostgreSQL; empty on SQLite); `0018` execution records in batches (on SQLite an empty step, and `sqlite-executions/0002`) |
//!
//! Which triggers a change fires is a rule of `picloud_core::firing`; the store applies it in
//! the transaction of the change. Both backends pass one conformance suite
//! (`tests/conformance.rs`): the same test bodies run against each. Every call that touches an
//! app's objects is scoped by an [`AppId`] the caller resolved, never by a name a script passed
//! in.

pub mod postgres;
pub mod sqlite;

mod apps;
mod commit;
mod config;
mod db;
mod dead_letters;
mod docs;
mod errors;
mod executions;
mod jobs;
mod keys;
mod kv;
mod outbox;
mod paging;
mod routes;
mod rows;
mod scripts;
mod services;
mod sql;
mod triggers;
mod users;

pub use config::{AppQuotas, AppUsage, OverLimit, StoreConfig, KV_ENTRY_OVERHEAD};
pub use docs::MAX_DOC_INDEXES_PER_APP;
pub use services::StoreServices;

use std::sync::Arc;

use async_trait::async_trait;
use picloud_core::docs::{FieldPath, Query, StoredDoc};
pub use picloud_core::records::{ExecutionFilter, ExecutionRecord};
use picloud_core::services::{Found, KvListRequest, WriteOrigin};
use picloud_core::tx::{Effects, Version};
use picloud_core::{
    ApiKey, ApiKeyId, ApiKeyName, App, AppId, AppName, AppSlug, CollectionName, DeadLetter,
    DeadLetterId, DispatchMode, DocumentId, ExecutionId, JobPayload, KeptHeaders, KvKey,
    Membership, RecordId, Role, Route, RouteId, RouteMethod, RoutePath, Scope, Script, ScriptId,
    ScriptKind, ScriptName, Timestamp, Trigger, TriggerDetail, TriggerId, User, UserId, Username,
};

/// What went wrong in a store call. Messages of `NotFound` and `Conflict` are written for users;
/// `Unavailable` and `Internal` carry causes that are logged, never sent to clients. `Clone`, so
/// that one failed group commit can answer each of its callers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (e.g. "app", "script").
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule refused the write; the message says which, e.g.
    /// "an app with the slug 'shop' already exists".
    #[error("{0}")]
    Conflict(String),
    /// The caller passed something the store cannot use (a cursor it did not issue, a database
    /// URL of an unknown kind); the message is written for users.
    #[error("{0}")]
    InvalidInput(String),
    /// A write refused by a quota of its app or a limit of its execution; nothing was written.
    /// The message is written for users.
    #[error("{0}")]
    OverLimit(OverLimit),
    /// A read whose rows hold more than the bytes it may bring into the process (for a script,
    /// what its execution may hold); nothing was kept of it. The message is written for users.
    #[error(
        "what this read finds holds more than {0} bytes, more than one read may bring in: read \
         fewer at a time (a lower limit or $limit, a narrower filter)"
    )]
    ReadTooLarge(usize),
    /// The database could not be reached (connection refused, pool timed out, shutting down).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a corrupt row.
    #[error("database error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One page of a list. `next_cursor` is opaque to callers and `None` after the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The same page with each item made into another.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// Which page to read: at most `limit` items after `cursor` (a `next_cursor` from before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 500;
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: 100,
            cursor: None,
        }
    }
}

/// A new app.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub slug: AppSlug,
    pub name: AppName,
    pub expose_errors: bool,
}

/// Changes to an app; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AppPatch {
    pub slug: Option<AppSlug>,
    pub name: Option<AppName>,
    pub expose_errors: Option<bool>,
}

/// A new script.
#[derive(Debug, Clone)]
pub struct NewScript {
    pub app_id: AppId,
    pub name: ScriptName,
    pub kind: ScriptKind,
    pub source: String,
    /// The modules its source imports, recorded with it (each must be a module of the app).
    pub imports: Vec<String>,
}

/// Changes to a script; `None` leaves a field as it is. Any change moves `updated_at` forward.
#[derive(Debug, Clone, Default)]
pub struct ScriptPatch {
    pub name: Option<ScriptName>,
    pub kind: Option<ScriptKind>,
    pub source: Option<String>,
    /// The modules the new source imports; `None` keeps the recorded ones.
    pub imports: Option<Vec<String>>,
}

/// One module script of an app, and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppModule {
    pub app_id: AppId,
    pub name: String,
    pub version: picloud_core::exec::ModuleVersion,
}

/// A script another one imports or is imported by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLink {
    pub id: ScriptId,
    pub name: String,
}

/// A new route. The caller has checked that the script is an endpoint of `app_id`.
#[derive(Debug, Clone)]
pub struct NewRoute {
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub method: RouteMethod,
    pub path: RoutePath,
    pub dispatch_mode: DispatchMode,
    pub keep_headers: KeptHeaders,
}

/// A route with what it takes to run it: the app's slug and error setting, and the script's
/// current version. The route index is built from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingEntry {
    pub route: Route,
    pub app_slug: AppSlug,
    pub app_expose_errors: bool,
    pub script_name: ScriptName,
    pub script_updated_at: Timestamp,
    pub script_source: String,
}

/// A user with its password hash (PHC string), for login.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

#[async_trait]
pub trait AppStore: Send + Sync {
    /// `Conflict` when the slug is taken.
    async fn create_app(&self, app: &NewApp) -> StoreResult<App>;
    async fn get_app(&self, id: AppId) -> StoreResult<Option<App>>;
    async fn get_app_by_slug(&self, slug: &str) -> StoreResult<Option<App>>;
    /// Oldest first.
    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>>;
    /// `NotFound("app")` when it does not exist, `Conflict` when the new slug is taken.
    /// `updated_at` becomes the database's now, or the old value + 1 ms if that is not later.
    async fn update_app(&self, id: AppId, patch: &AppPatch) -> StoreResult<App>;
    /// Deletes the app with everything it holds: scripts, routes, triggers, KV entries, outbox
    /// jobs, dead letters, abandoned executions, memberships and bound API keys. `false` when
    /// there was no such app.
    async fn delete_app(&self, id: AppId) -> StoreResult<bool>;
    /// What the app holds against its quotas; `None` when there is no such app.
    async fn app_usage(&self, id: AppId) -> StoreResult<Option<AppUsage>>;
}

/// Execution records (issue #18), written by an [`ExecutionWriter`] on a thread of its own. On
/// SQLite they live in a database file of their own beside the main one (`…-executions.db`),
/// so that writing them never waits for the outbox's writes, nor they for it.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// The app's records matching `filter`, newest first.
    async fn list_executions(
        &self,
        app_id: AppId,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ExecutionRecord>>;
    /// Every attempt's record of the execution `id`, first attempt first; empty when none.
    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Vec<ExecutionRecord>>;
    /// The records of the app's batches `batches` (the ones a [`RecordNotice`] names), oldest
    /// first.
    async fn executions_in_batches(
        &self,
        app_id: AppId,
        batches: &[RecordId],
    ) -> StoreResult<Vec<ExecutionRecord>>;
    /// Deletes, of each app, up to `limit` batches of records made more than `older_than_ms` ago
    /// and up to `limit` beyond its newest `keep_per_app` records, and up to `limit` batches of
    /// each app that no longer exists; answers how many records.
    async fn sweep_executions(
        &self,
        older_than_ms: i64,
        keep_per_app: u64,
        limit: u32,
    ) -> StoreResult<u64>;
    /// A writer for a thread of its own (it blocks that thread; call on a tokio runtime, as
    /// [`OutboxStore::outbox_committer`]). `origin` names the writing node in the notices other
    /// nodes receive ([`Notice::Records`]).
    fn execution_writer(&self, origin: &str) -> StoreResult<Box<dyn ExecutionWriter>>;
}

/// Writes execution records, blocking the calling thread.
pub trait ExecutionWriter: Send {
    /// Writes `records` in one transaction, in batches (one per app, unless its records started
    /// far apart or fill more than one), and on PostgreSQL notifies the other nodes of them
    /// ([`Store::notices`]). On PostgreSQL the records of an app deleted meanwhile are left out
    /// (on SQLite the sweep deletes them); a write tried again writes nothing twice.
    fn write(&mut self, records: &[ExecutionRecord]) -> StoreResult<()>;
    /// Deletes up to `limit` of the app's oldest batches while the newer ones hold `keep`
    /// records or more; answers how many records.
    fn trim(&mut self, app_id: AppId, keep: u64, limit: u32) -> StoreResult<u64>;
}

/// Batches of records a node wrote, of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordNotice {
    /// The writing node's `origin` ([`ExecutionStore::execution_writer`]).
    pub origin: String,
    pub app_id: AppId,
    /// Each batch by the id of its newest record.
    pub batches: Vec<RecordId>,
}

/// What the database tells every node ([`Store::notices`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A node wrote execution records (for live tails).
    Records(RecordNotice),
    /// An async job was committed: idle dispatchers may claim it.
    Jobs,
    /// The app, one of its scripts or one of its routes changed.
    Changed(AppId),
}

/// The stream of [`Notice`]s, on a connection of its own.
pub struct Notices(pub(crate) postgres::Listener);

impl Notices {
    /// The next notice. An error means the connection was lost (notices meanwhile are lost
    /// too: catch up by other means, as the route index's poll does); the next call connects
    /// and listens again.
    pub async fn next(&mut self) -> StoreResult<Notice> {
        self.0.next().await
    }
}

#[async_trait]
pub trait ScriptStore: Send + Sync {
    /// `NotFound("app")` when the app does not exist, `Conflict` when the name is taken in it.
    async fn create_script(&self, script: &NewScript) -> StoreResult<Script>;
    async fn get_script(&self, id: ScriptId) -> StoreResult<Option<Script>>;
    /// Oldest first.
    async fn list_scripts(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Script>>;
    /// `NotFound("script")`, or `Conflict` when the new name is taken in the app. `updated_at`
    /// becomes the database's now, or the old value + 1 ms if that is not later.
    async fn update_script(&self, id: ScriptId, patch: &ScriptPatch) -> StoreResult<Script>;
    /// `Conflict` while routes or triggers still point at it (the message says how many);
    /// `false` when there was no such script. The imports it records and those of it go with it.
    async fn delete_script(&self, id: ScriptId) -> StoreResult<bool>;
    /// The module script `name` of the app (the changelog's `ModuleSource` lookup); `None` when
    /// it has none (an endpoint of that name is not a module).
    async fn get_module(&self, app_id: AppId, name: &str) -> StoreResult<Option<Script>>;
    /// The module scripts of the app (of every app for `None`) with their versions, by app.
    async fn module_versions(&self, app_id: Option<AppId>) -> StoreResult<Vec<AppModule>>;
    /// The scripts `id` imports, by name.
    async fn imports_of(&self, id: ScriptId) -> StoreResult<Vec<ScriptLink>>;
    /// The scripts that import `id`, by name.
    async fn importers_of(&self, id: ScriptId) -> StoreResult<Vec<ScriptLink>>;
    /// Every import recorded in the app, by names: `(importer, imported)`.
    async fn import_graph(&self, app_id: AppId) -> StoreResult<Vec<(String, String)>>;
}

#[async_trait]
pub trait RouteStore: Send + Sync {
    /// `NotFound("script")` when the script is gone, `Conflict` when the app already has a
    /// route with this method and path.
    async fn create_route(&self, route: &NewRoute) -> StoreResult<Route>;
    async fn get_route(&self, id: RouteId) -> StoreResult<Option<Route>>;
    /// Oldest first.
    async fn list_routes(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Route>>;
    async fn list_routes_of_script(&self, script_id: ScriptId) -> StoreResult<Vec<Route>>;
    async fn delete_route(&self, id: RouteId) -> StoreResult<bool>;
    /// Every route (of one app, or of all apps) joined with its app and script, for the
    /// in-memory route index.
    async fn routing_entries(&self, app_id: Option<AppId>) -> StoreResult<Vec<RoutingEntry>>;
    /// A value that changes whenever the route index would (an app renamed or its
    /// `expose_errors` changed, an app created or deleted, a script updated, a route added or removed), so other nodes on the same database notice
    /// by polling it. One cheap query of counts, newest ids and sums of versions; it suffices
    /// because routes are never updated, every app or script update moves its `updated_at`
    /// forward, a script that routes point at cannot be deleted, and deleting an app deletes its
    /// routes.
    async fn routing_fingerprint(&self) -> StoreResult<String>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// `Conflict` when the username is taken.
    async fn create_user(
        &self,
        username: &Username,
        password_hash: &str,
        is_instance_admin: bool,
    ) -> StoreResult<User>;
    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>>;
    async fn user_credentials(&self, username: &Username) -> StoreResult<Option<UserCredentials>>;
    async fn count_users(&self) -> StoreResult<u64>;
    /// Disables (or enables again) a user; a disabled user's sessions stop finding it.
    /// `NotFound("user")` when it does not exist.
    async fn set_user_disabled(&self, id: UserId, disabled: bool) -> StoreResult<User>;
    /// Users, oldest first.
    async fn list_users(&self, page: &PageRequest) -> StoreResult<Page<User>>;
    /// Replaces the password hash and ends every session of the user. `NotFound("user")`.
    async fn set_password(&self, id: UserId, password_hash: &str) -> StoreResult<User>;
    /// Grants or withdraws the instance-admin flag. `NotFound("user")`.
    async fn set_instance_admin(&self, id: UserId, is_instance_admin: bool) -> StoreResult<User>;
    /// Deletes the user with its sessions, memberships and API keys; `false` when there was none.
    async fn delete_user(&self, id: UserId) -> StoreResult<bool>;
    /// Ends every session of the user; returns how many.
    async fn delete_sessions_of_user(&self, id: UserId) -> StoreResult<u64>;
}

/// A new API key. The caller made the secret; only its hash comes here.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub user_id: UserId,
    pub name: ApiKeyName,
    pub prefix: String,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<Scope>,
    pub app_id: Option<AppId>,
    pub expires_at: Option<Timestamp>,
}

/// A usable API key (not revoked, not expired) with its secret's hash, for authentication.
#[derive(Debug, Clone)]
pub struct ApiKeyCredentials {
    pub key: ApiKey,
    pub secret_hash: Vec<u8>,
}

#[async_trait]
pub trait MembershipStore: Send + Sync {
    /// Gives `user_id` the `role` on `app_id`, replacing the role it had.
    /// `NotFound("app")` or `NotFound("user")` when either does not exist.
    async fn set_membership(
        &self,
        app_id: AppId,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<Membership>;
    /// `false` when the user was no member.
    async fn remove_membership(&self, app_id: AppId, user_id: UserId) -> StoreResult<bool>;
    /// The members of an app, by username.
    async fn list_members(&self, app_id: AppId) -> StoreResult<Vec<Membership>>;
    /// Every app the user is a member of, with its role there.
    async fn memberships_of_user(&self, user_id: UserId) -> StoreResult<Vec<(AppId, Role)>>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// `NotFound("user")` / `NotFound("app")` when the user or the bound app does not exist.
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey>;
    async fn get_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKey>>;
    /// The key with this prefix when it is neither revoked nor expired (by the database's clock).
    async fn api_key_credentials(&self, prefix: &str) -> StoreResult<Option<ApiKeyCredentials>>;
    /// Sets `last_used_at` to the database's now.
    async fn touch_api_key(&self, id: ApiKeyId) -> StoreResult<()>;
    /// The keys of one user (or of everyone), oldest first, revoked ones included.
    async fn list_api_keys(&self, user_id: Option<UserId>) -> StoreResult<Vec<ApiKey>>;
    /// Marks the key revoked; `false` when there was no such key (or it was revoked already).
    async fn revoke_api_key(&self, id: ApiKeyId) -> StoreResult<bool>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a session under the SHA-256 of its token (never the token), valid for `ttl_ms`
    /// from the database's now.
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: UserId,
        ttl_ms: i64,
    ) -> StoreResult<Timestamp>;
    /// The session's user when the session exists, has not expired and the user is enabled.
    async fn session_user(&self, token_hash: &[u8]) -> StoreResult<Option<User>>;
    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<bool>;
    /// Removes expired sessions; returns how many.
    async fn delete_expired_sessions(&self) -> StoreResult<u64>;
}

/// A KV write's effect: the value before it, and how many trigger jobs it enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct KvWritten {
    pub prev_value: Option<serde_json::Value>,
    pub jobs_enqueued: u32,
}

/// One run's effects to commit ([`KvStore::commit_run`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RunCommit {
    /// The run's app, its trigger depth (the jobs its writes fire run one deeper) and how many
    /// trigger jobs it may fire.
    pub origin: WriteOrigin,
    pub effects: Effects,
    /// For a run of an outbox job: the attempt it ran as. The commit deletes the job's row, and
    /// commits nothing (`Fenced`) once the row moved on to another attempt.
    pub finishes: Option<JobAttempt>,
}

/// What became of a run's commit. Only `Committed` wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunVerdict {
    /// Its writes, the jobs their triggers fired and its dead-letter actions are durable.
    Committed { trigger_jobs: u32 },
    /// Something it read changed before its commit: run it again.
    Conflict,
    /// Its job's attempt moved on (its lease expired and another worker took it).
    Fenced,
    /// Its writes would take the app past a quota, or fire more trigger jobs than it may.
    Refused(OverLimit),
    /// Its app was deleted.
    AppGone,
}

/// The per-app KV store. Values are JSON; keys sort by their bytes on both backends. Every
/// write is a run's commit ([`KvStore::commit_run`]); `kv_set` and `kv_delete` are runs of one
/// write.
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The entry's value and version.
    async fn kv_read(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Option<(serde_json::Value, Version)>>;
    /// The entry's version, without its value.
    async fn kv_version(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Option<Version>>;
    /// Keys ascending, each with its value and version; `InvalidInput` for a cursor this store
    /// did not issue or a prefix no key could start with, or when the page holds more than
    /// `max_bytes` of keys and values ([`StoreError::ReadTooLarge`]). `limit` 0 means the default (100);
    /// more than [`picloud_core::events::KV_MAX_LIST_LIMIT`] is capped.
    async fn kv_page(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
        max_bytes: usize,
    ) -> StoreResult<Page<(String, serde_json::Value, Version)>>;
    /// Commits a run's effects in one durable transaction: checks that every read still holds
    /// (each key at the version it saw, or still absent; each page the same keys at the same
    /// versions), deletes its job's row (fenced by attempt), applies its writes at the app's
    /// next version, enqueues the jobs of the KV triggers they fire (at
    /// `origin.trigger_depth + 1`), applies its dead-letter actions, and counts all of it
    /// against the app's quotas. Anything but `Committed` writes nothing.
    async fn commit_run(&self, run: RunCommit) -> StoreResult<RunVerdict>;

    async fn kv_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Option<serde_json::Value>> {
        Ok(self
            .kv_read(app_id, collection, key)
            .await?
            .map(|(value, _)| value))
    }
    async fn kv_has(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<bool> {
        Ok(self.kv_version(app_id, collection, key).await?.is_some())
    }
    /// Upserts the entry: a run of this one write ([`KvStore::commit_run`]), which returns the
    /// value it replaced. `InvalidInput` when the value is too large, `NotFound("app")` when the
    /// writer's app is gone, `OverLimit` (nothing written) when the write would fire more jobs
    /// than `origin.trigger_jobs_left` or take the app past a quota ([`AppUsage::admit`]).
    async fn kv_set(
        &self,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
        value: &serde_json::Value,
    ) -> StoreResult<KvWritten> {
        picloud_core::events::kv_value_text(value)
            .map_err(|err| StoreError::InvalidInput(err.message))?;
        kv::write_one(self, origin, collection, key, Some(value)).await
    }
    /// Deletes the entry, firing the matching `delete` triggers. When there was no entry
    /// nothing is written and `prev_value` is `None`. `OverLimit` as for `kv_set`: a delete
    /// frees bytes, but the jobs it fires count.
    async fn kv_delete(
        &self,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<KvWritten> {
        kv::write_one(self, origin, collection, key, None).await
    }
    /// [`KvStore::kv_page`] without the versions, or a bound on its bytes.
    async fn kv_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> StoreResult<Page<(String, serde_json::Value)>> {
        let page = self
            .kv_page(app_id, collection, request, usize::MAX)
            .await?;
        Ok(page.map(|(key, value, _)| (key, value)))
    }
}

/// A field path an app declared indexed in one of its collections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocIndex {
    pub path: FieldPath,
    pub created_at: Timestamp,
}

/// The per-app document store's reads and declared indexes. Documents are maps of JSON; every
/// write is a run's commit ([`KvStore::commit_run`], with [`Effects::docs`]). Filters compare
/// values in one order on both backends (`picloud_core::docs`).
#[async_trait]
pub trait DocStore: Send + Sync {
    /// The document and its version.
    async fn doc_read(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        id: DocumentId,
    ) -> StoreResult<Option<(StoredDoc, Version)>>;
    /// Documents by id (creation order), each with its version; the request's prefix is not
    /// used. `InvalidInput` for a cursor this store did not issue, or when the page holds more
    /// than `max_bytes` ([`StoreError::ReadTooLarge`]).
    async fn doc_page(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
        max_bytes: usize,
    ) -> StoreResult<Page<(String, StoredDoc, Version)>>;
    /// The first `fetch` documents that `query` finds, in its order, and the collection's version
    /// (read first); `ReadTooLarge` when they hold more than `max_bytes`.
    async fn doc_find(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        query: &Query,
        fetch: u32,
        max_bytes: usize,
    ) -> StoreResult<Found>;
    /// Declares `path` indexed in the app's collection, making the index of the path when no app
    /// had one (on PostgreSQL it blocks the collection's writes while it is built). Declaring it
    /// again changes nothing; `Conflict` when the app declares [`MAX_DOC_INDEXES_PER_APP`].
    async fn declare_doc_index(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        path: &FieldPath,
    ) -> StoreResult<DocIndex>;
    /// Withdraws the app's declaration of `path` in the collection; the index itself is dropped
    /// when no app declares the path any more. `false` when it was not declared.
    async fn drop_doc_index(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        path: &FieldPath,
    ) -> StoreResult<bool>;
    /// Refreshes what the database knows of the documents' indexes, for its planner to choose
    /// between them (SQLite: `ANALYZE docs` from a sample; PostgreSQL analyzes by itself). Done
    /// when an index is declared and by the periodic sweep.
    async fn refresh_doc_statistics(&self) -> StoreResult<()>;
    /// The paths the app declared indexed in the collection, by path.
    async fn doc_indexes(
        &self,
        app_id: AppId,
        collection: &CollectionName,
    ) -> StoreResult<Vec<DocIndex>>;
}

/// A new trigger. The caller has checked that the script is an endpoint of `app_id`.
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub detail: TriggerDetail,
}

#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// `NotFound("script")` when the script is gone.
    async fn create_trigger(&self, trigger: &NewTrigger) -> StoreResult<Trigger>;
    async fn get_trigger(&self, id: TriggerId) -> StoreResult<Option<Trigger>>;
    /// Oldest first.
    async fn list_triggers(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Trigger>>;
    async fn delete_trigger(&self, id: TriggerId) -> StoreResult<bool>;
}

/// A claim on a job: who holds it and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The claiming process (a boot id, unique per start).
    pub owner: String,
    pub lease_ms: i64,
}

/// An async job to put in the outbox: pending, due now, never claimed (attempt 0).
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The execution's id.
    pub id: ExecutionId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub payload: JobPayload,
    pub trigger_depth: u32,
}

/// A sync request being served, recorded in `sync_requests` (not the outbox: see
/// [`OutboxStore::sweep_sync_requests`]) once its run has gone on for a moment (the orchestrator
/// says how long; one answered sooner is never written) until its caller has the answer
/// ([`OutboxBatch::served`]) or it is recorded abandoned ([`OutboxStore::abandon_sync`]).
/// Its node holds it under a lease; one whose lease lapsed (its node died) is recorded abandoned
/// by a sweep. Never run again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The execution's id.
    pub id: ExecutionId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub lease: Lease,
}

/// One attempt at a job; completion writes name it, and are refused (fenced) once the row has
/// moved on to another attempt or owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobAttempt {
    pub id: ExecutionId,
    pub attempt: u32,
}

/// A job claimed to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub id: ExecutionId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub payload: JobPayload,
    pub trigger_depth: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub created_at: Timestamp,
}

impl ClaimedJob {
    pub fn attempt_ref(&self) -> JobAttempt {
        JobAttempt {
            id: self.id,
            attempt: self.attempt,
        }
    }
}

/// One group commit of the outbox: new rows, finished attempts and runs' commits, in one
/// transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxBatch {
    pub enqueue: Vec<NewJob>,
    /// Attempts that finished; their rows are deleted (fenced by attempt).
    pub finished: Vec<JobAttempt>,
    /// Sync requests whose runs are going on.
    pub serving: Vec<SyncRequest>,
    /// Sync requests whose callers have their answers: their records are deleted.
    pub served: Vec<ExecutionId>,
    /// Runs to commit as [`KvStore::commit_run`] does, after the rows above; on disk when they
    /// write ([`OutboxBatch::must_sync`]).
    pub runs: Vec<RunCommit>,
    /// On disk when the call returns (fsync). `false` for rows that promise nothing beyond the
    /// caller's open connection (sync requests): PostgreSQL `synchronous_commit = off`, SQLite
    /// `synchronous = NORMAL` for this commit.
    pub durable: bool,
}

impl OutboxBatch {
    /// Whether the commit must be on disk before it returns: the batch asks for it, or one of
    /// its runs writes data (a run that only read has nothing to lose).
    pub fn must_sync(&self) -> bool {
        self.durable || self.runs.iter().any(|run| run.effects.writes_anything())
    }
}

/// Writes [`OutboxBatch`]es as [`OutboxStore::commit_outbox`] does, blocking the calling thread;
/// answers the verdict of each of the batch's runs, in order.
pub trait OutboxCommitter: Send {
    fn commit(&mut self, batch: &OutboxBatch) -> StoreResult<Vec<RunVerdict>>;
}

/// How many jobs wait and run, for metrics, `/readyz` detail and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    pub pending: u64,
    pub running: u64,
}

/// How far the outbox is behind, for metrics: what is due and has not been claimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxLag {
    /// Pending jobs whose due time has come.
    pub due: u64,
    /// How long the job due first has waited since it fell due, by the database's clock; 0
    /// when none is due.
    pub oldest_due_ms: u64,
}

/// The outbox and the sync requests' records: every async job is an outbox row until it
/// finished or was dead-lettered; every sync request a record until it was answered or
/// abandoned.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Writes the batch in one transaction, counting its async jobs into and out of their apps'
    /// queued jobs ([`AppUsage::queued_jobs`]). A job of an app deleted meanwhile is skipped (it
    /// could never run), not an error for the whole batch. It checks no quota: an async request
    /// is checked before it is recorded (the dispatcher's `accept`).
    async fn commit_outbox(&self, batch: &OutboxBatch) -> StoreResult<Vec<RunVerdict>>;
    /// A committer for a thread of its own (the recorder's, which group-commits every outbox
    /// row the platform writes); it blocks that thread, so it must not be used on an async
    /// runtime's. Call on a tokio runtime: the committer runs async parts on it.
    fn outbox_committer(&self) -> StoreResult<Box<dyn OutboxCommitter>>;
    /// Claims up to `limit` due jobs for `owner`: first `running` rows whose lease has expired
    /// (their process died), oldest lease first; then `pending` rows whose due time has come,
    /// fairly across apps (issue #13: one app's backlog must not delay every other app's jobs).
    /// `per_app` is the most jobs of one app `owner` runs at once, and `running` the jobs it runs
    /// now, per app: an app gets at most `per_app` less its running jobs (the caller knows them;
    /// the outbox would tell late, a finished row waits a moment for its deletion). The apps
    /// take turns: an app's n-th job comes after every other app's (n − 1)-th, its running jobs
    /// counting as turns taken; within a turn the job that fell due first goes first; one app's
    /// jobs go in the order they fell due. A claim costs a few index seeks per app and job of
    /// `per_app`, whatever the backlog. Each gets attempt + 1 and a lease of `lease_ms` from the
    /// database's now; they come back oldest due first. On PostgreSQL `FOR UPDATE SKIP LOCKED`,
    /// so several nodes never claim one row together.
    async fn claim_jobs(
        &self,
        owner: &str,
        limit: u32,
        per_app: u32,
        running: &[(AppId, u32)],
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedJob>>;
    /// Extends the leases of these attempts and sync requests while `owner` still holds them,
    /// in one transaction; returns how many.
    async fn extend_leases(
        &self,
        owner: &str,
        jobs: &[JobAttempt],
        serving: &[ExecutionId],
        lease_ms: i64,
    ) -> StoreResult<u64>;
    /// A failed attempt goes back to `pending`, due `delay_ms` from now, with its error kept.
    /// `false` when fenced.
    async fn retry_job(&self, job: JobAttempt, delay_ms: i64, error: &str) -> StoreResult<bool>;
    /// Moves the job into `dead_letters` (attempts = its attempt) and enqueues one job per
    /// dead-letter trigger of its app at depth + 1, in one durable transaction. `None` when
    /// fenced.
    async fn dead_letter_job(
        &self,
        job: JobAttempt,
        error: &str,
    ) -> StoreResult<Option<DeadLetter>>;
    /// The recursion stop: deletes a dead-letter handler's job and marks the dead letter it
    /// handled `handler_failed` (never a new dead letter, never a retry), keeping `error` with it;
    /// a dead letter closed meanwhile stays as it was. `false` when fenced.
    async fn fail_dead_letter_handler(
        &self,
        job: JobAttempt,
        dead_letter: DeadLetterId,
        error: &str,
    ) -> StoreResult<bool>;
    /// Writes an `abandoned_executions` row for the sync request `id` of `app_id`'s `script_id`
    /// with `reason` (its caller had gone, before or after it ran), and deletes its record if it
    /// was written. `false` when the app is gone or the request was recorded abandoned already.
    async fn abandon_sync(
        &self,
        id: ExecutionId,
        app_id: AppId,
        script_id: ScriptId,
        reason: &str,
    ) -> StoreResult<bool>;
    /// Records the sync requests whose lease lapsed (their node died with their callers'
    /// connections) as abandoned; returns how many. Every node calls it every few seconds.
    ///
    /// Sync requests are the hot path: each inserts a record and deletes it a moment later. On
    /// PostgreSQL that leaves a dead row per request, which vacuum reclaims late under load; so
    /// the records live in two partitions, written one at a time, and a sweep — at most one in
    /// `rotate_after_ms` across all nodes — empties the other by `TRUNCATE` (keeping its
    /// requests still held by moving them to the one written, recording its lapsed ones) and
    /// writes to it from then on. A lapsed request is recorded within two such sweeps. SQLite,
    /// which reuses a deleted row's space at once, records the lapsed ones at every sweep.
    async fn sweep_sync_requests(&self, rotate_after_ms: i64) -> StoreResult<u64>;
    /// Puts `owner`'s running jobs back to `pending`, due now (a clean shutdown); returns how many.
    async fn release_jobs(&self, owner: &str) -> StoreResult<u64>;
    async fn outbox_depth(&self) -> StoreResult<OutboxDepth>;
    /// Cost: in proportion to the pending jobs (one pass over them).
    async fn outbox_lag(&self) -> StoreResult<OutboxLag>;
}

/// Which dead letters to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeadLetterStatus {
    #[default]
    Unresolved,
    Resolved,
    All,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub status: DeadLetterStatus,
    pub script_id: Option<ScriptId>,
}

/// A sync execution whose caller had gone (timed out or disconnected, or its node died).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AbandonedExecution {
    pub execution_id: ExecutionId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub reason: String,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    async fn get_dead_letter(&self, id: DeadLetterId) -> StoreResult<Option<DeadLetter>>;
    /// Newest first.
    async fn list_dead_letters(
        &self,
        app_id: AppId,
        filter: &DeadLetterFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<DeadLetter>>;
    async fn count_unresolved_dead_letters(&self, app_id: AppId) -> StoreResult<u64>;
    /// Each app's unresolved dead letters, by the app's slug, in no order; apps with none are
    /// left out. Cost: a walk of the unresolved dead letters' index.
    async fn count_unresolved_dead_letters_by_app(&self) -> StoreResult<Vec<(String, u64)>>;
    /// Enqueues the dead letter's job again (async, pending, due now, as `execution_id`, at the
    /// same trigger depth) and marks it `replayed`, in one durable transaction.
    /// `NotFound("dead letter")`; `Conflict` when it is already resolved (the message says how
    /// and when); `OverLimit` when its app has its quota of queued jobs.
    async fn replay_dead_letter(
        &self,
        id: DeadLetterId,
        execution_id: ExecutionId,
    ) -> StoreResult<DeadLetter>;
    /// Marks it `resolved`. `NotFound("dead letter")`; `Conflict` when already resolved.
    async fn resolve_dead_letter(&self, id: DeadLetterId) -> StoreResult<DeadLetter>;
    /// Deletes up to `limit` dead letters created more than `older_than_ms` ago (by the
    /// database's clock); returns how many. Safe to run on several nodes at once.
    async fn sweep_dead_letters(&self, older_than_ms: i64, limit: u32) -> StoreResult<u64>;
    /// The same for `abandoned_executions`.
    async fn sweep_abandoned_executions(&self, older_than_ms: i64, limit: u32) -> StoreResult<u64>;
    /// Newest first.
    async fn list_abandoned_executions(
        &self,
        app_id: AppId,
        page: &PageRequest,
    ) -> StoreResult<Page<AbandonedExecution>>;
}

/// One of a store's connection pools, as it is now: how full it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// `main` (PostgreSQL); `reader`, `writer` and `records` (SQLite).
    pub name: &'static str,
    /// Connections lent out now.
    pub in_use: u32,
    /// Connections open and waiting in the pool.
    pub idle: u32,
    /// The most connections the pool opens.
    pub capacity: u32,
}

/// Everything PiCloud keeps, on one backend.
#[async_trait]
pub trait Store:
    AppStore
    + ScriptStore
    + RouteStore
    + UserStore
    + SessionStore
    + MembershipStore
    + ApiKeyStore
    + KvStore
    + DocStore
    + TriggerStore
    + OutboxStore
    + DeadLetterStore
    + ExecutionStore
{
    fn backend(&self) -> Backend;
    /// What each app may hold ([`StoreConfig::quotas`]).
    fn quotas(&self) -> &AppQuotas;
    /// Applies the backend's pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// A round trip to the database, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// The connection pools, without waiting for any.
    fn pools(&self) -> Vec<PoolUsage>;
    /// What other nodes change, as it happens: on PostgreSQL (`LISTEN`); `None` on SQLite, where
    /// one process knows what it changed.
    async fn notices(&self) -> StoreResult<Option<Notices>>;
    /// Closes the pool; later calls fail with `Unavailable`.
    async fn close(&self);
}

#[async_trait]
impl<E: db::Engine> Store for E {
    fn backend(&self) -> Backend {
        E::BACKEND
    }

    fn quotas(&self) -> &AppQuotas {
        self.app_quotas()
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.run_migrations().await
    }

    async fn ping(&self) -> StoreResult<()> {
        let _: Option<(i64,)> = self.fetch_optional(sql::PING, &[]).await?;
        Ok(())
    }

    fn pools(&self) -> Vec<PoolUsage> {
        self.pool_usage()
    }

    async fn notices(&self) -> StoreResult<Option<Notices>> {
        self.listen().await
    }

    async fn close(&self) {
        self.close_pools().await;
    }
}

/// Opens the store `config` names (creating the SQLite file and its directory when missing).
/// Does not migrate: call [`Store::migrate`].
pub async fn open(config: &StoreConfig) -> StoreResult<Arc<dyn Store>> {
    match config::Location::parse(config)? {
        config::Location::Sqlite(path) => {
            Ok(Arc::new(sqlite::SqliteStore::open(&path, config).await?))
        }
        config::Location::Postgres(url) => {
            Ok(Arc::new(postgres::PgStore::open(&url, config).await?))
        }
    }
}
