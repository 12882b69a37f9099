//! Sizes, bounded where they are built. Rhai's own size limits re-measure a whole array or map
//! after every change to it — every `push` walks the array, every `remove` the map — which made
//! a script that builds data many times slower than on a bare engine (bench/RESULTS.md,
//! `--script-speed`). The engine is built without them:
//! what a script holds in all is bounded by the memory budget ([`crate::memory`]), counted where
//! it is allocated, and the stack by a size fitted to that budget
//! ([`crate::engine::worker_stack_size`]).
//!
//! What the budget cannot bound is one native call: it is checked between operations, and a call
//! can build far more than it was given — `a.replace("a", s)` with 4,096 `a`s and a 1 MiB `s`
//! built a 4 GiB string before anything looked; `s.pad(n, …)` and `blob(n)` build what an integer
//! asks for. So every standard function whose result can outgrow its input several times over is
//! replaced here by one that measures the result first and refuses one past the string limit
//! ([`Sizes::string`]) or the array limit ([`Sizes::array`]), with the errors Rhai's own checks
//! raise. The SDK's own functions (`regex`, `json`, `random`) take the same [`Sizes`].
//!
//! The engine's own namespace is searched before the standard packages, so these win; they take
//! the string by value (a reference count, not a copy) where the originals do not change it, so
//! they work on constants such as `ctx.request.body` as the originals do.

use picloud_core::Limits;
use rhai::{
    Array, Blob, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Position, INT,
};

/// What one call may build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// Bytes of one string.
    pub string: usize,
    /// Items of one array (or bytes of one BLOB).
    pub array: usize,
}

impl Sizes {
    pub(crate) fn of(limits: &Limits) -> Self {
        Self {
            string: limits.max_string_size,
            array: limits.max_array_size,
        }
    }

    fn string(self, bytes: usize) -> Result<(), Box<EvalAltResult>> {
        if bytes > self.string {
            return Err(too_large(STRING));
        }
        Ok(())
    }

    fn array(self, items: usize) -> Result<(), Box<EvalAltResult>> {
        if items > self.array {
            return Err(too_large(ARRAY));
        }
        Ok(())
    }
}

pub(crate) fn register(engine: &mut Engine, sizes: Sizes) {
    // These change their first argument: not pure, so calling them on a constant is refused, as
    // Rhai's are.
    let changing = |name| FuncRegistration::new(name).with_purity(false);
    changing("replace").register_into_engine(
        engine,
        move |text: &mut ImmutableString, find: &str, with: &str| replace(sizes, text, find, with),
    );
    changing("replace").register_into_engine(
        engine,
        move |text: &mut ImmutableString, find: &str, with: char| {
            replace(sizes, text, find, with.encode_utf8(&mut [0; 4]))
        },
    );
    changing("replace").register_into_engine(
        engine,
        move |text: &mut ImmutableString, find: char, with: &str| {
            replace(sizes, text, find.encode_utf8(&mut [0; 4]), with)
        },
    );
    changing("pad").register_into_engine(
        engine,
        move |text: &mut ImmutableString, len: INT, with: char| {
            pad_string(sizes, text, len, with.encode_utf8(&mut [0; 4]))
        },
    );
    changing("pad").register_into_engine(
        engine,
        move |text: &mut ImmutableString, len: INT, with: &str| pad_string(sizes, text, len, with),
    );
    changing("pad").register_into_engine(
        engine,
        move |array: &mut Array, len: INT, item: Dynamic| -> Result<(), Box<EvalAltResult>> {
            let Some(added) = count(len).checked_sub(array.len()).filter(|n| *n > 0) else {
                return Ok(());
            };
            let (items, bytes) = measure(&item);
            sizes.array(array.len().saturating_add(added.saturating_mul(items + 1)))?;
            sizes.string(added.saturating_mul(bytes))?;
            array.resize(array.len() + added, item);
            Ok(())
        },
    );
    changing("pad").register_into_engine(
        engine,
        move |blob: &mut Blob, len: INT, value: INT| -> Result<(), Box<EvalAltResult>> {
            let len = count(len);
            sizes.array(len)?;
            if len > blob.len() {
                blob.resize(len, byte(value));
            }
            Ok(())
        },
    );
    engine.register_fn("blob", move |len: INT| new_blob(sizes, len, 0));
    engine.register_fn("blob", move |len: INT, value: INT| {
        new_blob(sizes, len, value)
    });
    engine.register_fn(
        "to_chars",
        move |text: ImmutableString| -> Result<Array, Box<EvalAltResult>> {
            sizes.array(text.chars().count())?;
            let chars = text.chars().map(Dynamic::from).collect();
            Ok(chars)
        },
    );
    engine.register_fn(
        "split",
        move |text: ImmutableString| -> Result<Array, Box<EvalAltResult>> {
            if text.is_empty() {
                return Ok(vec![text.into()]);
            }
            sizes.array(text.split_whitespace().count())?;
            let pieces = text.split_whitespace().map(Into::into).collect();
            Ok(pieces)
        },
    );
    engine.register_fn("split", move |text: ImmutableString, delimiter: &str| {
        split(sizes, text, delimiter)
    });
    engine.register_fn("split", move |text: ImmutableString, delimiter: char| {
        split(sizes, text, delimiter.encode_utf8(&mut [0; 4]))
    });
}

