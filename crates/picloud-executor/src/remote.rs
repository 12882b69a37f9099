//! Both ends of the remote executor's wire protocol, so they cannot drift apart.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/execute`, JSON [`ExecRequest`] | `200`, JSON [`ExecOutcome`] (a failed script is still a `200`) |
//! | `GET /healthz` | `200 ok`, without a token, for liveness probes |
//!
//! With a token configured, `/v1/execute` needs `Authorization: Bearer <token>` and answers
//! `401` without it. The server side is [`router`] / [`serve`] (the `picloud executor`
//! subcommand); the client side is [`RemoteExecutorClient`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use picloud_core::exec::{ExecOutcome, ExecRequest};
use subtle::ConstantTimeEq;

use crate::{ExecutorClient, LocalExecutorClient};

/// The largest execute request accepted: the request body it carries plus the script's source,
/// JSON-escaped.
pub const MAX_EXECUTE_REQUEST_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct ServerState {
    local: Arc<LocalExecutorClient>,
    token: Option<Arc<str>>,
}

/// The executor's HTTP API over `local`. `token`, when set, guards `/v2/execute`.
///
/// `/v2` because an outcome carries the run's effects (issue #15), which the orchestrator
/// commits; an orchestrator of before, calling `/v1`, would drop them and lose the run's writes,
/// so `/v1` answers `410 Gone` with a sentence saying to upgrade it.
pub fn router(local: Arc<LocalExecutorClient>, token: Option<String>) -> Router {
    let state = ServerState {
        local,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/v2/execute", post(execute))
        .route("/v1/execute", post(gone))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_EXECUTE_REQUEST_BYTES))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets requests in flight
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    local: Arc<LocalExecutorClient>,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(local, token))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn gone() -> (StatusCode, &'static str) {
    (
        StatusCode::GONE,
        "this executor speaks /v2/execute: a run's writes come back in its outcome for the \
         orchestrator to commit; upgrade the orchestrator to the executor's version",
    )
}

async fn execute(
    State(state): State<ServerState>,
    Json(request): Json<ExecRequest>,
) -> Json<ExecOutcome> {
    Json(state.local.execute(request).await)
}

async fn require_token(State(state): State<ServerState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this executor needs Authorization: Bearer <token>",
        )
            .into_response()
    }
}

/// A base URL the remote client cannot use, or an HTTP client that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RemoteClientError {
    #[error("'{url}' is not a usable executor URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Runs executions in a `picloud executor` process over HTTP, with a pool of kept-alive
/// connections. Every failure to get an outcome — unreachable, too slow, a reply that is not an
/// outcome — comes back as an outcome of kind `Unavailable` naming the executor's URL.
#[derive(Debug, Clone)]
pub struct RemoteExecutorClient {
    http: reqwest::Client,
    base_url: String,
    execute_url: reqwest::Url,
    token: Option<String>,
    timeout: Duration,
}

impl RemoteExecutorClient {
    /// `base_url` like `http://10.0.0.5:8090`; `timeout` bounds a whole execution round trip and
    /// should exceed the scripts' own timeout.
    pub fn new(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, RemoteClientError> {
        let invalid = |reason: &str| RemoteClientError::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let mut base = reqwest::Url::parse(base_url).map_err(|err| invalid(&err.to_string()))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(invalid("use http:// or https://"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("it names no host"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let execute_url = base
            .join("v2/execute")
            .map_err(|err| invalid(&err.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            execute_url,
            token,
            timeout,
        })
    }

    fn unavailable(&self, why: String) -> ExecOutcome {
        ExecOutcome::unavailable(format!("the executor at {} {why}", self.base_url))
    }

    fn failed(&self, err: &reqwest::Error) -> ExecOutcome {
        if err.is_timeout() {
            self.unavailable(format!(
                "did not answer within {} ms",
                self.timeout.as_millis()
            ))
        } else if err.is_decode() {
            self.unavailable(format!("sent a reply that is not an outcome: {err}"))
        } else {
            self.unavailable(format!("cannot be reached: {err}"))
        }
    }
}

#[async_trait]
impl ExecutorClient for RemoteExecutorClient {
    async fn execute(&self, request: ExecRequest) -> ExecOutcome {
        let mut call = self.http.post(self.execute_url.clone()).json(&request);
        if let Some(token) = &self.token {
            call = call.bearer_auth(token);
        }
        let reply = match call.send().await {
            Ok(reply) => reply,
            Err(err) => return self.failed(&err),
        };
        let status = reply.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return self
                .unavailable("refused our token (401): check PICLOUD_EXECUTOR_TOKEN".into());
        }
        if !status.is_success() {
            return self.unavailable(format!("answered {status}"));
        }
        match reply.json::<ExecOutcome>().await {
            Ok(outcome) => outcome,
            Err(err) => self.failed(&err),
        }
    }
}
