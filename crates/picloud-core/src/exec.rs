//! The execution contract: what the orchestrator asks an executor to run and what comes back.
//! Every type here is serialisable, because the remote executor receives it over HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{AppId, ExecutionId, ScriptId, Timestamp};

/// One execution to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    pub execution_id: ExecutionId,
    pub app: AppRef,
    pub script: ScriptRef,
    pub request: HttpRequest,
    /// What the script's data calls may do: the app's own authority for public routes and
    /// triggers, the caller's capabilities for a test run.
    #[serde(default)]
    pub authority: crate::Authority,
    /// The trigger event a triggered run handles (`ctx.event`); `None` for HTTP.
    #[serde(default)]
    pub event: Option<crate::events::TriggerEvent>,
    /// How many triggers deep this run is: 0 for HTTP, one more than the writer's for a
    /// triggered run. KV writes carry it on to the jobs they enqueue.
    #[serde(default)]
    pub trigger_depth: u32,
    /// Which run of the execution this is (`ctx.attempt`): 1 for the first; more when it runs
    /// again after a conflict or as a retried job.
    #[serde(default = "first_run")]
    pub attempt: u32,
    /// The app's module scripts when the run was built: what `import` may name, and the version
    /// a cached compiled module must have to be used (so an import costs no database query).
    #[serde(default)]
    pub modules: ModuleVersions,
}

fn first_run() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRef {
    pub id: AppId,
    pub slug: String,
}

/// One version of a script's source: `(id, updated_at)` is the AST cache's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScriptRef {
    pub id: ScriptId,
    pub name: String,
    pub updated_at: Timestamp,
    pub source: Arc<str>,
}

/// One version of a module script: a compiled module is used while its version is the one the
/// run names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModuleVersion {
    pub id: ScriptId,
    pub updated_at: Timestamp,
}

/// An app's module scripts by name, with their versions. Shared, so handing it to every run of
/// the app costs a reference count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModuleVersions(Arc<BTreeMap<String, ModuleVersion>>);

impl ModuleVersions {
    pub fn new(modules: impl IntoIterator<Item = (String, ModuleVersion)>) -> Self {
        Self(Arc::new(modules.into_iter().collect()))
    }

    pub fn get(&self, name: &str) -> Option<ModuleVersion> {
        self.0.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// What the save-time check of a script learnt beyond that it compiles: the modules it imports,
/// each with where it first does (the changelog's `ValidatedScript`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidatedScript {
    pub imports: Vec<Import>,
}

/// One module a script imports, and the position of its first `import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub name: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// The HTTP request as a script sees it in `ctx.request`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    /// The path below the app's slug, starting with `/`.
    pub path: String,
    pub params: BTreeMap<String, String>,
    /// Query parameters; a repeated name keeps its last value.
    pub query: BTreeMap<String, String>,
    /// Header names in lower case; a repeated header's values are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
}

/// What a script answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ResponseBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum ResponseBody {
    Empty,
    Text(String),
    Json(serde_json::Value),
}

/// An execution that did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ExecError {
    pub kind: ExecErrorKind,
    pub message: String,
    /// Where in the script, when known (1-based).
    pub line: Option<u32>,
    pub column: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecErrorKind {
    /// The source does not compile.
    Compile,
    /// The script raised an error (`throw`, a type error, a failed SDK call…).
    Runtime,
    /// The script hit one of its [`Limits`](crate::Limits).
    LimitExceeded,
    /// The script ran past its wall-clock deadline.
    Timeout,
    /// The script returned something that cannot be a response.
    InvalidResponse,
    /// Its commit kept conflicting with other commits to the same data: it ran as often as it
    /// may (`PICLOUD_CONFLICT_MAX_RUNS`) and wrote nothing.
    Conflict,
    /// The executor could not be reached or failed on its own account.
    Unavailable,
}

impl ExecErrorKind {
    /// The outcome label used in metrics and logs.
    pub const ALL: [Self; 7] = [
        Self::Compile,
        Self::Runtime,
        Self::LimitExceeded,
        Self::Timeout,
        Self::InvalidResponse,
        Self::Conflict,
        Self::Unavailable,
    ];

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compile => "compile_error",
            Self::Runtime => "runtime_error",
            Self::LimitExceeded => "limit_exceeded",
            Self::Timeout => "timeout",
            Self::InvalidResponse => "invalid_response",
            Self::Conflict => "conflict",
            Self::Unavailable => "executor_unavailable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// One `log::*` (or `print` / `debug`) line of an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
    pub at: Timestamp,
    /// Written by a run that was discarded (its commit conflicted and it ran again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discarded: bool,
}

/// The result of one execution with the log lines it wrote, whether or not it succeeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecOutcome {
    pub result: Result<ScriptResponse, ExecError>,
    pub logs: Vec<LogLine>,
    /// Time spent running the script, in microseconds.
    pub duration_us: u64,
    /// What the run asks to commit; empty when it failed (a failed run writes nothing).
    #[serde(default)]
    pub effects: crate::tx::Effects,
}

impl ExecOutcome {
    /// An execution that could not run: the executor failed on its own account.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            result: Err(ExecError {
                kind: ExecErrorKind::Unavailable,
                message: message.into(),
                line: None,
                column: None,
            }),
            logs: Vec::new(),
            duration_us: 0,
            effects: crate::tx::Effects::default(),
        }
    }
}
