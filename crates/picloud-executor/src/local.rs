//! The local client: a fixed pool of OS threads that run scripts in this process.
//!
//! Why not `spawn_blocking` per request: a script needs a large stack (recursion at the call
//! limit overflows tokio's 2 MiB and a stack overflow aborts the process), a fresh thread per
//! request costs more than a tiny script, and a fixed pool caps the threads scripts can hold.
//! Jobs reach the workers through one multi-consumer channel (a job wakes at most one idle
//! worker, and a busy worker takes the next job without sleeping) and answer through a oneshot.
//!
//! Before that hop, an execution is tried inline on the caller's thread
//! ([`Sandbox::try_inline`]): a script that finishes within a small budget without calling a
//! data service (a typical endpoint that shapes a response) never leaves the async thread. The
//! caller's runtime needs threads with [`inline_stack_size`] of stack for this; with smaller
//! ones every execution goes to the workers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Instant;

use async_trait::async_trait;
use picloud_core::exec::{ExecError, ExecOutcome, ExecRequest, ValidatedScript};
use picloud_core::{Limits, ScriptKind, ScriptServices};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tracing::Span;

use crate::engine::{self, worker_stack_size};
use crate::sandbox::Sandbox;
use crate::ExecutorClient;

/// How the local executor is sized. The binary fills it from its `PICLOUD_*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorConfig {
    pub limits: Limits,
    /// Compiled scripts kept in the AST cache (`PICLOUD_SCRIPT_CACHE_SIZE`).
    pub script_cache_size: usize,
    /// Compiled modules kept for imports (`PICLOUD_MODULE_CACHE_SIZE`).
    pub module_cache_size: usize,
    /// Worker threads, each running one script at a time (`PICLOUD_EXECUTOR_THREADS`; by
    /// default [`default_threads`]).
    pub threads: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            script_cache_size: 256,
            module_cache_size: 512,
            threads: default_threads(),
        }
    }
}

/// Executor threads per core by default.
const THREADS_PER_CORE: usize = 4;
/// The fewest and the most executor threads by default.
const DEFAULT_THREADS: std::ops::RangeInclusive<usize> = 4..=64;

/// The executor threads for this machine: four per core, at least 4 and at most 64.
///
/// A script's deadline is wall-clock time from when it starts on a thread, so every thread more
/// than there are cores slices the CPU thinner for each script: 64 threads on 2 cores (the old
/// default) gave each script a 32nd of a core, and a burst of 400 jobs of ~220 ms each ran into
/// their 5 s limit (issue #13; 105 were dead-lettered). With four per core a script that
/// computes still gets a quarter of a core while every thread is busy, and threads blocked on
/// a data call leave their core to the others. The gate follows this number by default, so the
/// dispatcher claims no more jobs than there are threads to run them.
pub fn default_threads() -> usize {
    let cores = thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    cores
        .saturating_mul(THREADS_PER_CORE)
        .clamp(*DEFAULT_THREADS.start(), *DEFAULT_THREADS.end())
}

struct Job {
    request: ExecRequest,
    runtime: Option<Handle>,
    /// The caller's span, entered on the worker so the script's events nest under the request.
    span: Span,
    reply: oneshot::Sender<ExecOutcome>,
}

/// Runs executions on a fixed pool of threads in this process. Dropping it lets the workers
/// finish the job in hand and exit.
pub struct LocalExecutorClient {
    sandbox: Arc<Sandbox>,
    services: Arc<dyn ScriptServices>,
    jobs: crossbeam_channel::Sender<Job>,
    /// The tokio runtime SDK calls block on: the one current at construction, else the one the
    /// first `execute` runs on.
    runtime: OnceLock<Handle>,
    threads: usize,
    inline_runs: AtomicU64,
}

