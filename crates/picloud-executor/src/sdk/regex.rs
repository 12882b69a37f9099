//! `regex::{is_match, find, find_all, replace, replace_all, split, captures}` with the `regex`
//! crate's syntax (linear time: no backtracking blow-ups). The pattern comes first, the text
//! second. Compiled patterns are kept in a small LRU cache shared by all executions, and a
//! pattern that compiles past [`PATTERN_SIZE_LIMIT`] is refused, so a huge pattern is an error
//! rather than a memory bomb. Results are bounded by the string and array limits while they are
//! built, not only after.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use regex::{Regex, RegexBuilder};
use rhai::{Array, Dynamic, Map, Module};

use super::{add, error, SdkResult};
use crate::bounded::Sizes;
use crate::sdk::time::shorten;

/// Bytes a compiled pattern may take, and its lazy DFA's cache per thread.
pub(crate) const PATTERN_SIZE_LIMIT: usize = 256 * 1024;
/// Patterns kept compiled (invalid ones are remembered too, with their error).
const CACHE_SIZE: usize = 128;

type Compiled = Result<Arc<Regex>, String>;

#[derive(Clone)]
struct Patterns(Arc<Mutex<LruCache<String, Compiled>>>);

impl Patterns {
    fn new() -> Self {
        let size = NonZeroUsize::new(CACHE_SIZE).unwrap_or(NonZeroUsize::MIN);
        Self(Arc::new(Mutex::new(LruCache::new(size))))
    }

    /// The compiled `pattern`, or the error `function` raises for it.
    fn get(&self, function: &str, pattern: &str) -> SdkResult<Arc<Regex>> {
        let cached = self.0.lock().get(pattern).cloned();
        let compiled = match cached {
            Some(compiled) => compiled,
            None => {
                let compiled = compile(pattern);
                self.0.lock().put(pattern.to_string(), compiled.clone());
                compiled
            }
        };
        compiled.map_err(|why| error(format!("regex::{function}: {why}")))
    }
}

fn compile(pattern: &str) -> Compiled {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map(Arc::new)
        .map_err(|err| match err {
            regex::Error::CompiledTooBig(limit) => format!(
                "the pattern is too large: it compiles past the limit of {limit} bytes; simplify it"
            ),
            regex::Error::Syntax(why) => {
                format!("'{}' is not a valid pattern: {why}", shorten(pattern))
            }
            other => format!("'{}' is not a valid pattern: {other}", shorten(pattern)),
        })
}

pub(crate) fn module(sizes: Sizes) -> Module {
    let mut module = Module::new();
    let patterns = Patterns::new();

    let p = patterns.clone();
    add(
        &mut module,
        "is_match",
        "Whether the pattern matches somewhere in the text",
        move |pattern: &str, text: &str| -> SdkResult<bool> {
            Ok(p.get("is_match", pattern)?.is_match(text))
        },
    );

    let p = patterns.clone();
    add(
        &mut module,
        "find",
        "The first match of the pattern in the text, or ()",
        move |pattern: &str, text: &str| -> SdkResult<Dynamic> {
            Ok(p.get("find", pattern)?
                .find(text)
                .map_or(Dynamic::UNIT, |m| m.as_str().into()))
        },
    );

    let p = patterns.clone();
    add(
        &mut module,
        "find_all",
        "Every match of the pattern in the text",
        move |pattern: &str, text: &str| -> SdkResult<Array> {
            let regex = p.get("find_all", pattern)?;
            let max = sizes.array;
            let mut found = Array::new();
            for m in regex.find_iter(text) {
                if found.len() >= max {
                    return Err(too_many("find_all", "matches", max));
                }
                found.push(m.as_str().into());
            }
            Ok(found)
        },
    );

    let p = patterns.clone();
    add(
        &mut module,
        "replace",
        "The text with the first match replaced ($1 or ${name} in the replacement insert a group)",
        move |pattern: &str, text: &str, with: &str| -> SdkResult<String> {
            let regex = p.get("replace", pattern)?;
            replace("replace", &regex, text, with, 1, sizes.string)
        },
    );

    let p = patterns.clone();
    add(
        &mut module,
        "replace_all",
        "The text with every match replaced ($1 or ${name} in the replacement insert a group)",
        move |pattern: &str, text: &str, with: &str| -> SdkResult<String> {
            let regex = p.get("replace_all", pattern)?;
            let max = sizes.string;
            replace("replace_all", &regex, text, with, usize::MAX, max)
        },
    );

    let p = patterns.clone();
    add(
        &mut module,
        "split",
        "The text split at every match of the pattern",
        move |pattern: &str, text: &str| -> SdkResult<Array> {
            let regex = p.get("split", pattern)?;
            let max = sizes.array;
            let mut parts = Array::new();
            for part in regex.split(text) {
                if parts.len() >= max {
                    return Err(too_many("split", "parts", max));
                }
                parts.push(part.into());
            }
            Ok(parts)
        },
    );

    let p = patterns;
    add(
        &mut module,
        "captures",
        "The groups of the first match (by number and by name), or ()",
        move |pattern: &str, text: &str| -> SdkResult<Dynamic> {
            let regex = p.get("captures", pattern)?;
            let Some(captures) = regex.captures(text) else {
                return Ok(Dynamic::UNIT);
            };
            let mut groups = Map::new();
            for (i, name) in regex.capture_names().enumerate() {
                let value = captures.get(i).map_or(Dynamic::UNIT, |m| m.as_str().into());
                if let Some(name) = name {
                    groups.insert(name.into(), value.clone());
                }
                groups.insert(i.to_string().into(), value);
            }
            Ok(groups.into())
        },
    );

    module
}

/// Replaces up to `limit` matches, expanding `$1` / `${name}` in `with`, and stops with an error
/// as soon as the result would pass `max_len` bytes.
fn replace(
    function: &str,
    regex: &Regex,
    text: &str,
    with: &str,
    limit: usize,
    max_len: usize,
) -> SdkResult<String> {
    let too_long = || {
        error(format!(
            "regex::{function}: the result would be longer than the string limit of {max_len} bytes"
        ))
    };
    let mut out = String::new();
    let mut last = 0;
    for captures in regex.captures_iter(text).take(limit) {
        let Some(whole) = captures.get(0) else {
            continue;
        };
        out.push_str(&text[last..whole.start()]);
        captures.expand(with, &mut out);
        last = whole.end();
        if out.len() > max_len {
            return Err(too_long());
        }
    }
    out.push_str(&text[last..]);
    if out.len() > max_len {
        return Err(too_long());
    }
    Ok(out)
}

fn too_many(function: &str, what: &str, max: usize) -> Box<rhai::EvalAltResult> {
    error(format!(
        "regex::{function}: more than {max} {what}, the array limit"
    ))
}
