//! The public request path: find the route in the index, build the execution, run it, report it.
//!
//! "Run it" sits behind [`Dispatch`]: today [`DirectDispatch`] passes the execution gate and calls
//! the executor; the outbox issue puts a durable row and a dispatcher behind the same seam,
//! without touching the lookup or the response rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use picloud_core::exec::{
    AppRef, ExecError, ExecErrorKind, ExecOutcome, ExecRequest, HttpRequest, LogLevel,
    ScriptResponse,
};
use picloud_core::ExecutionId;
use picloud_executor::ExecutorClient;
use tracing::Instrument;

use crate::gate::{Admission, Gate};
use crate::index::{Lookup, RouteIndex};
use crate::metrics::Metrics;

/// A public request, as the HTTP layer received it.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    /// The first path segment.
    pub slug: String,
    pub method: String,
    /// The rest of the path, percent-encoded as sent, starting with `/` (`/` when empty).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names and values as received (names in any case; repeated names repeat).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the script answered.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    pub execution_id: ExecutionId,
    pub response: ScriptResponse,
}

/// Why a public request got no script response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("no app is published at '/{slug}'")]
    NoApp { slug: String },
    #[error("no route of this app matches {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("{method} is not allowed here; this path answers {}", allow.join(", "))]
    MethodNotAllowed {
        method: String,
        allow: Vec<&'static str>,
    },
    #[error("too many executions are running; try again shortly")]
    Overloaded,
    /// The script ran (or tried to) and failed.
    #[error("{error}")]
    Failed {
        execution_id: ExecutionId,
        error: ExecError,
    },
}

/// The outcome of handing an execution over to be run.
#[derive(Debug)]
pub enum RunOutcome {
    Finished(ExecOutcome),
    /// The gate stayed full for its whole wait; nothing ran.
    Overloaded,
}

/// How an execution gets run. The next issue's outbox dispatcher implements this too.
#[async_trait]
pub trait Dispatch: Send + Sync {
    async fn run(&self, request: ExecRequest) -> RunOutcome;
}

/// Runs at once in this process: through the gate, then the executor.
pub struct DirectDispatch {
    gate: Arc<Gate>,
    executor: Arc<dyn ExecutorClient>,
    metrics: Arc<Metrics>,
    script_logs: ScriptLogs,
}

/// Who writes a script's `log::*` lines to this process's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptLogs {
    /// The executor runs in this process and emits each line as the script writes it.
    EmittedByExecutor,
    /// The executor runs elsewhere: its lines come back in the outcome and are emitted here.
    Relay,
}

impl DirectDispatch {
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
}

#[async_trait]
impl Dispatch for DirectDispatch {
    async fn run(&self, request: ExecRequest) -> RunOutcome {
        let permit = match self.gate.acquire().await {
            Admission::Admitted(permit) => permit,
            Admission::Overloaded => return RunOutcome::Overloaded,
        };
        // The execution runs in a task of its own: if the caller goes away, the script still
        // runs to its end (its deadline bounds it), and the gate permit is held until then, so
        // the gate counts what really runs.
        let executor = self.executor.clone();
        let metrics = self.metrics.clone();
        let script_logs = self.script_logs;
        let span = tracing::Span::current();
        let execution = tokio::spawn(
            async move {
                let started = Instant::now();
                let context = ExecutionContext::of(&request);
                let outcome = executor.execute(request).await;
                let elapsed = started.elapsed().as_secs_f64();
                report_execution(&context, &outcome, script_logs, elapsed, &metrics);
                drop(permit);
                outcome
            }
            .instrument(span),
        );
        match execution.await {
            Ok(outcome) => RunOutcome::Finished(outcome),
            Err(err) => {
                tracing::error!("an execution task failed: {err}");
                RunOutcome::Finished(ExecOutcome {
                    result: Err(ExecError {
                        kind: ExecErrorKind::Unavailable,
                        message: format!("the execution task failed: {err}"),
                        line: None,
                        column: None,
                    }),
                    logs: Vec::new(),
                    duration_us: 0,
                })
            }
        }
    }
}

/// The ids every log line of an execution carries.
struct ExecutionContext {
    app_id: String,
    script_id: String,
    execution_id: String,
}

