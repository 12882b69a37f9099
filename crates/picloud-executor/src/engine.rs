//! The one place that builds the Rhai engine. Every limit is set here, explicitly: Rhai's own
//! defaults are unlimited for operations and sizes, differ between debug and release builds for
//! depths, and `Engine::new` would read modules from the file system. The engine is built once
//! per sandbox and shared by every execution; what differs per call lives in [`crate::context`].

use picloud_core::exec::LogLevel;
use picloud_core::Limits;
use rhai::module_resolvers::DummyModuleResolver;
use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, OptimizationLevel, Token, FLOAT, INT};

use crate::bounded::Sizes;
use crate::context;

/// Variables alive at once. Not a per-app setting: no sensible script comes near it.
pub(crate) const MAX_VARIABLES: usize = 4_096;
/// Functions a script may define.
pub(crate) const MAX_FUNCTIONS: usize = 1_024;

/// Builds the shared engine for `limits`.
///
/// - the standard package (language core, arithmetic, strings, arrays, blobs, maps, logic, math,
///   timestamps) on a raw engine; `eval` is disabled and `sleep` fails, the two ways a script
///   could escape its sandbox from within the standard library;
/// - every limit of [`Limits`] but the size limits; a configured `0`, which Rhai reads as
///   "unlimited", is raised to 1 for the operation limit. Rhai's size limits re-measure a whole
///   container after every change to it (quadratic in a loop that builds data), so they are
///   off: the memory budget bounds what a script holds, and the standard functions that could
///   build a huge value in one call are replaced by ones that measure first ([`crate::bounded`]);
/// - `print` / `debug` go to the execution's log, never to stdout, and `debug` may also name a
///   function in a namespace (`log::debug`);
/// - showing and comparing arrays and maps look at most 128 levels deep ([`crate::nesting`]);
/// - `import` resolves nothing here: the sandbox installs its module resolver
///   ([`crate::modules`]) on the engine it runs scripts with;
/// - the deadline (and an inline run's budget) is enforced inside Rhai by `on_progress`;
/// - `response(…)` and the standard library namespaces ([`crate::sdk`]).
pub(crate) fn build(limits: &Limits) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine.set_optimization_level(OptimizationLevel::Simple);

    engine.set_max_operations(limits.max_operations.max(1));
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(
        limits.max_expr_depth.max(1),
        limits.max_function_expr_depth.max(1),
    );
    engine.set_max_modules(limits.max_modules);
    engine.set_max_variables(MAX_VARIABLES);
    engine.set_max_functions(MAX_FUNCTIONS);

    engine.disable_symbol("eval");
    // `disable_symbol` covers keywords only; these overloads shadow the standard library's
    // (the engine's own namespace is searched first), which also stops `Fn("sleep").call(…)`.
    engine.register_fn("sleep", |_seconds: INT| -> Result<(), Box<EvalAltResult>> {
        Err(SLEEP_REFUSED.into())
    });
    engine.register_fn(
        "sleep",
        |_seconds: FLOAT| -> Result<(), Box<EvalAltResult>> { Err(SLEEP_REFUSED.into()) },
    );

    engine.on_print(|text| context::push_log(LogLevel::Info, text.to_string()));
    engine
        .on_debug(|text, _source, _position| context::push_log(LogLevel::Debug, text.to_string()));
    engine.on_progress(|operations| context::checkpoint(operations).map(Dynamic::from));

    engine.set_module_resolver(DummyModuleResolver::new());

    // `debug` is a reserved keyword to Rhai's tokenizer, which makes `log::debug(…)` a syntax
    // error; as a plain identifier it still calls the built-in `debug(…)` (resolved by name).
    #[allow(
        deprecated,
        reason = "volatile, not deprecated; rhai is pinned exactly"
    )]
    engine.on_parse_token(|token, _position, _state| match token {
        Token::Reserved(word) if word.as_str() == "debug" => Token::Identifier(word),
        other => other,
    });

    let sizes = Sizes::of(limits);
    crate::bounded::register(&mut engine, sizes);
    crate::comparers::register(&mut engine);
    crate::nesting::register(&mut engine);
    crate::response::register(&mut engine);
    crate::sdk::register(&mut engine, sizes);
    engine
}

const SLEEP_REFUSED: &str =
    "sleep() is not available: a script holds an executor thread while it runs, so it must not wait";

/// Stack for the threads that run scripts, sized from the limits, because a Rust stack overflow
/// aborts the whole process:
///
/// - recursion at the call limit with deep expressions in every frame overflowed tokio's 2 MiB;
///   8 MiB holds the default 32 calls × 64 levels, and larger limits scale it;
/// - Rhai clones and drops nested values recursively, and nothing bounds how deep they nest but
///   the memory budget: arrays and maps have no size limit in the engine, and closures nest at
///   O(1) cost per level (`loop { let g = f; f = || g; }`) — one request of that script killed
///   the server with a stack overflow when dropping the chain. So each byte of the budget gets
///   [`STACK_PER_HELD_BYTE`] of stack. Measured on rhai 1.27 in a release build, that held for
///   closure chains under budgets of 32 MiB to 1 GiB where ~1.6 bytes per byte (the old 106 MiB
///   stack under a 64 MiB budget) overflowed; a nested array level takes ~48 bytes of memory
///   and up to ~300 bytes of stack (~6 per byte; ~50 in a debug build, which gets 64). Showing
///   and comparing nested values take far more per level; [`crate::nesting`] caps their depth.
///
/// Only the pages a script touches are committed; with the default limits a release build
/// reserves ~264 MiB of address space per thread.
pub(crate) fn worker_stack_size(limits: &Limits) -> usize {
    stack_size(limits, limits.max_memory_bytes)
}

/// Stack an inline run needs (see [`crate::context::Placement::Inline`]): as a worker's, for the
/// memory an inline run may hold.
pub(crate) fn inline_stack_size(limits: &Limits) -> usize {
    stack_size(
        limits,
        context::INLINE_MAX_MEMORY.min(limits.max_memory_bytes),
    )
}

/// The stack for the call and expression limits plus what values nested within `held` bytes
/// need.
fn stack_size(limits: &Limits, held: usize) -> usize {
    const BASE: usize = 8 * 1024 * 1024;
    let calls = limits.max_call_levels.div_ceil(32).max(1);
    let depth = limits
        .max_expr_depth
        .max(limits.max_function_expr_depth)
        .div_ceil(64)
        .max(1);
    let nesting = held.saturating_mul(STACK_PER_HELD_BYTE);
    BASE.saturating_mul(calls)
        .saturating_mul(depth)
        .saturating_add(nesting)
        .min(MAX_WORKER_STACK)
}

/// Native stack allowed per byte of the memory budget (see [`worker_stack_size`]).
const STACK_PER_HELD_BYTE: usize = if cfg!(debug_assertions) { 64 } else { 8 };
/// The most a worker's stack is given, whatever the limits.
const MAX_WORKER_STACK: usize = if usize::BITS > 32 {
    u32::MAX as usize
} else {
    256 << 20
};
