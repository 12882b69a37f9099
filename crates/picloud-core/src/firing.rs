//! Which triggers a change fires, and with what event: the rules the store applies in the
//! transaction of the change. Pure functions over the change and the app's triggers, so that
//! both backends (and anything else that needs to know) apply one rule.

use crate::docs::{changed_paths, touches, FieldPath};
use crate::events::{DeadLetterEvent, DocsEvent, KvEvent};
use crate::{CollectionName, DeadLetter, DocsOp, DocumentId, KvKey, KvOp, ScriptId, TriggerEvent};

/// A job a trigger enqueues: the script it runs, the event it runs with and its trigger depth,
/// one level deeper than what fired it.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub script_id: ScriptId,
    pub event: TriggerEvent,
    pub trigger_depth: u32,
}

impl Firing {
    fn new(script_id: ScriptId, event: TriggerEvent, depth: u32) -> Self {
        Self {
            script_id,
            event,
            trigger_depth: depth.saturating_add(1),
        }
    }
}

/// A KV trigger of one collection, as far as matching a change goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvTriggerRule {
    pub script_id: ScriptId,
    /// Only keys that start with it; `None`: every key.
    pub key_prefix: Option<String>,
    pub ops: Vec<KvOp>,
}

/// A KV write that may fire triggers.
#[derive(Debug, Clone, Copy)]
pub struct KvChange<'a> {
    pub collection: &'a CollectionName,
    pub key: &'a KvKey,
    pub op: KvOp,
    /// The new value (`None` for a delete).
    pub value: Option<&'a serde_json::Value>,
    /// The value the write replaced, if any.
    pub prev_value: Option<&'a serde_json::Value>,
    /// The trigger depth of the execution that writes.
    pub trigger_depth: u32,
}

impl KvChange<'_> {
    /// Whether `trigger` (a trigger of the change's collection) fires: its key prefix and its
    /// operations match.
    pub fn fires(&self, trigger: &KvTriggerRule) -> bool {
        let prefix_matches = trigger
            .key_prefix
            .as_deref()
            .is_none_or(|prefix| self.key.as_str().starts_with(prefix));
        prefix_matches && trigger.ops.contains(&self.op)
    }

    /// One firing per trigger of `triggers` (the collection's) that [`KvChange::fires`], in
    /// their order.
    pub fn firings(&self, triggers: &[KvTriggerRule]) -> Vec<Firing> {
        triggers
            .iter()
            .filter(|trigger| self.fires(trigger))
            .map(|trigger| Firing::new(trigger.script_id, self.event(), self.trigger_depth))
            .collect()
    }

    fn event(&self) -> TriggerEvent {
        TriggerEvent::Kv {
            kv: KvEvent {
                collection: self.collection.to_string(),
                key: self.key.to_string(),
                op: self.op,
                value: self.value.cloned(),
                prev_value: self.prev_value.cloned(),
            },
        }
    }
}

/// A docs trigger of one collection, as far as matching a change goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsTriggerRule {
    pub script_id: ScriptId,
    pub ops: Vec<DocsOp>,
    /// Only changes to one of these paths (or inside them); `None`: every change.
    pub fields: Option<Vec<FieldPath>>,
}

/// A document write that may fire triggers.
#[derive(Debug, Clone, Copy)]
pub struct DocsChange<'a> {
    pub collection: &'a CollectionName,
    pub id: DocumentId,
    /// The data after the change (`None` for a delete).
    pub data: Option<&'a serde_json::Value>,
    /// The data the change replaced (`None` for a create).
    pub prev_data: Option<&'a serde_json::Value>,
    /// The trigger depth of the execution that writes.
    pub trigger_depth: u32,
}

impl DocsChange<'_> {
    pub fn op(&self) -> DocsOp {
        match (self.prev_data, self.data) {
            (None, _) => DocsOp::Create,
            (Some(_), Some(_)) => DocsOp::Update,
            (Some(_), None) => DocsOp::Delete,
        }
    }

    /// One firing per trigger of `triggers` (the collection's) whose operations hold the
    /// change's and, when it names fields, one of which the change touched; in their order. An
    /// update that changed nothing fires no trigger that names fields.
    pub fn firings(&self, triggers: &[DocsTriggerRule]) -> Vec<Firing> {
        let op = self.op();
        let matching: Vec<&DocsTriggerRule> = triggers
            .iter()
            .filter(|trigger| trigger.ops.contains(&op))
            .collect();
        if matching.is_empty() {
            return Vec::new();
        }
        let changed = changed_paths(self.prev_data, self.data);
        matching
            .into_iter()
            .filter(|trigger| {
                trigger
                    .fields
                    .as_deref()
                    .is_none_or(|fields| touches(&changed, fields))
            })
            .map(|trigger| {
                let event = TriggerEvent::Docs {
                    docs: DocsEvent {
                        collection: self.collection.to_string(),
                        id: self.id,
                        op,
                        data: self.data.cloned(),
                        prev_data: self.prev_data.cloned(),
                        changed: changed.clone(),
                    },
                };
                Firing::new(trigger.script_id, event, self.trigger_depth)
            })
            .collect()
    }
}

