//! The stored records, as the stores return them and the admin API shows them.

use serde::Serialize;

use crate::{
    ApiKeyId, AppId, AppName, AppSlug, DispatchMode, KeptHeaders, Role, RouteId, RouteMethod,
    RoutePath, Scope, ScriptId, ScriptKind, ScriptName, Timestamp, UserId, Username,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub id: AppId,
    pub slug: AppSlug,
    pub name: AppName,
    /// Whether an anonymous caller of the app's routes sees a failed execution's message, line
    /// and column (for a development app); otherwise only its kind and execution id.
    pub expose_errors: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Script {
    pub id: ScriptId,
    pub app_id: AppId,
    pub name: ScriptName,
    pub kind: ScriptKind,
    pub source: String,
    pub created_at: Timestamp,
    /// Strictly increases on every update, so `(id, updated_at)` names one version of the source.
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub id: RouteId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub method: RouteMethod,
    pub path: RoutePath,
    pub dispatch_mode: DispatchMode,
    /// Sensitive request headers this (async) route keeps in its stored payload all the same.
    pub keep_headers: KeptHeaders,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub is_instance_admin: bool,
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// A user's role on an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub app_id: AppId,
    pub user_id: UserId,
    pub username: Username,
    pub role: Role,
    pub created_at: Timestamp,
}

/// An API key as it is listed: never its secret, only the prefix that identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The visible part of the key (`pk_<prefix>_…`), unique.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    /// The one app the key may act on; `None` for every app its user may.
    pub app_id: Option<AppId>,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub revoked: bool,
}
