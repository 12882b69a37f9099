//! The public request path: find the route in the index, build the execution, and hand it to the
//! dispatcher — a sync route waits for its outcome, an async route gets `202` with the
//! execution's id once the job is durably recorded.
//!
//! Two rules of tenant isolation (issue #12) live here:
//! - an async job's stored payload leaves out the [`RedactedHeaders`] (credentials: the payload
//!   stays in the outbox and, when the job fails for good, in a dead letter for 30 days), except
//!   those the route keeps (`keep_headers`). A sync request's record holds only its ids and its node's lease.
//! - a failed execution is reported with the [`ErrorDetail`] of its app: anonymous callers get
//!   the kind of failure and the execution id, unless the app has `expose_errors`.

use std::collections::BTreeMap;
use std::sync::Arc;

use picloud_core::exec::{
    AppRef, ExecError, ExecErrorKind, ExecRequest, HttpRequest, ResponseBody, ScriptResponse,
};
use picloud_core::{
    AppId, DispatchMode, ExecutionId, HeaderNames, JobPayload, KeptHeaders, ScriptId,
};
use picloud_store::NewJob;

use crate::dispatcher::Dispatcher;
use crate::gate::Refusal;
use crate::index::{Lookup, RouteIndex};
use crate::recorder::RecordError;
use crate::runner::Ran;

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
    /// Whose answer it is, and how much the caller is told, should HTTP be unable to carry it.
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub error_detail: ErrorDetail,
}

/// How much of a failed execution the caller of a public route is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDetail {
    /// The kind of failure and the execution id only: anyone on the internet may be calling.
    /// The script's message, line and column are in the log under the execution id.
    Withheld,
    /// The script's message, line and column too: the app has `expose_errors` (a development
    /// app).
    Shown,
}

impl ErrorDetail {
    /// What an app's `expose_errors` asks for.
    pub fn of_app(expose_errors: bool) -> Self {
        if expose_errors {
            Self::Shown
        } else {
            Self::Withheld
        }
    }
}

/// The request headers an async job's stored payload leaves out: the [`DEFAULT`] names and
/// those added by `PICLOUD_REDACTED_HEADERS`, in any letter case.
///
/// [`DEFAULT`]: RedactedHeaders::DEFAULT
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactedHeaders {
    extra: HeaderNames,
}

impl RedactedHeaders {
    /// Always redacted: the credentials a browser or an API client sends.
    pub const DEFAULT: [&'static str; 4] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
    ];

    /// The defaults and `extra`.
    pub fn with_extra(extra: HeaderNames) -> Self {
        Self { extra }
    }

    fn is_redacted(&self, name: &str) -> bool {
        Self::DEFAULT
            .iter()
            .any(|redacted| redacted.eq_ignore_ascii_case(name))
            || self.extra.contains(name)
    }

    /// Drops the redacted headers from `headers`, except those in `kept`.
    fn redact(&self, headers: &mut BTreeMap<String, String>, kept: &KeptHeaders) {
        headers.retain(|name, _| !self.is_redacted(name) || kept.names().contains(name));
    }
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
    /// The execution gate, or the app's share of it, stayed full; nothing ran.
    #[error(transparent)]
    Overloaded(Refusal),
    /// The app has its quota of queued jobs; the async request was not recorded. The message
    /// says how many and the limit.
    #[error("{0}")]
    QueueFull(String),
    /// The job could not be recorded (the database is unreachable); nothing ran.
    #[error("the request could not be recorded; try again shortly")]
    Unavailable { cause: String },
    /// The script ran (or tried to) and failed; `detail` says how much of `error` the caller
    /// may see.
    #[error("{error}")]
    Failed {
        execution_id: ExecutionId,
        error: ExecError,
        detail: ErrorDetail,
    },
}

/// Public invocations.
pub struct Invoker {
    index: Arc<RouteIndex>,
    dispatcher: Arc<Dispatcher>,
    redacted: RedactedHeaders,
}

