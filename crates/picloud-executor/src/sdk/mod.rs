//! The standard library: one static module per namespace, called as `namespace::function(…)`.
//!
//! | module | namespace |
//! |---|---|
//! | [`log`] | `log::{debug, info, warn, error}` into the execution's log |
//! | [`regex`] | `regex::{is_match, find, find_all, replace, replace_all, split, captures}` |
//! | [`random`] | `random::{int, float, bool, uuid, string}` |
//! | [`time`] | `time::{now, now_secs, format, parse}` |
//! | [`json`] | `json::{parse, stringify, stringify_pretty}` |
//! | [`encoding`] | `base64::{encode, decode, encode_url, decode_url}`, `hex::{encode, decode}` |
//! | [`url`] | `url::{encode, decode, parse_query, build_query}` |
//! | [`kv`] | `kv::collection(name)` and its handle's `get`, `set`, `has`, `delete`, `list` |
//! | [`docs`] | `docs::collection(name)` and its handle's `create`, `get`, `update`, `delete`, `find`, `find_one`, `list` |
//! | [`dead_letters`] | `dead_letters::{replay, resolve}` |
//!
//! Every failure is a Rhai runtime error (catchable with `try/catch`) whose message starts with
//! the function's name and says what to change; no input makes a function panic. Every function
//! is registered as volatile, so the optimizer never folds a call such as `random::int(1, 6)`
//! or `time::now()` into a constant at compile time. `docs/sdk.md` documents each one.
//!
//! The data functions (`kv`, `docs`, `dead_letters`) check the execution's authority with
//! [`context::require`], which also gives them the app they act for, and reach the services
//! through [`service_call`], bounded by the execution's deadline.

pub(crate) mod dead_letters;
pub(crate) mod docs;
pub(crate) mod encoding;
pub(crate) mod json;
pub(crate) mod kv;
pub(crate) mod log;
pub(crate) mod random;
pub(crate) mod regex;
pub(crate) mod time;
pub(crate) mod url;

use std::future::Future;

use picloud_core::services::{ServiceErrorKind, ServiceResult};
use rhai::{
    Dynamic, Engine, EvalAltResult, FuncRegistration, Module, Position, RhaiNativeFunc, Variant,
};

use crate::bounded::Sizes;
use crate::context;
use crate::convert::friendly_type_name;

pub(crate) fn register(engine: &mut Engine, sizes: Sizes) {
    engine.register_static_module("log", log::module().into());
    engine.register_static_module("regex", regex::module(sizes).into());
    engine.register_static_module("random", random::module(sizes).into());
    engine.register_static_module("time", time::module().into());
    engine.register_static_module("json", json::module(sizes).into());
    engine.register_static_module("base64", encoding::base64_module().into());
    engine.register_static_module("hex", encoding::hex_module().into());
    engine.register_static_module("url", url::module().into());
    kv::register(engine);
    docs::register(engine);
    engine.register_static_module("dead_letters", dead_letters::module().into());
}

/// Adds `func` to `module` as `name`, volatile (see the module doc), with `doc`: one line that
/// `GET /api/v1/sdk` serves ([`crate::catalogue`]).
pub(crate) fn add<A: 'static, const N: usize, const X: bool, R: Variant + Clone, const F: bool>(
    module: &mut Module,
    name: &str,
    doc: &str,
    func: impl RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
) {
    FuncRegistration::new(name)
        .with_volatility(true)
        .with_comments([format!("/// {doc}")])
        .set_into_module(module, func);
}

/// Registers `func` on the engine as `name`, volatile, with `doc` (as [`add`]): the methods of
/// SDK handle types.
pub(crate) fn method<
    A: 'static,
    const N: usize,
    const X: bool,
    R: Variant + Clone,
    const F: bool,
>(
    engine: &mut Engine,
    name: &str,
    doc: &str,
    func: impl RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
) {
    FuncRegistration::new(name)
        .with_volatility(true)
        .with_comments([format!("/// {doc}")])
        .register_into_engine(engine, func);
}

/// Runs one service call for `function`, bounded by the execution's deadline. A failed call is
/// a runtime error `"<function>: <the service's sentence>"`; running out of time stays a
/// termination.
pub(crate) fn service_call<T>(
    function: &str,
    call: impl Future<Output = ServiceResult<T>>,
) -> SdkResult<T> {
    context::block_on_bounded(call)?.map_err(|err| match err.kind {
        // What the read would bring is past the execution's memory: its memory limit, which
        // `try/catch` cannot swallow, as if the values had come in.
        ServiceErrorKind::TooLarge => context::terminated(context::MEMORY_TOKEN),
        _ => error(format!("{function}: {}", err.message)),
    })
}

/// `value`, received from a data service, charged to the run's memory (see
/// [`context::off_the_books`]).
pub(crate) fn received(value: Dynamic) -> Dynamic {
    context::charge(crate::memory::estimate(&value));
    value
}

/// The string argument `what` of `function`, or an error naming the type it got instead.
pub(crate) fn string_arg(function: &str, what: &str, value: &Dynamic) -> SdkResult<String> {
    value.clone().into_string().map_err(|_| {
        error(format!(
            "{function}: {what} must be a string (got {})",
            friendly_type_name(value)
        ))
    })
}

/// The runtime error an SDK function raises: a sentence for the script's author.
pub(crate) fn error(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into().into(), Position::NONE).into()
}

/// The result type of SDK functions.
pub(crate) type SdkResult<T> = Result<T, Box<EvalAltResult>>;
