//! The stored records, as the stores return them and the admin API shows them.

use serde::Serialize;

use crate::{
    AppId, AppName, AppSlug, DispatchMode, RouteId, RouteMethod, RoutePath, ScriptId, ScriptKind,
    ScriptName, Timestamp, UserId, Username,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub id: AppId,
    pub slug: AppSlug,
    pub name: AppName,
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
