//! The one HTTP error: `{"error": {"code", "message", …}}` with the status its code implies.
//!
//! [`ErrorCode`] is the table of every code the API can answer (docs/api.md lists it too). Service
//! and invocation errors map here once; internal causes are logged here, once, and never sent.
//! A failed execution's message, line and column reach a public caller only when its app
//! exposes them ([`ErrorDetail`]); [`ApiError::from_execution`] is where that is decided.

use axum::extract::rejection::QueryRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use picloud_core::exec::{ExecError, ExecErrorKind};
use picloud_core::{ExecutionId, InputError};
use picloud_orchestrator::{ErrorDetail, InvokeError, ServiceError};
use serde::Serialize;

/// The header naming the execution an invocation response came from.
pub const EXECUTION_ID_HEADER: &str = "x-picloud-execution-id";

/// The `Retry-After` of a refusal for a full queue: long enough for a batch of jobs to run,
/// short enough that a caller does not wait much longer than it must.
const QUEUE_FULL_RETRY_AFTER_SECS: u32 = 5;

/// Every error code, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The body is not JSON (syntax error, truncated).
    InvalidJson,
    /// A value is missing, of the wrong type, or breaks a rule; `field` names it.
    InvalidInput,
    /// A script's source does not compile; `line` and `column` say where.
    InvalidScript,
    /// A body that must be JSON came without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// The request is not valid HTTP (answered before any route is looked at).
    InvalidRequest,
    /// The request's URL is longer than the server accepts.
    UriTooLong,
    /// The request's headers are too large or too many.
    HeadersTooLarge,
    /// The request's body arrived slower than the minimum rate.
    RequestTimeout,
    /// No credentials, or a token that is unknown, expired or logged out.
    Unauthorized,
    /// Login with a wrong username or password.
    InvalidCredentials,
    /// Authenticated, but without the permission.
    Forbidden,
    /// Login with the right password for a disabled account.
    AccountDisabled,
    /// A cookie-authenticated state-changing request without the session's CSRF token.
    CsrfFailed,
    /// Too many failed logins for the account or the address; retry after `Retry-After`.
    TooManyRequests,
    /// The app is at one of its quotas (its queued jobs): nothing was recorded; retry after
    /// `Retry-After`. A 429, not a 503: the server is well, the app's own backlog is full.
    QuotaExceeded,
    NotFound,
    MethodNotAllowed,
    /// The request clashes with existing state (taken slug, overlapping route…).
    Conflict,
    PayloadTooLarge,
    /// The script raised an error (or its stored source no longer compiles).
    ScriptError,
    /// The script hit an execution limit (operations, memory, call depth…).
    LimitExceeded,
    /// The script answered something that cannot be sent (a bad status or header).
    InvalidResponse,
    /// The script ran past its deadline.
    ExecutionTimeout,
    /// The execution gate stayed full; retry after `Retry-After`.
    Overloaded,
    /// The executor could not be reached.
    ExecutorUnavailable,
    /// The database could not be reached.
    Unavailable,
    /// A bug on our side; the log has the cause.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 27] = [
        Self::InvalidJson,
        Self::InvalidInput,
        Self::InvalidScript,
        Self::UnsupportedMediaType,
        Self::InvalidRequest,
        Self::UriTooLong,
        Self::HeadersTooLarge,
        Self::RequestTimeout,
        Self::Unauthorized,
        Self::InvalidCredentials,
        Self::Forbidden,
        Self::AccountDisabled,
        Self::CsrfFailed,
        Self::TooManyRequests,
        Self::QuotaExceeded,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::ScriptError,
        Self::LimitExceeded,
        Self::InvalidResponse,
        Self::ExecutionTimeout,
        Self::Overloaded,
        Self::ExecutorUnavailable,
        Self::Unavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidInput => "invalid_input",
            Self::InvalidScript => "invalid_script",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidRequest => "invalid_request",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::AccountDisabled => "account_disabled",
            Self::CsrfFailed => "csrf_failed",
            Self::TooManyRequests => "too_many_requests",
            Self::QuotaExceeded => "quota_exceeded",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ScriptError => "script_error",
            Self::LimitExceeded => "limit_exceeded",
            Self::InvalidResponse => "invalid_response",
            Self::ExecutionTimeout => "execution_timeout",
            Self::Overloaded => "overloaded",
            Self::ExecutorUnavailable => "executor_unavailable",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidJson | Self::InvalidInput | Self::InvalidScript | Self::InvalidRequest => {
                StatusCode::BAD_REQUEST
            }
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::AccountDisabled | Self::CsrfFailed => StatusCode::FORBIDDEN,
            Self::TooManyRequests | Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ScriptError | Self::LimitExceeded | Self::InvalidResponse | Self::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::ExecutionTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Overloaded | Self::ExecutorUnavailable | Self::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// An error answer. Build it with [`ApiError::new`] and the `with_*` methods, or convert a
