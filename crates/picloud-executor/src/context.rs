//! The per-call context. One engine serves every execution, and Rhai offers no way to hand a
//! value to `eval_ast` without `&mut Engine`, so what belongs to one call — its app, its
//! deadline, its log, the tokio runtime, the data services — sits in a thread-local that a
//! [`CallGuard`] sets for the duration of the call. `on_progress`, `print` / `debug` and the SDK
//! functions (and later the module resolver) read it from there. A data call learns its app
//! only here, through [`require`], never from the script: a store handle is a name, and acts for
//! whichever execution calls it.
//!
//! Outside a call (the engine used to compile, a unit test) every reader copes with its absence.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::exec::{ExecRequest, LogLevel, LogLine, ModuleVersion, ModuleVersions};
use picloud_core::services::ServiceResult;
use picloud_core::tx::{Effects, Transaction};
use picloud_core::{
    AppId, Authority, CapabilityKind, ExecutionId, Limits, ScriptId, ScriptServices, Timestamp,
    TriggerEvent,
};
use rhai::{Dynamic, EvalAltResult, Position};
use tokio::runtime::Handle;

use crate::memory::{self, Meter};

/// Log lines one execution may keep; the rest are counted and reported in one last line, so a
/// script logging in a loop cannot grow the log without bound. `Limits::max_log_bytes` bounds
/// their bytes the same way.
pub(crate) const MAX_LOG_LINES: usize = 1_000;
/// Bytes kept of one log line (and of a thrown message); longer ones are cut at a character
/// boundary.
pub(crate) const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// The termination token `on_progress` returns when the deadline has passed; the error mapping
/// turns the resulting `ErrorTerminated` into a `Timeout`.
pub(crate) const DEADLINE_TOKEN: &str = "picloud:deadline";

/// The termination token that ends an inline run which must go to an executor thread instead: it
/// reached a call that waits (a data call), or ran past its inline budget. A termination, so
/// `try/catch` cannot swallow it.
pub(crate) const NEEDS_WORKER_TOKEN: &str = "picloud:needs-worker";

/// The termination token that ends an inline run whose import must read a module that is not
/// cached: the run starts over on an executor thread like [`NEEDS_WORKER_TOKEN`], but later runs
/// of the script are still tried inline, since they will find the module cached.
pub(crate) const LOAD_MODULE_TOKEN: &str = "picloud:load-module";

/// The termination token of a write past `Limits::max_writes`: a limit, so `try/catch` cannot
/// swallow it.
pub(crate) const WRITES_TOKEN: &str = "picloud:writes";

/// The termination token of a run holding more than `Limits::max_memory_bytes`: a limit, so
/// `try/catch` cannot swallow it.
pub(crate) const MEMORY_TOKEN: &str = "picloud:memory";

/// Memory an inline run may hold before it moves to an executor thread: building more than this
/// takes longer than an async thread may be held (and a worker has the whole budget).
pub(crate) const INLINE_MAX_MEMORY: usize = 256 * 1024;

/// Operations an inline run may take before it moves to an executor thread (~0.1 ms of script).
const INLINE_MAX_OPERATIONS: u64 = 2_048;
/// Time an inline run may take, checked with the operations: one slow native call (a large
/// string copied in a loop) must not hold an async worker thread either.
const INLINE_MAX_TIME: Duration = Duration::from_micros(500);
/// How often the deadline is checked (in operations): reading the clock costs more than an
/// operation, so a pool run looks once every this many (~0.1 ms of script time).
const DEADLINE_CHECK_EVERY: u64 = 1_024;

/// Where an execution runs.
pub(crate) enum Placement {
    /// An executor thread: SDK calls block on this runtime (without one, they fail).
    Worker(Option<Handle>),
    /// Inline, on the caller's async thread, which must never block: the first call that would
    /// wait ends the run with [`NEEDS_WORKER_TOKEN`], as does the inline budget, and the
    /// execution starts over on an executor thread. Until then nothing left the run — data calls
    /// are the only way out, and log lines are held back — so starting over is invisible.
    Inline { started: Instant },
}

