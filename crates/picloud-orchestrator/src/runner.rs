//! Running one execution: through the execution gate, then the executor, then the commit of its
//! effects, then its metrics and log lines. The dispatcher runs every job (sync requests, async
//! requests, trigger events, test runs) through here.
//!
//! **Where the line is (issue #15).** The executor, local or remote, only reads the store: it
//! runs the script and returns the response with the run's effects — what it read, at which
//! versions, and what it writes. The commit happens here, beside the outbox: the run goes to the
//! [`Recorder`], whose next group commit checks its reads, applies its writes and the jobs of the
//! triggers they fire, and for an async job deletes its row ([`KvStore::commit_run`]), so the
//! job's completion and its effects are durable together or not at all. A run whose reads changed before its commit is
//! discarded and runs again (its log lines kept, marked discarded), up to
//! [`CommitConfig::max_runs`] runs.
//!
//! Every finished execution then leaves an [`ExecutionRecord`] (issue #18): its source, outcome,
//! runs and log, handed to the records' thread off the caller's path ([`Journal::keep`]) and to
//! the app's live tails ([`LogTail`]); [`RecordPolicy`] may leave out of the store sync requests
//! that succeeded (a tail still shows them).
//!
//! [`KvStore::commit_run`]: picloud_store::KvStore::commit_run

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::exec::{ExecError, ExecErrorKind, ExecOutcome, ExecRequest, LogLevel, LogLine};
use picloud_core::records::{ExecutionRecord, ExecutionSource};
use picloud_core::tx::DeadLetterAction;
use picloud_core::{
    AppId, Authority, ExecutionId, RecordId, ScriptId, Timestamp, TriggerEvent, WriteOrigin,
};
use picloud_executor::ExecutorClient;
use picloud_store::{JobAttempt, RunCommit, RunVerdict};
use tokio::sync::Notify;

use crate::config::CommitConfig;
use crate::gate::{Admission, Gate, Refusal};
use crate::journal::Journal;
use crate::metrics::{ExecutionSeries, Metrics};
use crate::recorder::Recorder;
use crate::tail::LogTail;

/// What came of trying to run an execution.
#[derive(Debug)]
pub enum Ran {
    Finished(ExecOutcome, Settled),
    /// The gate, or the app's share of it, stayed full for the whole wait; nothing ran.
    Overloaded(Refusal),
}

/// What the run did with its job's outbox row (the attempt passed to [`Runner::run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Nothing: the run committed nothing with it (it failed, or it had no effects to commit).
    /// The caller finishes the row.
    Open,
    /// The run's commit deleted it, with the run's effects.
    Finished,
    /// The row had moved on to another attempt: nothing was committed.
    Fenced,
}

/// How long an execution waits at a full gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// The gate's bounded wait, then `Overloaded`: a caller is holding a connection.
    Bounded,
    /// Until a permit frees up: a queued job nobody waits on.
    Unbounded,
}

/// Who writes a script's `log::*` lines to this process's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptLogs {
    /// The executor runs in this process and emits each line as the script writes it.
    EmittedByExecutor,
    /// The executor runs elsewhere: its lines come back in the outcome and are emitted here.
    Relay,
}

pub struct Runner {
    gate: Arc<Gate>,
    executor: Arc<dyn ExecutorClient>,
    recorder: Recorder,
    commits: CommitConfig,
    /// Woken when a commit enqueued jobs (trigger jobs, replays), so that this process's
    /// dispatcher runs them at once rather than at its next poll.
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    script_logs: ScriptLogs,
    records: RecordPolicy,
    journal: Journal,
    tail: Arc<LogTail>,
}

