//! `/admin`: the apps the caller can see, each with its unresolved dead letters, and the form that
//! creates one.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use picloud_core::{AppName, AppSlug, Capability};
use picloud_orchestrator::{NewApp, Platform};
use serde::Deserialize;

use super::layout::{csrf_field, page, pager, Head, PageQuery};
use super::session::{PageResult, Session, SignedForm};

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/admin", get(list))
        .route("/admin/", get(list))
        .route("/admin/apps", post(create))
}

async fn list(
    State(platform): State<Platform>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let principal = session.principal();
    let apps = platform.apps().list(principal, &query.page()).await?;
    let mut rows = Vec::with_capacity(apps.items.len());
    for app in &apps.items {
        let waiting = platform
            .dead_letters()
            .count_unresolved(principal, app.id)
            .await?;
        rows.push((app, waiting));
    }
    let body = html! {
        main {
            h1 { "Apps" }
            @if rows.is_empty() {
                p.muted { "No apps yet." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "Name" } th { "Slug" } th { "Dead letters" } th { "Updated" } } }
                        tbody {
                            @for (app, waiting) in &rows {
                                tr {
                                    td.name { a href={ "/admin/apps/" (app.id) } { (app.name) } }
                                    td { code { (app.slug) } }
                                    td {
                                        @if *waiting > 0 {
                                            a.badge.bad href={ "/admin/apps/" (app.id) "/dead-letters" }
                                                title="unresolved dead letters" { (waiting) }
                                        } @else {
                                            span.badge { "0" }
                                        }
                                    }
                                    td { (super::layout::time(app.updated_at)) }
                                }
                            }
                        }
                    }
                }
            }
            (pager("/admin?", apps.next_cursor.as_deref()))
            @if principal.can(Capability::AppCreate) {
                h2 { "Create an app" }
                form.inline method="post" action="/admin/apps" {
                    (csrf_field(&session))
                    div { label for="slug" { "Slug" } input #slug name="slug" required pattern="[a-z][a-z0-9-]{0,62}" autocomplete="off"; }
                    div { label for="name" { "Name" } input #name name="name" required autocomplete="off"; }
                    button type="submit" { "Create" }
                }
            }
        }
    };
    Ok(page(&Head::new("Apps"), Some(&session), body).into_response())
}

#[derive(Deserialize)]
struct CreateApp {
    slug: String,
    name: String,
}

async fn create(State(platform): State<Platform>, form: SignedForm<CreateApp>) -> PageResult {
    let new = NewApp {
        slug: AppSlug::parse(&form.fields.slug).map_err(crate::ApiError::from)?,
        name: AppName::parse(&form.fields.name).map_err(crate::ApiError::from)?,
        expose_errors: false,
    };
    let app = platform
        .apps()
        .create(form.session.principal(), &new)
        .await?;
    Ok(Redirect::to(&format!("/admin/apps/{}", app.id)).into_response())
}