/// What one execution carries while it runs.
pub(crate) struct CallContext {
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub execution_id: ExecutionId,
    pub deadline: Instant,
    /// Where it runs: on an executor thread, SDK calls reaching async services block on its
    /// runtime (`Handle::block_on` is safe there, a plain OS thread); inline, they may not.
    pub placement: Placement,
    /// What the script's data calls may do (checked by the store SDK through [`require`]).
    pub authority: Authority,
    /// Where the script's data calls go: the KV store and dead letters.
    pub services: Arc<dyn ScriptServices>,
    /// Whether this run handles a dead letter (see `dead_letters::replay`).
    pub dead_letter_handler: bool,
    logs: Vec<LogLine>,
    /// Bytes of `logs`' messages, against `max_log_bytes`.
    log_bytes: usize,
    max_log_bytes: usize,
    dropped_logs: usize,
    /// Data writes so far, against `max_writes`.
    writes: usize,
    max_writes: usize,
    /// Bytes of one document's data as JSON.
    max_document_bytes: usize,
    /// What the run read and wrote: its unit of work, committed after it returns.
    pub tx: Transaction,
    /// What the run holds, against `max_memory_bytes` (or the inline allowance).
    memory: Meter,
    /// The app's modules when the run was built (see [`crate::modules`]).
    modules: ModuleVersions,
    /// The imports in progress, outermost first: module `a` importing `b` is `[a, b]`.
    imports: Vec<ImportFrame>,
}

/// A module being evaluated for an import, the modules it imported so far (with theirs), and
/// the deepest chain of imports among them.
struct ImportFrame {
    name: String,
    imported: Vec<(String, ModuleVersion)>,
    deepest: Vec<String>,
}

impl CallContext {
    /// The context of running `request`, until `deadline`.
    pub fn new(
        request: &ExecRequest,
        deadline: Instant,
        limits: &Limits,
        placement: Placement,
        services: Arc<dyn ScriptServices>,
    ) -> Self {
        let memory_budget = match placement {
            Placement::Worker(_) => limits.max_memory_bytes,
            Placement::Inline { .. } => INLINE_MAX_MEMORY.min(limits.max_memory_bytes),
        };
        Self {
            memory: Meter::start(u64::try_from(memory_budget).unwrap_or(u64::MAX)),
            app_id: request.app.id,
            script_id: request.script.id,
            execution_id: request.execution_id,
            deadline,
            placement,
            authority: request.authority.clone(),
            services,
            dead_letter_handler: matches!(request.event, Some(TriggerEvent::DeadLetter { .. })),
            logs: Vec::new(),
            log_bytes: 0,
            max_log_bytes: limits.max_log_bytes,
            dropped_logs: 0,
            writes: 0,
            max_writes: limits.max_writes,
            max_document_bytes: limits.max_document_bytes,
            tx: Transaction::default(),
            modules: request.modules.clone(),
            imports: Vec::new(),
        }
    }

    /// [`MEMORY_TOKEN`] when the run holds more than its budget; inline, [`NEEDS_WORKER_TOKEN`]
    /// past its allowance, since a worker has the whole budget.
    fn memory_token(&self) -> Option<&'static str> {
        if !self.memory.over() {
            return None;
        }
        Some(if self.inline() {
            NEEDS_WORKER_TOKEN
        } else {
            MEMORY_TOKEN
        })
    }

    fn inline(&self) -> bool {
        matches!(self.placement, Placement::Inline { .. })
    }

    /// Emits the lines an inline run held back, now that it finished where it ran.
    pub fn emit_held_logs(&self) {
        if self.inline() {
            for line in &self.logs {
                emit(line.level, &line.message, Some(self.ids()));
            }
        }
    }

    fn ids(&self) -> (&AppId, &ScriptId, &ExecutionId) {
        (&self.app_id, &self.script_id, &self.execution_id)
    }

    /// The captured log, with a closing line if some were dropped, and the run's effects.
    pub fn into_parts(mut self) -> (Vec<LogLine>, Effects) {
        if self.dropped_logs > 0 {
            self.logs.push(LogLine {
                level: LogLevel::Warn,
                message: format!(
                    "{} more log lines were dropped: an execution keeps at most {MAX_LOG_LINES} \
                     lines and {} bytes of log",
                    self.dropped_logs, self.max_log_bytes
                ),
                at: Timestamp::now(),
                discarded: false,
            });
        }
        (self.logs, self.tx.into_effects())
    }
}

thread_local! {
    static CURRENT: RefCell<Option<CallContext>> = const { RefCell::new(None) };
}

/// Sets the thread's call context for as long as it lives and clears it when dropped, even if
/// the evaluation unwinds. Not `Send`: it belongs to the thread that runs the call.
pub(crate) struct CallGuard {
    _not_send: PhantomData<*const ()>,
}

