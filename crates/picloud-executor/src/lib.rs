//! The Rhai sandbox and the clients that run scripts in it.
//!
//! The executor never writes the store: it receives a script's source and the request (or the
//! trigger event) in an [`ExecRequest`] and answers an [`ExecOutcome`]. Scripts read data only
//! through the [`ScriptServices`](picloud_core::ScriptServices) the local client is built with,
//! always for the app of the execution that calls, never one a script names. What a run reads
//! and writes is kept in its transaction (`picloud_core::tx`) and comes back as the outcome's
//! effects; the orchestrator commits them (issue #15), so a remote executor gives the same
//! guarantee as the local one.
//!
//! | module | holds |
//! |---|---|
//! | [`local`] | [`LocalExecutorClient`]: quick scripts inline on the caller's thread, the rest on a fixed pool of large-stack threads (by default four per core, [`default_threads`]), and its [`ExecutorConfig`] |
//! | [`remote`] | the executor's HTTP API ([`remote::router`], [`remote::serve`]) and [`RemoteExecutorClient`] |
//! | [`sandbox`] | [`Sandbox`]: the shared engine, the AST cache, validation and one execution from start to outcome |
//! | `engine` | the one function that builds the engine and sets every limit |
//! | `context` | the per-call context (ids, authority, deadline, log, tokio handle, data services, the run's transaction) in a thread-local, set by a guard; the capability check and the bounded wait for service calls |
//! | `scope` | the `ctx` constant a script sees, with the trigger event as `ctx.event` |
//! | `response` | `response(…)` and the rules that turn a script's value into a response |
//! | `convert` | script values ↔ JSON (exactly, for stored values) |
//! | `memory` | jemalloc as the global allocator, and the per-thread meter of what a run holds |
//! | `bounded` | the standard functions whose one call could build far more than it is given (`replace`, `split`, `to_chars`), measured before they build |
//! | `comparers` | `sort` and `dedup` with a script's comparer, whose errors (a deadline, the memory budget, a `throw`) end the call instead of being dropped |
//! | `nesting` | bounded recursion over deeply nested values (showing, comparing) |
//! | `errors` | Rhai errors → [`ExecError`](picloud_core::exec::ExecError), with positions and limit names |
//! | `validate` | the save-time checks: a module's top-level shape, namespaced calls, literal imports |
//! | `cache` | the AST cache keyed by script id and `updated_at` |
//! | `modules` | `import`: the resolver (app isolation, cycles, depth) and the compiled-module cache keyed by app, name and version |
//! | `sdk` | the standard library namespaces (`log`, `regex`, `random`, `time`, `json`, `base64`, `hex`, `url`) and the data ones: `kv` with its collection handles, `dead_letters` |
//!
//! `docs/sdk.md` is the script author's side of the same contract.

mod bounded;
mod cache;
pub mod catalogue;
mod comparers;
mod context;
mod convert;
mod engine;
mod errors;
pub mod local;
mod memory;
mod modules;
mod nesting;
pub mod remote;
mod response;
pub mod sandbox;
mod scope;
mod sdk;
mod validate;

use async_trait::async_trait;
use picloud_core::exec::{ExecOutcome, ExecRequest};

pub use catalogue::{closest, sdk_catalogue, Catalogue, SdkFunction, SDK_VERSION};
pub use local::{default_threads, inline_stack_size, ExecutorConfig, LocalExecutorClient};
pub use remote::{RemoteClientError, RemoteExecutorClient};
pub use sandbox::Sandbox;

/// Runs executions. The local client runs them in this process; the remote client asks a
/// `picloud executor` process over HTTP. Both pass the same tests.
#[async_trait]
pub trait ExecutorClient: Send + Sync {
    /// Never fails as a call: an execution that could not run comes back as an
    /// `ExecOutcome` whose `result` is an `ExecError` (kind `Unavailable` if the executor itself
    /// could not be reached).
    async fn execute(&self, request: ExecRequest) -> ExecOutcome;
}
