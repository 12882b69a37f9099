//! `/admin/scripts/{script_id}`: one script — its source in the editor (a plain textarea that
//! `dashboard.js` turns into CodeMirror 5 with Rhai highlighting and completions of the SDK and
//! the app's modules), saving it with a compile error shown at its line and
//! column, its imports, its routes with the form that adds one, and a test run with a request
//! of the caller's making (the response, the log lines, the duration).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use picloud_core::exec::ResponseBody;
use picloud_core::{
    Capability, DispatchMode, InputError, KeptHeaders, RouteMethod, RoutePath, ScriptId, ScriptKind,
};
use picloud_orchestrator::scripts::TestRun;
use picloud_orchestrator::{NewRouteInput, Platform, ScriptChanges, ServiceError};
use serde::Deserialize;

use super::layout::{csrf_field, duration, log_lines, page, time, Head, LARGEST_PAGE};
use super::session::{from_htmx, Ids, PageResult, Session, SignedForm};
use super::triggers;
use crate::error::ApiError;
use crate::scripts::test_request;

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/admin/scripts/{script_id}", get(show).post(save))
        .route("/admin/scripts/{script_id}/routes", post(add_route))
        .route("/admin/scripts/{script_id}/run", post(run))
}

#[derive(Deserialize)]
struct Shown {
    saved: Option<String>,
}

async fn show(
    State(platform): State<Platform>,
    session: Session,
    Ids(id): Ids<ScriptId>,
    Query(shown): Query<Shown>,
) -> PageResult {
    let notice = shown.saved.is_some().then_some("Saved.");
    render(
        &platform,
        &session,
        id,
        Edit {
            source: None,
            notice,
            refusal: None,
        },
    )
    .await
}

/// What a save brought back to the page: the source as it was sent and why it was refused.
struct Edit<'a> {
    source: Option<&'a str>,
    notice: Option<&'a str>,
    refusal: Option<&'a ApiError>,
}