/// [`ServiceError`] / [`InvokeError`].
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    field: Option<String>,
    execution_id: Option<ExecutionId>,
    line: Option<u32>,
    column: Option<u32>,
    /// For 405: the methods that would answer.
    allow: Option<String>,
    /// Seconds, for 429 and 503.
    retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            execution_id: None,
            line: None,
            column: None,
            allow: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_allow(mut self, allow: impl Into<String>) -> Self {
        self.allow = Some(allow.into());
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where in a refused script source the error is (1-based), when known.
    pub fn position(&self) -> Option<(u32, u32)> {
        self.line.zip(self.column)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "sign in first: send 'Authorization: Bearer <token>' with a token from POST /api/v1/auth/login",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// A bug on our side: the cause goes to the log, the client gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {cause}");
        Self::new(
            ErrorCode::Internal,
            "something went wrong on our side; the server log has the details",
        )
    }

    /// An app at its quota of queued jobs: they drain as the dispatcher runs them, so a retry
    /// some seconds later may pass.
    fn over_quota(message: String) -> Self {
        let mut api = Self::new(ErrorCode::QuotaExceeded, message);
        api.retry_after = Some(QUEUE_FULL_RETRY_AFTER_SECS);
        api
    }

    /// An execution that failed, by the kind of failure, with the execution id. The script's
    /// message, line and column are sent only when `detail` shows them; the log has them either
    /// way (the runner wrote them).
    fn from_execution(execution_id: ExecutionId, error: ExecError, detail: ErrorDetail) -> Self {
        let code = match error.kind {
            ExecErrorKind::Compile | ExecErrorKind::Runtime => ErrorCode::ScriptError,
            ExecErrorKind::LimitExceeded => ErrorCode::LimitExceeded,
            ExecErrorKind::Timeout => ErrorCode::ExecutionTimeout,
            ExecErrorKind::InvalidResponse => ErrorCode::InvalidResponse,
            ExecErrorKind::Unavailable => ErrorCode::ExecutorUnavailable,
            ExecErrorKind::Conflict => ErrorCode::Conflict,
        };
        // An unavailable executor's cause (a refused connection, a remote executor's status) is
        // ours, not the script's: no app setting shows it.
        let shown = detail == ErrorDetail::Shown && error.kind != ExecErrorKind::Unavailable;
        let mut api = if shown {
            let mut api = Self::new(code, error.message);
            api.line = error.line;
            api.column = error.column;
            api
        } else {
            Self::new(code, withheld_message(error.kind))
        };
        api.execution_id = Some(execution_id);
        if matches!(code, ErrorCode::ExecutorUnavailable | ErrorCode::Conflict) {
            api.retry_after = Some(1);
        }
        api
    }
}

