//! The one place that builds the Rhai engine. Every limit is set here, explicitly: Rhai's own
//! defaults are unlimited for operations and sizes, differ between debug and release builds for
//! depths, and `Engine::new` would read modules from the file system. The engine is built once
//! per sandbox and shared by every execution; what differs per call lives in [`crate::context`].

use picloud_core::exec::LogLevel;
use picloud_core::Limits;
use rhai::module_resolvers::DummyModuleResolver;
use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, OptimizationLevel, Token, FLOAT, INT};

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
/// - every limit of [`Limits`]; a configured `0`, which Rhai reads as "unlimited", is raised to
///   1 for the size and operation limits;
/// - `print` / `debug` go to the execution's log, never to stdout, and `debug` may also name a
///   function in a namespace (`log::debug`);
/// - showing and comparing arrays and maps look at most 128 levels deep ([`crate::nesting`]);
/// - `replace`, `split` and `to_chars` measure their result before they build it
///   ([`crate::bounded`]);
/// - `import` resolves nothing yet (module scripts come with their own resolver);
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
    engine.set_max_string_size(limits.max_string_size.max(1));
    engine.set_max_array_size(limits.max_array_size.max(1));
    engine.set_max_map_size(limits.max_map_size.max(1));
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

    crate::bounded::register(&mut engine);
    crate::nesting::register(&mut engine);
    crate::response::register(&mut engine);
    crate::sdk::register(&mut engine);
    engine
}

const SLEEP_REFUSED: &str =
    "sleep() is not available: a script holds an executor thread while it runs, so it must not wait";

/// Stack for the threads that run scripts, sized from the limits, because a Rust stack overflow
/// aborts the whole process:
///
/// - recursion at the call limit with deep expressions in every frame overflowed tokio's 2 MiB;
///   8 MiB holds the default 32 calls × 64 levels, and larger limits scale it;
/// - Rhai clones, drops and size-checks nested values recursively. Arrays and maps nest only as
///   deep as the array and map limits allow (one element per level); measured on rhai 1.27, a
///   level takes up to ~300 bytes in a release build and ~2.3 KiB in a debug build, so each
///   allowed level gets [`STACK_PER_NESTING_LEVEL`]. (Showing and comparing nested values take
///   far more per level; [`crate::nesting`] caps their depth instead.)
/// - closures nest without any size limit seeing them (`loop { let g = f; f = || g; }` adds a
///   level per iteration at O(1) cost), so their depth is bounded by the memory budget alone, and
///   dropping the chain recurses once per level: one request of that script killed the server
///   with a stack overflow. Each byte of the budget gets [`STACK_PER_HELD_BYTE`] of stack: in a
///   release build that held with budgets of 32 MiB to 1 GiB, where ~1.6 bytes per byte (the
///   old 106 MiB stack under a 64 MiB budget) overflowed.
///
/// Only the pages a script touches are committed; with the default limits a release build
/// reserves ~264 MiB of address space per thread.
pub(crate) fn worker_stack_size(limits: &Limits) -> usize {
    let nesting = limits.max_array_size.saturating_add(limits.max_map_size);
    stack_size(limits, nesting, limits.max_memory_bytes)
}

/// Stack an inline run needs (see [`crate::context::Placement::Inline`]): as a worker's, except
/// that nesting is bounded by the inline operation budget (one operation at least per level)
/// rather than by the size limits.
pub(crate) fn inline_stack_size(limits: &Limits) -> usize {
    let nesting = usize::try_from(context::INLINE_MAX_OPERATIONS).unwrap_or(usize::MAX);
    stack_size(
        limits,
        nesting.min(limits.max_array_size.saturating_add(limits.max_map_size)),
        context::INLINE_MAX_MEMORY.min(limits.max_memory_bytes),
    )
}

/// The stack for the call and expression limits plus `nesting` levels of nested values, or what
/// `held` bytes of nested closures need, whichever is more.
fn stack_size(limits: &Limits, nesting: usize, held: usize) -> usize {
    const BASE: usize = 8 * 1024 * 1024;
    let calls = limits.max_call_levels.div_ceil(32).max(1);
    let depth = limits
        .max_expr_depth
        .max(limits.max_function_expr_depth)
        .div_ceil(64)
        .max(1);
    let nesting = nesting
        .saturating_mul(STACK_PER_NESTING_LEVEL)
        .max(held.saturating_mul(STACK_PER_HELD_BYTE));
    BASE.saturating_mul(calls)
        .saturating_mul(depth)
        .saturating_add(nesting)
        .min(MAX_WORKER_STACK)
}

/// Native stack allowed per level of nested arrays and maps (see [`worker_stack_size`]).
const STACK_PER_NESTING_LEVEL: usize = if cfg!(debug_assertions) {
    4 * 1024
} else {
    512
};
/// Native stack allowed per byte of the memory budget (see [`worker_stack_size`]).
const STACK_PER_HELD_BYTE: usize = if cfg!(debug_assertions) { 64 } else { 8 };
/// The most a worker's stack is given, whatever the limits.
const MAX_WORKER_STACK: usize = if usize::BITS > 32 {
    u32::MAX as usize
} else {
    256 << 20
};
