//! Rhai values ↔ JSON, through `rhai::serde`. Shared by the response rules, `ctx.request.json`
//! and the `json` namespace, so a value converts the same way everywhere.
//!
//! A value with no JSON form (a function pointer, a timestamp, a blob…) is an error that names
//! the type and where it sits (`$.user.created`), so a script author can find it. What is
//! shown once (a response, `json::stringify`) may turn a non-finite float into `null`; what is
//! stored ([`to_json_exact`]) must read back as it was written, so there it is an error too.

use std::fmt;

use rhai::{Dynamic, EvalAltResult, Position};

use crate::nesting::{nests_deeper_than, MAX_DEPTH};

/// A value that has no JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotJson {
    /// A value of a type JSON cannot hold, at `path` (`$` is the value itself).
    Type { path: String, type_name: String },
    /// A float that is NaN or infinite, at `path`, where JSON (and so a stored value) needs a
    /// finite number.
    NotFinite { path: String, value: String },
    /// Arrays and maps nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Type { path, type_name } if path == "$" => {
                write!(f, "a {type_name} has no JSON form")
            }
            Self::Type { path, type_name } => {
                write!(
                    f,
                    "the value at {path} is a {type_name}, which has no JSON form"
                )
            }
            Self::NotFinite { path, value } if path == "$" => {
                write!(f, "{value} has no JSON form: a number must be finite")
            }
            Self::NotFinite { path, value } => write!(
                f,
                "the value at {path} is {value}, which has no JSON form: a number must be finite"
            ),
            Self::TooDeep => write!(f, "it nests arrays and maps deeper than {MAX_DEPTH} levels"),
        }
    }
}

/// The JSON form of a Rhai value: `()` is `null`, maps are objects, arrays are arrays, a char is
/// a one-character string; non-finite floats become `null`. At most [`MAX_DEPTH`] levels deep,
/// which is also as deep as `json::parse` reads.
pub(crate) fn to_json(value: &Dynamic) -> Result<serde_json::Value, NotJson> {
    let value = value.flatten_clone();
    if nests_deeper_than(&value, MAX_DEPTH) {
        return Err(NotJson::TooDeep);
    }
    rhai::serde::from_dynamic::<serde_json::Value>(&value).map_err(|_| {
        first_leaf(&value, "$".to_string(), &|leaf| !is_json_scalar(leaf)).map_or_else(
            || NotJson::Type {
                path: "$".to_string(),
                type_name: friendly_type_name(&value),
            },
            |(path, leaf)| NotJson::Type {
                path,
                type_name: friendly_type_name(&leaf),
            },
        )
    })
}

/// Like [`to_json`], but a NaN or infinite float is an error instead of `null`: for values that
/// are stored and must read back as they were written.
pub(crate) fn to_json_exact(value: &Dynamic) -> Result<serde_json::Value, NotJson> {
    let json = to_json(value)?;
    let not_finite = |leaf: &Dynamic| leaf.as_float().is_ok_and(|float| !float.is_finite());
    match first_leaf(&value.flatten_clone(), "$".to_string(), &not_finite) {
        Some((path, leaf)) => Err(NotJson::NotFinite {
            path,
            value: leaf.to_string(),
        }),
        None => Ok(json),
    }
}

/// The Rhai form of a JSON value: objects become maps, `null` becomes `()`; integers that fit an
/// `i64` stay integers, others become floats.
pub(crate) fn from_json(value: serde_json::Value) -> Result<Dynamic, Box<EvalAltResult>> {
    rhai::serde::to_dynamic(value).map_err(|err| {
        EvalAltResult::ErrorRuntime(
            format!("the JSON value cannot become a script value: {err}").into(),
            Position::NONE,
        )
        .into()
    })
}

