//! Prometheus metrics, in one registry per platform (no globals, so tests do not share counts).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `picloud_http_requests_total` | `kind` (`public`, `admin`, `other`), `status` | HTTP requests answered |
//! | `picloud_executions_total` | `app`, `script`, `outcome` (`ok` or an error kind) | script executions |
//! | `picloud_execution_duration_seconds` | `app`, `script` | time spent running scripts (histogram) |
//! | `picloud_run_conflicts_total` | — | runs whose commit conflicted (each ran again, or failed with `conflict`) |
//! | `picloud_gate_in_use` / `picloud_gate_capacity` | — | the execution gate |
//! | `picloud_gate_refusals_total` | `reason` (`full`, `app_share`) | requests refused at the gate after its wait (`503 overloaded`) |
//! | `picloud_db_pool_in_use` / `picloud_db_pool_idle` / `picloud_db_pool_capacity` | `pool` (`main`; SQLite: `reader`, `writer`, `records`) | the store's connection pools |
//! | `picloud_outbox_jobs` | `status` (`pending`, `running`) | async jobs in the outbox; sync requests in flight are not outbox rows (read at each scrape) |
//! | `picloud_outbox_due_jobs` | — | pending jobs whose due time has come: the backlog (read at each scrape) |
//! | `picloud_outbox_oldest_due_age_seconds` | — | how long the job due first has waited since it fell due; 0 when none is due (read at each scrape) |
//! | `picloud_dead_letters_unresolved` | `app` | unresolved dead letters per app (read at each scrape) |
//! | `picloud_metrics_store_errors_total` | — | reads of the store at a scrape that failed or timed out (their metrics are left out of that scrape) |
//!
//! **Labels of apps and scripts.** `app` is the app's slug and `script` the script's name: both
//! are bounded (63 and 64 ASCII characters) and readable, and a rename starts a new series.
//! Tenants decide how many apps and scripts exist, so the series are guarded
//! ([`MetricsConfig`]): the first `max_apps` apps to run a script since the process started get
//! an `app` label of their own, and the first `max_scripts` (app, script) pairs across the
//! instance a `script` label of their own; the executions of later scripts count under their
//! app with `script="(other)"`, those of later apps under `app="(other)", script="(other)"`.
//! First come, not the busiest: a counter never moves from one series to another, and which
//! series exist depends only on the order scripts first ran. `(other)` is neither a valid slug
//! nor a valid script name, so no tenant can take it. At most `max_scripts + max_apps + 1` label
//! sets, times the outcomes for the counter. `picloud_dead_letters_unresolved` names the
//! `max_apps` apps with the most (then by slug) at each scrape and sums the rest in
//! `app="(other)"`.
//!
//! **The hot path.** An execution resolves its series once ([`Metrics::executions_of`]: a read
//! lock and two map lookups by `&str`, no allocation once its labels exist) and counts through
//! handles held there: no label set is built per execution.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use picloud_store::{OutboxDepth, OutboxLag, PoolUsage, Store, StoreResult};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::config::MetricsConfig;
use crate::gate::Refusal;

/// The label value of the executions beyond the guard's limits, and of the dead letters of the
/// apps beyond them.
pub const OTHER: &str = "(other)";

/// How long a scrape waits for each read of the store before it leaves its metrics out.
pub const STORE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Which surface a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// An app's public route.
    Public,
    /// `/api/…`: the admin API and authentication.
    Admin,
    /// Health, readiness, metrics and anything else.
    Other,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Admin => "admin",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    kind: &'static str,
    status: u16,
}

