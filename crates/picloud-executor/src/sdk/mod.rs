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
//!
//! Every failure is a Rhai runtime error (catchable with `try/catch`) whose message starts with
//! the function's name and says what to change; no input makes a function panic. Every function
//! is registered as volatile, so the optimizer never folds a call such as `random::int(1, 6)`
//! or `time::now()` into a constant at compile time. `docs/sdk.md` documents each one.

pub(crate) mod encoding;
pub(crate) mod json;
pub(crate) mod log;
pub(crate) mod random;
pub(crate) mod regex;
pub(crate) mod time;
pub(crate) mod url;

use rhai::{Engine, EvalAltResult, FuncRegistration, Module, Position, RhaiNativeFunc, Variant};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("log", log::module().into());
    engine.register_static_module("regex", regex::module().into());
    engine.register_static_module("random", random::module().into());
    engine.register_static_module("time", time::module().into());
    engine.register_static_module("json", json::module().into());
    engine.register_static_module("base64", encoding::base64_module().into());
    engine.register_static_module("hex", encoding::hex_module().into());
    engine.register_static_module("url", url::module().into());
}

/// Adds `func` to `module` as `name`, volatile (see the module doc).
pub(crate) fn add<A: 'static, const N: usize, const X: bool, R: Variant + Clone, const F: bool>(
    module: &mut Module,
    name: &str,
    func: impl RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
) {
    FuncRegistration::new(name)
        .with_volatility(true)
        .set_into_module(module, func);
}

/// The runtime error an SDK function raises: a sentence for the script's author.
pub(crate) fn error(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into().into(), Position::NONE).into()
}

/// The result type of SDK functions.
pub(crate) type SdkResult<T> = Result<T, Box<EvalAltResult>>;
