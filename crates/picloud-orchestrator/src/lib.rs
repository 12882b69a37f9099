//! PiCloud's domain: the rules the admin API and the dashboard both call, the route index, the
//! execution gate and the path of a public request. No HTTP here.
//!
//! | module | holds |
//! |---|---|
//! | [`apps`], [`scripts`], [`routes`] | the services: every rule about apps, scripts and routes |
//! | [`auth`] | passwords, sessions, CSRF tokens, and [`auth::require`], the one permission check |
//! | [`users`], [`members`], [`api_keys`] | users (instance admin), per-app roles, API keys |
//! | [`throttle`] | the slowdown of repeated failed logins, per account and per address |
//! | [`index`] | the in-memory route index (per app, per method, matchit) |
//! | [`triggers`], [`dead_letters`] | the services: trigger rules; listing, replaying and resolving dead letters |
//! | [`gate`] | the execution gate: N permits, at most a share of them for one app, a bounded wait, then `Overloaded` |
//! | [`invoke`] | a public request: lookup, then a sync run or an async `202` (its payload redacted) through the dispatcher; how much of a failure the caller sees |
//! | [`dispatcher`] | the outbox's worker: sync runs, claims with leases, retries, dead letters |
//! | [`recorder`] | group commits of outbox rows (one transaction for whatever is waiting) |
//! | [`notices`] | what other nodes change, told by the database (PostgreSQL): job wake-ups, route-index reloads, records for live tails |
//! | [`journal`] | execution records: their own thread and connection, a bounded queue, the per-app cap; other nodes' records for the live tails |
//! | [`inbox`] | the `InboxResolver` seam and the in-process inbox registry: where a sync request waits for the dispatcher |
//! | [`runner`] | one execution: gate, executor, the commit of its effects (run again on a conflict), metrics and log lines |
//! | [`tail`] | the live tail: each tailed app's records as they finish, to its readers |
//! | [`sweeper`] | retention of dead letters and abandoned-execution records |
//! | [`metrics`] | the Prometheus registry |
//! | [`validate`] | the [`ScriptValidator`] seam, implemented by the local executor |
//! | [`error`] | [`ServiceError`], the one error of the services |
//!
//! [`Platform`] bundles them: the binary starts it, the HTTP server holds a clone.

pub mod api_keys;
pub mod apps;
pub mod auth;
pub mod config;
pub mod data;
pub mod dead_letters;
pub mod dispatcher;
pub mod error;
pub mod executions;
pub mod gate;
pub mod inbox;
pub mod index;
pub mod invoke;
pub mod journal;
pub mod members;
pub mod metrics;
pub mod notices;
mod page;
pub mod recorder;
pub mod routes;
pub mod runner;
pub mod scripts;
pub mod sweeper;
pub mod tail;
pub mod throttle;
pub mod triggers;
pub mod users;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use picloud_executor::{ExecutorClient, ExecutorConfig, LocalExecutorClient};
use picloud_store::{Store, StoreServices};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use crate::api_keys::{ApiKeyService, CreatedApiKey, NewApiKeyInput};
pub use crate::apps::{AppChanges, AppService};
pub use crate::auth::{Auth, Login, PasswordPolicy};
pub use crate::config::{
    CommitConfig, DispatchConfig, JobConfig, MetricsConfig, PlatformConfig, RetentionConfig,
    ThrottleConfig, DEFAULT_GATE_APP_SHARE_PERCENT,
};
pub use crate::data::{DataService, DocsBrowse};
pub use crate::dead_letters::{DeadLetterService, Replayed};
pub use crate::dispatcher::{Attempt, Dispatcher};
pub use crate::error::{ServiceError, ServiceResult};
pub use crate::gate::{Gate, Refusal};
pub use crate::index::{Lookup, RouteIndex};
pub use crate::invoke::{ErrorDetail, InvokeError, InvokeRequest, InvokeResponse, RedactedHeaders};
pub use crate::members::MemberService;
pub use crate::metrics::{Metrics, RequestKind};
pub use crate::routes::{NewRouteInput, RouteService};
pub use crate::scripts::{
    NewScriptInput, ScriptChanges, ScriptDetail, ScriptService, TestRun, MAX_SOURCE_BYTES,
};
pub use crate::triggers::{NewDocsTriggerInput, NewKvTriggerInput, TriggerService};
pub use crate::users::{UserChanges, UserService};
pub use crate::validate::ScriptValidator;
/// What the script SDK offers (`GET /api/v1/sdk`), from the engine's registrations.
pub use picloud_executor::{sdk_catalogue, Catalogue, SdkFunction};
pub use picloud_store::{
    AbandonedExecution, AppQuotas, AppUsage, DeadLetterFilter, DeadLetterStatus, DocIndex, NewApp,
    Page, PageRequest, ScriptLink,
};

