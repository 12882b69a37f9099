//! Storage and events: KV names and limits, triggers, the events they carry, outbox job payloads
//! and dead letters.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::docs::FieldPath;
use crate::exec::HttpRequest;
use crate::input::{echo, InputError};
use crate::{AppId, DeadLetterId, DocumentId, ExecutionId, ScriptId, Timestamp, TriggerId};

/// The longest KV key, in bytes of UTF-8.
pub const KV_MAX_KEY_BYTES: usize = 512;
/// The largest KV value, in bytes of its JSON text.
pub const KV_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The longest collection name.
pub const COLLECTION_MAX_CHARS: usize = 64;
/// The most items one `list` call returns.
pub const KV_MAX_LIST_LIMIT: u32 = 1_000;

/// A KV (or document) collection of an app: 1–64 of `A–Z a–z 0–9 _ - .`, not starting with `.`
/// or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CollectionName(String);

impl CollectionName {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        let refuse = |why: &str| {
            Err(InputError::new(
                "collection",
                format!("'{}' is not a collection name: {why}", echo(value)),
            ))
        };
        if value.is_empty() {
            return Err(InputError::new(
                "collection",
                "a collection name cannot be empty",
            ));
        }
        if value.chars().count() > COLLECTION_MAX_CHARS {
            return refuse("it is longer than 64 characters");
        }
        if value.starts_with(['.', '-']) {
            return refuse("it must start with a letter, a digit or '_'");
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return refuse("use only letters, digits, '_', '-' and '.'");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A KV key: 1–512 bytes of text without control characters. Keys sort by their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KvKey(String);

impl KvKey {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        check_key_text("key", value, false)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key prefix (of a `list` call or a KV trigger): like a key, but may be empty.
pub fn parse_key_prefix(value: &str) -> Result<String, InputError> {
    check_key_text("key_prefix", value, true)?;
    Ok(value.to_owned())
}

fn check_key_text(field: &'static str, value: &str, empty_ok: bool) -> Result<(), InputError> {
    if value.is_empty() && !empty_ok {
        return Err(InputError::new(field, "a KV key cannot be empty"));
    }
    if value.len() > KV_MAX_KEY_BYTES {
        return Err(InputError::new(
            field,
            format!(
                "'{}' is {} bytes long; a KV key has at most {KV_MAX_KEY_BYTES} bytes",
                echo(value),
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InputError::new(
            field,
            format!(
                "'{}' contains a control character, which a KV key cannot hold",
                echo(value)
            ),
        ));
    }
    Ok(())
}

/// Checks a value's JSON text against [`KV_MAX_VALUE_BYTES`]; the text is what is stored.
pub fn kv_value_text(value: &serde_json::Value) -> Result<String, InputError> {
    let text = value.to_string();
    if text.len() > KV_MAX_VALUE_BYTES {
        return Err(InputError::new(
            "value",
            format!(
                "the value is {} bytes as JSON; a KV value has at most {KV_MAX_VALUE_BYTES} bytes",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// What happened to a KV entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvOp {
    Set,
    Delete,
}

impl KvOp {
    pub const ALL: [KvOp; 2] = [KvOp::Set, KvOp::Delete];

    pub fn parse(value: &str) -> Result<Self, InputError> {
        match value {
            "set" => Ok(Self::Set),
            "delete" => Ok(Self::Delete),
            other => Err(InputError::new(
                "ops",
                format!(
                    "'{}' is not a KV operation: use 'set' or 'delete'",
                    echo(other)
                ),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Delete => "delete",
        }
    }
}

/// A KV change, as a triggered script sees it in `ctx.event.kv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvEvent {
    pub collection: String,
    pub key: String,
    pub op: KvOp,
    /// The new value (`None` for a delete).
    pub value: Option<serde_json::Value>,
    /// The value before the change (`None` when there was none).
    pub prev_value: Option<serde_json::Value>,
}

/// What happened to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocsOp {
    Create,
    Update,
    Delete,
}

impl DocsOp {
    pub const ALL: [DocsOp; 3] = [DocsOp::Create, DocsOp::Update, DocsOp::Delete];

    pub fn parse(value: &str) -> Result<Self, InputError> {
        match value {
            "create" => Ok(Self::Create),
            "update" => Ok(Self::Update),
            "delete" => Ok(Self::Delete),
            other => Err(InputError::new(
                "ops",
                format!(
                    "'{}' is not a document operation: use 'create', 'update' or 'delete'",
                    echo(other)
                ),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// A document change, as a triggered script sees it in `ctx.event.docs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocsEvent {
    pub collection: String,
    pub id: DocumentId,
    pub op: DocsOp,
    /// The data after the change (`None` for a delete).
    pub data: Option<serde_json::Value>,
    /// The data the change replaced (`None` for a create).
    pub prev_data: Option<serde_json::Value>,
    /// The dotted paths whose value changed (`crate::docs::changed_paths`).
    pub changed: Vec<String>,
}

/// A dead letter, as a dead-letter handler sees it in `ctx.event.dead_letter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterEvent {
    pub id: DeadLetterId,
    /// The script whose job failed.
    pub script_id: ScriptId,
    pub error: String,
    pub attempts: u32,
    /// The failed job's payload ([`JobPayload`] as JSON).
    pub payload: serde_json::Value,
}

/// Why a script runs without an HTTP caller: `ctx.event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum TriggerEvent {
    Kv { kv: KvEvent },
    Docs { docs: DocsEvent },
    DeadLetter { dead_letter: DeadLetterEvent },
}

impl TriggerEvent {
    /// `"kv"`, `"docs"`, `"dead_letter"`: the outbox's `source_kind` and the metrics label.
    pub fn source(&self) -> &'static str {
        match self {
            Self::Kv { .. } => "kv",
            Self::Docs { .. } => "docs",
            Self::DeadLetter { .. } => "dead_letter",
        }
    }
}

/// What an outbox job runs with: an HTTP request (sync or async route) or a trigger event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum JobPayload {
    Http { request: HttpRequest },
    Trigger { event: TriggerEvent },
}

impl JobPayload {
    /// `"http"`, `"kv"`, `"docs"`, `"dead_letter"`.
    pub fn source(&self) -> &'static str {
        match self {
            Self::Http { .. } => "http",
            Self::Trigger { event } => event.source(),
        }
    }

    /// The dead letter this job handles, when it is a dead-letter handler's job.
    pub fn handled_dead_letter(&self) -> Option<DeadLetterId> {
        match self {
            Self::Trigger {
                event: TriggerEvent::DeadLetter { dead_letter },
            } => Some(dead_letter.id),
            _ => None,
        }
    }
}

/// Who waits for a job: an HTTP caller holding its connection (`Sync`: run once, never retried,
/// abandoned when the caller has gone) or nobody (`Async`: retried, then dead-lettered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    Sync,
    Async,
}

impl JobMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

/// What a trigger reacts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerDetail {
    /// Writes to one KV collection, optionally only keys starting with `key_prefix`.
    Kv {
        collection: CollectionName,
        key_prefix: Option<String>,
        ops: Vec<KvOp>,
    },
    /// Changes to the documents of one collection; with `fields`, only changes to one of them.
    Docs {
        collection: CollectionName,
        ops: Vec<DocsOp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fields: Option<Vec<FieldPath>>,
    },
    /// Any job of the app that is dead-lettered.
    DeadLetter,
}

impl TriggerDetail {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kv { .. } => "kv",
            Self::Docs { .. } => "docs",
            Self::DeadLetter => "dead_letter",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    pub id: TriggerId,
    pub app_id: AppId,
    /// The endpoint script it runs.
    pub script_id: ScriptId,
    #[serde(flatten)]
    pub detail: TriggerDetail,
    pub created_at: Timestamp,
}

/// How a dead letter was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Sent through the outbox again.
    Replayed,
    /// Marked resolved by a person or a script.
    Resolved,
    /// The dead-letter handler failed on it (the recursion stop: no new dead letter).
    HandlerFailed,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replayed => "replayed",
            Self::Resolved => "resolved",
            Self::HandlerFailed => "handler_failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "replayed" => Some(Self::Replayed),
            "resolved" => Some(Self::Resolved),
            "handler_failed" => Some(Self::HandlerFailed),
            _ => None,
        }
    }
}

/// A job that failed every attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: DeadLetterId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    /// The execution id of the job that failed.
    pub execution_id: ExecutionId,
    /// `"http"`, `"kv"`, `"docs"`, `"dead_letter"`.
    pub source: String,
    pub payload: JobPayload,
    pub error: String,
    pub attempts: u32,
    pub trigger_depth: u32,
    pub created_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub resolution: Option<Resolution>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_checked_with_reasons() {
        for good in ["users", "a", "x.y-z_1", "_private", &"c".repeat(64)] {
            assert!(CollectionName::parse(good).is_ok(), "{good} is accepted");
        }
        for (bad, why) in [
            ("", "empty"),
            (".hidden", "start with"),
            ("a b", "only letters"),
            ("ü", "only letters"),
            (&"c".repeat(65), "longer than 64"),
        ] {
            let err = CollectionName::parse(bad).expect_err(bad);
            assert_eq!(err.field, "collection");
            assert!(err.message.contains(why), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn keys_are_bounded_and_free_of_control_characters() {
        assert!(KvKey::parse("user:1/ü").is_ok());
        assert!(KvKey::parse(&"k".repeat(KV_MAX_KEY_BYTES)).is_ok());
        let long = KvKey::parse(&"k".repeat(KV_MAX_KEY_BYTES + 1)).expect_err("too long");
        assert!(
            long.message.contains("at most 512 bytes"),
            "{}",
            long.message
        );
        assert!(KvKey::parse("").is_err(), "empty");
        assert!(KvKey::parse("a\nb").is_err(), "control character");
        assert_eq!(parse_key_prefix("").expect("an empty prefix"), "");
    }

    #[test]
    fn a_value_larger_than_the_limit_is_refused_with_its_size() {
        let big = serde_json::Value::String("x".repeat(KV_MAX_VALUE_BYTES));
        let err = kv_value_text(&big).expect_err("too big");
        assert!(err.message.contains("bytes as JSON"), "{}", err.message);
        assert_eq!(
            kv_value_text(&serde_json::json!({"a": 1})).expect("small"),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn events_travel_in_the_shape_scripts_see() {
        let event = TriggerEvent::Kv {
            kv: KvEvent {
                collection: "users".into(),
                key: "u1".into(),
                op: KvOp::Set,
                value: Some(serde_json::json!({"n": 1})),
                prev_value: None,
            },
        };
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(json["source"], "kv");
        assert_eq!(json["kv"]["op"], "set");
        let payload = JobPayload::Trigger { event };
        let back: JobPayload =
            serde_json::from_value(serde_json::to_value(&payload).expect("serialises"))
                .expect("deserialises");
        assert_eq!(back, payload);
        assert_eq!(back.source(), "kv");
    }
}
