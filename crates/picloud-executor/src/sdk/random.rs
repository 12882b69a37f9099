//! `random::{int, float, bool, uuid, string}`, from the thread's cryptographically seeded
//! generator.

use rand::distributions::Alphanumeric;
use rand::Rng;
use rhai::{Module, FLOAT, INT};

use super::{add, error, SdkResult};
use crate::bounded::Sizes;

pub(crate) fn module(sizes: Sizes) -> Module {
    let mut module = Module::new();
    add(
        &mut module,
        "int",
        "A random integer from lo to hi, both included",
        |lo: INT, hi: INT| -> SdkResult<INT> {
            if lo > hi {
                return Err(error(format!(
                    "random::int: the low bound {lo} is above the high bound {hi}"
                )));
            }
            Ok(rand::thread_rng().gen_range(lo..=hi))
        },
    );
    add(
        &mut module,
        "float",
        "A random float from 0 (included) to 1 (excluded)",
        || -> SdkResult<FLOAT> { Ok(rand::thread_rng().gen::<FLOAT>()) },
    );
    add(
        &mut module,
        "bool",
        "A random boolean",
        || -> SdkResult<bool> { Ok(rand::thread_rng().gen::<bool>()) },
    );
    add(
        &mut module,
        "uuid",
        "A random UUID (version 4) as text",
        || -> SdkResult<String> { Ok(uuid::Uuid::new_v4().to_string()) },
    );
    add(
        &mut module,
        "string",
        "A random string of `length` letters and digits",
        move |len: INT| -> SdkResult<String> {
            let max = sizes.string;
            let len = usize::try_from(len)
                .ok()
                .filter(|len| *len <= max)
                .ok_or_else(|| {
                    error(format!(
                        "random::string: the length must be from 0 to {max}, not {len}"
                    ))
                })?;
            Ok(rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(len)
                .map(char::from)
                .collect())
        },
    );
    module
}
