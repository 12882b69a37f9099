//! Database errors as [`StoreError`]s, and the sentences a user reads when the store refuses a
//! write — the same on both backends.
//!
//! A unique violation is a `Conflict` only where the write expects it: the call site names the
//! rule and its sentence with [`crate::db::OnConstraint::on_constraint`]. Anywhere else it is a
//! bug (ids are random), so `Internal`.

use std::fmt::Display;

use picloud_core::{DeadLetter, Resolution};

use crate::db::DbError;
use crate::StoreError;

/// The uniqueness rules of the schema a user can run into. PostgreSQL names the constraint that
/// refused a write; SQLite names its columns in the message ("UNIQUE constraint failed:
/// apps.slug"). Both migrations give the constraints these names, so either clue leads to one
/// rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueRule {
    AppSlug,
    ScriptName,
    RoutePattern,
    Username,
    ApiKeyPrefix,
}

impl UniqueRule {
    /// The PostgreSQL constraint and the SQLite columns of each rule.
    const ALL: [(Self, &'static str, &'static str); 5] = [
        (Self::AppSlug, "apps_slug_key", "apps.slug"),
        (
            Self::ScriptName,
            "scripts_app_id_name_key",
            "scripts.app_id, scripts.name",
        ),
        (
            Self::RoutePattern,
            "routes_app_id_method_path_key",
            "routes.app_id, routes.method, routes.path",
        ),
        (Self::Username, "users_username_key", "users.username"),
        (Self::ApiKeyPrefix, "api_keys_prefix_key", "api_keys.prefix"),
    ];

    /// Whether `err` is this rule refusing a write.
    pub(crate) fn refused(self, err: &sqlx::Error) -> bool {
        let sqlx::Error::Database(db) = err else {
            return false;
        };
        if !db.is_unique_violation() {
            return false;
        }
        let Some((_, constraint, columns)) = Self::ALL.iter().find(|(rule, _, _)| *rule == self)
        else {
            return false;
        };
        db.constraint() == Some(*constraint)
            || db.message().strip_prefix("UNIQUE constraint failed: ") == Some(*columns)
    }
}

/// A lost or unreachable database is `Unavailable`, anything else `Internal`.
impl From<DbError> for StoreError {
    fn from(DbError(err): DbError) -> Self {
        match err {
            sqlx::Error::Database(db) if is_transient(db.as_ref()) => {
                StoreError::Unavailable(db.to_string())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            other => StoreError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        DbError(err).into()
    }
}

/// A database error that says the database is out of reach for now, not that the query is wrong.
fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // Class 08: connection exceptions; 57P01-03: shutdown or start-up; 53300: too many
        // connections.
        let code = pg.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The primary result code is the low byte of the extended one: SQLITE_BUSY (5),
        // SQLITE_LOCKED (6), SQLITE_CANTOPEN (14).
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        return matches!(primary, Some(5 | 6 | 14));
    }
    false
}

/// Translates a failed migration.
pub(crate) fn migrate_error(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(err) => err.into(),
        other => StoreError::Internal(format!("the migrations could not be applied: {other}")),
    }
}

/// A database that cannot be opened or reached, as `Unavailable` with `what` in front.
pub(crate) fn unreachable(what: &str, err: sqlx::Error) -> StoreError {
    match StoreError::from(err) {
        StoreError::Unavailable(cause) | StoreError::Internal(cause) => {
            StoreError::Unavailable(format!("{what}: {cause}"))
        }
        other => other,
    }
}

/// A value read from `table` that the record types refuse: a bug or a hand-edited database.
pub(crate) fn corrupt<E: Display>(table: &'static str) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::Internal(format!("a corrupt row in {table}: {err}"))
}

/// `delete_script` refused while `routes` routes and `triggers` triggers point at the script,
/// e.g. "the script is the target of 2 routes and 1 trigger; delete them first".
pub(crate) fn script_is_a_target(routes: u64, triggers: u64) -> StoreError {
    let counted = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let targets = match (routes, triggers) {
        (0, triggers) => counted(triggers, "trigger"),
        (routes, 0) => counted(routes, "route"),
        (routes, triggers) => format!(
            "{} and {}",
            counted(routes, "route"),
            counted(triggers, "trigger")
        ),
    };
    let them = if routes + triggers == 1 { "it" } else { "them" };
    StoreError::Conflict(format!(
        "the script is the target of {targets}; delete {them} first"
    ))
}

/// `replay_dead_letter` and `resolve_dead_letter` refused: the dead letter was closed already.
pub(crate) fn dead_letter_closed(dead_letter: &DeadLetter) -> StoreError {
    let at = dead_letter
        .resolved_at
        .map_or_else(String::new, |at| format!(" at {at}"));
    StoreError::Conflict(match dead_letter.resolution {
        Some(Resolution::Replayed) => format!("the dead letter was already replayed{at}"),
        Some(Resolution::HandlerFailed) => format!(
            "the dead letter was already marked handler_failed{at} (the app's dead-letter \
             handler failed on it)"
        ),
        Some(Resolution::Resolved) | None => format!("the dead letter was already resolved{at}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unique violation as each backend reports it.
    #[derive(Debug)]
    struct Violation {
        constraint: Option<&'static str>,
        message: String,
    }

    impl std::fmt::Display for Violation {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.message)
        }
    }

    impl std::error::Error for Violation {}

    impl sqlx::error::DatabaseError for Violation {
        fn message(&self) -> &str {
            &self.message
        }
        fn constraint(&self) -> Option<&str> {
            self.constraint
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::UniqueViolation
        }
    }

    fn violation(constraint: Option<&'static str>, message: &str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Violation {
            constraint,
            message: message.to_owned(),
        }))
    }

    #[test]
    fn every_unique_rule_is_recognised_on_both_backends() {
        for (rule, constraint, columns) in UniqueRule::ALL {
            assert!(
                rule.refused(&violation(Some(constraint), "duplicate key")),
                "the PostgreSQL constraint {constraint}"
            );
            assert!(
                rule.refused(&violation(
                    None,
                    &format!("UNIQUE constraint failed: {columns}")
                )),
                "the SQLite columns {columns}"
            );
        }
        assert!(
            !UniqueRule::AppSlug.refused(&violation(None, "UNIQUE constraint failed: apps.id")),
            "a primary key is no user-facing rule"
        );
        assert!(
            !UniqueRule::AppSlug.refused(&violation(Some("users_username_key"), "duplicate key")),
            "another rule's violation is not this rule's"
        );
    }

    #[test]
    fn an_unexpected_unique_violation_is_internal() {
        let err = StoreError::from(violation(None, "UNIQUE constraint failed: apps.id"));
        assert!(
            matches!(err, StoreError::Internal(_)),
            "a collision of random ids is a bug: {err:?}"
        );
    }
}
