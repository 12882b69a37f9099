//! `url::{encode, decode, parse_query, build_query}`: percent-encoding of URL components and
//! query strings. `parse_query` reads `application/x-www-form-urlencoded` (`+` is a space);
//! `build_query` writes a space as `%20`, which every reader understands.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rhai::{Dynamic, Map, Module};

use super::{add, error, SdkResult};
use crate::convert::friendly_type_name;

/// Everything but RFC 3986's unreserved characters is encoded, so the result is safe in a path
/// segment as well as in a query.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn module() -> Module {
    let mut module = Module::new();
    add(
        &mut module,
        "encode",
        "The text percent-encoded for a URL component",
        |text: &str| -> SdkResult<String> { Ok(utf8_percent_encode(text, COMPONENT).to_string()) },
    );
    add(
        &mut module,
        "decode",
        "The text that a percent-encoded URL component encodes",
        |text: &str| -> SdkResult<String> {
            percent_decode_str(text)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .map_err(|_| {
                error("url::decode: the decoded bytes are not UTF-8 text, and a string can only hold text")
            })
        },
    );
    add(
        &mut module,
        "parse_query",
        "A query string as a map (+ is a space; a repeated name keeps its last value)",
        |text: &str| -> SdkResult<Map> {
            let text = text.strip_prefix('?').unwrap_or(text);
            Ok(::url::form_urlencoded::parse(text.as_bytes())
                .map(|(key, value)| (key.as_ref().into(), Dynamic::from(value.into_owned())))
                .collect())
        },
    );
    add(
        &mut module,
        "build_query",
        "A map as a query string",
        |map: Map| -> SdkResult<String> {
            let mut query = String::new();
            for (key, value) in &map {
                let values = if value.is_array() {
                    value.clone().into_array().unwrap_or_default()
                } else {
                    vec![value.clone()]
                };
                for value in values {
                    if value.is_unit() {
                        continue;
                    }
                    let scalar = value.is_string()
                        || value.is_char()
                        || value.is_int()
                        || value.is_float()
                        || value.is_bool();
                    if !scalar {
                        return Err(error(format!(
                        "url::build_query: the value of '{key}' is a {}: use a string, a number, \
                         a bool, or an array of them",
                        friendly_type_name(&value)
                    )));
                    }
                    if !query.is_empty() {
                        query.push('&');
                    }
                    query.extend(utf8_percent_encode(key, COMPONENT));
                    query.push('=');
                    query.extend(utf8_percent_encode(&value.to_string(), COMPONENT));
                }
            }
            Ok(query)
        },
    );
    module
}
