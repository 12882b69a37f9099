//! Prometheus metrics, in one registry per platform (no globals, so tests do not share counts).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `picloud_http_requests_total` | `kind` (`public`, `admin`, `other`), `status` | HTTP requests answered |
//! | `picloud_executions_total` | `outcome` (`ok` or an error kind) | script executions |
//! | `picloud_execution_duration_seconds` | — | time spent running scripts |
//! | `picloud_run_conflicts_total` | — | runs whose commit conflicted (each ran again, or failed with `conflict`) |
//! | `picloud_gate_in_use` / `picloud_gate_capacity` | — | the execution gate |

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExecutionLabels {
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    executions: Family<ExecutionLabels, Counter>,
    execution_duration: Histogram,
    run_conflicts: Counter,
    gate_in_use: Gauge,
    gate_capacity: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
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
            "Script executions by outcome",
            executions.clone(),
        );
        // 0.5 ms … ~33 s.
        let execution_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 17));
        registry.register(
            "execution_duration_seconds",
            "Time spent running scripts",
            execution_duration.clone(),
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
        Self {
            registry,
            http_requests,
            executions,
            execution_duration,
            run_conflicts,
            gate_in_use,
            gate_capacity,
        }
    }

    pub fn record_http_request(&self, kind: RequestKind, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                kind: kind.as_str(),
                status,
            })
            .inc();
    }

    /// `outcome` is `ok` or an [`ExecErrorKind::as_str`](picloud_core::exec::ExecErrorKind::as_str).
    pub fn record_execution(&self, outcome: &'static str, duration_secs: f64) {
        self.executions
            .get_or_create(&ExecutionLabels { outcome })
            .inc();
        self.execution_duration.observe(duration_secs);
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

    /// Everything in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(err) = encode(&mut out, &self.registry) {
            // Writing into a String cannot fail; say so loudly if it ever does.
            tracing::error!("cannot encode the metrics: {err}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_format_with_their_labels() {
        let metrics = Metrics::new();
        metrics.record_http_request(RequestKind::Public, 200);
        metrics.record_http_request(RequestKind::Public, 200);
        metrics.record_execution("ok", 0.002);
        metrics.set_gate_capacity(8);
        let text = metrics.encode();
        assert!(
            text.contains(r#"picloud_http_requests_total{kind="public",status="200"} 2"#),
            "requests are counted by kind and status: {text}"
        );
        assert!(
            text.contains(r#"picloud_executions_total{outcome="ok"} 1"#),
            "executions by outcome: {text}"
        );
        assert!(
            text.contains("picloud_execution_duration_seconds_count 1"),
            "the duration histogram: {text}"
        );
        assert!(
            text.contains("picloud_gate_capacity 8"),
            "the gate's capacity: {text}"
        );
        assert!(
            text.trim_end().ends_with("# EOF"),
            "the OpenMetrics terminator ends the text: {text}"
        );
    }
}