/// The name a script author knows a value's type by.
pub(crate) fn friendly_type_name(value: &Dynamic) -> String {
    if value.is_timestamp() {
        return "timestamp".to_string();
    }
    if value.is_fnptr() {
        return "function pointer (Fn)".to_string();
    }
    if value.is_blob() {
        return "blob".to_string();
    }
    let name = value.type_name();
    match name.rsplit_once("::") {
        Some((_, short)) => short.to_string(),
        None => name.to_string(),
    }
}

/// The first value inside arrays and maps (depth first) that is not itself an array or map and
/// is `wanted`, with its path.
fn first_leaf(
    value: &Dynamic,
    path: String,
    wanted: &dyn Fn(&Dynamic) -> bool,
) -> Option<(String, Dynamic)> {
    if value.is_map() {
        let map = value.read_lock::<rhai::Map>()?;
        return map.iter().find_map(|(key, item)| {
            let path = if is_plain_key(key) {
                format!("{path}.{key}")
            } else {
                format!("{path}[{key:?}]")
            };
            first_leaf(item, path, wanted)
        });
    }
    if value.is_array() {
        let array = value.read_lock::<rhai::Array>()?;
        return array
            .iter()
            .enumerate()
            .find_map(|(i, item)| first_leaf(item, format!("{path}[{i}]"), wanted));
    }
    wanted(value).then(|| (path, value.clone()))
}

fn is_json_scalar(value: &Dynamic) -> bool {
    value.is_unit()
        || value.is_bool()
        || value.is_int()
        || value.is_float()
        || value.is_string()
        || value.is_char()
}

fn is_plain_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_round_trip_through_rhai() {
        let value = json!({"a": [1, 2.5, true, null, "x"], "b": {"c": -3}});
        let back = to_json(&from_json(value.clone()).expect("to rhai")).expect("to json");
        assert_eq!(back, value, "a JSON value survives the round trip");
    }

    #[test]
    fn a_value_without_json_form_is_named_with_its_path() {
        let mut inner = rhai::Map::new();
        inner.insert(
            "created".into(),
            Dynamic::from_timestamp(rhai::Instant::now()),
        );
        let mut outer = rhai::Map::new();
        outer.insert("user".into(), Dynamic::from_map(inner));
        let err = to_json(&Dynamic::from_map(outer)).expect_err("a timestamp is not JSON");
        assert_eq!(
            err,
            NotJson::Type {
                path: "$.user.created".to_string(),
                type_name: "timestamp".to_string()
            },
            "the path leads to the value and the type is named"
        );
    }

    #[test]
    fn a_stored_value_refuses_what_would_not_read_back() {
        let mut map = rhai::Map::new();
        map.insert("ratio".into(), Dynamic::from_float(f64::NAN));
        let value = Dynamic::from_array(vec![Dynamic::from_map(map)]);
        assert_eq!(
            to_json(&value).expect("shown once, NaN is null"),
            json!([{"ratio": null}]),
            "a response shows NaN as null"
        );
        let err = to_json_exact(&value).expect_err("stored, NaN is refused");
        assert_eq!(
            err.to_string(),
            "the value at $[0].ratio is NaN, which has no JSON form: a number must be finite",
            "the refusal says where and why"
        );
        let infinite = to_json_exact(&Dynamic::from_float(f64::INFINITY)).expect_err("inf");
        assert!(
            infinite
                .to_string()
                .ends_with("has no JSON form: a number must be finite"),
            "an infinite float is refused too: {infinite}"
        );
        assert_eq!(
            to_json_exact(&Dynamic::from_float(1.5)).expect("a finite float"),
            json!(1.5),
            "finite floats are stored as they are"
        );
    }

    #[test]
    fn a_value_nested_too_deep_has_no_json_form() {
        let mut value = Dynamic::from_array(Vec::new());
        for _ in 0..=MAX_DEPTH {
            value = Dynamic::from_array(vec![value]);
        }
        assert_eq!(to_json(&value), Err(NotJson::TooDeep), "depth is bounded");
    }
}