impl Runner {
    pub fn new(
        gate: Arc<Gate>,
        executor: Arc<dyn ExecutorClient>,
        (recorder, commits, wake): (Recorder, CommitConfig, Arc<Notify>),
        metrics: Arc<Metrics>,
        (script_logs, records, journal, tail): (ScriptLogs, RecordPolicy, Journal, Arc<LogTail>),
    ) -> Self {
        Self {
            gate,
            executor,
            recorder,
            commits,
            wake,
            metrics,
            script_logs,
            records,
            journal,
            tail,
        }
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Runs `request` to its outcome and commits its effects; `job`, the attempt of an async
    /// job, is finished by that commit. Call it from a task of its own that is not cancelled
    /// (the dispatcher's callers are): the gate permit is held until the run is committed, so
    /// the gate counts what really runs even when the HTTP caller has gone.
    /// The gate counts the execution against `request.app`'s share.
    pub async fn run(
        &self,
        request: ExecRequest,
        patience: Patience,
        job: Option<JobAttempt>,
    ) -> Ran {
        let app = request.app.id;
        let admission = match patience {
            Patience::Bounded => self.gate.acquire(app).await,
            Patience::Unbounded => self.gate.acquire_patiently(app).await,
        };
        let permit = match admission {
            Admission::Admitted(permit) => permit,
            Admission::Overloaded(refusal) => return Ran::Overloaded(refusal),
        };
        let started = Instant::now();
        let started_at = Timestamp::now();
        let context = ExecutionContext::of(&request);
        let series = self
            .metrics
            .executions_of(&request.app.slug, &request.script.name);
        let origin = Origin::of(&request, job.is_some());
        let (outcome, settled, runs) = self.run_and_commit(request, job).await;
        let elapsed = started.elapsed();
        report_execution(
            &context,
            &outcome,
            self.script_logs,
            elapsed.as_secs_f64(),
            (&self.metrics, &series),
        );
        drop(permit);
        let kept = self.records.keeps(origin.source, &outcome);
        if kept || self.tail.is_tailed(app) {
            let record = origin.record(&context, &outcome, runs, started_at, elapsed);
            self.tail.publish(&record);
            if kept {
                self.journal.keep(record);
            }
        }
        Ran::Finished(outcome, settled)
    }

    /// Runs the script and commits what it did, running it again while its commit conflicts;
    /// answers the outcome, what became of the job's row, and how many times it ran.
    async fn run_and_commit(
        &self,
        mut request: ExecRequest,
        job: Option<JobAttempt>,
    ) -> (ExecOutcome, Settled, u32) {
        let mut discarded: Vec<LogLine> = Vec::new();
        let first = request.attempt;
        for run in 1.. {
            request.attempt = first.saturating_add(run - 1);
            let mut outcome = self.executor.execute(request.clone()).await;
            if outcome.result.is_err() || !outcome.effects.need_commit() {
                return (with_discarded(outcome, discarded), Settled::Open, run);
            }
            let effects = std::mem::take(&mut outcome.effects);
            let replays = effects
                .dead_letters
                .iter()
                .any(|action| matches!(action, DeadLetterAction::Replay { .. }));
            let commit = RunCommit {
                origin: WriteOrigin {
                    app_id: request.app.id,
                    trigger_depth: request.trigger_depth,
                    trigger_jobs_left: self.commits.max_trigger_jobs,
                },
                effects,
                finishes: job,
            };
            let settled = if job.is_some() {
                Settled::Finished
            } else {
                Settled::Open
            };
            let failed = match self.recorder.commit_run(commit).await {
                Ok(RunVerdict::Committed { trigger_jobs }) => {
                    if trigger_jobs > 0 || replays {
                        self.wake.notify_one();
                    }
                    return (with_discarded(outcome, discarded), settled, run);
                }
                Ok(RunVerdict::Conflict) if run < self.commits.max_runs => {
                    self.metrics.record_conflict();
                    discarded.extend(outcome.logs.into_iter().map(|line| LogLine {
                        discarded: true,
                        ..line
                    }));
                    tokio::time::sleep(self.commits.backoff(run)).await;
                    continue;
                }
                Ok(RunVerdict::Conflict) => {
                    self.metrics.record_conflict();
                    error(
                        ExecErrorKind::Conflict,
                        format!(
                            "the execution's data kept changing under it: it ran {run} times and \
                             each time another commit changed what it had read first; nothing \
                             was written"
                        ),
                    )
                }
                Ok(RunVerdict::Fenced) => {
                    return (with_discarded(outcome, discarded), Settled::Fenced, run)
                }
                Ok(RunVerdict::Refused(over)) => error(
                    ExecErrorKind::LimitExceeded,
                    format!("the execution's writes were refused, nothing was written: {over}"),
                ),
                Ok(RunVerdict::AppGone) => error(
                    ExecErrorKind::Unavailable,
                    "the app was deleted while the execution ran; nothing was written".to_owned(),
                ),
                Err(err) => {
                    tracing::warn!(execution_id = %request.execution_id, "a run's commit failed: {err}");
                    error(
                        ExecErrorKind::Unavailable,
                        "the execution's writes could not be committed: the database is \
                         unavailable; nothing was written"
                            .to_owned(),
                    )
                }
            };
            outcome.result = Err(failed);
            return (with_discarded(outcome, discarded), Settled::Open, run);
        }
        unreachable!("the loop returns")
    }
}

/// `outcome` with the log lines of the runs discarded before it first.
fn with_discarded(mut outcome: ExecOutcome, mut discarded: Vec<LogLine>) -> ExecOutcome {
    if !discarded.is_empty() {
        discarded.append(&mut outcome.logs);
        outcome.logs = discarded;
    }
    outcome
}

fn error(kind: ExecErrorKind, message: String) -> ExecError {
    ExecError {
        kind,
        message,
        line: None,
        column: None,
    }
}

/// Which executions leave a record ([`ExecutionRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPolicy {
    /// Whether a sync request that succeeded leaves one too (`PICLOUD_RECORD_SYNC_SUCCESSES`):
    /// off spares the most latency-sensitive routes the record's write. Failures always do, as
    /// does every other source.
    pub sync_successes: bool,
    /// Bytes of log a stored record keeps (`PICLOUD_RECORD_MAX_LOG_BYTES`): its first lines,
    /// then one saying how many were left out. With the per-app count, it bounds what a tenant's
    /// records take on disk; the live tail shows the whole log.
    pub max_log_bytes: usize,
}

