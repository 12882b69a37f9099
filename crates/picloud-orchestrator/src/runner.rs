//! Running one execution: through the execution gate, then the executor, then its metrics and
//! log lines. The dispatcher runs every job (sync requests, async requests, trigger events)
//! through here.

use std::sync::Arc;
use std::time::Instant;

use picloud_core::exec::{ExecErrorKind, ExecOutcome, ExecRequest, LogLevel};
use picloud_core::{AppId, ExecutionId, ScriptId};
use picloud_executor::ExecutorClient;

use crate::gate::{Admission, Gate, Refusal};
use crate::metrics::Metrics;

/// What came of trying to run an execution.
#[derive(Debug)]
pub enum Ran {
    Finished(ExecOutcome),
    /// The gate, or the app's share of it, stayed full for the whole wait; nothing ran.
    Overloaded(Refusal),
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
    metrics: Arc<Metrics>,
    script_logs: ScriptLogs,
}

impl Runner {
    pub fn new(
        gate: Arc<Gate>,
        executor: Arc<dyn ExecutorClient>,
        metrics: Arc<Metrics>,
        script_logs: ScriptLogs,
    ) -> Self {
        Self {
            gate,
            executor,
            metrics,
            script_logs,
        }
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Runs `request` to its outcome. Call it from a task of its own that is not cancelled (the
    /// dispatcher's callers are): the gate permit is held until the executor answers, so the gate
    /// counts what really runs even when the HTTP caller has gone.
    /// The gate counts the execution against `request.app`'s share.
    pub async fn run(&self, request: ExecRequest, patience: Patience) -> Ran {
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
        let context = ExecutionContext::of(&request);
        let outcome = self.executor.execute(request).await;
        let elapsed = started.elapsed().as_secs_f64();
        report_execution(&context, &outcome, self.script_logs, elapsed, &self.metrics);
        drop(permit);
        Ran::Finished(outcome)
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
    metrics: &Metrics,
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
            metrics.record_execution("ok", elapsed_secs);
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
            metrics.record_execution(error.kind.as_str(), elapsed_secs);
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
