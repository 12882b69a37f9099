//! Who is asking and what they may do. Every admin endpoint asks for exactly one [`Capability`]
//! through [`Principal::can`]; roles and API-key scopes grant capabilities through one table
//! (the identity issue adds per-app roles and scopes behind the same question).

use serde::Serialize;

use crate::{AppId, UserId, Username};

/// One thing a principal may do. App-scoped capabilities name the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Capability {
    /// Create apps; list the apps one can see.
    AppCreate,
    AppRead(AppId),
    AppWrite(AppId),
    AppScriptsRead(AppId),
    AppScriptsWrite(AppId),
    /// Everything about the instance itself.
    InstanceAdmin,
}

/// An authenticated caller of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub user_id: UserId,
    pub username: Username,
    pub is_instance_admin: bool,
}

impl Principal {
    /// The one question every admin endpoint asks.
    pub fn can(&self, capability: Capability) -> bool {
        // Until per-app roles exist, only the instance admin holds capabilities, and it holds all.
        let _ = capability;
        self.is_instance_admin
    }
}
