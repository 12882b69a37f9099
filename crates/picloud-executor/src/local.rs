//! The local client: a fixed pool of OS threads that run scripts in this process.
//!
//! Why not `spawn_blocking` per request: a script needs a large stack (recursion at the call
//! limit overflows tokio's 2 MiB and a stack overflow aborts the process), a fresh thread per
//! request costs more than a tiny script, and a fixed pool caps the threads scripts can hold.
//! Jobs reach the workers through a channel and answer through a oneshot.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;
use picloud_core::exec::{ExecError, ExecErrorKind, ExecOutcome, ExecRequest};
use picloud_core::{Limits, ScriptKind, ScriptServices};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tracing::Span;

use crate::engine::worker_stack_size;
use crate::sandbox::Sandbox;
use crate::ExecutorClient;

/// How the local executor is sized. The binary fills it from its `PICLOUD_*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorConfig {
    pub limits: Limits,
    /// Compiled scripts kept in the AST cache (`PICLOUD_SCRIPT_CACHE_SIZE`).
    pub script_cache_size: usize,
    /// Worker threads, each running one script at a time (`PICLOUD_EXECUTOR_THREADS`).
    pub threads: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            script_cache_size: 256,
            threads: 64,
        }
    }
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
    jobs: mpsc::Sender<Job>,
    /// The tokio runtime SDK calls block on: the one current at construction, else the one the
    /// first `execute` runs on.
    runtime: OnceLock<Handle>,
    threads: usize,
}

impl LocalExecutorClient {
    /// Builds the engine and starts `config.threads` workers (at least one). Scripts reach data
    /// only through `services` ([`picloud_core::NoServices`] for an executor without any).
    ///
    /// # Panics
    /// If the operating system refuses to start a thread, which leaves nothing to run scripts on.
    pub fn new(config: ExecutorConfig, services: Arc<dyn ScriptServices>) -> Self {
        let sandbox = Arc::new(Sandbox::new(config.limits, config.script_cache_size));
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
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
            jobs,
            runtime,
            threads,
        }
    }

    /// See [`Sandbox::validate`].
    pub fn validate(&self, source: &str, kind: ScriptKind) -> Result<(), ExecError> {
        self.sandbox.validate(source, kind)
    }

    /// How many times a script was compiled for execution; a hot script is compiled once.
    pub fn compilations(&self) -> u64 {
        self.sandbox.compilations()
    }

    pub fn limits(&self) -> &Limits {
        self.sandbox.limits()
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

#[async_trait]
impl ExecutorClient for LocalExecutorClient {
    async fn execute(&self, request: ExecRequest) -> ExecOutcome {
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
            return unavailable("the executor's worker threads have stopped");
        }
        answer
            .await
            .unwrap_or_else(|_| unavailable("the executor's worker stopped before it answered"))
    }
}

fn work(
    sandbox: &Sandbox,
    receiver: &Mutex<mpsc::Receiver<Job>>,
    services: &Arc<dyn ScriptServices>,
) {
    loop {
        // The lock is held while waiting: one idle worker waits on the channel, the others on
        // the lock, and each job goes to exactly one of them.
        let job = receiver.lock().recv();
        let Ok(job) = job else { return };
        let started = Instant::now();
        let span = tracing::info_span!(
            parent: &job.span,
            "script",
            app_id = %job.request.app.id,
            script_id = %job.request.script.id,
            execution_id = %job.request.execution_id,
        );
        let outcome = span.in_scope(|| {
            catch_unwind(AssertUnwindSafe(|| {
                sandbox.run(&job.request, job.runtime, services.clone())
            }))
        });
        let outcome = outcome.unwrap_or_else(|_| {
            tracing::error!(
                execution_id = %job.request.execution_id,
                "the script's evaluation panicked; the worker carries on"
            );
            ExecOutcome {
                duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                ..unavailable("the executor failed while running the script")
            }
        });
        // The caller may have gone (its request timed out); the outcome then has no reader.
        let _ = job.reply.send(outcome);
    }
}

fn unavailable(message: &str) -> ExecOutcome {
    ExecOutcome {
        result: Err(ExecError {
            kind: ExecErrorKind::Unavailable,
            message: message.to_string(),
            line: None,
            column: None,
        }),
        logs: Vec::new(),
        duration_us: 0,
    }
}
