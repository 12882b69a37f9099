//! The dispatcher: it runs sync requests at once and async jobs once they are recorded.
//!
//! - **Sync requests** ([`Dispatcher::run_sync`]): the run starts at once, and the outcome goes
//!   to the caller's inbox. Not outbox rows: one that runs long enough to be worth it
//!   (`crate::recorder::RECORD_SERVING_AFTER`) gets a record of its own (`sync_requests`), held by
//!   this process under a lease. A caller that has gone before the run starts means it is not
//!   run; one that has gone before it finishes means the run is recorded in
//!   `abandoned_executions`, and so is a recorded request whose process died (its lease lapses; a
//!   sweep every [`SYNC_SWEEP`] finds it). Never retried.
//! - **Async requests and trigger events** ([`Dispatcher::accept`], KV writes, dead letters):
//!   the row is committed durably; the dispatcher is woken in process (other nodes by `NOTIFY`,
//!   or their poll), claims due rows with a lease — the apps in turn, no more than the gate has
//!   room for, of one app no more than its share of the gate less one —, runs them through the
//!   shared gate, and on failure retries with exponential backoff ± jitter, then dead-letters.
//! - **Leases** are extended by a heartbeat while a job runs; rows whose lease expired (their
//!   process died) are claimed again. Every completion write names `(id, attempt)` and is refused
//!   once the row moved on.
//!
//! [`Dispatcher::dispatch_one`] is one step, public so tests drive the queue without sleeping.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use parking_lot::Mutex;
use picloud_core::exec::{AppRef, ExecError, ExecRequest, HttpRequest, ScriptRef};
use picloud_core::{AppId, Authority, DeadLetterId, ExecutionId, JobPayload, TriggerEvent};
use picloud_store::{ClaimedJob, JobAttempt, Lease, NewJob, Store, StoreError, SyncRequest};
use tokio::sync::{watch, Notify};

use crate::config::{DispatchConfig, JobConfig};
use crate::inbox::{Delivery, InboxRegistry, InboxResolver};
use crate::recorder::{RecordError, Recorder};
use crate::runner::{Patience, Ran, Runner, Settled};

/// A sync request's caller waited its time and the run had not finished: it may still finish
/// (and is then recorded as abandoned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// What one attempt at a claimed job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Succeeded,
    /// Failed; due again after this delay.
    RetryIn(Duration),
    /// Failed its last attempt.
    DeadLettered(DeadLetterId),
    /// A dead-letter handler failed: its dead letter is marked `handler_failed` (the recursion
    /// stop), nothing is retried.
    HandlerFailed,
    /// Deeper than the trigger-depth limit: skipped.
    DepthExceeded,
    /// Its app is gone.
    Dropped,
    /// The row moved on meanwhile (its lease expired and another worker took it).
    Fenced,
    /// The store failed; the lease will expire and the job will be claimed again.
    Interrupted,
}

/// How often each node sweeps the sync requests (see [`Dispatcher::run`]): the rotation period of
/// their table on PostgreSQL, whose partitions hold at most two periods of requests' dead rows.
pub const SYNC_SWEEP: Duration = Duration::from_secs(5);

pub struct Dispatcher {
    store: Arc<dyn Store>,
    runner: Runner,
    recorder: Recorder,
    inbox: Arc<dyn InboxResolver>,
    wake: Arc<Notify>,
    /// This process's claims carry it; unique per start.
    owner: String,
    jobs: JobConfig,
    config: DispatchConfig,
    /// Attempts running now, whose leases the heartbeat extends.
    in_flight: Mutex<HashSet<JobAttempt>>,
    /// Sync requests served now, whose leases the heartbeat extends.
    serving: Mutex<HashSet<ExecutionId>>,
    /// Claimed (not sync) jobs running now, per app: the dispatcher claims no more than the gate
    /// holds, and of one app no more than its share of the gate.
    claimed: Mutex<HashMap<AppId, u32>>,
}

