//! What a script finds in scope: the constant `ctx`.
//!
//! ```text
//! ctx.request       #{ method, path, params, query, headers, body, json }
//! ctx.app           #{ id, slug }
//! ctx.execution_id  "…"
//! ctx.event         ()   (the trigger event, for trigger executions)
//! ```

use std::collections::BTreeMap;

use picloud_core::exec::ExecRequest;
use rhai::{Dynamic, Map, Scope};

use crate::convert::from_json;

/// A fresh scope for one execution.
pub(crate) fn for_request(request: &ExecRequest) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant_dynamic("ctx", ctx(request));
    scope
}

fn ctx(exec: &ExecRequest) -> Dynamic {
    let http = &exec.request;
    let mut request = Map::new();
    request.insert("method".into(), http.method.clone().into());
    request.insert("path".into(), http.path.clone().into());
    request.insert("params".into(), string_map(&http.params));
    request.insert("query".into(), string_map(&http.query));
    request.insert("headers".into(), string_map(&http.headers));
    request.insert("body".into(), http.body.clone().into());
    request.insert("json".into(), parsed_body(&http.body));

    let mut app = Map::new();
    app.insert("id".into(), exec.app.id.to_string().into());
    app.insert("slug".into(), exec.app.slug.clone().into());

    let mut ctx = Map::new();
    ctx.insert("request".into(), Dynamic::from_map(request));
    ctx.insert("app".into(), Dynamic::from_map(app));
    ctx.insert("execution_id".into(), exec.execution_id.to_string().into());
    ctx.insert("event".into(), Dynamic::UNIT);
    Dynamic::from_map(ctx)
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
