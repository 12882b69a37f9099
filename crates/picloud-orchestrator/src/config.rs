//! The orchestrator's settings, in one place. Every field has a `PICLOUD_*` variable in the
//! binary (`crates/picloud/src/config.rs`), named in its doc; the sandbox's settings are the
//! executor's (`picloud_executor::ExecutorConfig`), the store's are `picloud_store::StoreConfig`.

use std::time::Duration;

use rand::Rng;

use crate::auth::PasswordPolicy;
use crate::invoke::RedactedHeaders;

/// The platform's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformConfig {
    /// Executions running at once (by default as many as the local executor has threads).
    /// `PICLOUD_MAX_CONCURRENT_EXECUTIONS`.
    pub gate_size: usize,
    /// The percentage of `gate_size` one app may hold at once (at least one execution).
    /// `PICLOUD_GATE_APP_SHARE`.
    pub gate_app_share_percent: u8,
    /// How long a request waits at a full gate before it is refused. `PICLOUD_GATE_WAIT_MS`.
    pub gate_wait_ms: u64,
    /// How long a login session lasts. `PICLOUD_SESSION_TTL_HOURS`.
    pub session_ttl_ms: i64,
    /// The slowdown of repeated failed logins.
    pub login_throttle: ThrottleConfig,
    /// What every password that is set must be.
    pub password_policy: PasswordPolicy,
    /// How async jobs (async requests, trigger events, replays) are retried.
    pub jobs: JobConfig,
    /// How runs' effects are committed, and run again when they conflict.
    pub commits: CommitConfig,
    /// How the dispatcher works the outbox.
    pub dispatch: DispatchConfig,
    /// How long dead letters and abandoned-execution records are kept.
    pub retention: RetentionConfig,
    /// How often the route index looks for changes made through other nodes.
    /// `PICLOUD_ROUTE_REFRESH_MS`.
    pub route_refresh_ms: u64,
    /// The request headers async jobs do not store (`PICLOUD_REDACTED_HEADERS` adds to the
    /// defaults).
    pub redacted_headers: RedactedHeaders,
    /// Which executions leave a record.
    pub records: crate::runner::RecordPolicy,
    /// How many apps and scripts `/metrics` gives series of their own.
    pub metrics: MetricsConfig,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            gate_size: picloud_executor::default_threads(),
            gate_app_share_percent: DEFAULT_GATE_APP_SHARE_PERCENT,
            gate_wait_ms: 1_000,
            session_ttl_ms: 24 * 3_600_000,
            login_throttle: ThrottleConfig::default(),
            password_policy: PasswordPolicy::default(),
            jobs: JobConfig::default(),
            commits: CommitConfig::default(),
            dispatch: DispatchConfig::default(),
            retention: RetentionConfig::default(),
            route_refresh_ms: 1_000,
            redacted_headers: RedactedHeaders::default(),
            records: crate::runner::RecordPolicy::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// The share of the gate one app may hold by default, in percent: three quarters. A runaway or
/// hostile app leaves a quarter of the executions to the others (2 of 8 on 2 cores), and a quick
/// request holds its permit for microseconds, so they keep being answered. One app alone keeps
/// most of the gate: what a smaller share takes from it is the overlap of scripts that wait on
/// data calls, and its async jobs are claimed at most a share at a time (the `kv` and `async`
/// benchmarks with one app, at a half and at three quarters: bench/RESULTS.md). Two busy apps fill the gate: the share bounds one bad tenant, not several.
pub const DEFAULT_GATE_APP_SHARE_PERCENT: u8 = 75;

/// The cardinality guard of `/metrics` ([`crate::metrics`]): tenants choose how many apps and
/// scripts they make, so the series they get of their own are bounded; the executions of the
/// rest count in aggregated series. Each process gives them out first come, first served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Apps whose executions get an `app` label of their own (the first to run since the
    /// process started); also the most apps `picloud_dead_letters_unresolved` names (those with
    /// the most). `PICLOUD_METRICS_MAX_APPS`.
    pub max_apps: usize,
    /// (app, script) pairs, across the instance, whose executions get a `script` label of their
    /// own (the first to run). `PICLOUD_METRICS_MAX_SCRIPTS`.
    pub max_scripts: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_apps: 100,
            max_scripts: 200,
        }
    }
}

/// How every async job — an async request, a trigger event, a replay — is retried (the
/// changelog's `TriggerConfig`, which covered all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobConfig {
    /// A triggered run deeper than this is skipped and logged, not dead-lettered: it is a loop.
    /// `PICLOUD_MAX_TRIGGER_DEPTH`.
    pub max_trigger_depth: u32,
    /// Attempts of an async job before it is dead-lettered. `PICLOUD_TRIGGER_RETRY_MAX_ATTEMPTS`.
    pub retry_max_attempts: u32,
    /// The delay before the second attempt; it doubles each time. `PICLOUD_TRIGGER_RETRY_BASE_MS`.
    pub retry_base_ms: u64,
    /// The longest delay between attempts. `PICLOUD_TRIGGER_RETRY_MAX_MS`.
    pub retry_max_ms: u64,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            max_trigger_depth: 8,
            retry_max_attempts: 5,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
        }
    }
}