/// An app's slug and a script's name, or [`OTHER`]; shared by every series of the pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ScriptLabels {
    app: Arc<String>,
    script: Arc<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExecutionLabels {
    app: Arc<String>,
    script: Arc<String>,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

type Durations = Family<ScriptLabels, Histogram, fn() -> Histogram>;

/// 0.5 ms … ~33 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The series of one (app, script) label set, resolved once for all its executions.
#[derive(Debug)]
pub struct ExecutionSeries {
    labels: ScriptLabels,
    /// `outcome="ok"`, the common case, counted without a lookup; failures go through the
    /// family.
    ok: Counter,
    duration: Histogram,
}

/// The label sets given out so far, by slug and script name (a rename is a new pair).
#[derive(Debug)]
struct Guard {
    limits: MetricsConfig,
    apps: HashMap<String, AppSeries>,
    /// (app, script) pairs with a `script` label of their own.
    scripts: usize,
    /// `app="(other)", script="(other)"`.
    other: Arc<ExecutionSeries>,
}

#[derive(Debug)]
struct AppSeries {
    scripts: HashMap<String, Arc<ExecutionSeries>>,
    /// `script="(other)"` of this app.
    other: Arc<ExecutionSeries>,
}

impl Guard {
    /// The series of `(app, script)` when the answer needs no new label set: the pair's own,
    /// or an aggregate once the limits are reached; `None` when the pair may get one.
    fn find(&self, app: &str, script: &str) -> Option<Arc<ExecutionSeries>> {
        match self.apps.get(app) {
            Some(series) => series.scripts.get(script).cloned().or_else(|| {
                (self.scripts >= self.limits.max_scripts).then(|| series.other.clone())
            }),
            None => (self.apps.len() >= self.limits.max_apps).then(|| self.other.clone()),
        }
    }
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    executions: Family<ExecutionLabels, Counter>,
    durations: Durations,
    guard: RwLock<Guard>,
    run_conflicts: Counter,
    gate_in_use: Gauge,
    gate_capacity: Gauge,
    gate_refusals: Family<RefusalLabels, Counter>,
    store_errors: Counter,
    /// What the store said at the last scrape; `None` until [`Metrics::read_store`].
    store: Option<Arc<StoreGauges>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(MetricsConfig::default())
    }
}

impl Metrics {
    /// The registry, with the series of apps and scripts guarded by `limits`.
    pub fn new(limits: MetricsConfig) -> Self {
        let mut registry = Registry::with_prefix("picloud");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        let executions = Family::<ExecutionLabels, Counter>::default();
        registry.register(
            "executions",
            "Script executions by app, script and outcome",
            executions.clone(),
        );
        let durations: Durations = Family::new_with_constructor(duration_histogram);
        registry.register(
            "execution_duration_seconds",
            "Time spent running scripts, by app and script",
            durations.clone(),
        );
        let run_conflicts = Counter::default();
        registry.register(
            "run_conflicts",
            "Runs whose commit conflicted with another and were discarded",
            run_conflicts.clone(),
        );
        let gate_in_use = Gauge::default();
        registry.register(
            "gate_in_use",
            "Executions holding a gate permit",
            gate_in_use.clone(),
        );
        let gate_capacity = Gauge::default();
        registry.register(
            "gate_capacity",
            "Permits of the execution gate",
            gate_capacity.clone(),
        );
        let gate_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "gate_refusals",
            "Executions refused at the gate after its wait: full, or the app at its share",
            gate_refusals.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "metrics_store_errors",
            "Reads of the store at a scrape that failed or timed out",
            store_errors.clone(),
        );
        let other = Arc::new(OTHER.to_owned());
        let guard = Guard {
            limits,
            apps: HashMap::new(),
            scripts: 0,
            other: Arc::new(series(&executions, &durations, other.clone(), other)),
        };
        Self {
            registry,
            http_requests,
            executions,
            durations,
            guard: RwLock::new(guard),
            run_conflicts,
            gate_in_use,
            gate_capacity,
            gate_refusals,
            store_errors,
            store: None,
        }
    }

    /// Reads the gauges of `store` at each [`Metrics::scrape`]: its pools, the outbox and the
    /// unresolved dead letters.
    pub fn read_store(&mut self, store: Arc<dyn Store>) {
        let max_apps = self.guard.get_mut().limits.max_apps;
        let gauges = Arc::new(StoreGauges {
            store,
            max_apps,
            last: Mutex::new(StoreReading::default()),
        });
        self.registry
            .register_collector(Box::new(StoreCollector(gauges.clone())));
        self.store = Some(gauges);
    }

    pub fn record_http_request(&self, kind: RequestKind, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                kind: kind.as_str(),
                status,
            })
            .inc();
    }

    /// The series the executions of `script` of the app `app` (its slug) count in: the pair's
    /// own, or an aggregate when the guard's limits are reached. Resolve it once per execution.
    pub fn executions_of(&self, app: &str, script: &str) -> Arc<ExecutionSeries> {
        if let Some(series) = self.guard.read().find(app, script) {
            return series;
        }
        let mut guard = self.guard.write();
        // Another execution may have given the pair its labels meanwhile.
        if let Some(series) = guard.find(app, script) {
            return series;
        }
        let guard = &mut *guard;
        let app_series = guard.apps.entry(app.to_owned()).or_insert_with(|| {
            let slug = Arc::new(app.to_owned());
            AppSeries {
                scripts: HashMap::new(),
                other: Arc::new(series(
                    &self.executions,
                    &self.durations,
                    slug,
                    Arc::new(OTHER.to_owned()),
                )),
            }
        });
        // A new app's first script when every script label is given out: its app's aggregate.
        if guard.scripts >= guard.limits.max_scripts {
            return app_series.other.clone();
        }
        guard.scripts += 1;
        let own = Arc::new(series(
            &self.executions,
            &self.durations,
            app_series.other.labels.app.clone(),
            Arc::new(script.to_owned()),
        ));
        app_series.scripts.insert(script.to_owned(), own.clone());
        own
    }

    /// `outcome` is `ok` or an [`ExecErrorKind::as_str`](picloud_core::exec::ExecErrorKind::as_str).
    pub fn record_execution(
        &self,
        series: &ExecutionSeries,
        outcome: &'static str,
        duration_secs: f64,
    ) {
        if outcome == "ok" {
            series.ok.inc();
        } else {
            self.executions
                .get_or_create(&ExecutionLabels {
                    app: series.labels.app.clone(),
                    script: series.labels.script.clone(),
                    outcome,
                })
                .inc();
        }
        series.duration.observe(duration_secs);
    }

    pub(crate) fn record_conflict(&self) {
        self.run_conflicts.inc();
    }

    pub(crate) fn set_gate_capacity(&self, capacity: usize) {
        self.gate_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
    }

    pub(crate) fn gate_entered(&self) {
        self.gate_in_use.inc();
    }

    pub(crate) fn gate_left(&self) {
        self.gate_in_use.dec();
    }

    pub(crate) fn gate_refused(&self, refusal: Refusal) {
        let reason = match refusal {
            Refusal::Full => "full",
            Refusal::AppShare { .. } => "app_share",
        };
        self.gate_refusals
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    /// Reads the store's gauges (each read at most [`STORE_READ_TIMEOUT`]; one that fails is
    /// logged, counted and left out), then encodes everything.
    pub async fn scrape(&self) -> String {
        if let Some(store) = &self.store {
            let failures = store.refresh().await;
            self.store_errors.inc_by(failures);
        }
        self.encode()
    }

    /// Everything in the Prometheus text format, with the store's gauges of the last scrape.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(err) = encode(&mut out, &self.registry) {
            // Writing into a String cannot fail; say so loudly if it ever does.
            tracing::error!("cannot encode the metrics: {err}");
        }
        out
    }
}