async fn render(
    platform: &Platform,
    session: &Session,
    id: ScriptId,
    edit: Edit<'_>,
) -> PageResult {
    let principal = session.principal();
    let detail = platform.scripts().get(principal, id).await?;
    let script = &detail.script;
    let app_id = script.app_id;
    let app = platform.apps().get(principal, app_id).await?;
    let routes: Vec<_> = platform
        .routes()
        .list(principal, app_id, &LARGEST_PAGE)
        .await?
        .items
        .into_iter()
        .filter(|route| route.script_id == id)
        .collect();
    let module_names: Vec<String> = platform
        .scripts()
        .list(principal, app_id, &LARGEST_PAGE)
        .await?
        .items
        .into_iter()
        .filter(|other| other.kind == ScriptKind::Module)
        .map(|module| module.name.to_string())
        .collect();
    // For the editor's completions; an attribute value, escaped like any other.
    let modules = serde_json::to_string(&module_names).map_err(ApiError::internal)?;
    let can_write = principal.can(Capability::AppScriptsWrite(app_id));
    let can_run =
        principal.can(Capability::AppScriptsExecute(app_id)) && script.kind == ScriptKind::Endpoint;
    let can_route =
        principal.can(Capability::AppWrite(app_id)) && script.kind == ScriptKind::Endpoint;
    let source = edit.source.unwrap_or(&script.source);
    let trigger_section = match script.kind {
        ScriptKind::Endpoint => Some(triggers::for_script(platform, session, script).await?),
        ScriptKind::Module => None,
    };
    let body = html! {
        main {
            p { a href={ "/admin/apps/" (app_id) } { "← " (app.name) " scripts" } }
            h1 { (script.name) " " span.badge.(script.kind.as_str()) { (script.kind.as_str()) } }
            p.muted {
                "Updated " (time(script.updated_at)) " · "
                a href={ "/admin/apps/" (app_id) "/dead-letters?script_id=" (id) } { "its dead letters" }
            }
            @if let Some(notice) = edit.notice {
                p.notice role="status" { (notice) }
            }
            @if let Some(refusal) = edit.refusal {
                div.source-error role="alert"
                    data-line=[refusal.position().map(|(line, _)| line)]
                    data-column=[refusal.position().map(|(_, column)| column)] {
                    @if let Some((line, column)) = refusal.position() {
                        strong { "Line " (line) ", column " (column) ": " }
                    }
                    (refusal.message())
                }
            }
            form #editor method="post" action={ "/admin/scripts/" (id) } {
                (csrf_field(session))
                label for="source" { "Source" }
                textarea.source #source name="source" spellcheck="false" readonly[!can_write]
                    data-sdk="/api/v1/sdk" data-modules=(modules) { (source) }
                @if can_write {
                    p { button type="submit" { "Save" } }
                }
            }
            @if can_run {
                h2 { "Test run" }
                p.muted { "Runs the saved source with this request, as you: its writes are real." }
                form #run method="post" action={ "/admin/scripts/" (id) "/run" }
                    hx-post={ "/admin/scripts/" (id) "/run" } hx-target="#run-result" {
                    (csrf_field(session))
                    div.inline {
                        div {
                            label for="run-method" { "Method" }
                            select #run-method name="method" {
                                @for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                                    option { (method) }
                                }
                            }
                        }
                        div { label for="run-path" { "Path and query" } input #run-path name="path" value="/" required autocomplete="off"; }
                    }
                    label for="run-headers" { "Headers (one 'name: value' a line)" }
                    textarea #run-headers name="headers" rows="2" spellcheck="false" {}
                    label for="run-body" { "Body" }
                    textarea #run-body name="body" rows="3" spellcheck="false" {}
                    p { button type="submit" { "Run" } }
                }
                div #run-result aria-live="polite" {}
            }
            @if !detail.imports.is_empty() || !detail.imported_by.is_empty() {
                h2 { "Modules" }
                ul {
                    @for link in &detail.imports {
                        li { "imports " a href={ "/admin/scripts/" (link.id) } { (link.name) } }
                    }
                    @for link in &detail.imported_by {
                        li { "imported by " a href={ "/admin/scripts/" (link.id) } { (link.name) } }
                    }
                }
            }
            @if script.kind == ScriptKind::Endpoint {
                h2 { "Routes" }
                @if routes.is_empty() {
                    p.muted { "No route calls this script." }
                }
                ul {
                    @for route in &routes {
                        li { code { (route.method.as_str()) " /" (app.slug) (route.path) } " " span.muted { (route.dispatch_mode.as_str()) } }
                    }
                }
                @if can_route {
                    form.inline method="post" action={ "/admin/scripts/" (id) "/routes" } {
                        (csrf_field(session))
                        div {
                            label for="route-method" { "Method" }
                            select #route-method name="method" {
                                @for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "ANY"] {
                                    option { (method) }
                                }
                            }
                        }
                        div { label for="route-path" { "Path" } input #route-path name="path" required placeholder="/hello/{name}" autocomplete="off"; }
                        div {
                            label for="route-mode" { "Dispatch" }
                            select #route-mode name="dispatch_mode" {
                                option value="sync" { "sync" }
                                option value="async" { "async" }
                            }
                        }
                        button type="submit" { "Add route" }
                    }
                }
            }
            @if let Some(section) = trigger_section {
                (section)
            }
        }
    };
    let title = script.name.to_string();
    let head = Head {
        title: &title,
        scripts: &["codemirror.js", "simple.js", "show-hint.js"],
        styles: &["codemirror.css", "show-hint.css"],
    };
    let status = if edit.refusal.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, page(&head, Some(session), body)).into_response())
}

#[derive(Deserialize)]
struct Save {
    source: String,
}

/// Saves the source; a source that does not compile comes back in the editor with the error at
/// its line and column.
async fn save(
    State(platform): State<Platform>,
    Ids(id): Ids<ScriptId>,
    form: SignedForm<Save>,
) -> PageResult {
    let session = &form.session;
    let changes = ScriptChanges {
        name: None,
        kind: None,
        source: Some(form.fields.source.clone()),
    };
    match platform
        .scripts()
        .update(session.principal(), id, changes)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/admin/scripts/{id}?saved=1")).into_response()),
        Err(error @ ServiceError::InvalidScript { .. }) => {
            let refusal = ApiError::from(error);
            let edit = Edit {
                source: Some(&form.fields.source),
                notice: None,
                refusal: Some(&refusal),
            };
            render(&platform, session, id, edit).await
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize)]
struct NewRoute {
    method: String,
    path: String,
    dispatch_mode: String,
}