/// What a caller who may not see a failure's details is told, by kind of failure.
fn withheld_message(kind: ExecErrorKind) -> &'static str {
    match kind {
        ExecErrorKind::Compile | ExecErrorKind::Runtime => {
            "the script failed while answering this request; its owner can find the details \
             under this execution id"
        }
        ExecErrorKind::LimitExceeded => {
            "the script hit an execution limit while answering this request; its owner can find \
             the details under this execution id"
        }
        ExecErrorKind::Timeout => {
            "the script did not finish in time; its owner can find the details under this \
             execution id"
        }
        ExecErrorKind::InvalidResponse => {
            "the script answered something that cannot be sent over HTTP; its owner can find the \
             details under this execution id"
        }
        ExecErrorKind::Unavailable => "the script executor is unavailable; try again shortly",
        ExecErrorKind::Conflict => {
            "other requests kept changing the data this one read, and it gave up; nothing was \
             written: try again"
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(input) => input.into(),
            ServiceError::InvalidScript {
                message,
                line,
                column,
            } => {
                let message = match (line, column) {
                    // The validator's shape errors already say where.
                    _ if message.starts_with("line ") => {
                        format!("the source is refused: {message}")
                    }
                    (Some(line), Some(column)) => format!(
                        "the source does not compile: {message} (line {line}, column {column})"
                    ),
                    _ => format!("the source does not compile: {message}"),
                };
                let mut api = Self::new(ErrorCode::InvalidScript, message).with_field("source");
                api.line = line;
                api.column = column;
                api
            }
            ServiceError::NotFound(message) => Self::new(ErrorCode::NotFound, message),
            ServiceError::Conflict(message) => Self::new(ErrorCode::Conflict, message),
            err @ ServiceError::Forbidden(_) => Self::new(ErrorCode::Forbidden, err.to_string()),
            err @ ServiceError::InvalidCredentials => {
                Self::new(ErrorCode::InvalidCredentials, err.to_string())
            }
            err @ ServiceError::AccountDisabled => {
                Self::new(ErrorCode::AccountDisabled, err.to_string())
            }
            err @ ServiceError::Throttled { retry_after_secs } => {
                let mut api = Self::new(ErrorCode::TooManyRequests, err.to_string());
                api.retry_after = Some(u32::try_from(retry_after_secs).unwrap_or(u32::MAX));
                api
            }
            err @ ServiceError::Overloaded(_) => {
                let mut api = Self::new(ErrorCode::Overloaded, err.to_string());
                api.retry_after = Some(1);
                api
            }
            ServiceError::OverQuota(message) => Self::over_quota(message),
            ServiceError::Unavailable(cause) => {
                tracing::error!("the database is unavailable: {cause}");
                let mut api = Self::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable; try again shortly",
                );
                api.retry_after = Some(1);
                api
            }
            ServiceError::Internal(cause) => Self::internal(cause),
        }
    }
}

/// A query string the handler's parameters do not take (`?force=maybe`): axum's sentence names
/// the parameter and what it expected.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(ErrorCode::InvalidInput, rejection.body_text())
    }
}

impl From<InputError> for ApiError {
    fn from(input: InputError) -> Self {
        Self::new(ErrorCode::InvalidInput, input.message).with_field(input.field)
    }
}

