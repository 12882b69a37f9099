//! Deeply nested values. Rhai bounds how *large* a value may be, not how *deep*: `[[[…]]]` with
//! one element per level is only as many elements as levels, so the array limit (100 000 by
//! default) is also the only bound on depth — and Rhai walks nested values recursively. Measured
//! on rhai 1.27 in a release build, cloning, dropping and size-checking a nested value take
//! ~200–300 bytes of native stack per level, which the worker stack is sized for
//! ([`crate::engine::worker_stack_size`]); but showing (`print`, `to_string`, interpolation) and
//! comparing (`==`, `in`, `contains`) take ~2 KiB per level and overflowed an 8 MiB stack at
//! ~4 000 levels, which aborts the whole process.
//!
//! So those entry points are replaced, for arrays and maps, by versions whose recursion stops at
//! [`MAX_DEPTH`]: showing a deeper value elides the rest as `…`, comparing one is an error. The
//! engine's own namespace is searched before the standard packages, so these win, including
//! when Rhai compares elements inside `contains` or `in`.

use std::fmt::Write as _;

use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext};

use crate::convert::to_json;
use crate::sdk::kv::KvCollection;

/// Levels shown or compared before giving up. Far beyond what data nests in practice, and small
/// enough that the recursion below stays within a few hundred KiB of stack.
pub(crate) const MAX_DEPTH: usize = 128;

pub(crate) fn register(engine: &mut Engine) {
    for name in ["print", "to_string", "debug", "to_debug"] {
        engine.register_fn(name, |array: &mut Array| -> ImmutableString {
            let mut out = String::new();
            write_array(&mut out, array, MAX_DEPTH);
            out.into()
        });
        engine.register_fn(name, |map: &mut Map| -> ImmutableString {
            let mut out = String::new();
            write_map(&mut out, map, MAX_DEPTH);
            out.into()
        });
    }
    engine.register_fn(
        "==",
        |ctx: NativeCallContext, a: &mut Array, b: Array| -> Result<bool, Box<EvalAltResult>> {
            arrays_equal(&ctx, a, &b, MAX_DEPTH)
        },
    );
    engine.register_fn(
        "!=",
        |ctx: NativeCallContext, a: &mut Array, b: Array| -> Result<bool, Box<EvalAltResult>> {
            arrays_equal(&ctx, a, &b, MAX_DEPTH).map(|equal| !equal)
        },
    );
    engine.register_fn(
        "==",
        |ctx: NativeCallContext, a: &mut Map, b: Map| -> Result<bool, Box<EvalAltResult>> {
            maps_equal(&ctx, a, &b, MAX_DEPTH)
        },
    );
    engine.register_fn(
        "!=",
        |ctx: NativeCallContext, a: &mut Map, b: Map| -> Result<bool, Box<EvalAltResult>> {
            maps_equal(&ctx, a, &b, MAX_DEPTH).map(|equal| !equal)
        },
    );
    engine.register_fn(
        "to_json",
        |map: &mut Map| -> Result<String, Box<EvalAltResult>> {
            to_json(&Dynamic::from_map(map.clone()))
                .map(|json| json.to_string())
                .map_err(|err| format!("to_json: {err}").into())
        },
    );
}

/// A value as Rhai shows it (`print`): strings as they are, containers as `[1, "a"]` and
/// `#{"k": 1}`, elided past [`MAX_DEPTH`] levels.
pub(crate) fn show(value: &Dynamic) -> String {
    if value.is_string() {
        return value.to_string();
    }
    let mut out = String::new();
    write_value(&mut out, value, MAX_DEPTH);
    out
}

fn write_value(out: &mut String, value: &Dynamic, depth: usize) {
    if value.is_array() {
        if let Some(array) = value.read_lock::<Array>() {
            write_array(out, &array, depth);
        }
    } else if value.is_map() {
        if let Some(map) = value.read_lock::<Map>() {
            write_map(out, &map, depth);
        }
    } else if let Some(handle) = value.read_lock::<KvCollection>() {
        // Rhai would show a custom type by its Rust type name.
        let _ = write!(out, "{}", *handle);
    } else {
        // Scalars, function pointers and timestamps do not nest.
        let _ = write!(out, "{value:?}");
    }
}

fn write_array(out: &mut String, array: &Array, depth: usize) {
    if depth == 0 {
        out.push_str("[…]");
        return;
    }
    out.push('[');
    for (i, item) in array.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_value(out, item, depth - 1);
    }
    out.push(']');
}

fn write_map(out: &mut String, map: &Map, depth: usize) {
    if depth == 0 {
        out.push_str("#{…}");
        return;
    }
    out.push_str("#{");
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{:?}: ", key.as_str());
        write_value(out, item, depth - 1);
    }
    out.push('}');
}

fn too_deep() -> Box<EvalAltResult> {
    format!("cannot compare values nested deeper than {MAX_DEPTH} levels").into()
}

fn arrays_equal(
    ctx: &NativeCallContext,
    a: &Array,
    b: &Array,
    depth: usize,
) -> Result<bool, Box<EvalAltResult>> {
    if depth == 0 {
        return Err(too_deep());
    }
    if a.len() != b.len() {
        return Ok(false);
    }
    for (x, y) in a.iter().zip(b) {
        if !values_equal(ctx, x, y, depth - 1)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn maps_equal(
    ctx: &NativeCallContext,
    a: &Map,
    b: &Map,
    depth: usize,
) -> Result<bool, Box<EvalAltResult>> {
    if depth == 0 {
        return Err(too_deep());
    }
    if a.len() != b.len() {
        return Ok(false);
    }
    for (key, x) in a {
        let Some(y) = b.get(key) else {
            return Ok(false);
        };
        if !values_equal(ctx, x, y, depth - 1)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn values_equal(
    ctx: &NativeCallContext,
    a: &Dynamic,
    b: &Dynamic,
    depth: usize,
) -> Result<bool, Box<EvalAltResult>> {
    if a.is_array() && b.is_array() {
        return match (a.read_lock::<Array>(), b.read_lock::<Array>()) {
            (Some(x), Some(y)) => arrays_equal(ctx, &x, &y, depth),
            _ => Ok(false),
        };
    }
    if a.is_map() && b.is_map() {
        return match (a.read_lock::<Map>(), b.read_lock::<Map>()) {
            (Some(x), Some(y)) => maps_equal(ctx, &x, &y, depth),
            _ => Ok(false),
        };
    }
    if a.is_array() || a.is_map() || b.is_array() || b.is_map() {
        return Ok(false);
    }
    // Two values that do not nest: Rhai's own `==` (which also equates 1 and 1.0), or unequal
    // when the types cannot be compared.
    let mut x = a.clone();
    let mut y = b.clone();
    match ctx.call_native_fn_raw("==", true, &mut [&mut x, &mut y]) {
        Ok(result) => Ok(result.as_bool().unwrap_or(false)),
        Err(err) if matches!(*err, EvalAltResult::ErrorFunctionNotFound(..)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether `value` nests more than `max` arrays or maps deep; the walk stops at `max`, so its
/// own recursion stays shallow.
pub(crate) fn nests_deeper_than(value: &Dynamic, max: usize) -> bool {
    if value.is_array() {
        if max == 0 {
            return true;
        }
        return value
            .read_lock::<Array>()
            .is_some_and(|array| array.iter().any(|item| nests_deeper_than(item, max - 1)));
    }
    if value.is_map() {
        if max == 0 {
            return true;
        }
        return value
            .read_lock::<Map>()
            .is_some_and(|map| map.values().any(|item| nests_deeper_than(item, max - 1)));
    }
    false
}