/// The series of one label set, whose `ok` counter and histogram exist from now on.
fn series(
    executions: &Family<ExecutionLabels, Counter>,
    durations: &Durations,
    app: Arc<String>,
    script: Arc<String>,
) -> ExecutionSeries {
    let labels = ScriptLabels { app, script };
    let ok = executions
        .get_or_create(&ExecutionLabels {
            app: labels.app.clone(),
            script: labels.script.clone(),
            outcome: "ok",
        })
        .clone();
    let duration = durations.get_or_create(&labels).clone();
    ExecutionSeries {
        labels,
        ok,
        duration,
    }
}

/// What the store said at the last scrape; a part whose read failed is `None` and left out.
#[derive(Debug, Default)]
struct StoreReading {
    depth: Option<OutboxDepth>,
    lag: Option<OutboxLag>,
    /// By app, at most `max_apps` and then [`OTHER`].
    dead_letters: Option<Vec<(String, u64)>>,
}

struct StoreGauges {
    store: Arc<dyn Store>,
    max_apps: usize,
    last: Mutex<StoreReading>,
}

impl std::fmt::Debug for StoreGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreGauges")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl StoreGauges {
    /// Reads the store's gauges side by side; answers how many reads failed.
    async fn refresh(&self) -> u64 {
        let store = self.store.as_ref();
        let (depth, lag, dead_letters) = tokio::join!(
            read("the outbox's depth", store.outbox_depth()),
            read("the outbox's lag", store.outbox_lag()),
            read(
                "the unresolved dead letters",
                store.count_unresolved_dead_letters_by_app()
            ),
        );
        let failures = [depth.is_none(), lag.is_none(), dead_letters.is_none()]
            .into_iter()
            .filter(|failed| *failed)
            .count();
        *self.last.lock() = StoreReading {
            depth,
            lag,
            dead_letters: dead_letters.map(|apps| top_apps(apps, self.max_apps)),
        };
        failures as u64
    }
}