impl CallGuard {
    pub fn enter(context: CallContext) -> Self {
        CURRENT.with(|current| {
            if let Ok(mut slot) = current.try_borrow_mut() {
                *slot = Some(context);
            }
        });
        Self {
            _not_send: PhantomData,
        }
    }

    /// Ends the call and hands back its context (with the log it collected).
    pub fn finish(self) -> Option<CallContext> {
        CURRENT.with(|current| {
            current
                .try_borrow_mut()
                .ok()
                .and_then(|mut slot| slot.take())
        })
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| {
            if let Ok(mut slot) = current.try_borrow_mut() {
                slot.take();
            }
        });
    }
}

/// Runs `f` on the current call's context, or answers `None` outside a call.
fn with_current<R>(f: impl FnOnce(&mut CallContext) -> R) -> Option<R> {
    CURRENT
        .try_with(|current| {
            let mut slot = current.try_borrow_mut().ok()?;
            slot.as_mut().map(f)
        })
        .ok()
        .flatten()
}

/// `on_progress`, after every operation: the termination token when the current call holds more
/// memory than its budget, and every [`PROGRESS_CHECK_EVERY`] operations when it is past its
/// deadline or an inline call past its budget (never outside a call). An inline run past its
/// memory allowance moves to a worker, which has the whole budget.
pub(crate) fn checkpoint(operations: u64) -> Option<&'static str> {
    with_current(|ctx| {
        if let Some(token) = ctx.memory_token() {
            return Some(token);
        }
        if !operations.is_multiple_of(PROGRESS_CHECK_EVERY) {
            return None;
        }
        if let Placement::Inline { started } = ctx.placement {
            if operations >= INLINE_MAX_OPERATIONS || started.elapsed() >= INLINE_MAX_TIME {
                return Some(NEEDS_WORKER_TOKEN);
            }
        }
        (operations.is_multiple_of(DEADLINE_CHECK_EVERY) && Instant::now() >= ctx.deadline)
            .then_some(DEADLINE_TOKEN)
    })
    .flatten()
}

/// The termination token when the current call holds more memory than its budget (see
/// [`checkpoint`]); for what is built after the script ends, such as its response.
pub(crate) fn over_memory() -> Option<&'static str> {
    with_current(|ctx| ctx.memory_token()).flatten()
}

/// How often (in operations) [`checkpoint`] looks at the clock and the inline budget: often
/// enough that an inline run stops close to its budget, rarely enough to cost nothing measurable.
pub(crate) const PROGRESS_CHECK_EVERY: u64 = 64;

/// Appends a line to the current call's log and emits it through `tracing` with the call's ids.
/// Outside a call the line only goes to `tracing`.
pub(crate) fn push_log(level: LogLevel, message: String) {
    let message = truncate_line(message);
    let in_call = with_current(|ctx| {
        if ctx.logs.len() >= MAX_LOG_LINES || ctx.log_bytes + message.len() > ctx.max_log_bytes {
            ctx.dropped_logs += 1;
            return;
        }
        ctx.log_bytes += message.len();
        if !ctx.inline() {
            emit(level, &message, Some(ctx.ids()));
        }
        ctx.logs.push(LogLine {
            discarded: false,
            level,
            message: message.clone(),
            at: Timestamp::now(),
        });
    })
    .is_some();
    if !in_call {
        emit(level, &message, None);
    }
}

#[cfg(test)]
fn in_call() -> bool {
    with_current(|_| ()).is_some()
}

/// `message` cut to [`MAX_LOG_LINE_BYTES`] at a character boundary, the cut marked.
pub(crate) fn truncate_line(mut message: String) -> String {
    if message.len() > MAX_LOG_LINE_BYTES {
        let mut cut = MAX_LOG_LINE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("… (truncated)");
    }
    message
}

fn emit(level: LogLevel, message: &str, ids: Option<(&AppId, &ScriptId, &ExecutionId)>) {
    macro_rules! event {
        ($level:expr) => {
            match ids {
                Some((app_id, script_id, execution_id)) => tracing::event!(
                    target: "picloud::script",
                    $level,
                    %app_id,
                    %script_id,
                    %execution_id,
                    "{message}"
                ),
                None => tracing::event!(target: "picloud::script", $level, "{message}"),
            }
        };
    }
    match level {
        LogLevel::Debug => event!(tracing::Level::DEBUG),
        LogLevel::Info => event!(tracing::Level::INFO),
        LogLevel::Warn => event!(tracing::Level::WARN),
        LogLevel::Error => event!(tracing::Level::ERROR),
    }
}

