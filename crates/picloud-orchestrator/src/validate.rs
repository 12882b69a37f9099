//! Checking a script's source when it is saved, so a broken script is refused with its line and
//! column instead of failing on its first request.

use picloud_core::exec::{ExecError, ValidatedScript};
use picloud_core::ScriptKind;

/// Compiles a source without running it. The local executor is the implementation; the seam lets
/// the orchestrator stay ignorant of Rhai.
pub trait ScriptValidator: Send + Sync + 'static {
    /// `Err` with kind `Compile`, the message and (when known) the line and column; `Ok` with
    /// the modules the source imports.
    fn validate(&self, source: &str, kind: ScriptKind) -> Result<ValidatedScript, ExecError>;
}

impl ScriptValidator for picloud_executor::LocalExecutorClient {
    fn validate(&self, source: &str, kind: ScriptKind) -> Result<ValidatedScript, ExecError> {
        picloud_executor::LocalExecutorClient::validate(self, source, kind)
    }
}