impl Invoker {
    pub fn new(
        index: Arc<RouteIndex>,
        dispatcher: Arc<Dispatcher>,
        redacted: RedactedHeaders,
    ) -> Self {
        Self {
            index,
            dispatcher,
            redacted,
        }
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
            event: None,
            trigger_depth: 0,
            attempt: 1,
            modules: found.modules,
        };
        if target.dispatch_mode == DispatchMode::Async {
            return self
                .accept(exec, &target.keep_headers, target.error_detail)
                .await;
        }
        run_sync(&self.dispatcher, exec, target.error_detail).await
    }

    /// An async route: `202 {"execution_id": …}` once the job is durably recorded, its payload
    /// without the redacted headers that the route does not keep.
    async fn accept(
        &self,
        mut exec: ExecRequest,
        kept: &KeptHeaders,
        error_detail: ErrorDetail,
    ) -> Result<InvokeResponse, InvokeError> {
        self.redacted.redact(&mut exec.request.headers, kept);
        let (execution_id, app_id, script_id) = (exec.execution_id, exec.app.id, exec.script.id);
        let job = NewJob {
            id: execution_id,
            app_id,
            script_id,
            payload: JobPayload::Http {
                request: exec.request,
            },
            trigger_depth: 0,
        };
        self.dispatcher.accept(job).await.map_err(not_recorded)?;
        Ok(InvokeResponse {
            execution_id,
            response: ScriptResponse {
                status: 202,
                headers: Vec::new(),
                body: ResponseBody::Json(
                    serde_json::json!({ "execution_id": execution_id.to_string() }),
                ),
            },
            app_id,
            script_id,
            error_detail,
        })
    }
}

/// Runs `exec` through the sync path and turns its outcome into a response or an error that
/// shows the caller `detail`.
async fn run_sync(
    dispatcher: &Arc<Dispatcher>,
    exec: ExecRequest,
    detail: ErrorDetail,
) -> Result<InvokeResponse, InvokeError> {
    let (execution_id, app_id, script_id) = (exec.execution_id, exec.app.id, exec.script.id);
    let outcome = match dispatcher.run_sync(exec).await {
        Ok(Ran::Finished(outcome, _)) => outcome,
        Ok(Ran::Overloaded(refusal)) => return Err(InvokeError::Overloaded(refusal)),
        Err(_timed_out) => {
            return Err(InvokeError::Failed {
                execution_id,
                error: ExecError {
                    kind: ExecErrorKind::Timeout,
                    message: "the execution did not finish while the request waited".to_owned(),
                    line: None,
                    column: None,
                },
                detail,
            })
        }
    };
    match outcome.result {
        Ok(response) => Ok(InvokeResponse {
            execution_id,
            response,
            app_id,
            script_id,
            error_detail: detail,
        }),
        Err(error) => Err(InvokeError::Failed {
            execution_id,
            error,
            detail,
        }),
    }
}

fn not_recorded(err: RecordError) -> InvokeError {
    if let RecordError::OverLimit(over) = err {
        tracing::info!("an async request was refused: {over}");
        return InvokeError::QueueFull(over.to_string());
    }
    tracing::warn!("a request could not be recorded: {err}");
    InvokeError::Unavailable {
        cause: err.to_string(),
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
    fn redaction_drops_credentials_in_any_case_unless_the_route_keeps_them() {
        let extra = HeaderNames::parse("redacted_headers", &["X-Session"]).expect("a valid name");
        let redacted = RedactedHeaders::with_extra(extra);
        let request = join_headers(vec![
            ("Authorization".into(), "Bearer secret".into()),
            ("Cookie".into(), "sid=1".into()),
            ("Proxy-Authorization".into(), "Basic x".into()),
            ("X-Api-Key".into(), "k".into()),
            ("x-session".into(), "s".into()),
            ("X-Trace".into(), "t".into()),
        ]);
        let mut headers = request.clone();
        redacted.redact(&mut headers, &KeptHeaders::default());
        assert_eq!(
            headers.keys().collect::<Vec<_>>(),
            vec!["x-trace"],
            "the defaults and the extra name are dropped, the rest kept"
        );
        let kept = KeptHeaders::parse(&["Authorization"]).expect("a valid name");
        let mut headers = request;
        redacted.redact(&mut headers, &kept);
        assert_eq!(
            headers.keys().collect::<Vec<_>>(),
            vec!["authorization", "x-trace"],
            "a kept header stays, the other redacted ones still go"
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
