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
//! | [`gate`] | the execution gate: N permits, a bounded wait, then `Overloaded` |
//! | [`invoke`] | a public request: lookup, the execution, the [`invoke::Dispatch`] seam |
//! | [`metrics`] | the Prometheus registry |
//! | [`validate`] | the [`ScriptValidator`] seam, implemented by the local executor |
//! | [`error`] | [`ServiceError`], the one error of the services |
//!
//! [`Platform`] bundles them: the binary starts it, the HTTP server holds a clone.

pub mod api_keys;
pub mod apps;
pub mod auth;
pub mod error;
pub mod gate;
pub mod index;
pub mod invoke;
pub mod members;
pub mod metrics;
mod page;
pub mod routes;
pub mod scripts;
pub mod throttle;
pub mod users;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use picloud_executor::ExecutorClient;
use picloud_store::Store;

pub use crate::api_keys::{ApiKeyService, CreatedApiKey, NewApiKeyInput};
pub use crate::apps::{AppChanges, AppService};
pub use crate::auth::{Auth, Login};
pub use crate::error::{ServiceError, ServiceResult};
pub use crate::gate::Gate;
pub use crate::index::{Lookup, RouteIndex};
pub use crate::invoke::{InvokeError, InvokeRequest, InvokeResponse};
pub use crate::members::MemberService;
pub use crate::metrics::{Metrics, RequestKind};
pub use crate::routes::{NewRouteInput, RouteService};
pub use crate::scripts::{NewScriptInput, ScriptChanges, ScriptService, TestRun, MAX_SOURCE_BYTES};
pub use crate::throttle::ThrottleConfig;
pub use crate::users::{UserChanges, UserService};
pub use crate::validate::ScriptValidator;
pub use picloud_store::{Page, PageRequest};

/// The platform's own settings (the sandbox's are the executor's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformConfig {
    /// Executions running at once.
    pub gate_size: usize,
    /// How long a request waits at a full gate before it is refused.
    pub gate_wait_ms: u64,
    /// How long a login session lasts.
    pub session_ttl_ms: i64,
    /// The slowdown of repeated failed logins.
    pub login_throttle: ThrottleConfig,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            gate_size: 64,
            gate_wait_ms: 1_000,
            session_ttl_ms: 24 * 3_600_000,
            login_throttle: ThrottleConfig::default(),
        }
    }
}

/// Whether the platform can serve: the database answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady { reason: String },
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
    invoker: invoke::Invoker,
    config: PlatformConfig,
}

impl Platform {
    /// Loads the route index from `store` (which must be migrated) and wires the services.
    /// `executor` runs scripts; `validator` checks sources at save time (the local executor,
    /// even when scripts run in a remote one). When both are the same local client, it writes
    /// the scripts' log lines itself; otherwise the lines that come back are logged here.
    pub async fn start(
        store: Arc<dyn Store>,
        executor: Arc<dyn ExecutorClient>,
        validator: Arc<dyn ScriptValidator>,
        config: PlatformConfig,
    ) -> Result<Platform, ServiceError> {
        let metrics = Arc::new(Metrics::new());
        let index = Arc::new(RouteIndex::load(store.as_ref()).await?);
        let gate = Arc::new(Gate::new(
            config.gate_size,
            Duration::from_millis(config.gate_wait_ms),
            metrics.clone(),
        ));
        // The local executor emits script log lines itself, in this process; it is the local one
        // when the binary passes the same client as executor and validator.
        let local = std::ptr::eq(
            Arc::as_ptr(&executor) as *const (),
            Arc::as_ptr(&validator) as *const (),
        );
        let script_logs = if local {
            invoke::ScriptLogs::EmittedByExecutor
        } else {
            invoke::ScriptLogs::Relay
        };
        let dispatch = Arc::new(invoke::DirectDispatch::new(
            gate.clone(),
            executor,
            metrics.clone(),
            script_logs,
        ));
        let auth = Auth::new(store.clone(), config.session_ttl_ms, config.login_throttle);
        let inner = Inner {
            apps: AppService::new(store.clone(), index.clone()),
            scripts: ScriptService::new(store.clone(), index.clone(), validator, dispatch.clone()),
            routes: RouteService::new(store.clone(), index.clone()),
            users: UserService::new(store.clone(), auth.clone()),
            members: MemberService::new(store.clone()),
            api_keys: ApiKeyService::new(store.clone()),
            auth,
            invoker: invoke::Invoker::new(index.clone(), dispatch),
            store,
            index,
            gate,
            metrics,
            config,
        };
        Ok(Platform {
            inner: Arc::new(inner),
        })
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

    /// Ready when the database answers a ping.
    pub async fn readiness(&self) -> Readiness {
        match self.inner.store.ping().await {
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
