//! Who is asking and what they may do.
//!
//! Every admin endpoint asks for exactly one [`Capability`] through [`Principal::can`]. What a
//! principal holds follows from one table, [`CapabilityKind::granted_by_role`] and
//! [`CapabilityKind::granted_by_scope`]:
//!
//! - a **user** holds, on each app it is a member of, what its [`Role`] grants there; every user
//!   may create apps and manage its own API keys; the instance admin holds everything;
//! - an **API key** holds what its [`Scope`]s grant, intersected with what its user holds at the
//!   moment the key is used (so a key never does more than its user could), and, when it is bound
//!   to an app, nothing outside that app and nothing instance-wide.
//!
//! Memberships are resolved when the caller authenticates, so `can` is one synchronous call.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{AppId, InputError, UserId, Username};

/// A per-app role, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Owner => "owner",
        }
    }

    pub fn parse(value: &str) -> Result<Self, InputError> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
            .ok_or_else(|| {
                InputError::new(
                    "role",
                    format!(
                        "'{}' is not a role: use viewer, editor or owner",
                        value.chars().take(64).collect::<String>()
                    ),
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the seven scopes an API key may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    AppRead,
    AppWrite,
    ScriptRead,
    ScriptWrite,
    TriggerWrite,
    DeadLetterWrite,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::AppRead,
        Scope::AppWrite,
        Scope::ScriptRead,
        Scope::ScriptWrite,
        Scope::TriggerWrite,
        Scope::DeadLetterWrite,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppRead => "app:read",
            Self::AppWrite => "app:write",
            Self::ScriptRead => "script:read",
            Self::ScriptWrite => "script:write",
            Self::TriggerWrite => "trigger:write",
            Self::DeadLetterWrite => "dead_letter:write",
            Self::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Result<Self, InputError> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == value)
            .ok_or_else(|| {
                InputError::new(
                    "scopes",
                    format!(
                        "'{}' is not a scope: use app:read, app:write, script:read, script:write, \
                         trigger:write, dead_letter:write or admin",
                        value.chars().take(64).collect::<String>()
                    ),
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(|err| serde::de::Error::custom(err.message))
    }
}

/// One thing a principal may do. App-scoped capabilities name the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Capability {
    /// Create apps (the creator becomes the app's owner).
    AppCreate,
    /// Create, list and revoke one's own API keys.
    ApiKeysManage,
    AppRead(AppId),
    AppWrite(AppId),
    /// Delete the app with everything in it.
    AppDelete(AppId),
    AppScriptsRead(AppId),
    AppScriptsWrite(AppId),
    /// Run a script now, as a test, with the caller's own authority.
    AppScriptsExecute(AppId),
    AppKvRead(AppId),
    AppKvWrite(AppId),
    AppDocsRead(AppId),
    AppDocsWrite(AppId),
    AppManageTriggers(AppId),
    AppDeadLetterManage(AppId),
    AppManageMembers(AppId),
    /// Everything about the instance itself: users, every app.
    InstanceAdmin,
}

/// A [`Capability`] without its app: the rows of the capability table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CapabilityKind {
    AppCreate,
    ApiKeysManage,
    AppRead,
    AppWrite,
    AppDelete,
    AppScriptsRead,
    AppScriptsWrite,
    AppScriptsExecute,
    AppKvRead,
    AppKvWrite,
    AppDocsRead,
    AppDocsWrite,
    AppManageTriggers,
    AppDeadLetterManage,
    AppManageMembers,
    InstanceAdmin,
}

use CapabilityKind as K;

/// What each role grants on its app. Each role holds everything the weaker ones hold.
const VIEWER: &[CapabilityKind] = &[
    K::AppRead,
    K::AppScriptsRead,
    K::AppScriptsExecute,
    K::AppKvRead,
    K::AppDocsRead,
];
const EDITOR: &[CapabilityKind] = &[
    K::AppWrite,
    K::AppScriptsWrite,
    K::AppKvWrite,
    K::AppDocsWrite,
    K::AppManageTriggers,
    K::AppDeadLetterManage,
];
const OWNER: &[CapabilityKind] = &[K::AppDelete, K::AppManageMembers];

impl CapabilityKind {
    pub const ALL: [CapabilityKind; 16] = [
        K::AppCreate,
        K::ApiKeysManage,
        K::AppRead,
        K::AppWrite,
        K::AppDelete,
        K::AppScriptsRead,
        K::AppScriptsWrite,
        K::AppScriptsExecute,
        K::AppKvRead,
        K::AppKvWrite,
        K::AppDocsRead,
        K::AppDocsWrite,
        K::AppManageTriggers,
        K::AppDeadLetterManage,
        K::AppManageMembers,
        K::InstanceAdmin,
    ];

    /// Whether the capability concerns one app (and so names it).
    pub fn is_app_scoped(self) -> bool {
        !matches!(self, K::AppCreate | K::ApiKeysManage | K::InstanceAdmin)
    }

    /// The capability on `app` (ignored for instance-wide kinds).
    pub fn on(self, app: AppId) -> Capability {
        match self {
            K::AppCreate => Capability::AppCreate,
            K::ApiKeysManage => Capability::ApiKeysManage,
            K::InstanceAdmin => Capability::InstanceAdmin,
            K::AppRead => Capability::AppRead(app),
            K::AppWrite => Capability::AppWrite(app),
            K::AppDelete => Capability::AppDelete(app),
            K::AppScriptsRead => Capability::AppScriptsRead(app),
            K::AppScriptsWrite => Capability::AppScriptsWrite(app),
            K::AppScriptsExecute => Capability::AppScriptsExecute(app),
            K::AppKvRead => Capability::AppKvRead(app),
            K::AppKvWrite => Capability::AppKvWrite(app),
            K::AppDocsRead => Capability::AppDocsRead(app),
            K::AppDocsWrite => Capability::AppDocsWrite(app),
            K::AppManageTriggers => Capability::AppManageTriggers(app),
            K::AppDeadLetterManage => Capability::AppDeadLetterManage(app),
            K::AppManageMembers => Capability::AppManageMembers(app),
        }
    }

    /// **The table, by role**: whether a member with `role` holds this on its app.
    pub fn granted_by_role(self, role: Role) -> bool {
        let tiers: &[&[CapabilityKind]] = match role {
            Role::Viewer => &[VIEWER],
            Role::Editor => &[VIEWER, EDITOR],
            Role::Owner => &[VIEWER, EDITOR, OWNER],
        };
        tiers.iter().any(|tier| tier.contains(&self))
    }

    /// **The table, by scope**: whether an API key with `scope` may use this (still only as far
    /// as its user may).
    pub fn granted_by_scope(self, scope: Scope) -> bool {
        match scope {
            Scope::AppRead => matches!(self, K::AppRead | K::AppKvRead | K::AppDocsRead),
            Scope::AppWrite => {
                matches!(self, K::AppCreate | K::AppRead | K::AppWrite | K::AppDelete)
            }
            Scope::ScriptRead => matches!(
                self,
                K::AppRead
                    | K::AppScriptsRead
                    | K::AppScriptsExecute
                    | K::AppKvRead
                    | K::AppDocsRead
            ),
            Scope::ScriptWrite => matches!(
                self,
                K::AppRead
                    | K::AppScriptsRead
                    | K::AppScriptsWrite
                    | K::AppScriptsExecute
                    | K::AppKvRead
                    | K::AppKvWrite
                    | K::AppDocsRead
                    | K::AppDocsWrite
            ),
            Scope::TriggerWrite => matches!(self, K::AppRead | K::AppManageTriggers),
            Scope::DeadLetterWrite => matches!(self, K::AppRead | K::AppDeadLetterManage),
            Scope::Admin => true,
        }
    }
}

impl Capability {
    /// The row of the table and the app it names.
    pub fn split(self) -> (CapabilityKind, Option<AppId>) {
        match self {
            Self::AppCreate => (K::AppCreate, None),
            Self::ApiKeysManage => (K::ApiKeysManage, None),
            Self::InstanceAdmin => (K::InstanceAdmin, None),
            Self::AppRead(a) => (K::AppRead, Some(a)),
            Self::AppWrite(a) => (K::AppWrite, Some(a)),
            Self::AppDelete(a) => (K::AppDelete, Some(a)),
            Self::AppScriptsRead(a) => (K::AppScriptsRead, Some(a)),
            Self::AppScriptsWrite(a) => (K::AppScriptsWrite, Some(a)),
            Self::AppScriptsExecute(a) => (K::AppScriptsExecute, Some(a)),
            Self::AppKvRead(a) => (K::AppKvRead, Some(a)),
            Self::AppKvWrite(a) => (K::AppKvWrite, Some(a)),
            Self::AppDocsRead(a) => (K::AppDocsRead, Some(a)),
            Self::AppDocsWrite(a) => (K::AppDocsWrite, Some(a)),
            Self::AppManageTriggers(a) => (K::AppManageTriggers, Some(a)),
            Self::AppDeadLetterManage(a) => (K::AppDeadLetterManage, Some(a)),
            Self::AppManageMembers(a) => (K::AppManageMembers, Some(a)),
        }
    }

    /// The app the capability is about, if any.
    pub fn app(self) -> Option<AppId> {
        self.split().1
    }
}

/// Whose authority an execution runs with: what the script's data calls (KV, docs, dead letters)
/// may do in its app. Carried in the execution contract and checked by the SDK.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Authority {
    /// A public route, a trigger, a dead-letter handler: the app's own authority over its data.
    #[default]
    App,
    /// A test run: what the person or key that started it may do in the app.
    Caller {
        capabilities: std::collections::BTreeSet<CapabilityKind>,
    },
}