const STRING: &str = "Length of string";
const ARRAY: &str = "Size of array/BLOB";

/// `text` with every `find` replaced by `with`, refused when the result would be longer than the
/// string limit. An empty `find` matches at every character boundary, as in Rust.
fn replace(
    sizes: Sizes,
    text: &mut ImmutableString,
    find: &str,
    with: &str,
) -> Result<(), Box<EvalAltResult>> {
    if text.is_empty() {
        return Ok(());
    }
    let matches = if find.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(find).count()
    };
    sizes.string(
        (text.len() - matches * find.len()).saturating_add(matches.saturating_mul(with.len())),
    )?;
    *text = text.replace(find, with).into();
    Ok(())
}

/// `text` padded with `with` to `len` characters, refused past the string limit before it grows.
fn pad_string(
    sizes: Sizes,
    text: &mut ImmutableString,
    len: INT,
    with: &str,
) -> Result<(), Box<EvalAltResult>> {
    let len = count(len);
    let have = text.chars().count();
    let per = with.chars().count();
    if len <= have || per == 0 {
        return Ok(());
    }
    // The characters added, each at most as long as the longest in `with`.
    let widest = with.chars().map(char::len_utf8).max().unwrap_or(1);
    sizes.string(
        text.len()
            .saturating_add((len - have).saturating_mul(widest)),
    )?;
    let added: String = with.chars().cycle().take(len - have).collect();
    text.make_mut().push_str(&added);
    Ok(())
}

/// `text` split at every `delimiter` (at every character boundary when it is empty, as in Rust),
/// refused when there would be more pieces than the array limit.
fn split(
    sizes: Sizes,
    text: ImmutableString,
    delimiter: &str,
) -> Result<Array, Box<EvalAltResult>> {
    if text.is_empty() || (!delimiter.is_empty() && !text.contains(delimiter)) {
        return Ok(vec![text.into()]);
    }
    let pieces = if delimiter.is_empty() {
        text.chars().count() + 2
    } else {
        text.matches(delimiter).count() + 1
    };
    sizes.array(pieces)?;
    let pieces = text.split(delimiter).map(Into::into).collect();
    Ok(pieces)
}

fn new_blob(sizes: Sizes, len: INT, value: INT) -> Result<Blob, Box<EvalAltResult>> {
    let len = count(len);
    sizes.array(len)?;
    Ok(vec![byte(value); len])
}

/// A script's count as a length: negative is none, too large for memory saturates.
fn count(len: INT) -> usize {
    usize::try_from(len.max(0)).unwrap_or(usize::MAX)
}

/// The low 8 bits, as Rhai's BLOB functions take them.
fn byte(value: INT) -> u8 {
    (value & 0xff) as u8
}

