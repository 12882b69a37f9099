//! Standard functions whose one call can build far more than it is given, replaced by versions
//! that measure the result before they build it. Rhai checks a value's size only after the native
//! call that made it returns, and the memory budget ([`crate::memory`]) only between operations:
//! `a.replace("a", s)` with 4,096 `a`s and a 1 MiB `s` built a 4 GiB string in one call before
//! either looked. Splitting multiplies too: every character of a 4 MiB string becomes a 16-byte
//! array item. These refuse with the same errors as Rhai's own size checks, before allocating.
//!
//! The engine's own namespace is searched before the standard packages, so these win; they take
//! the string by value (a reference count, not a copy) where the originals do not change it, so
//! they work on constants such as `ctx.request.body` as the originals do.

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, NativeCallContext,
    Position,
};

pub(crate) fn register(engine: &mut Engine) {
    // Not pure: it changes the string, so calling it on a constant is refused, as Rhai's is.
    let replacing = || FuncRegistration::new("replace").with_purity(false);
    replacing().register_into_engine(
        engine,
        |ctx: NativeCallContext, text: &mut ImmutableString, find: &str, with: &str| {
            replace(&ctx, text, find, with)
        },
    );
    replacing().register_into_engine(
        engine,
        |ctx: NativeCallContext, text: &mut ImmutableString, find: &str, with: char| {
            replace(&ctx, text, find, with.encode_utf8(&mut [0; 4]))
        },
    );
    replacing().register_into_engine(
        engine,
        |ctx: NativeCallContext, text: &mut ImmutableString, find: char, with: &str| {
            replace(&ctx, text, find.encode_utf8(&mut [0; 4]), with)
        },
    );
    engine.register_fn(
        "to_chars",
        |ctx: NativeCallContext, text: ImmutableString| -> Result<Array, Box<EvalAltResult>> {
            array_of(&ctx, text.chars().count())?;
            let chars = text.chars().map(Dynamic::from).collect();
            Ok(chars)
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, text: ImmutableString| -> Result<Array, Box<EvalAltResult>> {
            if text.is_empty() {
                return Ok(vec![text.into()]);
            }
            array_of(&ctx, text.split_whitespace().count())?;
            let pieces = text.split_whitespace().map(Into::into).collect();
            Ok(pieces)
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, text: ImmutableString, delimiter: &str| {
            split(&ctx, text, delimiter)
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, text: ImmutableString, delimiter: char| {
            split(&ctx, text, delimiter.encode_utf8(&mut [0; 4]))
        },
    );
}

/// `text` with every `find` replaced by `with`, refused when the result would be longer than the
/// string limit. An empty `find` matches at every character boundary, as in Rust.
fn replace(
    ctx: &NativeCallContext,
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
    let length =
        (text.len() - matches * find.len()).saturating_add(matches.saturating_mul(with.len()));
    let limit = ctx.engine().max_string_size();
    if limit > 0 && length > limit {
        return Err(too_large("Length of string"));
    }
    *text = text.replace(find, with).into();
    Ok(())
}

/// `text` split at every `delimiter` (at every character boundary when it is empty, as in Rust),
/// refused when there would be more pieces than the array limit.
fn split(
    ctx: &NativeCallContext,
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
    array_of(ctx, pieces)?;
    let pieces = text.split(delimiter).map(Into::into).collect();
    Ok(pieces)
}

/// Refuses an array of `items` items when that is more than the array limit.
fn array_of(ctx: &NativeCallContext, items: usize) -> Result<(), Box<EvalAltResult>> {
    let limit = ctx.engine().max_array_size();
    if limit > 0 && items > limit {
        return Err(too_large("Size of array/BLOB"));
    }
    Ok(())
}

/// The error Rhai's own size checks raise, which [`crate::errors`] names the limit for.
fn too_large(what: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorDataTooLarge(what.to_string(), Position::NONE).into()
}

#[cfg(test)]
mod tests {
    use picloud_core::Limits;
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
            // On a constant, as `ctx.request.body` is: splitting works, replacing is refused.
            r#"const C = "a,b"; C.split(",")"#,
            r#"const C = "a b"; C.split()"#,
            r#"const C = "ab"; C.to_chars()"#,
            r#"const C = "ab"; C.replace("a", "b"); C"#,
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
}
