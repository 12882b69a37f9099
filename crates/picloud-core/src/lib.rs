//! PiCloud's shared vocabulary. Every other crate speaks in these types; this crate does no I/O
//! and knows nothing of tokio, sqlx or axum.
//!
//! | module | holds |
//! |---|---|
//! | [`id`] | the string ids of apps, scripts, routes, users, executions |
//! | [`time`] | [`Timestamp`], milliseconds since the epoch, RFC 3339 on the wire |
//! | [`input`] | parsed input: slugs, names (one display-name rule for app and API key names), methods, route paths, header names — each `parse` says what was wrong |
//! | [`model`] | the stored records: [`App`], [`Script`], [`Route`], [`User`], [`Membership`], [`ApiKey`] |
//! | [`auth`] | [`Role`], [`Scope`], [`Capability`], the capability table and the [`Principal`] that holds them |
//! | [`limits`] | [`Limits`], the sandbox's bounds, in one place |
//! | [`exec`] | the execution contract between the orchestrator and an executor |
//! | [`docs`] | documents: stored documents, field paths, the query language of `find` and its one order of values |
//! | [`events`] | KV names and limits, triggers, trigger events, outbox job payloads, dead letters |
//! | [`firing`] | which triggers a KV write fires and what a dead letter fans out to: pure rules the stores apply |
//! | [`services`] | [`ScriptServices`]: the KV store and dead letters as scripts reach them |
//! | [`tx`] | one run's unit of work: what it read (with versions) and wrote, its [`tx::Effects`] |
//! | [`cursor`] | the opaque cursors of paged lists |

pub mod auth;
pub mod cursor;
pub mod docs;
pub mod events;
pub mod exec;
pub mod firing;
pub mod id;
pub mod input;
pub mod limits;
pub mod model;
pub mod records;
pub mod services;
pub mod time;
pub mod tx;

pub use auth::{Authority, Capability, CapabilityKind, Credential, Principal, Role, Scope};
pub use events::{
    CollectionName, DeadLetter, DocsOp, JobMode, JobPayload, KvKey, KvOp, Resolution, Trigger,
    TriggerDetail, TriggerEvent,
};
pub use id::{
    ApiKeyId, AppId, DeadLetterId, DocumentId, ExecutionId, RecordId, RouteId, ScriptId, TriggerId,
    UserId,
};
pub use input::{
    ApiKeyName, AppName, AppSlug, DispatchMode, HeaderNames, InputError, KeptHeaders, RouteMethod,
    RoutePath, ScriptKind, ScriptName, Username,
};
pub use limits::Limits;
pub use model::{ApiKey, App, Membership, Route, Script, User};
pub use services::{
    ModuleSource, NoServices, ScriptServices, ServiceCallError, ServiceErrorKind, WriteOrigin,
};
pub use time::Timestamp;
