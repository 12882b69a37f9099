//! The Rhai sandbox and the clients that run scripts in it.
//!
//! The executor never sees the store: it receives a script's source and the request in an
//! [`ExecRequest`] and answers an [`ExecOutcome`]. (Later SDK surfaces reach data through the
//! service traits in `picloud-core`.)

use async_trait::async_trait;
use picloud_core::exec::{ExecOutcome, ExecRequest};

/// Runs executions. The local client runs them in this process; the remote client asks a
/// `picloud executor` process over HTTP. Both pass the same tests.
#[async_trait]
pub trait ExecutorClient: Send + Sync {
    /// Never fails as a call: an execution that could not run comes back as an
    /// `ExecOutcome` whose `result` is an `ExecError` (kind `Unavailable` if the executor itself
    /// could not be reached).
    async fn execute(&self, request: ExecRequest) -> ExecOutcome;
}
