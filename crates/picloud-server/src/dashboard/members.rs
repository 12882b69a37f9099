//! An app's members tab: who holds which role; its owners change roles, add and remove members.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use picloud_core::{AppId, Capability, Role, UserId};
use picloud_orchestrator::Platform;
use serde::Deserialize;

use super::app::{app_page, Tab};
use super::layout::{csrf_field, time};
use super::session::{AppOf, Ids, NoFields, PageResult, SignedForm};
use crate::error::ApiError;
use crate::extract::unknown_id;

pub fn router() -> Router<Platform> {
    Router::new()
        .route("/admin/apps/{app_id}/members", get(tab).post(set))
        .route(
            "/admin/apps/{app_id}/members/{user_id}/remove",
            post(remove),
        )
}

fn role_select(id: Option<&str>, current: Role) -> maud::Markup {
    html! {
        select name="role" id=[id] aria-label="role" {
            @for role in Role::ALL {
                option value=(role.as_str()) selected[current == role] { (role.as_str()) }
            }
        }
    }
}

async fn tab(State(platform): State<Platform>, AppOf { session, app }: AppOf) -> PageResult {
    let principal = session.principal();
    let app_id = app.id;
    let members = platform.members().list(principal, app_id).await?;
    let can_manage = principal.can(Capability::AppManageMembers(app_id));
    let content = html! {
        div.scroll {
            table {
                thead { tr { th { "User" } th { "Role" } th { "Since" } th {} } }
                tbody {
                    @for member in &members {
                        tr {
                            td.name { (member.username) }
                            td {
                                @if can_manage {
                                    form.actions method="post" action={ "/admin/apps/" (app_id) "/members" } {
                                        (csrf_field(&session))
                                        input type="hidden" name="user_id" value=(member.user_id);
                                        (role_select(None, member.role))
                                        button.secondary type="submit" { "Set" }
                                    }
                                } @else {
                                    (member.role.as_str())
                                }
                            }
                            td { (time(member.created_at)) }
                            td {
                                @if can_manage {
                                    form.actions method="post"
                                        action={ "/admin/apps/" (app_id) "/members/" (member.user_id) "/remove" } {
                                        (csrf_field(&session))
                                        button.secondary type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if can_manage {
            h2 { "Add a member" }
            form.inline method="post" action={ "/admin/apps/" (app_id) "/members" } {
                (csrf_field(&session))
                div { label for="member-id" { "User id" } input #member-id name="user_id" required autocomplete="off"; }
                div { label for="member-role" { "Role" } (role_select(Some("member-role"), Role::Viewer)) }
                button type="submit" { "Add" }
            }
        }
    };
    app_page(&platform, &session, &app, Tab::Members, content).await
}

#[derive(Deserialize)]
struct Membership {
    user_id: String,
    role: String,
}

/// Gives a user a role on the app (adding it as a member if it was none).
async fn set(
    State(platform): State<Platform>,
    Ids(app_id): Ids<AppId>,
    form: SignedForm<Membership>,
) -> PageResult {
    let user_id = UserId::parse(form.fields.user_id.trim()).map_err(unknown_id)?;
    let role = Role::parse(&form.fields.role).map_err(ApiError::from)?;
    platform
        .members()
        .set(form.session.principal(), app_id, user_id, role)
        .await?;
    Ok(Redirect::to(&Tab::Members.path(app_id)).into_response())
}

async fn remove(
    State(platform): State<Platform>,
    Ids((app_id, user_id)): Ids<(AppId, UserId)>,
    form: SignedForm<NoFields>,
) -> PageResult {
    platform
        .members()
        .remove(form.session.principal(), app_id, user_id)
        .await?;
    Ok(Redirect::to(&Tab::Members.path(app_id)).into_response())
}
