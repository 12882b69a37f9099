//! Rhai's errors → [`ExecError`]. Compile errors keep their line and column, runtime errors the
//! line and column where they were raised (inside a function, where the function failed), and
//! hitting a limit names the limit and its value.

use picloud_core::exec::{ExecError, ExecErrorKind};
use picloud_core::Limits;
use rhai::{EvalAltResult, ParseError, ParseErrorType, Position};

use crate::context::{
    DEADLINE_TOKEN, LOAD_MODULE_TOKEN, MEMORY_TOKEN, NEEDS_WORKER_TOKEN, WRITES_TOKEN,
};
use crate::engine::MAX_VARIABLES;

/// A source that does not compile. Expressions nested past the limit, and literals larger than
/// the size limits, are `LimitExceeded`; everything else is `Compile`.
pub(crate) fn from_parse(err: &ParseError, limits: &Limits) -> ExecError {
    let (line, column) = line_and_column(err.position());
    let (kind, message) = match err.err_type() {
        ParseErrorType::ExprTooDeep => (
            ExecErrorKind::LimitExceeded,
            format!(
                "the script nests expressions deeper than its limit of {} levels",
                limits.max_expr_depth.min(limits.max_function_expr_depth)
            ),
        ),
        ParseErrorType::LiteralTooLarge(what, max) => (
            ExecErrorKind::LimitExceeded,
            format!("the script has a literal over its limit: {what} exceeds {max}"),
        ),
        other => (ExecErrorKind::Compile, other.to_string()),
    };
    ExecError {
        kind,
        message,
        line,
        column,
    }
}

/// Whether an inline run ended because it must start over on an executor thread.
pub(crate) fn needs_worker(err: &EvalAltResult) -> bool {
    matches!(err.unwrap_inner(), EvalAltResult::ErrorTerminated(token, ..)
        if is_token(token, NEEDS_WORKER_TOKEN) || is_token(token, LOAD_MODULE_TOKEN))
}

/// Whether an inline run that must start over on a worker did so because it imports a module
/// not yet cached: the next run will find it cached, so the script keeps being tried inline.
pub(crate) fn loads_module(err: &EvalAltResult) -> bool {
    matches!(err.unwrap_inner(), EvalAltResult::ErrorTerminated(token, ..)
        if is_token(token, LOAD_MODULE_TOKEN))
}

fn is_token(value: &rhai::Dynamic, token: &str) -> bool {
    value.clone().into_string().ok().as_deref() == Some(token)
}

/// An evaluation that failed.
pub(crate) fn from_eval(err: &EvalAltResult, limits: &Limits) -> ExecError {
    let inner = err.unwrap_inner();
    let (line, column) = line_and_column(innermost_position(err));
    let limit = |message: String| (ExecErrorKind::LimitExceeded, message);
    let (kind, message) = match inner {
        EvalAltResult::ErrorTooManyOperations(..) => limit(format!(
            "the script exceeded its limit of {} operations",
            limits.max_operations
        )),
        EvalAltResult::ErrorStackOverflow(..) => limit(format!(
            "the script exceeded its limit of {} nested function calls",
            limits.max_call_levels
        )),
        EvalAltResult::ErrorTooManyModules(..) => limit(format!(
            "the script exceeded its limit of {} imports",
            limits.max_modules
        )),
        EvalAltResult::ErrorTooManyVariables(..) => limit(format!(
            "the script exceeded its limit of {MAX_VARIABLES} variables"
        )),
        EvalAltResult::ErrorDataTooLarge(what, ..) => limit(data_too_large(what, limits)),
        EvalAltResult::ErrorTerminated(token, ..) if is_token(token, DEADLINE_TOKEN) => (
            ExecErrorKind::Timeout,
            format!("the script ran longer than {} ms", limits.timeout_ms),
        ),
        EvalAltResult::ErrorTerminated(token, ..) if is_token(token, WRITES_TOKEN) => {
            limit(format!(
                "the script exceeded its limit of {} data writes (kv.set, kv.delete, docs.create, \
             docs.update, docs.delete) in one execution",
                limits.max_writes
            ))
        }
        EvalAltResult::ErrorTerminated(token, ..) if is_token(token, MEMORY_TOKEN) => {
            limit(memory_exceeded(limits))
        }
        EvalAltResult::ErrorRuntime(value, ..) => (ExecErrorKind::Runtime, thrown(value)),
        EvalAltResult::ErrorModuleNotFound(name, ..) => (
            ExecErrorKind::Runtime,
            format!("cannot import '{name}': this app has no module of that name"),
        ),
        other => (ExecErrorKind::Runtime, without_position(other)),
    };
    let message = match function_name(err) {
        Some((name, "")) if kind == ExecErrorKind::Runtime => {
            format!("{message} (in function '{name}')")
        }
        Some((name, module)) if kind == ExecErrorKind::Runtime => {
            format!("{message} (in function '{name}' of module '{module}', at its line)")
        }
        _ => message,
    };
    ExecError {
        kind,
        message,
        line,
        column,
    }
}