async fn add_route(
    State(platform): State<Platform>,
    Ids(id): Ids<ScriptId>,
    form: SignedForm<NewRoute>,
) -> PageResult {
    let fields = &form.fields;
    let input = NewRouteInput {
        method: RouteMethod::parse(&fields.method).map_err(ApiError::from)?,
        path: RoutePath::parse(&fields.path).map_err(ApiError::from)?,
        dispatch_mode: DispatchMode::parse(&fields.dispatch_mode).map_err(ApiError::from)?,
        keep_headers: KeptHeaders::default(),
    };
    let route = platform
        .routes()
        .create(form.session.principal(), id, input)
        .await?;
    Ok(Redirect::to(&format!("/admin/apps/{}/routes", route.app_id)).into_response())
}

#[derive(Deserialize)]
struct TestRunForm {
    method: String,
    path: String,
    headers: String,
    body: String,
}

/// Runs the saved script with the request of the form, as the caller (the API's test run). htmx
/// gets the result to show under the form; a plain form, a page with it.
async fn run(
    State(platform): State<Platform>,
    Ids(id): Ids<ScriptId>,
    request_headers: HeaderMap,
    form: SignedForm<TestRunForm>,
) -> PageResult {
    let fields = form.fields;
    let uri: Uri = fields
        .path
        .parse()
        .ok()
        .filter(|uri: &Uri| uri.path().starts_with('/') && uri.host().is_none())
        .ok_or_else(|| InputError::new("path", "give a path starting with '/', and a query if any"))
        .map_err(ApiError::from)?;
    let Query(query) =
        Query::<BTreeMap<String, String>>::try_from_uri(&uri).map_err(ApiError::from)?;
    let request = test_request(
        Some(&fields.method),
        Some(uri.path().to_owned()),
        (BTreeMap::new(), query),
        header_lines(&fields.headers)?,
        fields.body,
    )?;
    let run = platform
        .scripts()
        .execute(form.session.principal(), id, request)
        .await?;
    let result = run_result(&run);
    if from_htmx(&request_headers) {
        return Ok(result.into_response());
    }
    let body = html! {
        main {
            p { a href={ "/admin/scripts/" (id) } { "← the script" } }
            h1 { "Test run" }
            (result)
        }
    };
    Ok(page(&Head::new("Test run"), Some(&form.session), body).into_response())
}

/// `name: value` lines (blank ones skipped), names in lower case.
fn header_lines(text: &str) -> Result<BTreeMap<String, String>, ApiError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let (name, value) = line.split_once(':').ok_or_else(|| {
                InputError::new(
                    "headers",
                    format!("line {} is not 'name: value'", index + 1),
                )
            })?;
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect()
}

/// What a test run answered, or why it did not, its log lines and how long it took.
fn run_result(run: &TestRun) -> Markup {
    let outcome = &run.outcome;
    html! {
        section.run {
            p {
                @match &outcome.result {
                    Ok(response) => { span.badge.ok { (response.status) } }
                    Err(error) => { span.badge.bad { (error.kind.as_str()) } }
                }
                " · " (duration(outcome.duration_us)) " · "
                a href={ "/admin/executions/" (run.execution_id) } { "execution" }
            }
            @match &outcome.result {
                Ok(response) => {
                    @if !response.headers.is_empty() {
                        ul.headers {
                            @for (name, value) in &response.headers { li { code { (name) ": " (value) } } }
                        }
                    }
                    @match &response.body {
                        ResponseBody::Empty => { p.muted { "No body." } }
                        ResponseBody::Text(text) => { pre.response { (text) } }
                        ResponseBody::Json(json) => { pre.response { (serde_json::to_string_pretty(json).unwrap_or_default()) } }
                    }
                }
                Err(error) => {
                    pre.error {
                        @if let (Some(line), Some(column)) = (error.line, error.column) {
                            "Line " (line) ", column " (column) ": "
                        }
                        (error.message)
                    }
                }
            }
            h3 { "Log" }
            (log_lines(&outcome.logs))
        }
    }
}
