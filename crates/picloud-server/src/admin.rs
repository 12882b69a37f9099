//! The admin API's endpoint table: every endpoint under `/api/v1/admin`, with the one capability it
//! asks for and the status it answers on success. The router is built from this table and the
//! permission matrix test (`tests/permissions.rs`) is generated from it, so an endpoint cannot be
//! served without an entry, and an entry cannot go untested.
//!
//! The capability is checked by the service the handler calls, through
//! `picloud_orchestrator::auth::require`; the table states it so that the test can hold every
//! endpoint to it.

use axum::http::{Method, StatusCode};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use picloud_core::CapabilityKind;
use picloud_orchestrator::Platform;

use crate::{
    api_keys, apps, data, dead_letters, executions, members, routes, scripts, triggers, users,
};

/// What an endpoint asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any authenticated caller; the answer shows only what the caller may read (lists).
    Authenticated,
    /// This capability, on the app the request names (through its path, or the object's app),
    /// or instance-wide for the kinds that name no app.
    Capability(CapabilityKind),
}

/// One admin endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub method: Method,
    /// The path as axum matches it, e.g. `/api/v1/admin/apps/{app_id}`.
    pub path: &'static str,
    pub need: Need,
    /// The status of a successful answer.
    pub ok: StatusCode,
    /// The handler, already bound to `method` (the macro writes both from one name).
    handler: fn() -> MethodRouter<Platform>,
}

use CapabilityKind as K;
use Need::{Authenticated as Any, Capability as Cap};

macro_rules! spec {
    ($method:ident $path:literal, $need:expr, $ok:ident, $handler:path) => {
        Endpoint {
            method: Method::$method,
            path: $path,
            need: $need,
            ok: StatusCode::$ok,
            handler: || on(MethodFilter::$method, $handler),
        }
    };
}

