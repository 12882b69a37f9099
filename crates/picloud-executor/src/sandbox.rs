//! The sandbox: the shared engine, its limits and the AST cache. `Sandbox::run` runs one
//! execution on the calling thread, which must be a thread with a large stack and no tokio
//! runtime of its own: the local client's workers are exactly that, so it is not public.
//! `Sandbox::try_inline` runs one on an async thread when it can finish there without waiting
//! (see [`Placement::Inline`]), saving the hop to a worker and back. The sandbox holds no data
//! services: validation needs none, and the local client hands its services to each run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::exec::{
    ExecError, ExecErrorKind, ExecOutcome, ExecRequest, Import, LogLine, ScriptResponse,
    ValidatedScript,
};
use picloud_core::tx::Effects;
use picloud_core::{Limits, ScriptKind, ScriptServices};
use rhai::{Dynamic, Engine, EvalAltResult};
use tokio::runtime::Handle;

use crate::cache::{AstCache, Compiled};
use crate::catalogue::Catalogue;
use crate::context::{CallContext, CallGuard, Placement};
use crate::modules::{ModuleCache, PicloudModuleResolver};
use crate::{context, engine, errors, response, scope, validate};

/// The largest request body an inline run is tried with: copying (and for a script that reads
/// `ctx.request.json`, parsing) a larger one is work an async thread must not do.
const INLINE_MAX_BODY: usize = 16 * 1024;

pub struct Sandbox {
    engine: Engine,
    limits: Limits,
    cache: AstCache,
    /// The free stack a thread needs for an inline run.
    inline_stack: usize,
    /// What the engine offers, for the save-time check of calls.
    catalogue: Catalogue,
    /// The compiled modules the engine's resolver serves imports from.
    modules: Arc<ModuleCache>,
}