impl JobConfig {
    /// The delay after failed attempt `attempt` (1-based): base · 2^(attempt−1), at most the
    /// maximum, then ±20 % jitter so jobs that failed together do not retry together.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let exponent = attempt.saturating_sub(1).min(32);
        let delay = self
            .retry_base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.retry_max_ms);
        let jitter = rand::thread_rng().gen_range(0.8..=1.2);
        (delay as f64 * jitter).round() as u64
    }
}

/// How a run's effects are committed (issue #15): a run whose reads changed before its commit
/// runs again, after a pause that doubles each time (from 1 ms, at most 32 ms, ±50 % jitter so
/// that runs that conflicted together do not meet again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitConfig {
    /// Runs of one execution before it fails with `conflict` (HTTP 409; an async job's attempt
    /// fails and is retried). `PICLOUD_CONFLICT_MAX_RUNS`.
    pub max_runs: u32,
    /// Trigger jobs one execution's writes may fire; a commit that would fire more is refused
    /// and the run fails with `limit_exceeded`. `PICLOUD_MAX_TRIGGER_JOBS_PER_EXECUTION`.
    pub max_trigger_jobs: u32,
}

impl Default for CommitConfig {
    fn default() -> Self {
        Self {
            max_runs: 32,
            max_trigger_jobs: 256,
        }
    }
}

impl CommitConfig {
    /// The pause after the conflicting run `run` (1-based).
    pub fn backoff(&self, run: u32) -> Duration {
        let exponent = run.saturating_sub(1).min(5);
        let delay_us = 1_000u64 << exponent;
        let jitter = rand::thread_rng().gen_range(0.5..=1.5);
        Duration::from_micros((delay_us as f64 * jitter).round() as u64)
    }
}

/// How the dispatcher works the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchConfig {
    /// How long a claim holds before another node may take the job. `PICLOUD_OUTBOX_LEASE_MS`.
    pub lease_ms: u64,
    /// How often due jobs are looked for without a wake-up (jobs of other nodes, retries coming
    /// due). `PICLOUD_OUTBOX_POLL_MS`.
    pub poll_ms: u64,
    /// How long a sync caller waits for its outcome before `504`. `PICLOUD_SYNC_WAIT_MS`.
    pub sync_wait_ms: u64,
    /// At shutdown, how long the jobs still running get to finish; the leases of those that do
    /// not expire and another node (or the next start) runs them again.
    /// `PICLOUD_SHUTDOWN_GRACE_SECS`.
    pub shutdown_grace_ms: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            lease_ms: 30_000,
            poll_ms: 500,
            sync_wait_ms: 30_000,
            shutdown_grace_ms: 30_000,
        }
    }
}

/// How long what failed is kept, and how often the sweepers look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// `PICLOUD_DEAD_LETTER_RETENTION_DAYS`.
    pub dead_letter_days: u32,
    /// `PICLOUD_ABANDONED_EXECUTIONS_RETENTION_DAYS`.
    pub abandoned_execution_days: u32,
    /// How long execution records are kept. `PICLOUD_EXECUTION_RETENTION_DAYS`.
    pub execution_days: u32,
    /// The most execution records kept per app (the newest). `PICLOUD_EXECUTION_RETENTION_PER_APP`.
    pub executions_per_app: u64,
    /// How often the sweepers run. `PICLOUD_SWEEP_INTERVAL_SECS`.
    pub sweep_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            dead_letter_days: 30,
            abandoned_execution_days: 7,
            execution_days: 7,
            executions_per_app: 10_000,
            sweep_interval_secs: 3_600,
        }
    }
}

/// The slowdown of repeated failed logins, per account and per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures of one account within the window before logins to it are delayed.
    pub max_failures: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_bounded_jitter() {
        let config = JobConfig {
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            ..JobConfig::default()
        };
        for (attempt, nominal) in [
            (1, 100.0),
            (2, 200.0),
            (3, 400.0),
            (4, 800.0),
            (5, 1_000.0),
            (40, 1_000.0),
        ] {
            for _ in 0..50 {
                let delay = config.backoff_ms(attempt) as f64;
                assert!(
                    delay >= nominal * 0.8 - 1.0 && delay <= nominal * 1.2 + 1.0,
                    "attempt {attempt}: {delay} ms is within ±20 % of {nominal} ms"
                );
            }
        }
    }
}