/// The dead-letter fan-out: one firing per dead-letter trigger's script of the app (`scripts`),
/// carrying `dead_letter` and the failed job's payload (as JSON).
pub fn dead_letter_firings(
    dead_letter: &DeadLetter,
    failed_payload: &serde_json::Value,
    scripts: &[ScriptId],
) -> Vec<Firing> {
    scripts
        .iter()
        .map(|script_id| {
            let event = TriggerEvent::DeadLetter {
                dead_letter: DeadLetterEvent {
                    id: dead_letter.id,
                    script_id: dead_letter.script_id,
                    error: dead_letter.error.clone(),
                    attempts: dead_letter.attempts,
                    payload: failed_payload.clone(),
                },
            };
            Firing::new(*script_id, event, dead_letter.trigger_depth)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::exec::HttpRequest;
    use crate::{AppId, DeadLetterId, ExecutionId, JobPayload, Timestamp};

    fn rule(prefix: Option<&str>, ops: &[KvOp]) -> KvTriggerRule {
        KvTriggerRule {
            script_id: ScriptId::new(),
            key_prefix: prefix.map(str::to_owned),
            ops: ops.to_vec(),
        }
    }

    #[test]
    fn a_kv_trigger_fires_when_its_prefix_and_its_operation_match() {
        let collection = CollectionName::parse("orders").expect("a collection");
        let key = KvKey::parse("eu:42").expect("a key");
        let value = json!({"total": 3});
        let change = KvChange {
            collection: &collection,
            key: &key,
            op: KvOp::Set,
            value: Some(&value),
            prev_value: None,
            trigger_depth: 2,
        };
        let every_set = rule(None, &[KvOp::Set]);
        let eu_sets = rule(Some("eu:"), &[KvOp::Set, KvOp::Delete]);
        let us_sets = rule(Some("us:"), &[KvOp::Set]);
        let deletes = rule(None, &[KvOp::Delete]);
        let firings = change.firings(&[every_set.clone(), us_sets, eu_sets.clone(), deletes]);
        let scripts: Vec<_> = firings.iter().map(|firing| firing.script_id).collect();
        assert_eq!(
            scripts,
            vec![every_set.script_id, eu_sets.script_id],
            "the matching triggers fire, in their order"
        );
        assert!(
            firings.iter().all(|firing| firing.trigger_depth == 3),
            "one level deeper than the writer: {firings:?}"
        );
        let TriggerEvent::Kv { kv } = &firings[0].event else {
            panic!("a KV event: {:?}", firings[0].event);
        };
        assert_eq!(
            (kv.collection.as_str(), kv.key.as_str(), kv.op, &kv.value),
            ("orders", "eu:42", KvOp::Set, &Some(value)),
            "the event carries the change"
        );
    }

    #[test]
    fn a_docs_trigger_fires_on_its_operations_and_the_fields_it_names() {
        let collection = CollectionName::parse("users").expect("a collection");
        let before = json!({"email": "a@x", "visits": 1});
        let after = json!({"email": "a@x", "visits": 2});
        let change = DocsChange {
            collection: &collection,
            id: DocumentId::new(),
            data: Some(&after),
            prev_data: Some(&before),
            trigger_depth: 0,
        };
        let rule = |ops: &[DocsOp], fields: Option<&[&str]>| DocsTriggerRule {
            script_id: ScriptId::new(),
            ops: ops.to_vec(),
            fields: fields.map(|fields| {
                fields
                    .iter()
                    .map(|f| FieldPath::parse(f).expect("a path"))
                    .collect()
            }),
        };
        let every_update = rule(&[DocsOp::Update], None);
        let visits = rule(&[DocsOp::Update], Some(&["visits"]));
        let email = rule(&[DocsOp::Update], Some(&["email"]));
        let creates = rule(&[DocsOp::Create], None);
        let firings = change.firings(&[every_update.clone(), visits.clone(), email, creates]);
        let scripts: Vec<_> = firings.iter().map(|firing| firing.script_id).collect();
        assert_eq!(scripts, [every_update.script_id, visits.script_id]);
        let TriggerEvent::Docs { docs } = &firings[0].event else {
            panic!("a docs event: {:?}", firings[0].event);
        };
        assert_eq!(docs.op, DocsOp::Update);
        assert_eq!(docs.prev_data.as_ref(), Some(&before));
        assert_eq!(docs.changed, ["visits"]);
        let create = DocsChange {
            prev_data: None,
            ..change
        };
        assert_eq!(create.op(), DocsOp::Create);
        let delete = DocsChange {
            data: None,
            ..change
        };
        assert_eq!(delete.op(), DocsOp::Delete);
    }

    #[test]
    fn a_dead_letter_fans_out_to_every_handler_one_level_deeper() {
        let dead_letter = DeadLetter {
            id: DeadLetterId::new(),
            app_id: AppId::new(),
            script_id: ScriptId::new(),
            execution_id: ExecutionId::new(),
            source: "http".to_owned(),
            payload: JobPayload::Http {
                request: HttpRequest::default(),
            },
            error: "boom".to_owned(),
            attempts: 5,
            trigger_depth: u32::MAX,
            created_at: Timestamp::from_millis(0),
            resolved_at: None,
            resolution: None,
        };
        let handlers = [ScriptId::new(), ScriptId::new()];
        let firings = dead_letter_firings(&dead_letter, &json!({"source": "http"}), &handlers);
        assert_eq!(
            firings
                .iter()
                .map(|firing| firing.script_id)
                .collect::<Vec<_>>(),
            handlers,
            "one job per handler"
        );
        assert!(
            firings
                .iter()
                .all(|firing| firing.trigger_depth == u32::MAX),
            "the depth saturates rather than wrapping: {firings:?}"
        );
        let TriggerEvent::DeadLetter { dead_letter: event } = &firings[1].event else {
            panic!("a dead-letter event: {:?}", firings[1].event);
        };
        assert_eq!(
            (event.id, event.attempts, event.error.as_str()),
            (dead_letter.id, 5, "boom"),
            "the event carries the dead letter"
        );
        assert!(
            dead_letter_firings(&dead_letter, &json!(null), &[]).is_empty(),
            "no handler, no job"
        );
    }
}
