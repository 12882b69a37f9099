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

/// One attempt of an execution, finished. `picloud logs` reads it back from the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// The record's own id, [`RecordId::of`] the execution and the attempt (the store keeps it
    /// so): an app's records list newest first by it.
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

#[cfg(any(test, feature = "fixtures"))]
impl ExecutionRecord {
    /// For tests: the record of `execution_id`'s `attempt` in `app_id`, a sync request of
    /// `script_id` that answered 200 just now after 42 µs, without log lines.
    pub fn fixture(
        app_id: AppId,
        script_id: ScriptId,
        execution_id: ExecutionId,
        attempt: u32,
    ) -> Self {
        Self {
            id: RecordId::of(execution_id, attempt),
            execution_id,
            attempt,
            app_id,
            script_id,
            source: ExecutionSource::Sync,
            summary: "GET /".to_owned(),
            started_at: Timestamp::now(),
            duration_us: 42,
            runs: 1,
            outcome: "ok".to_owned(),
            status: Some(200),
            error: None,
            logs: Vec::new(),
        }
    }
}

/// Which of an app's records to list; `None` leaves a field out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub script_id: Option<ScriptId>,
    /// `ok`, an error kind, or [`ExecutionFilter::ANY_ERROR`].
    pub outcome: Option<String>,
    pub source: Option<ExecutionSource>,
    /// Started at or after.
    pub since: Option<Timestamp>,
    /// Started before.
    pub until: Option<Timestamp>,
}

impl ExecutionFilter {
    /// The outcome that stands for every error kind (every outcome but `ok`).
    pub const ANY_ERROR: &'static str = "error";

    /// Whether `record` is one this filter keeps: the store's query, for records in memory (the
    /// live tail).
    pub fn matches(&self, record: &ExecutionRecord) -> bool {
        let outcome = match self.outcome.as_deref() {
            None => true,
            Some(Self::ANY_ERROR) => record.outcome != "ok",
            Some(outcome) => record.outcome == outcome,
        };
        outcome
            && self.script_id.is_none_or(|id| id == record.script_id)
            && self.source.is_none_or(|source| source == record.source)
            && self.since.is_none_or(|at| record.started_at >= at)
            && self.until.is_none_or(|at| record.started_at < at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: &str, source: ExecutionSource, started_at: i64) -> ExecutionRecord {
        ExecutionRecord {
            source,
            outcome: outcome.to_owned(),
            started_at: Timestamp::from_millis(started_at),
            ..ExecutionRecord::fixture(AppId::new(), ScriptId::new(), ExecutionId::new(), 1)
        }
    }

    #[test]
    fn a_filter_keeps_what_the_stores_query_keeps() {
        let ok = record("ok", ExecutionSource::Sync, 1_000);
        let failed = record("timeout", ExecutionSource::Async, 2_000);
        let keeps = |filter: ExecutionFilter| {
            [&ok, &failed]
                .into_iter()
                .filter(|r| filter.matches(r))
                .map(|r| r.outcome.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(keeps(ExecutionFilter::default()), ["ok", "timeout"]);
        let outcome = |o: &str| ExecutionFilter {
            outcome: Some(o.to_owned()),
            ..ExecutionFilter::default()
        };
        assert_eq!(keeps(outcome(ExecutionFilter::ANY_ERROR)), ["timeout"]);
        assert_eq!(keeps(outcome("ok")), ["ok"]);
        assert_eq!(keeps(outcome("runtime_error")), Vec::<&str>::new());
        let source = ExecutionFilter {
            source: Some(ExecutionSource::Async),
            ..ExecutionFilter::default()
        };
        assert_eq!(keeps(source), ["timeout"]);
        let script = ExecutionFilter {
            script_id: Some(ok.script_id),
            ..ExecutionFilter::default()
        };
        assert_eq!(keeps(script), ["ok"]);
        let window = ExecutionFilter {
            since: Some(Timestamp::from_millis(1_000)),
            until: Some(Timestamp::from_millis(2_000)),
            ..ExecutionFilter::default()
        };
        assert_eq!(keeps(window), ["ok"]);
    }
}