impl Sandbox {
    /// Builds the engine for `limits` with an AST cache of `cache_size` scripts and a module
    /// cache of `module_cache_size` compiled modules.
    pub fn new(limits: Limits, cache_size: usize, module_cache_size: usize) -> Self {
        let mut engine = engine::build(&limits);
        let modules = Arc::new(ModuleCache::new(module_cache_size));
        engine.set_module_resolver(PicloudModuleResolver::new(
            modules.clone(),
            limits.module_import_depth_max,
        ));
        Self {
            catalogue: Catalogue::of(&engine),
            engine,
            inline_stack: engine::inline_stack_size(&limits),
            limits,
            cache: AstCache::new(cache_size),
            modules,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles `source` without running it. `Err` has kind `Compile`, the message, and the line
    /// and column when known. A module must also keep to the module shape: only `fn`, `const`
    /// with literal values and `import` at its top level; and every namespaced call must name a
    /// function of the SDK or an imported module (`validate::check_calls`). `Ok` lists the
    /// modules the script imports; whether they exist is the caller's to check.
    pub fn validate(&self, source: &str, kind: ScriptKind) -> Result<ValidatedScript, ExecError> {
        let ast = self.engine.compile(source).map_err(|err| ExecError {
            kind: ExecErrorKind::Compile,
            ..errors::from_parse(&err, &self.limits)
        })?;
        let located = |err: validate::ShapeError| {
            let (line, column) = errors::line_and_column(err.position);
            let message = match line {
                Some(line) => format!("line {line}: {}", err.message),
                None => err.message,
            };
            ExecError {
                kind: ExecErrorKind::Compile,
                message,
                line,
                column,
            }
        };
        if kind == ScriptKind::Module {
            validate::check_module(&ast).map_err(located)?;
        }
        validate::check_calls(&ast, &self.catalogue).map_err(located)?;
        let imports = validate::imports(&ast).map_err(located)?;
        Ok(ValidatedScript {
            imports: imports
                .into_iter()
                .map(|(name, position)| {
                    let (line, column) = errors::line_and_column(position);
                    Import { name, line, column }
                })
                .collect(),
        })
    }

    /// How many times a script was compiled for execution (validation not counted).
    pub fn compilations(&self) -> u64 {
        self.cache.compilations()
    }

    /// How many times a module's source was read and evaluated for an import.
    pub fn module_loads(&self) -> u64 {
        self.modules.loads()
    }

    /// Runs one execution to its end on this thread. `runtime` is what SDK calls block on and
    /// `services` where their data calls go.
    pub(crate) fn run(
        &self,
        request: &ExecRequest,
        runtime: Option<Handle>,
        services: Arc<dyn ScriptServices>,
    ) -> ExecOutcome {
        let started = Instant::now();
        let compiled = self
            .cache
            .get_or_compile(&request.script, |source| self.engine.compile(source))
            .map_err(|err| errors::from_parse(&err, &self.limits));
        let compiled = match compiled {
            Ok(compiled) => compiled,
            Err(err) => return finish(Err(err), (Vec::new(), Effects::default()), started),
        };
        let (evaluated, context) = self.evaluate(
            request,
            &compiled,
            Placement::Worker(runtime),
            services,
            started,
        );
        self.outcome(evaluated, context, started)
    }

    /// Runs one execution inline on this (async) thread when it can finish here: its script is
    /// compiled already, no earlier run of this version had to move to a worker, and this
    /// thread's stack has room for it. `None` means "run it on an executor thread": it was not
    /// tried, or it started over (see [`Placement::Inline`]).
    pub(crate) fn try_inline(
        &self,
        request: &ExecRequest,
        services: &Arc<dyn ScriptServices>,
    ) -> Option<ExecOutcome> {
        if request.request.body.len() > INLINE_MAX_BODY
            || stacker::remaining_stack().is_none_or(|free| free < self.inline_stack)
        {
            return None;
        }
        let compiled = self
            .cache
            .get(&request.script)
            .filter(|compiled| compiled.runs_inline())?;
        let started = Instant::now();
        let placement = Placement::Inline { started };
        let (evaluated, context) =
            self.evaluate(request, &compiled, placement, services.clone(), started);
        if let Err(err) = &evaluated {
            if errors::needs_worker(err) {
                if !errors::loads_module(err) {
                    compiled.stop_inline();
                }
                return None;
            }
        }
        Some(self.outcome(evaluated, context, started))
    }

    /// Evaluates `compiled` for `request` and turns its value into a response, within the run's
    /// memory budget: the outcome, and the call's context with its log. `Err` is an evaluation
    /// that failed (or must start over on a worker); `Ok(Err)` a value that is no response.
    fn evaluate(
        &self,
        request: &ExecRequest,
        compiled: &Compiled,
        placement: Placement,
        services: Arc<dyn ScriptServices>,
        started: Instant,
    ) -> (Evaluated, Option<CallContext>) {
        let deadline = started + Duration::from_millis(self.limits.timeout_ms);
        let guard = CallGuard::enter(CallContext::new(
            request,
            deadline,
            &self.limits,
            placement,
            services,
        ));
        let evaluated = scope::for_request(request, compiled.reads_json)
            .and_then(|mut scope| {
                self.engine
                    .eval_ast_with_scope::<Dynamic>(&mut scope, &compiled.ast)
            })
            .and_then(|value| {
                let response = response::from_value(value);
                match context::over_memory() {
                    Some(token) => Err(context::terminated(token)),
                    None => Ok(response),
                }
            });
        (evaluated, guard.finish())
    }

    /// The outcome of a finished evaluation; an inline run's held-back log lines are written now.
    fn outcome(
        &self,
        evaluated: Evaluated,
        context: Option<CallContext>,
        started: Instant,
    ) -> ExecOutcome {
        let result = evaluated.unwrap_or_else(|err| Err(errors::from_eval(&err, &self.limits)));
        let parts = context
            .map(|context| {
                context.emit_held_logs();
                context.into_parts()
            })
            .unwrap_or_default();
        finish(result, parts, started)
    }
}

/// What [`Sandbox::evaluate`] gives.
type Evaluated = Result<Result<ScriptResponse, ExecError>, Box<EvalAltResult>>;

/// The outcome of a run: a failed run's effects are dropped, for it writes nothing.
fn finish(
    result: Result<ScriptResponse, ExecError>,
    (logs, effects): (Vec<LogLine>, Effects),
    started: Instant,
) -> ExecOutcome {
    let effects = if result.is_ok() {
        effects
    } else {
        Effects::default()
    };
    ExecOutcome {
        result,
        logs,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        effects,
    }
}