/// What an SDK call that [`require`] let through acts with: the running execution's app and the
/// services it reads. Taken from the context at each call.
pub(crate) struct Grant {
    pub app_id: AppId,
    pub dead_letter_handler: bool,
    pub services: Arc<dyn ScriptServices>,
}

/// Refuses an SDK call that the execution's authority does not allow, with a sentence naming
/// what was missing; otherwise answers what the call acts with. Public routes and triggers run
/// with the app's authority; a test run with its caller's. Outside a call nothing is allowed.
pub(crate) fn require(function: &str, kind: CapabilityKind) -> Result<Grant, Box<EvalAltResult>> {
    let grant = with_current(|ctx| {
        ctx.authority.allows(kind).then(|| Grant {
            app_id: ctx.app_id,
            dead_letter_handler: ctx.dead_letter_handler,
            services: ctx.services.clone(),
        })
    })
    .flatten();
    grant.ok_or_else(|| {
        EvalAltResult::ErrorRuntime(
            format!("{function}: this execution may not do that (it needs {kind:?})").into(),
            Position::NONE,
        )
        .into()
    })
}

/// Counts one data write of the current call; past `Limits::max_writes` the run ends with
/// [`WRITES_TOKEN`], a limit.
pub(crate) fn count_write() -> Result<(), Box<EvalAltResult>> {
    let over = with_current(|ctx| {
        ctx.writes += 1;
        ctx.writes > ctx.max_writes
    })
    .unwrap_or(false);
    if over {
        return Err(terminated(WRITES_TOKEN));
    }
    Ok(())
}

/// The most bytes of JSON one document's data may take in the current call.
pub(crate) fn max_document_bytes() -> usize {
    with_current(|ctx| ctx.max_document_bytes).unwrap_or(picloud_core::docs::DOC_MAX_BYTES)
}

/// Whether the current call runs inline (see [`Placement::Inline`]).
pub(crate) fn runs_inline() -> bool {
    with_current(|ctx| ctx.inline()).unwrap_or(false)
}

/// An import of `name` about to be resolved: refused when `name` is already on the chain of
/// imports in progress (a cycle; the sentence names the chain); `None` when the app has no
/// module of that name (or outside a call); else the app, the module's version and all the
/// app's module versions.
pub(crate) fn begin_import(
    name: &str,
) -> Result<Option<(AppId, ModuleVersion, ModuleVersions)>, String> {
    with_current(|ctx| {
        if let Some(start) = ctx.imports.iter().position(|frame| frame.name == name) {
            let chain: Vec<&str> = ctx.imports[start..]
                .iter()
                .map(|frame| frame.name.as_str())
                .chain([name])
                .collect();
            return Err(format!(
                "import cycle: {}; a module cannot import itself, directly or through others",
                chain.join(" → ")
            ));
        }
        Ok(ctx
            .modules
            .get(name)
            .map(|version| (ctx.app_id, version, ctx.modules.clone())))
    })
    .unwrap_or(Ok(None))
}

/// Refuses to import a module whose deepest chain of imports is `below` (the module first)
/// when that chain under the imports in progress is more than `depth_max` modules, naming it.
pub(crate) fn check_depth(below: &[String], depth_max: usize) -> Result<(), String> {
    with_current(|ctx| {
        let depth = ctx.imports.len() + below.len();
        if depth <= depth_max {
            return Ok(());
        }
        let chain: Vec<&str> = ctx
            .imports
            .iter()
            .map(|frame| frame.name.as_str())
            .chain(below.iter().map(String::as_str))
            .collect();
        Err(format!(
            "cannot import '{}': imports would nest {depth} modules deep, past the limit of \
             {depth_max} ({})",
            below.first().map_or("", String::as_str),
            chain.join(" → ")
        ))
    })
    .unwrap_or(Ok(()))
}

/// Puts `name` on the chain of imports in progress; hand what it answers to [`pop_import`].
pub(crate) fn push_import(name: &str) -> usize {
    with_current(|ctx| {
        ctx.imports.push(ImportFrame {
            name: name.to_owned(),
            imported: Vec::new(),
            deepest: Vec::new(),
        });
        ctx.imports.len() - 1
    })
    .unwrap_or(0)
}

/// Takes the import pushed at `depth` off the chain (with any an error left above it) and
/// answers the modules it imported and its deepest chain of imports.
pub(crate) fn pop_import(depth: usize) -> (Vec<(String, ModuleVersion)>, Vec<String>) {
    with_current(|ctx| {
        let popped = ctx.imports.drain(depth..).next();
        popped
            .map(|frame| (frame.imported, frame.deepest))
            .unwrap_or_default()
    })
    .unwrap_or_default()
}

