//! The executor's harness: the same test bodies run against the local client and against a
//! remote client talking to `remote::serve` on a free port of this process
//! ([`for_both_clients!`](crate::for_both_clients)).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use picloud_core::exec::{
    AppRef, ExecError, ExecErrorKind, ExecOutcome, ExecRequest, HttpRequest, ResponseBody,
    ScriptRef, ScriptResponse,
};
use picloud_core::{
    AppId, Authority, ExecutionId, Limits, NoServices, ScriptId, ScriptServices, Timestamp,
    WriteOrigin,
};
use picloud_executor::{
    remote, ExecutorClient, ExecutorConfig, LocalExecutorClient, RemoteExecutorClient,
};
use picloud_store::{NewApp, RunCommit, RunVerdict, Store, StoreServices};
use serde_json::Value;

pub const TOKEN: &str = "test-executor-token";

/// Which client a test body runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Local,
    Remote,
}

pub struct Harness {
    pub client: Arc<dyn ExecutorClient>,
    /// The local client that does the work either way (the remote server wraps it).
    pub local: Arc<LocalExecutorClient>,
    pub app: AppRef,
    pub via: Via,
    /// Where runs' effects are committed, as the orchestrator's runner commits them; `None`
    /// for a harness without data.
    pub store: Option<Arc<dyn Store>>,
    /// The trigger jobs one run's commit may fire.
    pub max_trigger_jobs: u32,
}

impl Harness {
    pub async fn start(via: Via) -> Self {
        Self::with_config(
            via,
            ExecutorConfig {
                threads: 4,
                ..ExecutorConfig::default()
            },
        )
        .await
    }

    pub async fn with_limits(via: Via, limits: Limits) -> Self {
        Self::with_config(
            via,
            ExecutorConfig {
                limits,
                threads: 4,
                ..ExecutorConfig::default()
            },
        )
        .await
    }

    pub async fn with_config(via: Via, config: ExecutorConfig) -> Self {
        Self::with_config_and_services(via, config, Arc::new(NoServices)).await
    }

    /// A harness whose scripts read `store` ([`StoreServices`]) and whose runs' effects are
    /// committed to it.
    pub async fn with_store(via: Via, store: &Arc<dyn Store>) -> Self {
        Self::with_config_and_store(
            via,
            ExecutorConfig {
                threads: 4,
                ..ExecutorConfig::default()
            },
            store,
        )
        .await
    }

    /// [`Harness::with_store`] with `config`.
    pub async fn with_config_and_store(
        via: Via,
        config: ExecutorConfig,
        store: &Arc<dyn Store>,
    ) -> Self {
        let services = Arc::new(StoreServices::new(
            store.clone(),
            config.limits.max_memory_bytes,
        ));
        let mut harness = Self::with_config_and_services(via, config, services).await;
        harness.store = Some(store.clone());
        harness
    }

    pub async fn with_config_and_services(
        via: Via,
        config: ExecutorConfig,
        services: Arc<dyn ScriptServices>,
    ) -> Self {
        let local = Arc::new(LocalExecutorClient::new(config, services));
        let client: Arc<dyn ExecutorClient> = match via {
            Via::Local => local.clone(),
            Via::Remote => {
                let base = serve_remotely(local.clone(), Some(TOKEN)).await;
                Arc::new(
                    RemoteExecutorClient::new(
                        &base,
                        Some(TOKEN.to_string()),
                        Duration::from_secs(60),
                    )
                    .expect("a valid executor URL"),
                )
            }
        };
        Self {
            client,
            local,
            app: AppRef {
                id: AppId::new(),
                slug: "shop".to_string(),
            },
            via,
            store: None,
            max_trigger_jobs: 256,
        }
    }

    /// Runs `source` as a new script with an empty GET request.
    pub async fn run(&self, source: &str) -> ExecOutcome {
        self.run_request(source, get("/")).await
    }

    pub async fn run_request(&self, source: &str, request: HttpRequest) -> ExecOutcome {
        self.run_script(script(source), request).await
    }

    pub async fn run_script(&self, script: ScriptRef, request: HttpRequest) -> ExecOutcome {
        self.execute(ExecRequest {
            request,
            script,
            ..self.request("")
        })
        .await
    }

    /// An HTTP `GET /` execution of `source` in the harness's app, with the app's authority:
    /// change its fields for other runs (a trigger event, a caller's authority).
    pub fn request(&self, source: &str) -> ExecRequest {
        ExecRequest {
            execution_id: ExecutionId::new(),
            app: self.app.clone(),
            script: script(source),
            request: get("/"),
            authority: Authority::App,
            event: None,
            trigger_depth: 0,
            attempt: 1,
            modules: Default::default(),
        }
    }

