//! The sandbox: the shared engine, its limits and the AST cache. `Sandbox::run` runs one
//! execution on the calling thread, which must be a thread with a large stack and no tokio
//! runtime of its own: the local client's workers are exactly that, so it is not public. The
//! sandbox holds no data services: validation needs none, and the local client hands its
//! services to each run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::exec::{ExecError, ExecErrorKind, ExecOutcome, ExecRequest};
use picloud_core::{Limits, ScriptKind, ScriptServices};
use rhai::{Dynamic, Engine};
use tokio::runtime::Handle;

use crate::cache::AstCache;
use crate::context::{CallContext, CallGuard};
use crate::{engine, errors, response, scope, validate};

pub struct Sandbox {
    engine: Engine,
    limits: Limits,
    cache: AstCache,
}

impl Sandbox {
    /// Builds the engine for `limits` with an AST cache of `cache_size` scripts.
    pub fn new(limits: Limits, cache_size: usize) -> Self {
        Self {
            engine: engine::build(&limits),
            limits,
            cache: AstCache::new(cache_size),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles `source` without running it. `Err` has kind `Compile`, the message, and the line
    /// and column when known. A module must also keep to the module shape: only `fn`, `const`
    /// with literal values and `import` at its top level.
    pub fn validate(&self, source: &str, kind: ScriptKind) -> Result<(), ExecError> {
        let ast = self.engine.compile(source).map_err(|err| ExecError {
            kind: ExecErrorKind::Compile,
            ..errors::from_parse(&err, &self.limits)
        })?;
        if kind == ScriptKind::Module {
            validate::check_module(&ast).map_err(|err| {
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
            })?;
        }
        Ok(())
    }

    /// How many times a script was compiled for execution (validation not counted).
    pub fn compilations(&self) -> u64 {
        self.cache.compilations()
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
        let ast = match compiled {
            Ok(ast) => ast,
            Err(err) => return finish(Err(err), Vec::new(), started),
        };

        let deadline = started + Duration::from_millis(self.limits.timeout_ms);
        let guard = CallGuard::enter(CallContext::new(request, deadline, runtime, services));
        let evaluated = scope::for_request(request)
            .and_then(|mut scope| self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast));
        let logs = guard
            .finish()
            .map(CallContext::into_logs)
            .unwrap_or_default();
        drop(ast);

        let result = match evaluated {
            Ok(value) => response::from_value(value),
            Err(err) => Err(errors::from_eval(&err, &self.limits)),
        };
        finish(result, logs, started)
    }
}

fn finish(
    result: Result<picloud_core::exec::ScriptResponse, ExecError>,
    logs: Vec<picloud_core::exec::LogLine>,
    started: Instant,
) -> ExecOutcome {
    ExecOutcome {
        result,
        logs,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}
