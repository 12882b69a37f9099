//! The response rules: `response(status, body[, headers])` in scripts, and how a script's final
//! value becomes a [`ScriptResponse`].
//!
//! | value | response |
//! |---|---|
//! | `response(status, body, headers)` | that status; body as below; those headers |
//! | a string (or char) | `200`, `text/plain` |
//! | a map, array, number or bool | `200`, JSON |
//! | `()` | `204`, no body |
//! | anything else | `InvalidResponse`, naming the type |
//!
//! A body given to `response` follows the same rules, except that `()` is an empty body with the
//! status asked for. The content type follows from the body unless a `content-type` header is
//! given.

use picloud_core::exec::{ExecError, ExecErrorKind, ResponseBody, ScriptResponse};
use picloud_core::input::is_header_name;
use rhai::{Dynamic, Engine, EvalAltResult, Map, INT};

use crate::convert::{friendly_type_name, to_json};

/// An explicit response, as a script value. Its body is converted when `response(…)` is called,
/// so a body that cannot be sent fails on the script's line, not after it.
#[derive(Debug, Clone)]
pub(crate) struct Response(ScriptResponse);

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Response>("Response");
    engine.register_fn("response", |status: INT, body: Dynamic| {
        make(status, body, Map::new())
    });
    engine.register_fn("response", |status: INT, body: Dynamic, headers: Map| {
        make(status, body, headers)
    });
    engine.register_get("status", |response: &mut Response| {
        INT::from(response.0.status)
    });
}

fn make(status: INT, body: Dynamic, headers: Map) -> Result<Response, Box<EvalAltResult>> {
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| {
            format!("response(): {status} is not an HTTP status: use a number from 100 to 599")
        })?;
    let body = if body.is_unit() {
        ResponseBody::Empty
    } else {
        body_of(&body).map_err(|why| format!("response(): the body cannot be sent: {why}"))?
    };
    let headers = header_list(headers)?;
    Ok(Response(ScriptResponse {
        status,
        headers,
        body,
    }))
}

/// A body value: text for a string or char, JSON for the rest.
fn body_of(value: &Dynamic) -> Result<ResponseBody, String> {
    if value.is_string() || value.is_char() {
        return Ok(ResponseBody::Text(value.to_string()));
    }
    to_json(value)
        .map(ResponseBody::Json)
        .map_err(|err| err.to_string())
}

/// Header names are lower-cased and must be HTTP tokens; a value is a string, a number or a bool,
/// or an array of them for a header sent several times (`set-cookie`).
fn header_list(headers: Map) -> Result<Vec<(String, String)>, Box<EvalAltResult>> {
    let mut list = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if !is_header_name(&name) {
            return Err(format!("response(): '{name}' is not a valid header name").into());
        }
        let values = if value.is_array() {
            value.into_array().unwrap_or_default()
        } else {
            vec![value]
        };
        for value in values {
            let text = header_value(&name, &value)?;
            list.push((name.clone(), text));
        }
    }
    Ok(list)
}

fn header_value(name: &str, value: &Dynamic) -> Result<String, Box<EvalAltResult>> {
    let scalar = value.is_string()
        || value.is_char()
        || value.is_int()
        || value.is_float()
        || value.is_bool();
    if !scalar {
        return Err(format!(
            "response(): the value of header '{name}' is a {}: use a string",
            friendly_type_name(value)
        )
        .into());
    }
    let text = value.to_string();
    if text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "response(): the value of header '{name}' contains a control character (such as a line break)"
        )
        .into());
    }
    Ok(text)
}

/// The response a script's final value stands for.
pub(crate) fn from_value(value: Dynamic) -> Result<ScriptResponse, ExecError> {
    let value = value.flatten();
    if value.is::<Response>() {
        return value
            .try_cast::<Response>()
            .map(|Response(response)| response)
            .ok_or_else(|| invalid("the script's response could not be read".to_string()));
    }
    let ok = |body| ScriptResponse {
        status: 200,
        headers: Vec::new(),
        body,
    };
    if value.is_unit() {
        return Ok(ScriptResponse {
            status: 204,
            headers: Vec::new(),
            body: ResponseBody::Empty,
        });
    }
    if value.is_string() || value.is_char() {
        return Ok(ok(ResponseBody::Text(value.to_string())));
    }
    let json_like =
        value.is_map() || value.is_array() || value.is_int() || value.is_float() || value.is_bool();
    if !json_like {
        return Err(invalid(format!(
            "the script's value is a {}, which cannot be a response: end with a string, a map, an \
             array, a number, a bool, () or response(status, body)",
            friendly_type_name(&value)
        )));
    }
    to_json(&value)
        .map(|json| ok(ResponseBody::Json(json)))
        .map_err(|err| invalid(format!("the script's value cannot be sent as JSON: {err}")))
}

fn invalid(message: String) -> ExecError {
    ExecError {
        kind: ExecErrorKind::InvalidResponse,
        message,
        line: None,
        column: None,
    }
}