/// The items (nested ones included) and string bytes in `value`, as Rhai's size checks count.
fn measure(value: &Dynamic) -> (usize, usize) {
    if let Some(array) = value.read_lock::<Array>() {
        return array.iter().fold((0, 0), |(items, bytes), item| {
            let (i, b) = measure(item);
            (items + 1 + i, bytes + b)
        });
    }
    if let Some(map) = value.read_lock::<rhai::Map>() {
        return map.values().fold((0, 0), |(items, bytes), item| {
            let (i, b) = measure(item);
            (items + 1 + i, bytes + b)
        });
    }
    if let Some(blob) = value.read_lock::<Blob>() {
        return (blob.len(), 0);
    }
    if let Some(text) = value.read_lock::<ImmutableString>() {
        return (0, text.len());
    }
    (0, 0)
}

/// The error Rhai's own size checks raise, which [`crate::errors`] names the limit for.
fn too_large(what: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorDataTooLarge(what.to_string(), Position::NONE).into()
}

#[cfg(test)]
mod tests {
    use rhai::packages::{Package, StandardPackage};

    use super::*;

    /// Within the limits, each replacement answers exactly what Rhai's own function does.
    #[test]
    fn the_bounded_functions_answer_what_rhais_own_do() {
        let ours = crate::engine::build(&Limits::default());
        let mut rhais = Engine::new_raw();
        rhais.register_global_module(StandardPackage::new().as_shared_module());
        let cases = [
            r#"let s = "hello, world"; s.replace("l", "(^)"); s"#,
            r#"let s = "hello"; s.replace("", "-"); s"#,
            r#"let s = ""; s.replace("", "-"); s"#,
            r#"let s = "hello"; s.replace("l", '*'); s"#,
            r#"let s = "héllo"; s.replace('é', "e"); s"#,
            r#"let s = "aaa"; s.replace("aa", "b"); s"#,
            r#"let s = "ab"; s.pad(5, '-'); s"#,
            r#"let s = "ab"; s.pad(6, "xyz"); s"#,
            r#"let s = "ab"; s.pad(7, "xyz"); s"#,
            r#"let s = "héllo"; s.pad(3, "x"); s"#,
            r#"let s = "é"; s.pad(4, "ü"); s"#,
            r#"let s = "ab"; s.pad(-1, "x"); s"#,
            r#"let a = [1]; a.pad(4, [2, "x"]); a"#,
            r#"let a = [1, 2, 3]; a.pad(2, 0); a"#,
            r#"let b = blob(3, 0x1ff); b.pad(5, 7); b"#,
            r#"let b = blob(4); b.pad(2, 7); b"#,
            "blob(-1)",
            r#""a,b,,c".split(",")"#,
            r#""a,b,,c".split(',')"#,
            r#""abc".split("")"#,
            r#""abc".split("x")"#,
            r#""".split(",")"#,
            r#""".split("")"#,
            r#""  a  b\tc ".split()"#,
            r#""".split()"#,
            r#""héllo".to_chars()"#,
            r#""".to_chars()"#,
            // On a constant, as `ctx.request.body` is: splitting works, changing is refused.
            r#"const C = "a,b"; C.split(",")"#,
            r#"const C = "a b"; C.split()"#,
            r#"const C = "ab"; C.to_chars()"#,
            r#"const C = "ab"; C.replace("a", "b"); C"#,
            r#"const C = "ab"; C.pad(5, "b"); C"#,
        ];
        for case in cases {
            let expected = rhais.eval::<Dynamic>(case).map(|v| format!("{v:?}"));
            let got = ours.eval::<Dynamic>(case).map(|v| format!("{v:?}"));
            assert_eq!(
                got.as_ref().ok(),
                expected.as_ref().ok(),
                "{case}: ours {got:?}, Rhai's {expected:?}"
            );
        }
    }

    /// Rhai's own `pad` with an empty string loops forever inside one native call, where neither
    /// the deadline nor the operations limit can stop it: the thread was lost for good.
    #[test]
    fn padding_with_nothing_leaves_the_string_as_it_is() {
        let ours = crate::engine::build(&Limits::default());
        let padded = ours.eval::<String>(r#"let s = "ab"; s.pad(5, ""); s"#);
        assert_eq!(padded.ok().as_deref(), Some("ab"));
    }
}