/// A local executor whose scripts read the data through `store`.
pub fn local_executor(store: Arc<dyn Store>, config: ExecutorConfig) -> Arc<LocalExecutorClient> {
    let services = StoreServices::new(store, config.limits.max_memory_bytes);
    Arc::new(LocalExecutorClient::new(config, Arc::new(services)))
}

/// How long `/readyz` waits for the database.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the platform can serve: the database answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady { reason: String },
}

/// Where scripts run, for [`Platform::start`].
pub enum Executors {
    /// In this process: the local executor runs them, checks sources when they are saved and
    /// writes the scripts' log lines itself.
    Local(Arc<LocalExecutorClient>),
    /// In a remote executor (`PICLOUD_EXECUTOR_URL`). `local` still checks sources when they are
    /// saved; the log lines that come back with each outcome are logged here.
    Remote {
        executor: Arc<dyn ExecutorClient>,
        local: Arc<LocalExecutorClient>,
    },
}

/// Everything the HTTP layer needs, cheap to clone.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    index: Arc<RouteIndex>,
    gate: Arc<Gate>,
    metrics: Arc<Metrics>,
    apps: AppService,
    scripts: ScriptService,
    routes: RouteService,
    auth: Auth,
    users: UserService,
    members: MemberService,
    api_keys: ApiKeyService,
    triggers: TriggerService,
    data: DataService,
    dead_letters: DeadLetterService,
    executions: executions::ExecutionService,
    invoker: invoke::Invoker,
    dispatcher: Arc<Dispatcher>,
    config: PlatformConfig,
    /// Turns true at shutdown; every background task watches it.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    recorder: Mutex<Option<recorder::RecorderThread>>,
    journal: Mutex<Option<journal::JournalThread>>,
}

impl Platform {
    /// [`Platform::start`] with a local executor whose scripts read the data through `store`.
    pub async fn start_local(
        store: Arc<dyn Store>,
        executor: ExecutorConfig,
        config: PlatformConfig,
    ) -> Result<Platform, ServiceError> {
        let local = local_executor(store.clone(), executor);
        Self::start(store, Executors::Local(local), config).await
    }

