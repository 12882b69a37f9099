//! Execution records (issue #18): what happened to each execution — every attempt of it — kept
//! for the admin API, so "what happened to execution 01a2…?" has an answer after the fact.

use serde::{Deserialize, Serialize};

use crate::exec::{ExecError, LogLine};
use crate::{AppId, ExecutionId, RecordId, ScriptId, Timestamp};

/// What started an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionSource {
    /// A request to a sync route.
    Sync,
    /// An attempt of an async route's job.
    Async,
    /// A KV trigger's handler.
    Kv,
    /// A docs trigger's handler.
    Docs,
    /// A dead-letter trigger's handler.
    DeadLetter,
    /// A test run through the admin API.
    Test,
}

impl ExecutionSource {
    pub const ALL: [Self; 6] = [
        Self::Sync,
        Self::Async,
        Self::Kv,
        Self::Docs,
        Self::DeadLetter,
        Self::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
            Self::Kv => "kv",
            Self::Docs => "docs",
            Self::DeadLetter => "dead_letter",
            Self::Test => "test",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|source| source.as_str() == value)
    }
}

/// One attempt of an execution, finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionRecord {
    /// The record's own id: an app's records list newest first by it.
    pub id: RecordId,
    pub execution_id: ExecutionId,
    /// Which attempt of the execution (`ctx.attempt` of its first run): 1, or more for a retried
    /// job.
    pub attempt: u32,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub source: ExecutionSource,
    /// What started it, for a person: `GET /users/1`, `kv set orders/o-17`, `test run`…
    pub summary: String,
    pub started_at: Timestamp,
    pub duration_us: u64,
    /// How many times it ran: more than 1 when its commits conflicted (the log lines of the
    /// runs that were discarded are marked `discarded`).
    pub runs: u32,
    /// `ok` or the kind of error (`runtime_error`, `limit_exceeded`, `timeout`, …).
    pub outcome: String,
    /// The response's status when it answered.
    pub status: Option<u16>,
    pub error: Option<ExecError>,
    pub logs: Vec<LogLine>,
}

/// Which of an app's records to list; `None` leaves a field out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub script_id: Option<ScriptId>,
    /// `ok` or an error kind.
    pub outcome: Option<String>,
    pub source: Option<ExecutionSource>,
    /// Started at or after.
    pub since: Option<Timestamp>,
    /// Started before.
    pub until: Option<Timestamp>,
}
