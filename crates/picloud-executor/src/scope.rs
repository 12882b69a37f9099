//! What a script finds in scope: the constant `ctx`.
//!
//! ```text
//! ctx.request       #{ method, path, params, query, headers, body, json }, or () for a trigger
//! ctx.app           #{ id, slug }
//! ctx.execution_id  "…"
//! ctx.attempt       1 for the first run; more when it runs again (after a conflict, or a retry)
//! ctx.event         () for HTTP, else the trigger event in its serde shape:
//!                   #{ source: "kv", kv: #{ collection, key, op, value, prev_value } }
//!                   #{ source: "dead_letter", dead_letter: #{ id, script_id, error, attempts, payload } }
//! ```

use std::collections::BTreeMap;

use picloud_core::exec::{ExecRequest, HttpRequest};
use picloud_core::TriggerEvent;
use rhai::{Dynamic, EvalAltResult, Map, Position, Scope};

use crate::convert::from_json;

/// A fresh scope for one execution. Fails only if the trigger event has no script form.
///
/// `ctx.request.json` is the body parsed when `parse_json` (the script names `json`), else `()`.
pub(crate) fn for_request(
    request: &ExecRequest,
    parse_json: bool,
) -> Result<Scope<'static>, Box<EvalAltResult>> {
    let mut scope = Scope::new();
    scope.push_constant_dynamic("ctx", ctx(request, parse_json)?);
    Ok(scope)
}

fn ctx(exec: &ExecRequest, parse_json: bool) -> Result<Dynamic, Box<EvalAltResult>> {
    let (request, event) = match &exec.event {
        None => (http_request(&exec.request, parse_json), Dynamic::UNIT),
        Some(event) => (Dynamic::UNIT, trigger_event(event)?),
    };

    let mut app = Map::new();
    app.insert("id".into(), exec.app.id.to_string().into());
    app.insert("slug".into(), exec.app.slug.clone().into());

    let mut ctx = Map::new();
    ctx.insert("request".into(), request);
    ctx.insert("app".into(), Dynamic::from_map(app));
    ctx.insert("execution_id".into(), exec.execution_id.to_string().into());
    ctx.insert("attempt".into(), i64::from(exec.attempt).into());
    ctx.insert("event".into(), event);
    Ok(Dynamic::from_map(ctx))
}

fn http_request(http: &HttpRequest, parse_json: bool) -> Dynamic {
    let mut request = Map::new();
    request.insert("method".into(), http.method.clone().into());
    request.insert("path".into(), http.path.clone().into());
    request.insert("params".into(), string_map(&http.params));
    request.insert("query".into(), string_map(&http.query));
    request.insert("headers".into(), string_map(&http.headers));
    request.insert("body".into(), http.body.clone().into());
    let json = if parse_json {
        parsed_body(&http.body)
    } else {
        Dynamic::UNIT
    };
    request.insert("json".into(), json);
    Dynamic::from_map(request)
}

/// The event as a map in exactly its wire (serde) shape, so `ctx.event` and the payload a
/// dead letter keeps read alike.
fn trigger_event(event: &TriggerEvent) -> Result<Dynamic, Box<EvalAltResult>> {
    let json = serde_json::to_value(event).map_err(|err| {
        EvalAltResult::ErrorRuntime(
            format!("the trigger event cannot become a script value: {err}").into(),
            Position::NONE,
        )
    })?;
    from_json(json)
}

fn string_map(values: &BTreeMap<String, String>) -> Dynamic {
    Dynamic::from_map(
        values
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.clone().into()))
            .collect(),
    )
}

/// The body parsed as JSON, or `()` when it is empty or not JSON.
fn parsed_body(body: &str) -> Dynamic {
    if body.trim().is_empty() {
        return Dynamic::UNIT;
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| from_json(value).ok())
        .unwrap_or(Dynamic::UNIT)
}
