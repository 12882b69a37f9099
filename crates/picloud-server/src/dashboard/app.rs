//! `/admin/apps/{app_id}/…`: one app, in tabs — its scripts (and the form that creates one), its
//! routes, its dead letters (replay, resolve) and its executions (and those abandoned by their
//! callers) — and one execution's record with its log lines.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use picloud_core::records::ExecutionFilter;
use picloud_core::{
    App, AppId, Capability, DeadLetter, DeadLetterId, ExecutionId, RouteId, ScriptKind,
};
use picloud_orchestrator::{DeadLetterFilter, DeadLetterStatus, NewScriptInput, Platform};
use serde::Deserialize;

use super::layout::{
    csrf_field, duration, log_lines, page, pager, time, Head, PageQuery, PAGE_SIZE,
};
use super::session::{from_htmx, AppOf, Ids, NoFields, PageResult, Session, SignedForm};
use crate::error::ApiError;
use crate::extract::script_id_field;

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/admin/apps/{app_id}", get(scripts))
        .route("/admin/apps/{app_id}/scripts", post(create_script))
        .route("/admin/apps/{app_id}/routes", get(routes))
        .route(
            "/admin/apps/{app_id}/routes/{route_id}/delete",
            post(delete_route),
        )
        .route("/admin/apps/{app_id}/dead-letters", get(dead_letters))
        .route("/admin/apps/{app_id}/dead-letters/replay", post(replay_all))
        .route("/admin/apps/{app_id}/executions", get(executions))
        .route(
            "/admin/apps/{app_id}/executions/abandoned",
            get(abandoned_executions),
        )
        .route("/admin/executions/{execution_id}", get(execution))
        .route("/admin/dead-letters/{dead_letter_id}/replay", post(replay))
        .route(
            "/admin/dead-letters/{dead_letter_id}/resolve",
            post(resolve),
        )
}

/// The tabs of an app's page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Scripts,
    Routes,
    Triggers,
    DeadLetters,
    Executions,
    Data,
    Members,
}

impl Tab {
    const ALL: [Self; 7] = [
        Self::Scripts,
        Self::Routes,
        Self::Triggers,
        Self::DeadLetters,
        Self::Executions,
        Self::Data,
        Self::Members,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Scripts => "Scripts",
            Self::Routes => "Routes",
            Self::Triggers => "Triggers",
            Self::DeadLetters => "Dead letters",
            Self::Executions => "Executions",
            Self::Data => "Data",
            Self::Members => "Members",
        }
    }

    pub fn path(self, app: AppId) -> String {
        match self {
            Self::Scripts => format!("/admin/apps/{app}"),
            Self::Routes => format!("/admin/apps/{app}/routes"),
            Self::Triggers => format!("/admin/apps/{app}/triggers"),
            Self::DeadLetters => format!("/admin/apps/{app}/dead-letters"),
            Self::Executions => format!("/admin/apps/{app}/executions"),
            Self::Data => format!("/admin/apps/{app}/data"),
            Self::Members => format!("/admin/apps/{app}/members"),
        }
    }
}

/// An app's page: its name, the tabs (the dead letters' with its badge) and `content`.
pub async fn app_page(
    platform: &Platform,
    session: &Session,
    app: &App,
    current: Tab,
    content: Markup,
) -> PageResult {
    let waiting = platform
        .dead_letters()
        .count_unresolved(session.principal(), app.id)
        .await?;
    let body = html! {
        main {
            h1 { (app.name) " " span.muted { "/" (app.slug) } }
            nav.tabs aria-label="app" {
                @for tab in Tab::ALL {
                    a href=(tab.path(app.id)) aria-current=[(tab == current).then_some("page")] {
                        (tab.label())
                        @if tab == Tab::DeadLetters && waiting > 0 {
                            " " span.badge.bad title="unresolved" { (waiting) }
                        }
                    }
                }
            }
            (content)
        }
    };
    let title = format!("{} · {}", current.label(), app.name);
    Ok(page(&Head::new(&title), Some(session), body).into_response())
}

fn kind_badge(kind: ScriptKind) -> Markup {
    html! { span.badge.(kind.as_str()) { (kind.as_str()) } }
}