/// The message of a run (or its response) past `max_memory_bytes`.
pub(crate) fn memory_exceeded(limits: &Limits) -> String {
    format!(
        "the script held more than its limit of {} of memory (keys, values, strings and \
         captures count; PICLOUD_MAX_MEMORY_BYTES)",
        show_bytes(limits.max_memory_bytes)
    )
}

/// `bytes` as a person reads it: whole MiB or KiB when exact, else bytes.
fn show_bytes(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    match bytes {
        b if b >= MIB && b.is_multiple_of(MIB) => format!("{} MiB", b / MIB),
        b if b >= 1024 && b.is_multiple_of(1024) => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

fn data_too_large(what: &str, limits: &Limits) -> String {
    match what {
        "Length of string" => format!(
            "the script made a string longer than its limit of {} bytes",
            limits.max_string_size
        ),
        "Size of array/BLOB" => format!(
            "the script made an array larger than its limit of {} items",
            limits.max_array_size
        ),
        other => format!("the script made a value over its size limit ({other})"),
    }
}

/// The message of `throw value` (and of SDK errors, which throw a sentence).
/// Cut to a log line's length: a 4 MB `throw` once became one 4 MB log line (#13).
fn thrown(value: &rhai::Dynamic) -> String {
    if value.is_unit() {
        return "the script threw an error".to_string();
    }
    let message = match value.clone().into_string() {
        Ok(text) if text.is_empty() => "the script threw an error".to_string(),
        Ok(text) => text,
        Err(_) => format!("the script threw {}", crate::nesting::show(value)),
    };
    crate::context::truncate_line(message)
}

/// Rhai's description of an error without the `(line 1, position 2)` it appends: the position
/// travels in its own fields.
fn without_position(err: &EvalAltResult) -> String {
    let text = err.to_string();
    let suffix = format!(" ({})", err.position());
    match text.strip_suffix(&suffix) {
        Some(stripped) if !err.position().is_none() => stripped.to_string(),
        _ => text,
    }
}

/// The name of the innermost script function the error was raised in, and the module it belongs
/// to (empty for the script's own functions).
fn function_name(err: &EvalAltResult) -> Option<(&str, &str)> {
    let mut name = None;
    let mut current = err;
    loop {
        match current {
            EvalAltResult::ErrorInFunctionCall(fn_name, module, inner, _) => {
                name = Some((fn_name.as_str(), module.as_str()));
                current = inner;
            }
            EvalAltResult::ErrorInModule(_, inner, _) => current = inner,
            _ => return name,
        }
    }
}

/// Where the error was raised: the deepest known position along the call chain.
fn innermost_position(err: &EvalAltResult) -> Position {
    let mut position = err.position();
    let mut current = err;
    while let EvalAltResult::ErrorInFunctionCall(.., inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = current
    {
        if !inner.position().is_none() {
            position = inner.position();
        }
        current = inner;
    }
    position
}

pub(crate) fn line_and_column(position: Position) -> (Option<u32>, Option<u32>) {
    let convert = |n: Option<usize>| n.and_then(|n| u32::try_from(n).ok());
    (convert(position.line()), convert(position.position()))
}
