//! Which triggers a change fires, and with what event: the rules the store applies in the
//! transaction of the change. Pure functions over the change and the app's triggers, so that
//! both backends (and anything else that needs to know) apply one rule.

use crate::events::{DeadLetterEvent, KvEvent};
use crate::{CollectionName, DeadLetter, KvKey, KvOp, ScriptId, TriggerEvent};

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