/// Records on the import in progress (if any) that it imported `name` (and what that imports).
pub(crate) fn imported(name: &str, module: &crate::modules::CachedModule) {
    with_current(|ctx| {
        if let Some(frame) = ctx.imports.last_mut() {
            frame.imported.extend(module.versions(name));
            if module.deepest().len() > frame.deepest.len() {
                frame.deepest = module.deepest().to_vec();
            }
        }
    });
}

/// Where the current call reads module sources: its data services.
pub(crate) fn module_source() -> ServiceResult<Arc<dyn ScriptServices>> {
    with_current(|ctx| ctx.services.clone()).ok_or_else(|| {
        picloud_core::ServiceCallError::new(
            picloud_core::ServiceErrorKind::NotConfigured,
            "modules can only be imported while a script runs",
        )
    })
}

/// `f` on the current run's transaction; outside a call (compiling, a unit test) there is none
/// and data calls cannot have got this far.
pub(crate) fn with_tx<R>(f: impl FnOnce(&mut Transaction) -> R) -> Option<R> {
    with_current(|ctx| f(&mut ctx.tx))
}

/// Runs `exchange` — a data call with what it builds to send and what it makes of the answer —
/// off the run's memory books: what it sends is freed by other threads and what it receives was
/// allocated by them (see [`crate::memory`]). Charge the run for the value it got with [`charge`].
pub(crate) fn off_the_books<T>(exchange: impl FnOnce() -> T) -> T {
    let before = memory::now();
    let out = exchange();
    with_current(|ctx| ctx.memory.forgive(before));
    out
}

/// Puts `bytes` on the current run's memory books.
pub(crate) fn charge(bytes: u64) {
    with_current(|ctx| ctx.memory.charge(bytes));
}

/// Runs an async service call from inside a script, bounded by the time the call has left: the
/// one way SDK functions reach async services, because `on_progress` cannot interrupt a native
/// call. Running out of time is the same termination `on_progress` raises, so it surfaces as a
/// `Timeout` that `try/catch` cannot swallow.
///
/// An inline run never waits: it ends here with [`NEEDS_WORKER_TOKEN`], before the call starts.
pub(crate) fn block_on_bounded<F: Future>(future: F) -> Result<F::Output, Box<EvalAltResult>> {
    let placement = with_current(|ctx| match &ctx.placement {
        Placement::Worker(runtime) => Ok((
            runtime.clone(),
            ctx.deadline.saturating_duration_since(Instant::now()),
        )),
        Placement::Inline { .. } => Err(terminated(NEEDS_WORKER_TOKEN)),
    });
    let (runtime, remaining) =
        placement.unwrap_or_else(|| Ok((Handle::try_current().ok(), Duration::MAX)))?;
    let Some(runtime) = runtime else {
        return Err(
            "this function needs the async runtime, which this executor does not have".into(),
        );
    };
    runtime
        .block_on(async { tokio::time::timeout(remaining, future).await })
        .map_err(|_| terminated(DEADLINE_TOKEN))
}

