//! An app's triggers: the tab that lists them (and deletes one), and the section of an endpoint
//! script's page that lists its own and adds one (kv, docs or dead_letter).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use picloud_core::{AppId, Capability, Script, ScriptId, Trigger, TriggerDetail, TriggerId};
use picloud_orchestrator::Platform;
use serde::Deserialize;

use super::app::{app_page, Tab};
use super::layout::{csrf_field, pager, time, PageQuery, LARGEST_PAGE};
use super::session::{AppOf, Ids, NoFields, PageError, PageResult, Session, SignedForm};
use crate::error::{ApiError, ErrorCode};
use crate::triggers::{docs_input, kv_input};

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/admin/apps/{app_id}/triggers", get(tab))
        .route(
            "/admin/apps/{app_id}/triggers/{trigger_id}/delete",
            post(delete),
        )
        .route("/admin/scripts/{script_id}/triggers", post(create))
}

/// What a trigger reacts to, in a few words.
fn describe(detail: &TriggerDetail) -> Markup {
    html! {
        @match detail {
            TriggerDetail::Kv { collection, key_prefix, ops } => {
                span.badge { "kv" } " " code { (collection) }
                @if let Some(prefix) = key_prefix { " keys " code { (prefix) "…" } }
                " on " (ops.iter().map(|op| op.as_str()).collect::<Vec<_>>().join(", "))
            }
            TriggerDetail::Docs { collection, ops, fields } => {
                span.badge { "docs" } " " code { (collection) }
                " on " (ops.iter().map(|op| op.as_str()).collect::<Vec<_>>().join(", "))
                @if let Some(fields) = fields {
                    " touching " (fields.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
                }
            }
            TriggerDetail::DeadLetter => { span.badge { "dead_letter" } " any job of the app that fails for good" }
        }
    }
}

async fn tab(
    State(platform): State<Platform>,
    AppOf { session, app }: AppOf,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let principal = session.principal();
    let app_id = app.id;
    let triggers = platform
        .triggers()
        .list(principal, app_id, &query.page())
        .await?;
    let can_manage = principal.can(Capability::AppManageTriggers(app_id));
    let content = html! {
        p.muted { "Triggers are added on an endpoint script's page." }
        @if triggers.items.is_empty() {
            p.muted { "No triggers yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "On" } th { "Runs" } th { "Created" } th {} } }
                    tbody {
                        @for trigger in &triggers.items {
                            tr {
                                td.name { (describe(&trigger.detail)) }
                                td { a href={ "/admin/scripts/" (trigger.script_id) } { "script" } }
                                td { (time(trigger.created_at)) }
                                td {
                                    @if can_manage {
                                        form.actions method="post"
                                            action={ "/admin/apps/" (app_id) "/triggers/" (trigger.id) "/delete" } {
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
        (pager(&format!("/admin/apps/{app_id}/triggers?"), triggers.next_cursor.as_deref()))
    };
    app_page(&platform, &session, &app, Tab::Triggers, content).await
}

/// The section of `script`'s page: the triggers that run it, and (for those who may) the form
/// that adds one.
pub async fn for_script(
    platform: &Platform,
    session: &Session,
    script: &Script,
) -> Result<Markup, PageError> {
    let principal = session.principal();
    let triggers: Vec<Trigger> = platform
        .triggers()
        .list(principal, script.app_id, &LARGEST_PAGE)
        .await?
        .items
        .into_iter()
        .filter(|trigger| trigger.script_id == script.id)
        .collect();
    let can_manage = principal.can(Capability::AppManageTriggers(script.app_id));
    Ok(html! {
        h2 { "Triggers" }
        @if triggers.is_empty() {
            p.muted { "No trigger runs this script." }
        }
        ul {
            @for trigger in &triggers { li { (describe(&trigger.detail)) } }
        }
        @if can_manage {
            form #trigger method="post" action={ "/admin/scripts/" (script.id) "/triggers" } {
                (csrf_field(session))
                div.inline {
                    div {
                        label for="trigger-source" { "On" }
                        select #trigger-source name="source" {
                            option value="kv" { "kv" }
                            option value="docs" { "docs" }
                            option value="dead_letter" { "dead_letter" }
                        }
                    }
                    div { label for="trigger-collection" { "Collection (kv, docs)" } input #trigger-collection name="collection" autocomplete="off"; }
                    div { label for="trigger-prefix" { "Key prefix (kv)" } input #trigger-prefix name="key_prefix" autocomplete="off"; }
                }
                div.inline {
                    div { label for="trigger-ops" { "Ops, comma-separated (empty: all)" } input #trigger-ops name="ops" autocomplete="off" placeholder="set, delete"; }
                    div { label for="trigger-fields" { "Fields (docs; empty: any change)" } input #trigger-fields name="fields" autocomplete="off" placeholder="status, total"; }
                    button type="submit" { "Add trigger" }
                }
            }
        }
    })
}

#[derive(Deserialize)]
struct NewTrigger {
    source: String,
    collection: String,
    key_prefix: String,
    ops: String,
    fields: String,
}

/// A comma-separated list; `None` when empty.
fn list(text: &str) -> Option<Vec<String>> {
    let items: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect();
    (!items.is_empty()).then_some(items)
}

async fn create(
    State(platform): State<Platform>,
    Ids(script_id): Ids<ScriptId>,
    form: SignedForm<NewTrigger>,
) -> PageResult {
    let principal = form.session.principal();
    let script = platform.scripts().get(principal, script_id).await?.script;
    let app_id = script.app_id;
    let fields = form.fields;
    let triggers = platform.triggers();
    match fields.source.as_str() {
        "kv" => {
            let prefix = Some(fields.key_prefix).filter(|p| !p.is_empty());
            let input = kv_input(script_id, fields.collection, prefix, list(&fields.ops));
            triggers.create_kv(principal, app_id, input).await?
        }
        "docs" => {
            let input = docs_input(
                script_id,
                fields.collection,
                list(&fields.ops),
                list(&fields.fields),
            );
            triggers.create_docs(principal, app_id, input).await?
        }
        "dead_letter" => {
            triggers
                .create_dead_letter(principal, app_id, script_id)
                .await?
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidInput,
                "a trigger is on 'kv', 'docs' or 'dead_letter'",
            )
            .into())
        }
    };
    Ok(Redirect::to(&format!("/admin/scripts/{script_id}")).into_response())
}

async fn delete(
    State(platform): State<Platform>,
    Ids((app_id, id)): Ids<(AppId, TriggerId)>,
    form: SignedForm<NoFields>,
) -> PageResult {
    platform
        .triggers()
        .delete(form.session.principal(), id)
        .await?;
    Ok(Redirect::to(&Tab::Triggers.path(app_id)).into_response())
}