    /// Runs `request` and, with a store, commits its effects as the orchestrator's runner does
    /// — once: these tests run one execution at a time, so a conflict is a failure. A refused
    /// commit fails the run with `limit_exceeded`, as the runner reports it. The effects stay in
    /// the outcome for the test to look at.
    pub async fn execute(&self, request: ExecRequest) -> ExecOutcome {
        let origin = WriteOrigin {
            app_id: request.app.id,
            trigger_depth: request.trigger_depth,
            trigger_jobs_left: self.max_trigger_jobs,
        };
        let mut outcome = self.client.execute(request).await;
        let Some(store) = &self.store else {
            return outcome;
        };
        if outcome.result.is_err() || !outcome.effects.need_commit() {
            return outcome;
        }
        let run = RunCommit {
            origin,
            effects: outcome.effects.clone(),
            finishes: None,
        };
        match store.commit_run(run).await.expect("the run's commit") {
            RunVerdict::Committed { .. } => {}
            RunVerdict::Refused(over) => {
                outcome.result = Err(ExecError {
                    kind: ExecErrorKind::LimitExceeded,
                    message: format!(
                        "the execution's writes were refused, nothing was written: {over}"
                    ),
                    line: None,
                    column: None,
                });
            }
            other => panic!("a run of a test that runs alone was not committed: {other:?}"),
        }
        outcome
    }

    /// The value of `source`, which must answer 200 with JSON.
    pub async fn json(&self, source: &str) -> Value {
        let response = ok(self.run(source).await);
        assert_eq!(response.status, 200, "a JSON value answers 200");
        match response.body {
            ResponseBody::Json(value) => value,
            other => panic!("expected a JSON body, got {other:?}"),
        }
    }

    /// The error `source` fails with.
    pub async fn error(&self, source: &str) -> ExecError {
        failed(self.run(source).await)
    }

    /// After a hostile script, the same client still runs an ordinary one.
    pub async fn still_works(&self) {
        let value = self
            .json("let total = 0; for i in 1..=6 { total += i; } total")
            .await;
        assert_eq!(
            value,
            serde_json::json!(21),
            "the client still runs a normal script"
        );
    }
}

/// A new app `slug` (named "Shop") of `store`, as an execution names its app.
pub async fn new_app(store: &Arc<dyn Store>, slug: &str) -> AppRef {
    let app = store
        .create_app(&NewApp {
            slug: picloud_core::AppSlug::parse(slug).expect("a valid slug"),
            name: picloud_core::AppName::parse("Shop").expect("a valid name"),
            expose_errors: false,
        })
        .await
        .expect("the app is created");
    AppRef {
        id: app.id,
        slug: app.slug.to_string(),
    }
}

/// Serves `local` with `remote::serve` on a free port of this process, requiring `token` when
/// given; returns its base URL.
pub async fn serve_remotely(local: Arc<LocalExecutorClient>, token: Option<&str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("the bound address");
    tokio::spawn(remote::serve(
        listener,
        local,
        token.map(str::to_string),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

pub fn script(source: &str) -> ScriptRef {
    ScriptRef {
        id: ScriptId::new(),
        name: "test".to_string(),
        updated_at: Timestamp::from_millis(1_700_000_000_000),
        source: Arc::from(source),
    }
}

pub fn get(path: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".to_string(),
        path: path.to_string(),
        ..HttpRequest::default()
    }
}

pub fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn ok(outcome: ExecOutcome) -> ScriptResponse {
    match outcome.result {
        Ok(response) => response,
        Err(err) => panic!("expected a response, the script failed: {err:?}"),
    }
}

pub fn failed(outcome: ExecOutcome) -> ExecError {
    match outcome.result {
        Err(err) => err,
        Ok(response) => panic!("expected the script to fail, it answered {response:?}"),
    }
}

/// Asserts the kind of `err` and that its message contains `needle`.
pub fn assert_error(err: &ExecError, kind: ExecErrorKind, needle: &str) {
    assert_eq!(err.kind, kind, "the error kind of {err:?}");
    assert!(
        err.message.contains(needle),
        "the message '{}' should contain '{needle}'",
        err.message
    );
}

/// Limits small enough that hostile scripts end quickly in a debug build.
pub fn small_limits() -> Limits {
    Limits {
        max_operations: 200_000,
        timeout_ms: 5_000,
        ..Limits::default()
    }
}

/// Runs each named `async fn name(via: Via)` once through each client, as `local::name` and
/// `remote::name`. The calling crate needs `tokio` (with `macros`) among its dependencies.
#[macro_export]
macro_rules! for_both_clients {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[::tokio::test]
                async fn $name() {
                    super::$name($crate::executor::Via::Local).await
                }
            )*
        }
        mod remote {
            $(
                #[::tokio::test]
                async fn $name() {
                    super::$name($crate::executor::Via::Remote).await
                }
            )*
        }
    };
}