/// The termination carrying `token`; `try/catch` cannot catch it.
pub(crate) fn terminated(token: &'static str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(Dynamic::from(token), Position::NONE).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    use picloud_core::exec::{AppRef, HttpRequest, ScriptRef};
    use picloud_core::NoServices;

    fn context(deadline: Instant, runtime: Option<Handle>) -> CallContext {
        let request = ExecRequest {
            execution_id: ExecutionId::new(),
            app: AppRef {
                id: AppId::new(),
                slug: "shop".to_string(),
            },
            script: ScriptRef {
                id: ScriptId::new(),
                name: "test".to_string(),
                updated_at: Timestamp::from_millis(0),
                source: Arc::from(""),
            },
            request: HttpRequest::default(),
            authority: Authority::App,
            event: None,
            trigger_depth: 3,
            attempt: 1,
            modules: Default::default(),
        };
        CallContext::new(
            &request,
            deadline,
            &Limits::default(),
            Placement::Worker(runtime),
            Arc::new(NoServices),
        )
    }

    #[test]
    fn require_follows_the_executions_authority() {
        let context_app = context(Instant::now(), None);
        let app_id = context_app.app_id;
        let guard = CallGuard::enter(context_app);
        let Ok(grant) = require("kv.set", CapabilityKind::AppKvWrite) else {
            panic!("a public route writes its app's data");
        };
        assert_eq!(
            grant.app_id, app_id,
            "the grant acts for the running execution's app"
        );
        assert!(
            require("members", CapabilityKind::AppManageMembers).is_err(),
            "the app's authority never reaches its members"
        );
        drop(guard);

        let mut reader = context(Instant::now(), None);
        reader.authority = Authority::Caller {
            capabilities: [CapabilityKind::AppKvRead].into_iter().collect(),
        };
        let guard = CallGuard::enter(reader);
        assert!(
            require("kv.get", CapabilityKind::AppKvRead).is_ok(),
            "a script:read caller reads"
        );
        let Err(err) = require("kv.set", CapabilityKind::AppKvWrite) else {
            panic!("a script:read caller does not write");
        };
        assert!(
            err.to_string().contains("kv.set"),
            "the refusal names the function: {err}"
        );
        drop(guard);
        assert!(
            require("kv.get", CapabilityKind::AppKvRead).is_err(),
            "outside a call nothing is allowed"
        );
    }

    #[test]
    fn the_guard_clears_the_context_when_dropped() {
        let guard = CallGuard::enter(context(Instant::now(), None));
        assert!(in_call(), "the context is set while the guard lives");
        drop(guard);
        assert!(!in_call(), "the context is cleared with the guard");
    }

    #[test]
    fn the_log_keeps_a_bounded_number_of_lines_and_says_how_many_it_dropped() {
        let guard = CallGuard::enter(context(Instant::now(), None));
        for i in 0..MAX_LOG_LINES + 5 {
            push_log(LogLevel::Info, format!("line {i}"));
        }
        let logs = guard.finish().expect("the context").into_parts().0;
        assert_eq!(logs.len(), MAX_LOG_LINES + 1, "kept lines plus one summary");
        let last = logs.last().expect("a summary line");
        assert!(
            last.message.starts_with("5 more log lines were dropped"),
            "the summary counts the dropped lines: {}",
            last.message
        );
    }

    // #13: a thousand 16 KiB lines made 17 MB of server log from one request.
    #[test]
    fn the_log_keeps_a_bounded_number_of_bytes_and_says_how_many_lines_it_dropped() {
        let guard = CallGuard::enter(context(Instant::now(), None));
        let budget = Limits::default().max_log_bytes;
        let line = "x".repeat(MAX_LOG_LINE_BYTES);
        for _ in 0..100 {
            push_log(LogLevel::Info, line.clone());
        }
        let logs = guard.finish().expect("the context").into_parts().0;
        let kept: usize = logs[..logs.len() - 1].iter().map(|l| l.message.len()).sum();
        assert!(
            kept <= budget,
            "kept {kept} bytes, within the budget of {budget}"
        );
        assert_eq!(
            logs.len() - 1,
            budget / MAX_LOG_LINE_BYTES,
            "every whole line that fits"
        );
        let last = logs.last().expect("a summary line");
        assert!(
            last.message.contains("more log lines were dropped")
                && last.message.contains(&budget.to_string()),
            "the summary names the budget: {}",
            last.message
        );
    }

    #[test]
    fn a_long_log_line_is_cut_at_a_character_boundary() {
        let line = truncate_line("é".repeat(MAX_LOG_LINE_BYTES));
        assert!(line.ends_with("… (truncated)"), "the cut is marked");
        assert!(line.len() <= MAX_LOG_LINE_BYTES + 20, "the line is bounded");
    }

    #[test]
    fn block_on_bounded_gives_up_at_the_deadline() {
        // Multi-threaded, as in the server: `Handle::block_on` does not drive a current-thread
        // runtime's timer.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("a runtime");
        let deadline = Instant::now() + Duration::from_millis(20);
        let guard = CallGuard::enter(context(deadline, Some(runtime.handle().clone())));
        let err = block_on_bounded(async { tokio::time::sleep(Duration::from_secs(5)).await })
            .expect_err("the sleep outlives the deadline");
        assert!(
            matches!(*err, EvalAltResult::ErrorTerminated(..)),
            "running out of time is a termination: {err}"
        );
        let answer = {
            drop(guard);
            let _guard = CallGuard::enter(context(
                Instant::now() + Duration::from_secs(5),
                Some(runtime.handle().clone()),
            ));
            block_on_bounded(async { 42 }).expect("a quick future completes")
        };
        assert_eq!(answer, 42, "the future's output comes back");
    }
}