impl From<InvokeError> for ApiError {
    fn from(err: InvokeError) -> Self {
        match err {
            err @ (InvokeError::NoApp { .. } | InvokeError::NoRoute { .. }) => {
                Self::not_found(err.to_string())
            }
            InvokeError::MethodNotAllowed { ref allow, .. } => {
                let allow = allow.join(", ");
                Self::new(ErrorCode::MethodNotAllowed, err.to_string()).with_allow(allow)
            }
            err @ InvokeError::Overloaded(_) => {
                let mut api = Self::new(ErrorCode::Overloaded, err.to_string());
                api.retry_after = Some(1);
                api
            }
            InvokeError::QueueFull(message) => Self::over_quota(message),
            InvokeError::Failed {
                execution_id,
                error,
                detail,
            } => Self::from_execution(execution_id, error, detail),
            InvokeError::Unavailable { cause } => ServiceError::Unavailable(cause).into(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_id: Option<ExecutionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u32>,
}

impl ApiError {
    fn body(&self) -> Body<'_> {
        Body {
            error: Detail {
                code: self.code.as_str(),
                message: &self.message,
                field: self.field.as_deref(),
                execution_id: self.execution_id,
                line: self.line,
                column: self.column,
            },
        }
    }

    /// The JSON body alone, for answers written below axum (see `listen`).
    pub(crate) fn body_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body()).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        if self.code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(id) = self
            .execution_id
            .and_then(|id| HeaderValue::from_str(&id.to_string()).ok())
        {
            headers.insert(EXECUTION_ID_HEADER, id);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_snake_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                s.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{s} is snake_case"
            );
            assert!(seen.insert(s), "{s} appears once");
        }
    }

    #[test]
    fn errors_follow_the_documented_statuses() {
        let expected = [
            ("invalid_json", 400),
            ("invalid_input", 400),
            ("invalid_script", 400),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("not_found", 404),
            ("csrf_failed", 403),
            ("too_many_requests", 429),
            ("quota_exceeded", 429),
            ("method_not_allowed", 405),
            ("conflict", 409),
            ("payload_too_large", 413),
            ("invalid_request", 400),
            ("uri_too_long", 414),
            ("headers_too_large", 431),
            ("request_timeout", 408),
            ("script_error", 500),
            ("overloaded", 503),
            ("execution_timeout", 504),
        ];
        for (code, status) in expected {
            let found = ErrorCode::ALL
                .iter()
                .find(|c| c.as_str() == code)
                .expect("a listed code");
            assert_eq!(found.status().as_u16(), status, "{code} answers {status}");
        }
    }

    fn failed(kind: ExecErrorKind, detail: ErrorDetail) -> ApiError {
        InvokeError::Failed {
            execution_id: ExecutionId::new(),
            error: ExecError {
                kind,
                message: "Function not found: kv::colection (&str | ImmutableString)".to_owned(),
                line: Some(3),
                column: Some(9),
            },
            detail,
        }
        .into()
    }

    // Issue #12: a public 5xx told anyone on the internet the script's error text and position.
    #[test]
    fn a_withheld_failure_keeps_its_code_and_execution_id_but_not_the_scripts_message() {
        for kind in [
            ExecErrorKind::Compile,
            ExecErrorKind::Runtime,
            ExecErrorKind::LimitExceeded,
            ExecErrorKind::Timeout,
            ExecErrorKind::InvalidResponse,
            ExecErrorKind::Unavailable,
        ] {
            let api = failed(kind, ErrorDetail::Withheld);
            assert!(
                !api.message().contains("colection"),
                "{kind:?}: the script's message stays in the log: {}",
                api.message()
            );
            assert_eq!(
                (api.line, api.column),
                (None, None),
                "{kind:?}: no position"
            );
            assert!(
                api.execution_id.is_some(),
                "{kind:?}: the execution id is sent"
            );
            let shown = failed(kind, ErrorDetail::Shown);
            assert_eq!(
                api.code(),
                shown.code(),
                "{kind:?}: the code does not depend on it"
            );
        }
    }

    #[test]
    fn a_shown_failure_carries_the_scripts_message_and_position_except_ours() {
        let api = failed(ExecErrorKind::Runtime, ErrorDetail::Shown);
        assert!(
            api.message().contains("kv::colection"),
            "the script's message: {}",
            api.message()
        );
        assert_eq!((api.line, api.column), (Some(3), Some(9)), "its position");
        let api = failed(ExecErrorKind::Unavailable, ErrorDetail::Shown);
        assert!(
            !api.message().contains("colection"),
            "an executor outage's cause is ours, never shown: {}",
            api.message()
        );
    }

    #[test]
    fn an_internal_cause_is_never_sent() {
        let api: ApiError = ServiceError::Internal("password=hunter2 at db.rs:12".into()).into();
        assert!(
            !api.message().contains("hunter2"),
            "the cause stays in the log: {}",
            api.message()
        );
        let api: ApiError =
            ServiceError::Unavailable("connection refused to 10.0.0.5".into()).into();
        assert!(
            !api.message().contains("10.0.0.5"),
            "the cause stays in the log: {}",
            api.message()
        );
    }
}