/// `read`'s answer within [`STORE_READ_TIMEOUT`]; `None`, with a warning naming `what`, when it
/// fails or takes longer.
async fn read<T>(what: &str, read: impl std::future::Future<Output = StoreResult<T>>) -> Option<T> {
    match tokio::time::timeout(STORE_READ_TIMEOUT, read).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(err)) => {
            tracing::warn!("metrics: cannot read {what}: {err}");
            None
        }
        Err(_) => {
            tracing::warn!(
                "metrics: reading {what} took more than {} s; left out of this scrape",
                STORE_READ_TIMEOUT.as_secs()
            );
            None
        }
    }
}

/// The `max` apps with the most, most first (ties by slug), then the sum of the rest as
/// [`OTHER`] when there are any.
fn top_apps(mut apps: Vec<(String, u64)>, max: usize) -> Vec<(String, u64)> {
    apps.sort_unstable_by(|(a, a_count), (b, b_count)| b_count.cmp(a_count).then(a.cmp(b)));
    if apps.len() > max {
        let rest = apps.split_off(max).into_iter().map(|(_, n)| n).sum();
        apps.push((OTHER.to_owned(), rest));
    }
    apps
}

/// Encodes [`StoreGauges`]: the pools as they are now, the rest as the last scrape read them.
#[derive(Debug)]
struct StoreCollector(Arc<StoreGauges>);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools = self.0.store.pools();
        let pools = &pools;
        let by_pool = |value: fn(&PoolUsage) -> u32| {
            pools
                .iter()
                .map(move |pool| ([("pool", pool.name)], value(pool)))
        };
        gauges(
            &mut encoder,
            (
                "db_pool_in_use",
                "Connections of the store's pool lent out now",
            ),
            by_pool(|pool| pool.in_use),
        )?;
        gauges(
            &mut encoder,
            (
                "db_pool_idle",
                "Connections of the store's pool open and idle",
            ),
            by_pool(|pool| pool.idle),
        )?;
        gauges(
            &mut encoder,
            (
                "db_pool_capacity",
                "The most connections the store's pool opens",
            ),
            by_pool(|pool| pool.capacity),
        )?;
        let last = self.0.last.lock();
        if let Some(depth) = last.depth {
            gauges(
                &mut encoder,
                (
                    "outbox_jobs",
                    "Rows in the outbox by status, sync requests included",
                ),
                [
                    ([("status", "pending")], depth.pending),
                    ([("status", "running")], depth.running),
                ],
            )?;
        }
        if let Some(lag) = last.lag {
            gauge(
                &mut encoder,
                ("outbox_due_jobs", "Pending jobs whose due time has come"),
                lag.due,
            )?;
            gauge(
                &mut encoder,
                (
                    "outbox_oldest_due_age_seconds",
                    "How long the job due first has waited since it fell due",
                ),
                lag.oldest_due_ms as f64 / 1000.0,
            )?;
        }
        if let Some(apps) = &last.dead_letters {
            gauges(
                &mut encoder,
                ("dead_letters_unresolved", "Unresolved dead letters by app"),
                apps.iter().map(|(app, n)| ([("app", app.as_str())], *n)),
            )?;
        }
        Ok(())
    }
}

/// One gauge without labels.
fn gauge<N>(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    value: N,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let value = ConstGauge::new(value);
    value.encode(encoder.encode_descriptor(name, help, None, value.metric_type())?)
}