/// Every admin endpoint.
pub static ADMIN_ENDPOINTS: &[Endpoint] = &[
    spec!(GET "/api/v1/admin/apps", Any, OK, apps::list),
    spec!(POST "/api/v1/admin/apps", Cap(K::AppCreate), CREATED, apps::create),
    spec!(GET "/api/v1/admin/apps/{app_id}", Cap(K::AppRead), OK, apps::read),
    spec!(PATCH "/api/v1/admin/apps/{app_id}", Cap(K::AppWrite), OK, apps::update),
    spec!(DELETE "/api/v1/admin/apps/{app_id}", Cap(K::AppDelete), NO_CONTENT, apps::delete),
    spec!(GET "/api/v1/admin/apps/{app_id}/scripts", Cap(K::AppScriptsRead), OK, scripts::list),
    spec!(POST "/api/v1/admin/apps/{app_id}/scripts", Cap(K::AppScriptsWrite), CREATED, scripts::create),
    spec!(GET "/api/v1/admin/scripts/{script_id}", Cap(K::AppScriptsRead), OK, scripts::read),
    spec!(PUT "/api/v1/admin/scripts/{script_id}", Cap(K::AppScriptsWrite), OK, scripts::update),
    spec!(DELETE "/api/v1/admin/scripts/{script_id}", Cap(K::AppScriptsWrite), NO_CONTENT, scripts::delete),
    spec!(POST "/api/v1/admin/scripts/{script_id}/execute", Cap(K::AppScriptsExecute), OK, scripts::execute),
    spec!(POST "/api/v1/admin/scripts/{script_id}/routes", Cap(K::AppWrite), CREATED, routes::create),
    spec!(GET "/api/v1/admin/apps/{app_id}/routes", Cap(K::AppRead), OK, routes::list),
    spec!(DELETE "/api/v1/admin/routes/{route_id}", Cap(K::AppWrite), NO_CONTENT, routes::remove),
    spec!(POST "/api/v1/admin/apps/{app_id}/triggers/kv", Cap(K::AppManageTriggers), CREATED, triggers::create_kv),
    spec!(POST "/api/v1/admin/apps/{app_id}/triggers/docs", Cap(K::AppManageTriggers), CREATED, triggers::create_docs),
    spec!(POST "/api/v1/admin/apps/{app_id}/triggers/dead_letter", Cap(K::AppManageTriggers), CREATED, triggers::create_dead_letter),
    spec!(GET "/api/v1/admin/apps/{app_id}/triggers", Cap(K::AppRead), OK, triggers::list),
    spec!(DELETE "/api/v1/admin/triggers/{trigger_id}", Cap(K::AppManageTriggers), NO_CONTENT, triggers::remove),
    spec!(GET "/api/v1/admin/apps/{app_id}/dead-letters", Cap(K::AppRead), OK, dead_letters::list),
    spec!(GET "/api/v1/admin/apps/{app_id}/executions", Cap(K::AppRead), OK, executions::list),
    spec!(GET "/api/v1/admin/apps/{app_id}/logs/stream", Cap(K::AppRead), OK, executions::stream),
    spec!(GET "/api/v1/admin/apps/{app_id}/abandoned-executions", Cap(K::AppRead), OK, executions::abandoned),
    spec!(GET "/api/v1/admin/executions/{execution_id}", Cap(K::AppRead), OK, executions::read),
    spec!(POST "/api/v1/admin/dead-letters/{dead_letter_id}/replay", Cap(K::AppDeadLetterManage), OK, dead_letters::replay),
    spec!(POST "/api/v1/admin/dead-letters/{dead_letter_id}/resolve", Cap(K::AppDeadLetterManage), OK, dead_letters::resolve),
    spec!(GET "/api/v1/admin/apps/{app_id}/kv/{collection}", Cap(K::AppKvRead), OK, data::kv),
    spec!(GET "/api/v1/admin/apps/{app_id}/docs/{collection}", Cap(K::AppDocsRead), OK, data::docs),
    spec!(POST "/api/v1/admin/apps/{app_id}/docs/{collection}/find", Cap(K::AppDocsRead), OK, data::find),
    spec!(GET "/api/v1/admin/apps/{app_id}/docs/{collection}/indexes", Cap(K::AppRead), OK, data::indexes),
    spec!(POST "/api/v1/admin/apps/{app_id}/docs/{collection}/indexes", Cap(K::AppWrite), CREATED, data::declare_index),
    spec!(DELETE "/api/v1/admin/apps/{app_id}/docs/{collection}/indexes/{path}", Cap(K::AppWrite), NO_CONTENT, data::drop_index),
    spec!(GET "/api/v1/admin/apps/{app_id}/members", Cap(K::AppRead), OK, members::list),
    spec!(PUT "/api/v1/admin/apps/{app_id}/members/{user_id}", Cap(K::AppManageMembers), OK, members::set),
    spec!(DELETE "/api/v1/admin/apps/{app_id}/members/{user_id}", Cap(K::AppManageMembers), NO_CONTENT, members::remove),
    spec!(GET "/api/v1/admin/api-keys", Cap(K::ApiKeysManage), OK, api_keys::list),
    spec!(POST "/api/v1/admin/api-keys", Cap(K::ApiKeysManage), CREATED, api_keys::create),
    spec!(DELETE "/api/v1/admin/api-keys/{key_id}", Cap(K::ApiKeysManage), NO_CONTENT, api_keys::revoke),
    spec!(GET "/api/v1/admin/users", Cap(K::InstanceAdmin), OK, users::list),
    spec!(POST "/api/v1/admin/users", Cap(K::InstanceAdmin), CREATED, users::create),
    spec!(GET "/api/v1/admin/users/{user_id}", Cap(K::InstanceAdmin), OK, users::read),
    spec!(PATCH "/api/v1/admin/users/{user_id}", Cap(K::InstanceAdmin), OK, users::update),
    spec!(DELETE "/api/v1/admin/users/{user_id}", Cap(K::InstanceAdmin), NO_CONTENT, users::delete),
    spec!(PUT "/api/v1/admin/users/{user_id}/password", Cap(K::InstanceAdmin), NO_CONTENT, users::set_password),
];

/// The admin API's table, for tests and documentation.
pub fn admin_endpoints() -> &'static [Endpoint] {
    ADMIN_ENDPOINTS
}

/// The admin API, built from [`ADMIN_ENDPOINTS`].
pub fn router() -> Router<Platform> {
    ADMIN_ENDPOINTS.iter().fold(Router::new(), |router, spec| {
        router.route(spec.path, (spec.handler)())
    })
}