impl LocalExecutorClient {
    /// Builds the engine and starts `config.threads` workers (at least one). Scripts reach data
    /// only through `services` ([`picloud_core::NoServices`] for an executor without any).
    ///
    /// # Panics
    /// If the operating system refuses to start a thread, which leaves nothing to run scripts on.
    pub fn new(config: ExecutorConfig, services: Arc<dyn ScriptServices>) -> Self {
        let sandbox = Arc::new(Sandbox::new(
            config.limits,
            config.script_cache_size,
            config.module_cache_size,
        ));
        let (jobs, receiver) = crossbeam_channel::unbounded::<Job>();
        let threads = config.threads.max(1);
        let stack_size = worker_stack_size(sandbox.limits());
        for n in 0..threads {
            let sandbox = sandbox.clone();
            let receiver = receiver.clone();
            let services = services.clone();
            thread::Builder::new()
                .name(format!("picloud-exec-{n}"))
                .stack_size(stack_size)
                .spawn(move || work(&sandbox, &receiver, &services))
                .expect("the operating system starts an executor thread");
        }
        let runtime = OnceLock::new();
        if let Ok(handle) = Handle::try_current() {
            let _ = runtime.set(handle);
        }
        Self {
            sandbox,
            services,
            jobs,
            runtime,
            threads,
            inline_runs: AtomicU64::new(0),
        }
    }

    /// See [`Sandbox::validate`].
    pub fn validate(&self, source: &str, kind: ScriptKind) -> Result<ValidatedScript, ExecError> {
        self.sandbox.validate(source, kind)
    }

    /// How many times a script was compiled for execution; a hot script is compiled once.
    pub fn compilations(&self) -> u64 {
        self.sandbox.compilations()
    }

    /// How many times a module was read and evaluated for an import; a hot import reads none.
    pub fn module_loads(&self) -> u64 {
        self.sandbox.module_loads()
    }

    pub fn limits(&self) -> &Limits {
        self.sandbox.limits()
    }

    /// Executions that ran inline on the caller's thread (see the module's documentation).
    pub fn inline_runs(&self) -> u64 {
        self.inline_runs.load(Ordering::Relaxed)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

#[async_trait]
impl ExecutorClient for LocalExecutorClient {
    async fn execute(&self, request: ExecRequest) -> ExecOutcome {
        let inline = run_caught(&request, &Span::current(), || {
            self.sandbox.try_inline(&request, &self.services)
        });
        match inline {
            Ok(Some(outcome)) => {
                self.inline_runs.fetch_add(1, Ordering::Relaxed);
                return outcome;
            }
            Err(panicked) => return *panicked,
            Ok(None) => {}
        }
        if self.runtime.get().is_none() {
            if let Ok(handle) = Handle::try_current() {
                let _ = self.runtime.set(handle);
            }
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            runtime: self.runtime.get().cloned(),
            span: Span::current(),
            reply,
        };
        if self.jobs.send(job).is_err() {
            return ExecOutcome::unavailable("the executor's worker threads have stopped");
        }
        answer.await.unwrap_or_else(|_| {
            ExecOutcome::unavailable("the executor's worker stopped before it answered")
        })
    }
}

fn work(
    sandbox: &Sandbox,
    receiver: &crossbeam_channel::Receiver<Job>,
    services: &Arc<dyn ScriptServices>,
) {
    // Every sender gone (the client dropped): the loop ends.
    for job in receiver {
        let outcome = run_caught(&job.request, &job.span, || {
            sandbox.run(&job.request, job.runtime, services.clone())
        })
        .unwrap_or_else(|panicked| *panicked);
        // The caller may have gone (its request timed out); the outcome then has no reader.
        let _ = job.reply.send(outcome);
    }
}

/// Runs `run` for `request` in a span under `parent`. A panic (a bug, in Rhai or in the SDK)
/// becomes `Err` with an `Unavailable` outcome, and the thread, a worker or an async one,
/// carries on.
fn run_caught<R>(
    request: &ExecRequest,
    parent: &Span,
    run: impl FnOnce() -> R,
) -> Result<R, Box<ExecOutcome>> {
    let started = Instant::now();
    let span = tracing::info_span!(
        parent: parent,
        "script",
        app_id = %request.app.id,
        script_id = %request.script.id,
        execution_id = %request.execution_id,
    );
    span.in_scope(|| catch_unwind(AssertUnwindSafe(run)))
        .map_err(|_| {
            tracing::error!(
                execution_id = %request.execution_id,
                "the script's evaluation panicked; the thread carries on"
            );
            Box::new(ExecOutcome {
                duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                ..ExecOutcome::unavailable("the executor failed while running the script")
            })
        })
}

/// The stack an async runtime's threads need for executions to run inline on them (see the
/// module's documentation); the binary builds its runtime with it.
pub fn inline_stack_size(limits: &Limits) -> usize {
    engine::inline_stack_size(limits)
}