impl Default for RecordPolicy {
    fn default() -> Self {
        Self {
            sync_successes: true,
            max_log_bytes: 16 * 1024,
        }
    }
}

impl RecordPolicy {
    fn keeps(self, source: ExecutionSource, outcome: &ExecOutcome) -> bool {
        self.sync_successes || source != ExecutionSource::Sync || outcome.result.is_err()
    }
}

/// What started an execution, as its record states it.
struct Origin {
    source: ExecutionSource,
    attempt: u32,
    summary: String,
}

impl Origin {
    fn of(request: &ExecRequest, queued: bool) -> Self {
        let http = &request.request;
        let (source, summary) = match &request.event {
            Some(TriggerEvent::Kv { kv }) => (
                ExecutionSource::Kv,
                format!("kv {} {}/{}", kv.op.as_str(), kv.collection, kv.key),
            ),
            Some(TriggerEvent::Docs { docs }) => (
                ExecutionSource::Docs,
                format!("docs {} {}/{}", docs.op.as_str(), docs.collection, docs.id),
            ),
            Some(TriggerEvent::DeadLetter { dead_letter }) => (
                ExecutionSource::DeadLetter,
                format!("dead letter {}", dead_letter.id),
            ),
            None if matches!(request.authority, Authority::Caller { .. }) => (
                ExecutionSource::Test,
                format!("test run {} {}", http.method, http.path),
            ),
            None if queued => (
                ExecutionSource::Async,
                format!("{} {}", http.method, http.path),
            ),
            None => (
                ExecutionSource::Sync,
                format!("{} {}", http.method, http.path),
            ),
        };
        Self {
            source,
            attempt: request.attempt,
            summary,
        }
    }

    fn record(
        self,
        context: &ExecutionContext,
        outcome: &ExecOutcome,
        runs: u32,
        started_at: Timestamp,
        elapsed: Duration,
    ) -> ExecutionRecord {
        ExecutionRecord {
            id: RecordId::of(context.execution_id, self.attempt),
            execution_id: context.execution_id,
            attempt: self.attempt,
            app_id: context.app_id,
            script_id: context.script_id,
            source: self.source,
            summary: self.summary,
            started_at,
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            runs,
            outcome: match &outcome.result {
                Ok(_) => "ok",
                Err(error) => error.kind.as_str(),
            }
            .to_owned(),
            status: outcome.result.as_ref().ok().map(|response| response.status),
            error: outcome.result.as_ref().err().cloned(),
            logs: outcome.logs.clone(),
        }
    }
}

/// The ids every log line of an execution carries (formatted only when a line is written).
struct ExecutionContext {
    app_id: AppId,
    script_id: ScriptId,
    execution_id: ExecutionId,
}

impl ExecutionContext {
    fn of(request: &ExecRequest) -> Self {
        Self {
            app_id: request.app.id,
            script_id: request.script.id,
            execution_id: request.execution_id,
        }
    }
}

/// Metrics and log lines of one finished execution.
fn report_execution(
    context: &ExecutionContext,
    outcome: &ExecOutcome,
    script_logs: ScriptLogs,
    elapsed_secs: f64,
    (metrics, series): (&Metrics, &ExecutionSeries),
) {
    let ExecutionContext {
        app_id,
        script_id,
        execution_id,
    } = context;
    let (app_id, script_id, execution_id) = (
        tracing::field::display(app_id),
        tracing::field::display(script_id),
        tracing::field::display(execution_id),
    );
    let relayed = match script_logs {
        ScriptLogs::Relay => outcome.logs.as_slice(),
        ScriptLogs::EmittedByExecutor => &[],
    };
    for line in relayed {
        let message = line.message.as_str();
        match line.level {
            LogLevel::Debug => {
                tracing::debug!(target: "picloud::script", app_id, script_id, execution_id, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "picloud::script", app_id, script_id, execution_id, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "picloud::script", app_id, script_id, execution_id, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "picloud::script", app_id, script_id, execution_id, "{message}")
            }
        }
    }
    let duration_ms = outcome.duration_us as f64 / 1000.0;
    match &outcome.result {
        Ok(response) => {
            metrics.record_execution(series, "ok", elapsed_secs);
            tracing::debug!(
                app_id,
                script_id,
                execution_id,
                status = response.status,
                duration_ms,
                "execution finished"
            );
        }
        Err(error) => {
            metrics.record_execution(series, error.kind.as_str(), elapsed_secs);
            let kind = error.kind.as_str();
            if error.kind == ExecErrorKind::Unavailable {
                tracing::error!(
                    app_id,
                    script_id,
                    execution_id,
                    kind,
                    "execution failed: {}",
                    error.message
                );
            } else {
                // The one record of a failure's details: a public caller gets only its kind and
                // execution id (issue #12), so the owner finds the rest here.
                tracing::warn!(
                    app_id,
                    script_id,
                    execution_id,
                    kind,
                    line = error.line,
                    column = error.column,
                    duration_ms,
                    "execution failed: {}",
                    error.message
                );
            }
        }
    }
}