impl ExecutionContext {
    fn of(request: &ExecRequest) -> Self {
        Self {
            app_id: request.app.id.to_string(),
            script_id: request.script.id.to_string(),
            execution_id: request.execution_id.to_string(),
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
                tracing::info!(
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

/// Public invocations.
pub struct Invoker {
    index: Arc<RouteIndex>,
    dispatch: Arc<dyn Dispatch>,
}

impl Invoker {
    pub fn new(index: Arc<RouteIndex>, dispatch: Arc<dyn Dispatch>) -> Self {
        Self { index, dispatch }
    }

    #[tracing::instrument(
        skip_all,
        fields(slug = %request.slug, app_id = tracing::field::Empty, script_id = tracing::field::Empty, execution_id = tracing::field::Empty)
    )]
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        let InvokeRequest {
            slug,
            method,
            path,
            query,
            headers,
            body,
        } = request;
        let found = match self.index.lookup(&slug, &method, &path) {
            Lookup::Found(found) => found,
            Lookup::NoApp => return Err(InvokeError::NoApp { slug }),
            Lookup::NoRoute => return Err(InvokeError::NoRoute { method, path }),
            Lookup::MethodNotAllowed { allow } => {
                return Err(InvokeError::MethodNotAllowed { method, allow })
            }
        };
        let target = found.target;
        let execution_id = ExecutionId::new();
        let span = tracing::Span::current();
        span.record("app_id", tracing::field::display(target.app_id));
        span.record("script_id", tracing::field::display(target.script.id));
        span.record("execution_id", tracing::field::display(execution_id));
        let exec = ExecRequest {
            execution_id,
            app: AppRef {
                id: target.app_id,
                slug: target.app_slug.to_string(),
            },
            script: target.script.clone(),
            request: HttpRequest {
                method,
                path,
                params: found.params,
                query: parse_query(query.as_deref()),
                headers: join_headers(headers),
                body: into_text(body),
            },
            authority: picloud_core::Authority::App,
        };
        // Every route runs synchronously until the outbox brings async dispatch (async routes
        // cannot be created before then).
        match self.dispatch.run(exec).await {
            RunOutcome::Overloaded => Err(InvokeError::Overloaded),
            RunOutcome::Finished(outcome) => match outcome.result {
                Ok(response) => Ok(InvokeResponse {
                    execution_id,
                    response,
                }),
                Err(error) => Err(InvokeError::Failed {
                    execution_id,
                    error,
                }),
            },
        }
    }
}

/// `a=1&b=x%20y&a=2` → `{a: "2", b: "x y"}`: a repeated name keeps its last value.
fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// Lower-case names; a repeated header's values joined with `, `.
fn join_headers(headers: Vec<(String, String)>) -> BTreeMap<String, String> {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        joined
            .entry(name.to_ascii_lowercase())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    joined
}

/// The body as text, invalid UTF-8 replaced (without a copy when it is valid).
fn into_text(body: Vec<u8>) -> String {
    String::from_utf8(body)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_query_name_keeps_its_last_value_and_values_are_decoded() {
        let query = parse_query(Some("a=1&b=x%20y+z&a=2&flag"));
        let expected: BTreeMap<String, String> = [("a", "2"), ("b", "x y z"), ("flag", "")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        assert_eq!(query, expected, "form-urlencoded rules, last value wins");
        assert!(parse_query(None).is_empty(), "no query, no parameters");
    }

    #[test]
    fn header_names_are_lower_cased_and_repeats_are_joined() {
        let headers = join_headers(vec![
            ("X-Tag".into(), "a".into()),
            ("x-tag".into(), "b".into()),
            ("Content-Type".into(), "text/plain".into()),
        ]);
        assert_eq!(
            headers.get("x-tag").map(String::as_str),
            Some("a, b"),
            "repeats are joined in order"
        );
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("text/plain"),
            "names are lower case"
        );
    }

    #[test]
    fn invalid_utf8_in_a_body_is_replaced_not_refused() {
        assert_eq!(into_text(b"ok".to_vec()), "ok", "valid text is kept");
        assert_eq!(
            into_text(vec![b'a', 0xff]),
            "a\u{fffd}",
            "invalid bytes become U+FFFD"
        );
    }
}