impl Dispatcher {
    /// `owner` names this node: in the leases it takes, unique among the nodes.
    pub fn new(
        store: Arc<dyn Store>,
        runner: Runner,
        recorder: Recorder,
        wake: Arc<Notify>,
        owner: String,
        jobs: JobConfig,
        config: DispatchConfig,
    ) -> Self {
        Self {
            store,
            runner,
            recorder,
            inbox: InboxRegistry::new(),
            wake,
            owner,
            jobs,
            config,
            in_flight: Mutex::new(HashSet::new()),
            serving: Mutex::new(HashSet::new()),
            claimed: Mutex::new(HashMap::new()),
        }
    }

    /// The id this process's claims carry.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn jobs(&self) -> &JobConfig {
        &self.jobs
    }

    pub fn inbox(&self) -> &dyn InboxResolver {
        self.inbox.as_ref()
    }

    fn lease(&self) -> Lease {
        Lease {
            owner: self.owner.clone(),
            lease_ms: self.config.lease_ms as i64,
        }
    }

    /// Runs `request` as a sync request: run at once, answered through the inbox, and recorded
    /// should the run last (`Recorder::serving`; without an fsync: the record promises nothing
    /// beyond the caller's connection).
    pub async fn run_sync(self: &Arc<Self>, request: ExecRequest) -> Result<Ran, TimedOut> {
        let id = request.execution_id;
        let mut inbox = self.inbox.clone().open(id);
        self.recorder.serving(SyncRequest {
            id,
            app_id: request.app.id,
            script_id: request.script.id,
            lease: self.lease(),
        });
        self.serving.lock().insert(id);
        let this = self.clone();
        // Most runs finish at the first poll (a script that runs inline): then no task is spawned.
        // One that waits (on an executor thread) moves into a task of its own, so it runs to its
        // end even if this caller goes away.
        let mut run = Box::pin(async move { this.finish_sync(request).await });
        if std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx)))
            .await
            .is_pending()
        {
            tokio::spawn(run);
        }
        let wait = Duration::from_millis(self.config.sync_wait_ms);
        match tokio::time::timeout(wait, inbox.receive()).await {
            Ok(Some(ran)) => Ok(ran),
            // The sender is dropped only after delivery failed, which needs the inbox closed.
            Ok(None) | Err(_) => Err(TimedOut),
        }
    }

    async fn finish_sync(&self, request: ExecRequest) {
        let (id, app_id, script_id) = (request.execution_id, request.app.id, request.script.id);
        let abandoned = if !self.inbox.is_waiting(id) {
            Some("the caller had gone before it ran")
        } else {
            // The record is not the run's to finish: it is forgotten below once the caller has
            // its answer (or recorded abandoned).
            let ran = self.runner.run(request, Patience::Bounded, None).await;
            match self.inbox.deliver(id, ran) {
                Delivery::Delivered => None,
                Delivery::Abandoned(_) => {
                    Some("the caller had gone (timed out or disconnected) before it finished")
                }
            }
        };
        // First, so that a record not yet written never is: the sweep would record it again.
        self.recorder.served(id);
        if let Some(reason) = abandoned {
            tracing::info!(execution_id = %id, "sync execution abandoned: {reason}");
            if let Err(err) = self.store.abandon_sync(id, app_id, script_id, reason).await {
                tracing::warn!(execution_id = %id, "the abandoned execution could not be recorded: {err}");
            }
        }
        self.serving.lock().remove(&id);
    }

    /// Accepts an async job: returns once its row is durably committed; the dispatcher is woken.
    /// Refused (`OverLimit`, nothing recorded) when the job's app has its quota of queued jobs.
    /// The check reads the app's count and reserves nothing, so requests accepted together may
    /// take an app past its quota by as many as are in flight; each accepted one is recorded.
    pub async fn accept(&self, job: NewJob) -> Result<(), RecordError> {
        let usage = self
            .store
            .app_usage(job.app_id)
            .await
            .map_err(|err| RecordError::from(&err))?;
        // An app deleted meanwhile has no count: the commit skips its job.
        if let Some(usage) = usage {
            usage
                .admit(0, 1, self.store.quotas())
                .map_err(RecordError::OverLimit)?;
        }
        self.recorder.enqueue(job).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Claims what is due and starts running it; returns how many jobs it claimed. It claims no
    /// more than can run: no more than the gate has room for, and of one app no more than its
    /// share of the gate less one (jobs beyond it would only wait, holding the claims other
    /// apps' jobs need; the one left is for the app's own HTTP requests, which a burst of its
    /// jobs would otherwise keep out); the store takes the apps in turn.
    pub async fn claim_and_start(self: &Arc<Self>) -> Result<usize, StoreError> {
        let gate = self.runner.gate();
        let running: Vec<(AppId, u32)> = self
            .claimed
            .lock()
            .iter()
            .map(|(app, jobs)| (*app, *jobs))
            .collect();
        let in_all: usize = running.iter().map(|(_, jobs)| *jobs as usize).sum();
        let free = gate.capacity().saturating_sub(in_all);
        if free == 0 {
            return Ok(0);
        }
        let jobs = self
            .store
            .claim_jobs(
                &self.owner,
                u32::try_from(free).unwrap_or(u32::MAX),
                u32::try_from(gate.app_share().saturating_sub(1).max(1)).unwrap_or(u32::MAX),
                &running,
                self.config.lease_ms as i64,
            )
            .await?;
        let claimed = jobs.len();
        for job in jobs {
            let app = job.app_id;
            *self.claimed.lock().entry(app).or_default() += 1;
            let this = self.clone();
            tokio::spawn(async move {
                this.dispatch_one(job).await;
                this.finished_claim(app);
                this.wake.notify_one();
            });
        }
        Ok(claimed)
    }

    /// A claimed job of `app` is done with.
    fn finished_claim(&self, app: AppId) {
        let mut claimed = self.claimed.lock();
        if let Some(jobs) = claimed.get_mut(&app) {
            *jobs -= 1;
            if *jobs == 0 {
                claimed.remove(&app);
            }
        }
    }

    /// Runs one claimed job to its outcome and writes it.
    #[tracing::instrument(skip_all, fields(execution_id = %job.id, app_id = %job.app_id, attempt = job.attempt))]
    pub async fn dispatch_one(&self, job: ClaimedJob) -> Attempt {
        let attempt = job.attempt_ref();
        self.in_flight.lock().insert(attempt);
        let outcome = self.attempt(job).await;
        self.in_flight.lock().remove(&attempt);
        tracing::debug!(?outcome, "job attempt done");
        outcome
    }

    async fn attempt(&self, job: ClaimedJob) -> Attempt {
        let attempt = job.attempt_ref();
        if job.trigger_depth > self.jobs.max_trigger_depth {
            tracing::warn!(
                script_id = %job.script_id,
                depth = job.trigger_depth,
                limit = self.jobs.max_trigger_depth,
                "a triggered run is deeper than the trigger-depth limit and was skipped; \
                 a trigger's script probably writes what triggers it"
            );
            self.recorder.finished(attempt);
            return Attempt::DepthExceeded;
        }
        let request = match self.build_request(&job).await {
            Ok(Some(request)) => request,
            Ok(None) => {
                self.recorder.finished(attempt);
                return Attempt::Dropped;
            }
            Err(Missing::Script) => {
                return self
                    .failed(
                        &job,
                        "the script no longer exists".to_owned(),
                        Failure::Final,
                    )
                    .await
            }
            Err(Missing::Store(err)) => return self.interrupted(err),
        };
        // The run's commit finishes the job with its effects, fenced by the attempt.
        match self
            .runner
            .run(request, Patience::Unbounded, Some(attempt))
            .await
        {
            Ran::Finished(outcome, settled) => match (outcome.result, settled) {
                (_, Settled::Fenced) => Attempt::Fenced,
                (Ok(_), Settled::Finished) => Attempt::Succeeded,
                (Ok(_), Settled::Open) => {
                    self.recorder.finished(attempt);
                    Attempt::Succeeded
                }
                (Err(error), _) => {
                    self.failed(&job, describe(&error), Failure::Retryable)
                        .await
                }
            },
            // The patient gate only refuses when closed, at shutdown: leave it to the lease.
            Ran::Overloaded(_) => Attempt::Interrupted,
        }
    }

    /// The request of a claimed job; `Ok(None)` when its app is gone.
    async fn build_request(&self, job: &ClaimedJob) -> Result<Option<ExecRequest>, Missing> {
        let Some(app) = self
            .store
            .get_app(job.app_id)
            .await
            .map_err(Missing::Store)?
        else {
            return Ok(None);
        };
        let script = self
            .store
            .get_script(job.script_id)
            .await
            .map_err(Missing::Store)?
            .filter(|script| script.app_id == job.app_id)
            .ok_or(Missing::Script)?;
        // Read with the script, not from the route index: a job runs what the database holds
        // now, modules included, whichever node saved them.
        let modules = crate::index::modules_for(self.store.as_ref(), app.id, &script.source)
            .await
            .map_err(Missing::Store)?;
        let (request, event): (HttpRequest, Option<TriggerEvent>) = match &job.payload {
            JobPayload::Http { request } => (request.clone(), None),
            JobPayload::Trigger { event } => (HttpRequest::default(), Some(event.clone())),
        };
        Ok(Some(ExecRequest {
            execution_id: job.id,
            app: AppRef {
                id: app.id,
                slug: app.slug.to_string(),
            },
            script: ScriptRef {
                id: script.id,
                name: script.name.to_string(),
                updated_at: script.updated_at,
                source: script.source.into(),
            },
            request,
            authority: Authority::App,
            event,
            trigger_depth: job.trigger_depth,
            attempt: job.attempt,
            modules,
        }))
    }

    /// A failed attempt: the recursion stop for dead-letter handlers, else a retry while
    /// attempts remain (unless the failure is final), else a dead letter.
    async fn failed(&self, job: &ClaimedJob, error: String, failure: Failure) -> Attempt {
        let attempt = job.attempt_ref();
        if let Some(dead_letter) = job.payload.handled_dead_letter() {
            tracing::warn!(%dead_letter, "a dead-letter handler failed: {error}");
            return match self
                .store
                .fail_dead_letter_handler(attempt, dead_letter, &error)
                .await
            {
                Ok(true) => Attempt::HandlerFailed,
                Ok(false) => Attempt::Fenced,
                Err(err) => self.interrupted(err),
            };
        }
        if failure == Failure::Retryable && job.attempt < self.jobs.retry_max_attempts {
            let delay = Duration::from_millis(self.jobs.backoff_ms(job.attempt));
            tracing::info!(
                retry_in_ms = delay.as_millis() as u64,
                "job attempt failed: {error}"
            );
            return match self
                .store
                .retry_job(attempt, delay.as_millis() as i64, &error)
                .await
            {
                Ok(true) => Attempt::RetryIn(delay),
                Ok(false) => Attempt::Fenced,
                Err(err) => self.interrupted(err),
            };
        }
        tracing::warn!(attempts = job.attempt, "job dead-lettered: {error}");
        match self.store.dead_letter_job(attempt, &error).await {
            Ok(Some(dead_letter)) => {
                // Dead-letter triggers may have enqueued handler jobs.
                self.wake.notify_one();
                Attempt::DeadLettered(dead_letter.id)
            }
            Ok(None) => Attempt::Fenced,
            Err(err) => self.interrupted(err),
        }
    }

    fn interrupted(&self, err: StoreError) -> Attempt {
        tracing::warn!(
            "a job's outcome could not be written; it runs again after its lease: {err}"
        );
        Attempt::Interrupted
    }

    /// Works the outbox until `shutdown`: claims on every wake-up and every poll interval, keeps
    /// the leases of running jobs alive. At shutdown it stops claiming, waits up to [`DispatchConfig::shutdown_grace_ms`] for
    /// running jobs, and hands back the rows it still holds.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let heartbeat = tokio::spawn(self.clone().heartbeat(shutdown.clone()));
        let sweep = tokio::spawn(self.clone().sweep_sync_requests(shutdown.clone()));
        let poll = Duration::from_millis(self.config.poll_ms.max(1));
        let mut failing = false;
        loop {
            // A claim takes all it may: one that comes back short left nothing due that this
            // node can run now. What frees room or brings work wakes the loop: a job that
            // finishes, a job accepted here, a write that fired triggers; the poll finds the
            // rest (jobs accepted by other nodes, retries coming due).
            match self.claim_and_start().await {
                Ok(_) => {
                    if failing {
                        tracing::info!("the outbox can be claimed again");
                        failing = false;
                    }
                }
                Err(err) => {
                    if !failing {
                        tracing::warn!("due jobs cannot be claimed: {err}");
                        failing = true;
                    }
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => break,
            }
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.shutdown_grace_ms);
        let busy = || !self.in_flight.lock().is_empty() || !self.serving.lock().is_empty();
        while busy() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        heartbeat.abort();
        sweep.abort();
        match self.store.release_jobs(&self.owner).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "unfinished jobs handed back to the outbox"),
            Err(err) => tracing::warn!("unfinished jobs could not be handed back; they are claimed again after their lease: {err}"),
        }
    }

    async fn heartbeat(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = Duration::from_millis((self.config.lease_ms / 3).max(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => {}
            }
            let running: Vec<JobAttempt> = self.in_flight.lock().iter().copied().collect();
            let serving: Vec<ExecutionId> = self.serving.lock().iter().copied().collect();
            if running.is_empty() && serving.is_empty() {
                continue;
            }
            let lease_ms = self.config.lease_ms as i64;
            if let Err(err) = self
                .store
                .extend_leases(&self.owner, &running, &serving, lease_ms)
                .await
            {
                tracing::warn!("leases could not be extended: {err}");
            }
        }
    }

    /// Every [`SYNC_SWEEP`], records the sync requests whose node died as abandoned (and, on
    /// PostgreSQL, rotates their table: see [`picloud_store::OutboxStore::sweep_sync_requests`]).
    async fn sweep_sync_requests(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let rotate_after_ms = SYNC_SWEEP.as_millis() as i64;
        loop {
            tokio::select! {
                () = tokio::time::sleep(SYNC_SWEEP) => {}
                _ = shutdown.changed() => return,
            }
            match self.store.sweep_sync_requests(rotate_after_ms).await {
                Ok(0) => {}
                Ok(abandoned) => tracing::info!(
                    abandoned,
                    "sync requests whose node stopped were recorded abandoned"
                ),
                Err(err) => {
                    tracing::warn!("the sweep of sync requests failed; it runs again later: {err}")
                }
            }
        }
    }
}

/// Whether a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The script failed: retried while attempts remain.
    Retryable,
    /// Nothing another attempt could change (the script is gone): dead-lettered at once.
    Final,
}

enum Missing {
    Script,
    Store(StoreError),
}

/// An execution error as a dead letter or a retry keeps it.
fn describe(error: &ExecError) -> String {
    match (error.line, error.column) {
        (Some(line), Some(column)) => format!(
            "{}: {} (line {line}, column {column})",
            error.kind.as_str(),
            error.message
        ),
        _ => format!("{}: {}", error.kind.as_str(), error.message),
    }
}