    /// Loads the route index from `store` (which must be migrated), wires the services and
    /// starts the outbox writer's thread and the background tasks: the dispatcher, the
    /// route-index follower and the sweepers. `executors` says where scripts run.
    pub async fn start(
        store: Arc<dyn Store>,
        executors: Executors,
        config: PlatformConfig,
    ) -> Result<Platform, ServiceError> {
        let wake = Arc::new(Notify::new());
        let mut metrics = Metrics::new(config.metrics);
        metrics.read_store(store.clone());
        let metrics = Arc::new(metrics);
        let index = Arc::new(RouteIndex::load(store.as_ref()).await?);
        let gate = Arc::new(Gate::new(
            config.gate_size,
            config.gate_app_share_percent,
            Duration::from_millis(config.gate_wait_ms),
            metrics.clone(),
        ));
        let (executor, validator, script_logs): (
            Arc<dyn ExecutorClient>,
            Arc<dyn ScriptValidator>,
            _,
        ) = match executors {
            Executors::Local(local) => {
                (local.clone(), local, runner::ScriptLogs::EmittedByExecutor)
            }
            Executors::Remote { executor, local } => (executor, local, runner::ScriptLogs::Relay),
        };
        let (stop, stopped) = watch::channel(false);
        // The writer stops last, so the outcomes of jobs finishing during shutdown are written.
        let (recorder, recorder_thread) = recorder::Recorder::start(store.outbox_committer()?)
            .map_err(|err| {
                ServiceError::Internal(format!("the outbox writer thread cannot start: {err}"))
            })?;
        // This node's name: in its leases, and in its notices of records to the other nodes.
        let node = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
        let (journal, journal_thread) = journal::Journal::start(
            store.execution_writer(&node)?,
            config.retention.executions_per_app,
            config.records.max_log_bytes,
        )
        .map_err(|err| {
            ServiceError::Internal(format!("the execution records' thread cannot start: {err}"))
        })?;
        let tail = Arc::new(tail::LogTail::new());
        let runner = runner::Runner::new(
            gate.clone(),
            executor,
            (recorder.clone(), config.commits, wake.clone()),
            metrics.clone(),
            (script_logs, config.records, journal, tail.clone()),
        );
        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            runner,
            recorder,
            wake.clone(),
            node.clone(),
            config.jobs.clone(),
            config.dispatch.clone(),
        ));
        let tasks = vec![
            tokio::spawn(dispatcher.clone().run(stopped.clone())),
            tokio::spawn(index.clone().follow(
                store.clone(),
                Duration::from_millis(config.route_refresh_ms.max(1)),
                stopped.clone(),
            )),
            tokio::spawn(sweeper::run(
                store.clone(),
                config.retention.clone(),
                stopped.clone(),
            )),
            tokio::spawn(notices::follow(
                store.clone(),
                notices::Followers {
                    index: index.clone(),
                    wake: wake.clone(),
                    tail: tail.clone(),
                    origin: node,
                },
                stopped,
            )),
        ];
        let auth = Auth::new(
            store.clone(),
            config.session_ttl_ms,
            config.login_throttle,
            config.password_policy,
        );
        let inner = Inner {
            apps: AppService::new(store.clone(), index.clone()),
            scripts: ScriptService::new(
                store.clone(),
                index.clone(),
                validator,
                dispatcher.clone(),
            ),
            routes: RouteService::new(store.clone(), index.clone()),
            users: UserService::new(store.clone(), auth.clone()),
            members: MemberService::new(store.clone()),
            api_keys: ApiKeyService::new(store.clone()),
            triggers: TriggerService::new(store.clone()),
            data: DataService::new(store.clone()),
            dead_letters: DeadLetterService::new(store.clone(), wake),
            executions: executions::ExecutionService::new(store.clone(), tail),
            auth,
            invoker: invoke::Invoker::new(
                index.clone(),
                dispatcher.clone(),
                config.redacted_headers.clone(),
            ),
            dispatcher,
            store,
            index,
            gate,
            metrics,
            config,
            stop,
            tasks: Mutex::new(tasks),
            recorder: Mutex::new(Some(recorder_thread)),
            journal: Mutex::new(Some(journal_thread)),
        };
        Ok(Platform {
            inner: Arc::new(inner),
        })
    }

    /// Stops the background tasks: the dispatcher stops claiming, waits for running jobs (up to
    /// the sync wait), hands back the rows it holds; the outbox writer commits what is queued.
    /// Call it after the HTTP server has drained.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.tasks.lock());
        for task in tasks {
            if let Err(err) = task.await {
                tracing::warn!("a background task ended badly: {err}");
            }
        }
        let recorder = self.inner.recorder.lock().take();
        if let Some(recorder) = recorder {
            recorder.stop().await;
        }
        // After the recorder: the records of the runs that finished during shutdown are in.
        let journal = self.inner.journal.lock().take();
        if let Some(journal) = journal {
            journal.stop().await;
        }
    }

    pub fn triggers(&self) -> &TriggerService {
        &self.inner.triggers
    }

    /// The data browser (an app's KV entries and documents) and declared document indexes.
    pub fn data(&self) -> &DataService {
        &self.inner.data
    }

    pub fn dead_letters(&self) -> &DeadLetterService {
        &self.inner.dead_letters
    }

    pub fn executions(&self) -> &executions::ExecutionService {
        &self.inner.executions
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.inner.dispatcher
    }

    pub fn apps(&self) -> &AppService {
        &self.inner.apps
    }

    pub fn scripts(&self) -> &ScriptService {
        &self.inner.scripts
    }

    pub fn routes(&self) -> &RouteService {
        &self.inner.routes
    }

    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub fn users(&self) -> &UserService {
        &self.inner.users
    }

    pub fn members(&self) -> &MemberService {
        &self.inner.members
    }

    pub fn api_keys(&self) -> &ApiKeyService {
        &self.inner.api_keys
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn index(&self) -> &RouteIndex {
        &self.inner.index
    }

    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn config(&self) -> &PlatformConfig {
        &self.inner.config
    }

    /// Runs a public request.
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        self.inner.invoker.invoke(request).await
    }

    /// Ready when the database answers a ping within [`READINESS_TIMEOUT`]: a probe answers
    /// promptly during an outage instead of waiting for the pool's acquire timeout.
    pub async fn readiness(&self) -> Readiness {
        let ping = tokio::time::timeout(READINESS_TIMEOUT, self.inner.store.ping()).await;
        match ping.unwrap_or_else(|_| {
            Err(picloud_store::StoreError::Unavailable(
                "no answer to a ping within a second".to_owned(),
            ))
        }) {
            Ok(()) => Readiness::Ready,
            Err(err) => {
                tracing::warn!("not ready: {err}");
                Readiness::NotReady {
                    reason: "the database is unreachable".to_owned(),
                }
            }
        }
    }
}