async fn scripts(
    State(platform): State<Platform>,
    AppOf { session, app }: AppOf,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let principal = session.principal();
    let app_id = app.id;
    let scripts = platform
        .scripts()
        .list(principal, app_id, &query.page())
        .await?;
    let content = html! {
        @if principal.can(Capability::AppScriptsWrite(app_id)) {
            form.inline method="post" action={ "/admin/apps/" (app_id) "/scripts" } {
                (csrf_field(&session))
                div { label for="script-name" { "New script" } input #script-name name="name" required autocomplete="off" placeholder="name"; }
                div {
                    label for="script-kind" { "Kind" }
                    select #script-kind name="kind" {
                        option value="endpoint" { "endpoint" }
                        option value="module" { "module" }
                    }
                }
                button type="submit" { "Create" }
            }
        }
        @if scripts.items.is_empty() {
            p.muted { "No scripts yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "Name" } th { "Kind" } th { "Updated" } } }
                    tbody {
                        @for script in &scripts.items {
                            tr {
                                td.name { a href={ "/admin/scripts/" (script.id) } { (script.name) } }
                                td { (kind_badge(script.kind)) }
                                td { (time(script.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
        (pager(&format!("/admin/apps/{app_id}?"), scripts.next_cursor.as_deref()))
    };
    app_page(&platform, &session, &app, Tab::Scripts, content).await
}

#[derive(Deserialize)]
struct NewScript {
    name: String,
    kind: String,
}

/// A new script starts from a source that compiles and shows the shape of its kind.
fn starter_source(kind: ScriptKind) -> &'static str {
    match kind {
        ScriptKind::Endpoint => "// ctx.request holds the request; the value is the response.\nlog::info(\"hello\");\n\"hello\"\n",
        ScriptKind::Module => "// Other scripts of this app: import \"<this name>\" as m; m::greet(\"you\")\nfn greet(name) {\n    `hello, ${name}`\n}\n",
    }
}

async fn create_script(
    State(platform): State<Platform>,
    Ids(app_id): Ids<AppId>,
    form: SignedForm<NewScript>,
) -> PageResult {
    let kind = ScriptKind::parse(&form.fields.kind).map_err(ApiError::from)?;
    let input = NewScriptInput {
        name: form.fields.name,
        kind,
        source: starter_source(kind).to_owned(),
    };
    let script = platform
        .scripts()
        .create(form.session.principal(), app_id, input)
        .await?;
    Ok(Redirect::to(&format!("/admin/scripts/{}", script.id)).into_response())
}

async fn routes(
    State(platform): State<Platform>,
    AppOf { session, app }: AppOf,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let principal = session.principal();
    let app_id = app.id;
    let routes = platform
        .routes()
        .list(principal, app_id, &query.page())
        .await?;
    let can_write = principal.can(Capability::AppWrite(app_id));
    let content = html! {
        p.muted { "Routes are added on an endpoint script's page." }
        @if routes.items.is_empty() {
            p.muted { "No routes yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "Method" } th { "Path" } th { "Dispatch" } th { "Script" } th {} } }
                    tbody {
                        @for route in &routes.items {
                            tr {
                                td { code { (route.method.as_str()) } }
                                td.name { code { "/" (app.slug) (route.path) } }
                                td { (route.dispatch_mode.as_str()) }
                                td { a href={ "/admin/scripts/" (route.script_id) } { "script" } }
                                td {
                                    @if can_write {
                                        form.actions method="post"
                                            action={ "/admin/apps/" (app_id) "/routes/" (route.id) "/delete" } {
                                            (csrf_field(&session))
                                            button.secondary type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (pager(&format!("/admin/apps/{app_id}/routes?"), routes.next_cursor.as_deref()))
    };
    app_page(&platform, &session, &app, Tab::Routes, content).await
}

async fn delete_route(
    State(platform): State<Platform>,
    Ids((app_id, id)): Ids<(AppId, RouteId)>,
    form: SignedForm<NoFields>,
) -> PageResult {
    platform
        .routes()
        .delete(form.session.principal(), id)
        .await?;
    Ok(Redirect::to(&Tab::Routes.path(app_id)).into_response())
}

/// `?status=unresolved|resolved|all&cursor=…`
#[derive(Deserialize)]
struct DeadLetterQuery {
    status: Option<String>,
    script_id: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn dead_letters(
    State(platform): State<Platform>,
    AppOf { session, app }: AppOf,
    Query(query): Query<DeadLetterQuery>,
) -> PageResult {
    let principal = session.principal();
    let app_id = app.id;
    let (status, shown) = match query.status.as_deref() {
        Some("resolved") => (DeadLetterStatus::Resolved, "resolved"),
        Some("all") => (DeadLetterStatus::All, "all"),
        _ => (DeadLetterStatus::Unresolved, "unresolved"),
    };
    let script_id = query
        .script_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .map(script_id_field)
        .transpose()?;
    let filter = DeadLetterFilter { status, script_id };
    let letters = platform
        .dead_letters()
        .list(principal, app_id, &filter, &query.page.page())
        .await?;
    let can_manage = principal.can(Capability::AppDeadLetterManage(app_id));
    let of_script = script_id
        .map(|id| format!("&script_id={id}"))
        .unwrap_or_default();
    let content = html! {
        nav.filters aria-label="status" {
            @for choice in ["unresolved", "resolved", "all"] {
                a href={ "/admin/apps/" (app_id) "/dead-letters?status=" (choice) (of_script) }
                    aria-current=[(choice == shown).then_some("page")] { (choice) } " "
            }
            @if let Some(script_id) = script_id {
                " · of " a href={ "/admin/scripts/" (script_id) } { "one script" }
                " (" a href={ "/admin/apps/" (app_id) "/dead-letters?status=" (shown) } { "all scripts" } ")"
            }
        }
        @if letters.items.is_empty() {
            p.muted { "No " (shown) " dead letters." }
        }
        @if can_manage && status == DeadLetterStatus::Unresolved && !letters.items.is_empty() {
            form.actions method="post" action={ "/admin/apps/" (app_id) "/dead-letters/replay" } {
                (csrf_field(&session))
                @if let Some(script_id) = script_id {
                    input type="hidden" name="script_id" value=(script_id);
                }
                button type="submit" { "Replay all " (letters.items.len()) " shown" }
            }
        }
        @for letter in &letters.items {
            (dead_letter_item(&session, letter, can_manage))
        }
        (pager(&format!("/admin/apps/{app_id}/dead-letters?status={shown}{of_script}&"), letters.next_cursor.as_deref()))
    };
    app_page(&platform, &session, &app, Tab::DeadLetters, content).await
}

#[derive(Deserialize)]
struct BulkReplay {
    script_id: Option<String>,
}

/// Replays the unresolved dead letters the tab shows: the first page of them, of one script
/// when the tab was filtered so.
async fn replay_all(
    State(platform): State<Platform>,
    Ids(app_id): Ids<AppId>,
    form: SignedForm<BulkReplay>,
) -> PageResult {
    let script_id = form
        .fields
        .script_id
        .as_deref()
        .map(script_id_field)
        .transpose()?;
    platform
        .dead_letters()
        .replay_unresolved(form.session.principal(), app_id, script_id, PAGE_SIZE)
        .await?;
    let back = match script_id {
        Some(id) => format!("{}?script_id={id}", Tab::DeadLetters.path(app_id)),
        None => Tab::DeadLetters.path(app_id),
    };
    Ok(Redirect::to(&back).into_response())
}

/// One dead letter: what failed, its payload on demand, and (for those who may) its actions.
/// htmx swaps this element with the answer of an action.
fn dead_letter_item(session: &Session, letter: &DeadLetter, can_manage: bool) -> Markup {
    let payload = serde_json::to_string_pretty(&letter.payload).unwrap_or_default();
    html! {
        details.dead-letter id={ "dl-" (letter.id) } {
            summary {
                (time(letter.created_at)) " · " (letter.source) " · "
                span.error { (letter.error) }
                " · " (letter.attempts) " attempts"
                @if let Some(resolution) = letter.resolution {
                    " · " span.badge { (resolution.as_str()) }
                }
            }
            p {
                a href={ "/admin/scripts/" (letter.script_id) } { "script" } " · "
                a href={ "/admin/executions/" (letter.execution_id) } { "execution " (letter.execution_id) }
            }
            pre { (payload) }
            @if can_manage && letter.resolved_at.is_none() {
                @for (action, label) in [("replay", "Replay"), ("resolve", "Resolve")] {
                    form.actions method="post" action={ "/admin/dead-letters/" (letter.id) "/" (action) }
                        hx-post={ "/admin/dead-letters/" (letter.id) "/" (action) }
                        hx-target={ "#dl-" (letter.id) } hx-swap="outerHTML" {
                        (csrf_field(session))
                        button.secondary type="submit" { (label) }
                    }
                }
            }
        }
    }
}

async fn replay(
    State(platform): State<Platform>,
    Ids(id): Ids<DeadLetterId>,
    request_headers: HeaderMap,
    form: SignedForm<NoFields>,
) -> PageResult {
    let replayed = platform
        .dead_letters()
        .replay(form.session.principal(), id)
        .await?;
    Ok(after_action(
        &form.session,
        &replayed.dead_letter,
        &request_headers,
    ))
}

async fn resolve(
    State(platform): State<Platform>,
    Ids(id): Ids<DeadLetterId>,
    request_headers: HeaderMap,
    form: SignedForm<NoFields>,
) -> PageResult {
    let letter = platform
        .dead_letters()
        .resolve(form.session.principal(), id)
        .await?;
    Ok(after_action(&form.session, &letter, &request_headers))
}

/// htmx gets the dead letter as it is now, to swap in; a plain form goes back to the list.
fn after_action(
    session: &Session,
    letter: &DeadLetter,
    request_headers: &HeaderMap,
) -> axum::response::Response {
    if from_htmx(request_headers) {
        dead_letter_item(session, letter, true).into_response()
    } else {
        Redirect::to(&format!("/admin/apps/{}/dead-letters", letter.app_id)).into_response()
    }
}

async fn executions(
    State(platform): State<Platform>,
    AppOf { session, app }: AppOf,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let principal = session.principal();
    let app_id = app.id;
    let records = platform
        .executions()
        .list(
            principal,
            app_id,
            &ExecutionFilter::default(),
            &query.page(),
        )
        .await?;
    let content = html! {
        p {
            a href={ "/admin/apps/" (app_id) "/executions/abandoned" } { "Abandoned executions" }
            span.muted { ": sync requests whose callers had gone before the answer" }
        }
        section #tail hidden data-stream={ "/api/v1/admin/apps/" (app_id) "/logs/stream" } {
            button.secondary type="button" { "Follow live" }
            ol.logs aria-live="polite" {}
        }
        @if records.items.is_empty() {
            p.muted { "No executions yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "Started" } th { "What" } th { "Outcome" } th { "Status" } th { "Duration" } } }
                    tbody {
                        @for record in &records.items {
                            tr {
                                td { a href={ "/admin/executions/" (record.execution_id) } { (time(record.started_at)) } }
                                td.name { (record.summary) " " span.muted { (record.source.as_str()) } }
                                td { (outcome_badge(&record.outcome)) }
                                td { @if let Some(status) = record.status { (status) } }
                                td { (duration(record.duration_us)) }
                            }
                        }
                    }
                }
            }
        }
        (pager(&format!("/admin/apps/{app_id}/executions?"), records.next_cursor.as_deref()))
    };
    app_page(&platform, &session, &app, Tab::Executions, content).await
}

/// The app's sync executions whose callers had gone (stopped waiting, disconnected, or their node
/// died), newest first.
async fn abandoned_executions(
    State(platform): State<Platform>,
    AppOf { session, app }: AppOf,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let app_id = app.id;
    let abandoned = platform
        .executions()
        .abandoned(session.principal(), app_id, &query.page())
        .await?;
    let content = html! {
        h2 { "Abandoned executions" }
        p.muted {
            "Sync requests whose callers had gone before the answer: they stopped waiting, \
             disconnected, or the node running them stopped."
        }
        @if abandoned.items.is_empty() {
            p.muted { "No abandoned executions." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "When" } th { "Script" } th { "Why" } th { "Execution" } } }
                    tbody {
                        @for item in &abandoned.items {
                            tr {
                                td { (time(item.created_at)) }
                                td { a href={ "/admin/scripts/" (item.script_id) } { code { (item.script_id) } } }
                                td { (item.reason) }
                                td { a href={ "/admin/executions/" (item.execution_id) } { code { (item.execution_id) } } }
                            }
                        }
                    }
                }
            }
        }
        (pager(&format!("/admin/apps/{app_id}/executions/abandoned?"), abandoned.next_cursor.as_deref()))
    };
    app_page(&platform, &session, &app, Tab::Executions, content).await
}

fn outcome_badge(outcome: &str) -> Markup {
    html! { span.badge.(if outcome == "ok" { "ok" } else { "bad" }) { (outcome) } }
}

async fn execution(
    State(platform): State<Platform>,
    session: Session,
    Ids(id): Ids<ExecutionId>,
) -> PageResult {
    let principal = session.principal();
    let records = platform.executions().get(principal, id).await?;
    let app_id = records.first().map(|r| r.app_id);
    let app = match app_id {
        Some(app_id) => Some(platform.apps().get(principal, app_id).await?),
        None => None,
    };
    let body = html! {
        main {
            @if let Some(app) = &app {
                p { a href=(Tab::Executions.path(app.id)) { "← " (app.name) " executions" } }
            }
            h1 { "Execution " code { (id) } }
            @for record in &records {
                section.attempt {
                    h2 { "Attempt " (record.attempt) " " (outcome_badge(&record.outcome)) }
                    p {
                        (record.summary) " · " (record.source.as_str()) " · " (time(record.started_at))
                        " · " (duration(record.duration_us))
                        @if let Some(status) = record.status { " · status " (status) }
                        " · " a href={ "/admin/scripts/" (record.script_id) } { "script" }
                    }
                    @if let Some(error) = &record.error {
                        pre.error { (error.message) }
                    }
                    h3 { "Log" }
                    (log_lines(&record.logs))
                }
            }
        }
    };
    Ok(page(&Head::new("Execution"), Some(&session), body).into_response())
}
