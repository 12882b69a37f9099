//! `/admin/api-keys`: the caller's API keys (the secret shown once, in the answer that created
//! it), and `/admin/users`: the instance's users, for the instance admin.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use picloud_core::{ApiKeyId, AppId, Scope, UserId, Username};
use picloud_orchestrator::{Platform, UserChanges};
use serde::Deserialize;

use super::layout::{csrf_field, page, pager, time, Head, PageQuery, LARGEST_PAGE};
use super::session::{Ids, NoFields, PageResult, Session, SignedForm};
use crate::api_keys;
use crate::error::ApiError;

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/admin/api-keys", get(keys).post(create_key))
        .route("/admin/api-keys/{key_id}/revoke", post(revoke_key))
        .route("/admin/users", get(users).post(create_user))
        .route("/admin/users/{user_id}/disable", post(disable_user))
        .route("/admin/users/{user_id}/enable", post(enable_user))
}

async fn keys(State(platform): State<Platform>, session: Session) -> PageResult {
    keys_page(&platform, &session, None).await
}

/// The keys page; `created` is the key just made, with its secret: the one answer that shows it.
async fn keys_page(
    platform: &Platform,
    session: &Session,
    created: Option<(&str, &str)>,
) -> PageResult {
    let principal = session.principal();
    let keys = platform.api_keys().list(principal).await?;
    let apps = platform.apps().list(principal, &LARGEST_PAGE).await?.items;
    let app_names: BTreeMap<AppId, &str> =
        apps.iter().map(|app| (app.id, app.name.as_str())).collect();
    let body = html! {
        main {
            h1 { "API keys" }
            @if let Some((name, secret)) = created {
                div.secret role="alert" {
                    p { "The key " strong { (name) } " — copy it now; it is not shown again:" }
                    pre { code { (secret) } }
                }
            }
            @if keys.is_empty() {
                p.muted { "No API keys." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "Name" } th { "Key" } th { "Scopes" } th { "App" } th { "Last used" } th {} } }
                        tbody {
                            @for key in &keys {
                                tr {
                                    td.name { (key.name) }
                                    td { code { "pk_" (key.prefix) "_…" } }
                                    td { @for scope in &key.scopes { span.badge { (scope.as_str()) } " " } }
                                    td {
                                        @match key.app_id {
                                            Some(app) => (app_names.get(&app).copied().unwrap_or("(an app)")),
                                            None => span.muted { "any" },
                                        }
                                    }
                                    td { @match key.last_used_at { Some(at) => (time(at)), None => span.muted { "never" } } }
                                    td {
                                        @if key.revoked {
                                            span.badge.bad { "revoked" }
                                        } @else {
                                            form.actions method="post" action={ "/admin/api-keys/" (key.id) "/revoke" } {
                                                (csrf_field(session))
                                                button.secondary type="submit" { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Create a key" }
            form method="post" action="/admin/api-keys" {
                (csrf_field(session))
                label for="key-name" { "Name" }
                input #key-name name="name" required autocomplete="off";
                fieldset {
                    legend { "Scopes" }
                    @for scope in Scope::ALL {
                        label.check {
                            input type="checkbox" name={ "scope:" (scope.as_str()) };
                            " " (scope.as_str())
                        }
                    }
                }
                label for="key-app" { "Only for the app" }
                select #key-app name="app_id" {
                    option value="" { "any app I may use" }
                    @for app in &apps {
                        option value=(app.id) { (app.name) }
                    }
                }
                p { button type="submit" { "Create" } }
            }
        }
    };
    let status = if created.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, page(&Head::new("API keys"), Some(session), body)).into_response())
}

/// The create form's fields: `name`, `app_id`, and one `scope:<scope>` per checked scope (a
/// form repeats a name for a multiple choice, which a flat form cannot hold).
async fn create_key(
    State(platform): State<Platform>,
    form: SignedForm<BTreeMap<String, String>>,
) -> PageResult {
    let fields = &form.fields;
    let input = api_keys::key_input(
        fields.get("name").map_or("", String::as_str),
        fields
            .keys()
            .filter_map(|field| field.strip_prefix("scope:")),
        fields
            .get("app_id")
            .map(String::as_str)
            .filter(|id| !id.is_empty()),
        None,
    )?;
    let created = platform
        .api_keys()
        .create(form.session.principal(), input)
        .await?;
    keys_page(
        &platform,
        &form.session,
        Some((&created.key.name, &created.secret)),
    )
    .await
}

async fn revoke_key(
    State(platform): State<Platform>,
    Ids(id): Ids<ApiKeyId>,
    form: SignedForm<NoFields>,
) -> PageResult {
    platform
        .api_keys()
        .revoke(form.session.principal(), id)
        .await?;
    Ok(Redirect::to("/admin/api-keys").into_response())
}

async fn users(
    State(platform): State<Platform>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let principal = session.principal();
    let users = platform.users().list(principal, &query.page()).await?;
    let body = html! {
        main {
            h1 { "Users" }
            div.scroll {
                table {
                    thead { tr { th { "Username" } th { "Role" } th { "Created" } th {} } }
                    tbody {
                        @for user in &users.items {
                            tr {
                                td.name { (user.username) }
                                td {
                                    @if user.is_instance_admin { span.badge { "instance admin" } }
                                    @if user.disabled { " " span.badge.bad { "disabled" } }
                                }
                                td { (time(user.created_at)) }
                                td {
                                    @if user.id != principal.user_id {
                                        (toggle(&session, user.id, user.disabled))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (pager("/admin/users?", users.next_cursor.as_deref()))
            h2 { "Create a user" }
            form method="post" action="/admin/users" {
                (csrf_field(&session))
                div.inline {
                    div { label for="user-name" { "Username" } input #user-name name="username" required autocomplete="off"; }
                    div { label for="user-password" { "Password" } input #user-password type="password" name="password" required autocomplete="new-password"; }
                }
                label.check { input type="checkbox" name="is_instance_admin"; " instance admin" }
                p { button type="submit" { "Create" } }
            }
        }
    };
    Ok(page(&Head::new("Users"), Some(&session), body).into_response())
}

/// The button that disables a user (ending its sessions), or enables it again.
fn toggle(session: &Session, user: UserId, disabled: bool) -> Markup {
    let (action, label) = if disabled {
        ("enable", "Enable")
    } else {
        ("disable", "Disable")
    };
    html! {
        form.actions method="post" action={ "/admin/users/" (user) "/" (action) } {
            (csrf_field(session))
            button.secondary type="submit" { (label) }
        }
    }
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
    is_instance_admin: Option<String>,
}

async fn create_user(State(platform): State<Platform>, form: SignedForm<NewUser>) -> PageResult {
    let fields = &form.fields;
    let username = Username::parse(&fields.username).map_err(ApiError::from)?;
    platform
        .users()
        .create(
            form.session.principal(),
            &username,
            &fields.password,
            fields.is_instance_admin.is_some(),
        )
        .await?;
    Ok(Redirect::to("/admin/users").into_response())
}

async fn disable_user(
    State(platform): State<Platform>,
    Ids(id): Ids<UserId>,
    form: SignedForm<NoFields>,
) -> PageResult {
    set_disabled(&platform, &form.session, id, true).await
}

async fn enable_user(
    State(platform): State<Platform>,
    Ids(id): Ids<UserId>,
    form: SignedForm<NoFields>,
) -> PageResult {
    set_disabled(&platform, &form.session, id, false).await
}

async fn set_disabled(
    platform: &Platform,
    session: &Session,
    id: UserId,
    disabled: bool,
) -> PageResult {
    let changes = UserChanges {
        disabled: Some(disabled),
        is_instance_admin: None,
    };
    platform
        .users()
        .update(session.principal(), id, changes)
        .await?;
    Ok(Redirect::to("/admin/users").into_response())
}
