//! Ids are UUIDs (version 7, so they sort by creation time) and travel as strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A string that is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {kind} id")]
pub struct ParseIdError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn parse(value: &str) -> Result<Self, ParseIdError> {
                Uuid::try_parse(value).map(Self).map_err(|_| ParseIdError {
                    kind: $kind,
                    value: value.chars().take(64).collect(),
                })
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An app: the unit of tenancy.
    AppId, "app"
);
id_type!(
    /// A script of an app (endpoint or module).
    ScriptId, "script"
);
id_type!(
    /// A route binding an HTTP method and path to an endpoint script.
    RouteId, "route"
);
id_type!(
    /// A user who logs in.
    UserId, "user"
);
id_type!(
    /// An API key (its id, not its secret).
    ApiKeyId, "API key"
);
id_type!(
    /// One execution of a script; log lines and errors carry it. An outbox job's id is the id of
    /// the execution it runs.
    ExecutionId, "execution"
);
id_type!(
    /// One stored execution record (an execution's attempt): [`RecordId::of`] the execution and
    /// the attempt, so an app's records list newest first by it.
    RecordId, "execution record"
);

impl RecordId {
    /// The record of `execution`'s `attempt`: the execution's id with the attempt in its last 16
    /// bits (random in a UUID v7; its time and counter stay). So records sort by the time their
    /// execution started, an execution's attempts together and in order, and the ids of all its
    /// attempts lie in [`RecordId::range_of`] it: one range of the records' key, with no index of
    /// its own. An attempt past 65,535 shares the last id.
    pub fn of(execution: ExecutionId, attempt: u32) -> Self {
        let mut bytes = *execution.as_uuid().as_bytes();
        let attempt = u16::try_from(attempt).unwrap_or(u16::MAX);
        bytes[14..].copy_from_slice(&attempt.to_be_bytes());
        Self(Uuid::from_bytes(bytes))
    }

    /// The first and the last id the records of `execution` can have.
    pub fn range_of(execution: ExecutionId) -> (Self, Self) {
        (Self::of(execution, 0), Self::of(execution, u32::MAX))
    }
}
id_type!(
    /// A trigger: a script run when data of its app changes or something is dead-lettered.
    TriggerId, "trigger"
);
id_type!(
    /// A dead letter: a job that failed every attempt, kept for replay or resolution.
    DeadLetterId, "dead letter"
);
id_type!(
    /// A document of an app's document store; time-ordered, so a collection lists in the order
    /// its documents were created.
    DocumentId, "document"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_round_trips_through_its_string_form() {
        let id = AppId::new();
        assert_eq!(
            AppId::parse(&id.to_string()),
            Ok(id),
            "display then parse must agree"
        );
    }

    #[test]
    fn a_malformed_id_names_its_kind() {
        let err = ScriptId::parse("nope").expect_err("'nope' is no uuid");
        assert_eq!(err.to_string(), "'nope' is not a valid script id");
    }

    #[test]
    fn an_executions_records_sort_by_its_start_and_attempt_within_its_range() {
        let first = ExecutionId::new();
        let second = ExecutionId::new();
        let records = [
            RecordId::of(first, 1),
            RecordId::of(first, 2),
            RecordId::of(first, 70_000),
            RecordId::of(second, 1),
        ];
        assert!(
            records.windows(2).all(|pair| pair[0] < pair[1]),
            "{records:?}"
        );
        let (low, high) = RecordId::range_of(first);
        assert!(records[..3].iter().all(|id| (low..=high).contains(id)));
        assert!(!(low..=high).contains(&records[3]));
        assert_eq!(
            RecordId::of(first, 1).to_string()[..32],
            first.to_string()[..32],
            "the execution's time and counter stay"
        );
    }
}