/// A gauge with a value per label set.
fn gauges<L: EncodeLabelSet, N>(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    values: impl IntoIterator<Item = (L, N)>,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_of(text: &str, sample: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
    }

    #[test]
    fn counters_appear_in_the_text_format_with_their_labels() {
        let metrics = Metrics::default();
        metrics.record_http_request(RequestKind::Public, 200);
        metrics.record_http_request(RequestKind::Public, 200);
        let hello = metrics.executions_of("shop", "hello");
        metrics.record_execution(&hello, "ok", 0.002);
        metrics.record_execution(&hello, "timeout", 5.0);
        metrics.gate_refused(Refusal::AppShare { share: 2 });
        metrics.set_gate_capacity(8);
        let text = metrics.encode();
        for (sample, value) in [
            (
                r#"picloud_http_requests_total{kind="public",status="200"}"#,
                2.0,
            ),
            (
                r#"picloud_executions_total{app="shop",script="hello",outcome="ok"}"#,
                1.0,
            ),
            (
                r#"picloud_executions_total{app="shop",script="hello",outcome="timeout"}"#,
                1.0,
            ),
            (
                r#"picloud_execution_duration_seconds_count{app="shop",script="hello"}"#,
                2.0,
            ),
            (r#"picloud_gate_refusals_total{reason="app_share"}"#, 1.0),
            ("picloud_gate_capacity", 8.0),
        ] {
            assert_eq!(count_of(&text, sample), Some(value), "{sample}: {text}");
        }
        assert!(
            text.trim_end().ends_with("# EOF"),
            "the OpenMetrics terminator ends the text: {text}"
        );
    }

    #[test]
    fn the_guard_gives_out_labels_first_come_and_aggregates_the_rest() {
        let metrics = Metrics::new(MetricsConfig {
            max_apps: 2,
            max_scripts: 3,
        });
        let run = |app: &str, script: &str| {
            let series = metrics.executions_of(app, script);
            metrics.record_execution(&series, "ok", 0.001);
            (
                series.labels.app.to_string(),
                series.labels.script.to_string(),
            )
        };
        let owned = |app: &str, script: &str| (app.to_owned(), script.to_owned());
        assert_eq!(run("shop", "a"), owned("shop", "a"), "the first pair");
        assert_eq!(run("shop", "b"), owned("shop", "b"));
        assert_eq!(run("blog", "a"), owned("blog", "a"), "a second app");
        assert_eq!(
            run("shop", "a"),
            owned("shop", "a"),
            "a known pair keeps its labels"
        );
        assert_eq!(
            run("shop", "c"),
            owned("shop", OTHER),
            "three pairs are given out: a fourth counts under its app"
        );
        assert_eq!(
            run("wiki", "a"),
            owned(OTHER, OTHER),
            "two apps are given out: a third counts in the instance's aggregate"
        );
        assert_eq!(run("blog", "z"), owned("blog", OTHER));
        let text = metrics.encode();
        let total: f64 = text
            .lines()
            .filter(|line| line.starts_with("picloud_executions_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(total, 7.0, "every execution is counted once: {text}");
        let series = text
            .lines()
            .filter(|line| line.starts_with("picloud_execution_duration_seconds_count{"))
            .count();
        assert_eq!(
            series, 6,
            "three pairs, each app's aggregate and the instance's: {text}"
        );
    }

    #[test]
    fn an_app_that_comes_after_the_last_script_label_gets_only_its_aggregate() {
        let metrics = Metrics::new(MetricsConfig {
            max_apps: 2,
            max_scripts: 1,
        });
        let labels = |app: &str, script: &str| {
            let series = metrics.executions_of(app, script);
            (
                series.labels.app.to_string(),
                series.labels.script.to_string(),
            )
        };
        assert_eq!(labels("shop", "a"), ("shop".to_owned(), "a".to_owned()));
        assert_eq!(
            labels("blog", "a"),
            ("blog".to_owned(), OTHER.to_owned()),
            "the app gets its label, but no script label is left"
        );
        assert_eq!(
            metrics.guard.read().scripts,
            1,
            "one script label given out"
        );
    }

    #[test]
    fn a_guard_of_zero_aggregates_everything() {
        let metrics = Metrics::new(MetricsConfig {
            max_apps: 0,
            max_scripts: 0,
        });
        let series = metrics.executions_of("shop", "a");
        assert_eq!(
            (series.labels.app.as_str(), series.labels.script.as_str()),
            (OTHER, OTHER)
        );
    }

    #[test]
    fn dead_letters_name_the_apps_with_the_most_and_sum_the_rest() {
        let apps = |list: &[(&str, u64)]| {
            list.iter()
                .map(|(slug, n)| ((*slug).to_owned(), *n))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            top_apps(apps(&[("b", 1), ("a", 5), ("c", 1), ("d", 2)]), 2),
            apps(&[("a", 5), ("d", 2), (OTHER, 2)]),
            "most first; the rest summed"
        );
        assert_eq!(
            top_apps(apps(&[("b", 1), ("a", 1)]), 2),
            apps(&[("a", 1), ("b", 1)]),
            "ties by slug; nothing left over, no aggregate"
        );
    }
}