impl Authority {
    /// Whether a script running with this authority may do `kind` in its own app.
    pub fn allows(&self, kind: CapabilityKind) -> bool {
        match self {
            // The app acts on its own data, never on its members or settings.
            Self::App => matches!(
                kind,
                K::AppKvRead
                    | K::AppKvWrite
                    | K::AppDocsRead
                    | K::AppDocsWrite
                    | K::AppDeadLetterManage
            ),
            Self::Caller { capabilities } => capabilities.contains(&kind),
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Credential {
    /// A login session (bearer token or dashboard cookie).
    Session,
    /// An API key: its scopes, and the one app it is bound to, if any.
    ApiKey {
        key_id: crate::ApiKeyId,
        scopes: Vec<Scope>,
        app_id: Option<AppId>,
    },
}

/// An authenticated caller of the admin API: a user, with its memberships as they were when it
/// authenticated, and the credential it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub user_id: UserId,
    pub username: Username,
    pub is_instance_admin: bool,
    pub memberships: BTreeMap<AppId, Role>,
    pub credential: Credential,
}

impl Principal {
    /// A user signed in with a session.
    pub fn user(
        user_id: UserId,
        username: Username,
        is_instance_admin: bool,
        memberships: BTreeMap<AppId, Role>,
    ) -> Self {
        Self {
            user_id,
            username,
            is_instance_admin,
            memberships,
            credential: Credential::Session,
        }
    }

    /// The same user acting through an API key.
    pub fn with_credential(mut self, credential: Credential) -> Self {
        self.credential = credential;
        self
    }

    /// What this principal may do in `app`, as the authority of an execution it starts.
    pub fn authority_on(&self, app: AppId) -> Authority {
        Authority::Caller {
            capabilities: CapabilityKind::ALL
                .into_iter()
                .filter(|kind| kind.is_app_scoped() && self.can(kind.on(app)))
                .collect(),
        }
    }

    /// The one question every admin endpoint asks.
    pub fn can(&self, capability: Capability) -> bool {
        self.user_can(capability) && self.credential_allows(capability)
    }

    /// What the user could do with a session.
    fn user_can(&self, capability: Capability) -> bool {
        if self.is_instance_admin {
            return true;
        }
        match capability.split() {
            (K::AppCreate | K::ApiKeysManage, _) => true,
            (K::InstanceAdmin, _) => false,
            (kind, Some(app)) => self
                .memberships
                .get(&app)
                .is_some_and(|role| kind.granted_by_role(*role)),
            (_, None) => false,
        }
    }

    /// What the credential lets through of the user's capabilities.
    fn credential_allows(&self, capability: Capability) -> bool {
        let Credential::ApiKey { scopes, app_id, .. } = &self.credential else {
            return true;
        };
        let (kind, app) = capability.split();
        if let Some(bound) = app_id {
            // A bound key acts in its app only, never instance-wide.
            if app != Some(*bound) {
                return false;
            }
        }
        scopes.iter().any(|scope| kind.granted_by_scope(*scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: Option<(AppId, Role)>) -> Principal {
        Principal::user(
            UserId::new(),
            Username::parse("u").expect("a username"),
            false,
            role.into_iter().collect(),
        )
    }

    #[test]
    fn each_role_holds_everything_the_weaker_roles_hold() {
        for kind in CapabilityKind::ALL {
            if kind.granted_by_role(Role::Viewer) {
                assert!(
                    kind.granted_by_role(Role::Editor),
                    "{kind:?}: editor ⊇ viewer"
                );
            }
            if kind.granted_by_role(Role::Editor) {
                assert!(
                    kind.granted_by_role(Role::Owner),
                    "{kind:?}: owner ⊇ editor"
                );
            }
        }
    }

    #[test]
    fn a_role_grants_on_its_own_app_only() {
        let app = AppId::new();
        let other = AppId::new();
        let editor = member(Some((app, Role::Editor)));
        assert!(editor.can(Capability::AppScriptsWrite(app)), "on its app");
        assert!(
            !editor.can(Capability::AppScriptsRead(other)),
            "not on another"
        );
        assert!(
            !editor.can(Capability::AppManageMembers(app)),
            "owners manage members"
        );
        assert!(
            !editor.can(Capability::InstanceAdmin),
            "never instance-wide"
        );
        assert!(
            editor.can(Capability::AppCreate),
            "every user may create apps"
        );
    }

    #[test]
    fn every_scope_lets_a_key_read_the_app_it_acts_on() {
        for scope in Scope::ALL {
            assert!(
                CapabilityKind::AppRead.granted_by_scope(scope),
                "{scope} implies reading the app, so 404 and 403 follow one rule"
            );
        }
    }

    #[test]
    fn a_key_never_does_more_than_its_user() {
        let app = AppId::new();
        let viewer = member(Some((app, Role::Viewer))).with_credential(Credential::ApiKey {
            key_id: crate::ApiKeyId::new(),
            scopes: vec![Scope::Admin],
            app_id: None,
        });
        assert!(
            viewer.can(Capability::AppScriptsRead(app)),
            "what the viewer may"
        );
        assert!(
            !viewer.can(Capability::AppScriptsWrite(app)),
            "admin scope, viewer user"
        );
        assert!(
            !viewer.can(Capability::InstanceAdmin),
            "not an instance admin"
        );
    }

    #[test]
    fn a_bound_key_acts_in_its_app_only() {
        let app = AppId::new();
        let other = AppId::new();
        let admin = Principal::user(
            UserId::new(),
            Username::parse("root").expect("a username"),
            true,
            BTreeMap::new(),
        )
        .with_credential(Credential::ApiKey {
            key_id: crate::ApiKeyId::new(),
            scopes: vec![Scope::Admin],
            app_id: Some(app),
        });
        assert!(admin.can(Capability::AppDelete(app)), "its app");
        assert!(!admin.can(Capability::AppRead(other)), "another app");
        assert!(
            !admin.can(Capability::InstanceAdmin),
            "nothing instance-wide"
        );
        assert!(!admin.can(Capability::AppCreate), "no new apps");
    }

    #[test]
    fn a_test_run_carries_exactly_what_its_caller_may_do_in_the_app() {
        let app = AppId::new();
        let key = |scope| {
            member(Some((app, Role::Owner))).with_credential(Credential::ApiKey {
                key_id: crate::ApiKeyId::new(),
                scopes: vec![scope],
                app_id: None,
            })
        };
        let read = key(Scope::ScriptRead).authority_on(app);
        assert!(
            read.allows(CapabilityKind::AppKvRead),
            "script:read reads data"
        );
        assert!(
            !read.allows(CapabilityKind::AppKvWrite),
            "but does not write it"
        );
        let write = key(Scope::ScriptWrite).authority_on(app);
        assert!(
            write.allows(CapabilityKind::AppDocsWrite),
            "script:write writes data"
        );
        assert!(
            !member(None)
                .authority_on(app)
                .allows(CapabilityKind::AppKvRead),
            "an outsider's run may do nothing"
        );
        assert!(
            Authority::App.allows(CapabilityKind::AppKvWrite),
            "the app writes its data"
        );
        assert!(
            !Authority::App.allows(CapabilityKind::AppManageMembers),
            "but manages no members"
        );
    }

    #[test]
    fn scopes_and_roles_round_trip_through_their_names() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope), "{scope}");
        }
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role), "{role}");
        }
        assert!(Scope::parse("root").is_err(), "unknown scopes are refused");
    }
}
