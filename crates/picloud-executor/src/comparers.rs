//! Functions that call a script's comparer. Rhai's `sort(comparer)` and `dedup(comparer)` drop
//! the comparer's errors and go on with the next pair, so a run past its deadline or its memory
//! budget went on sorting — each call failed at its first operation, and a sort makes n·log n of
//! them — and could even answer: a sort of 26,624 items whose comparer never returns ran seconds
//! past a 300 ms deadline and then answered 200 (`tests/hostile.rs`). These replace them: the
//! first error of the comparer ends the call and is its error, whether a limit raised it or the
//! script threw it.
//!
//! The engine's own namespace is searched before the standard packages, so these win.

use std::cmp::Ordering;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, FuncRegistration, NativeCallContext};

pub(crate) fn register(engine: &mut Engine) {
    // They change their first argument: not pure, so calling them on a constant is refused, as
    // Rhai's are.
    for name in ["sort", "sort_by"] {
        FuncRegistration::new(name)
            .with_purity(false)
            .register_into_engine(
                engine,
                |ctx: NativeCallContext, array: &mut Array, comparer: FnPtr| {
                    sort(&ctx, array, &comparer)
                },
            );
    }
    FuncRegistration::new("dedup")
        .with_purity(false)
        .register_into_engine(
            engine,
            |ctx: NativeCallContext, array: &mut Array, comparer: FnPtr| {
                dedup(&ctx, array, &comparer)
            },
        );
}

fn sort(
    ctx: &NativeCallContext,
    array: &mut Array,
    comparer: &FnPtr,
) -> Result<(), Box<EvalAltResult>> {
    let mut failed = None;
    // `sort_by` panics when the order is not total, which a script's comparer need not be; after
    // a failure every pair is "equal", which is not total either.
    let sorted = catch_unwind(AssertUnwindSafe(|| {
        array.sort_by(|x, y| {
            if failed.is_some() {
                return Ordering::Equal;
            }
            match comparer.call_raw(ctx, None, [x.clone(), y.clone()]) {
                Ok(answer) => ordering(x, y, &answer),
                Err(err) => {
                    failed = Some(err);
                    Ordering::Equal
                }
            }
        });
    }));
    if let Some(err) = failed {
        return Err(err);
    }
    sorted.map_err(|_| {
        EvalAltResult::ErrorRuntime(
            "the comparer does not order the items consistently".into(),
            ctx.call_position(),
        )
        .into()
    })
}

/// What a comparer's answer means, as Rhai reads it: an integer's sign, or `true` for "before";
/// anything else orders by type.
fn ordering(x: &Dynamic, y: &Dynamic, answer: &Dynamic) -> Ordering {
    match (answer.as_int(), answer.as_bool()) {
        (Ok(n), _) => n.cmp(&0),
        (_, Ok(before)) => {
            if before {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        _ => x.type_id().cmp(&y.type_id()),
    }
}

fn dedup(
    ctx: &NativeCallContext,
    array: &mut Array,
    comparer: &FnPtr,
) -> Result<(), Box<EvalAltResult>> {
    let mut failed = None;
    array.dedup_by(|x, y| {
        if failed.is_some() {
            return false;
        }
        match comparer.call_raw(ctx, None, [y.clone(), x.clone()]) {
            Ok(answer) => answer.as_bool().unwrap_or(false),
            Err(err) => {
                failed = Some(err);
                false
            }
        }
    });
    failed.map_or(Ok(()), Err)
}
