//! One execution's unit of work over its app's data (issue #15).
//!
//! A run reads the store through [`crate::ScriptServices`] and keeps, in a [`Transaction`], what
//! each read saw (a key's [`Version`], or that it was absent; a `list`'s keys and versions) and
//! what it writes. Nothing reaches the store while the script runs: its writes are visible to its
//! own later reads only. When the script returns, its [`Effects`] go to the orchestrator, which
//! commits them in one transaction that first checks every read still holds — else the run
//! conflicted with a commit made meanwhile, and the script runs again. Runs whose reads all hold
//! at their commit are serializable in commit order.
//!
//! Everything here is pure and serialisable: a remote executor sends its effects back over HTTP.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cursor;
use crate::events::{CollectionName, KvKey};
use crate::services::{KvListRequest, KvPage};
use crate::{DeadLetterId, ExecutionId};

/// The commit that last wrote a KV entry: its app's commit sequence (`app_usage.kv_version`),
/// which never goes back, so an entry deleted and written again never shows a version seen
/// before.
pub type Version = i64;

/// What a read of one key saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    Absent,
    At(Version),
}

/// A read of one key from the store, with what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRead {
    pub collection: CollectionName,
    pub key: KvKey,
    pub seen: Seen,
}

/// A `list` read from the store: the page it asked for and the keys and versions it got. At
/// commit the same page must come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRangeRead {
    pub collection: CollectionName,
    pub request: KvListRequest,
    pub entries: Vec<(String, Version)>,
    /// Whether the page had a next one.
    pub more: bool,
}

/// A write of the run: the value to store under the key, or `None` to delete it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvWrite {
    pub collection: CollectionName,
    pub key: KvKey,
    pub value: Option<serde_json::Value>,
}

/// A dead-letter action of the run, applied at its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum DeadLetterAction {
    /// Send its job through the outbox again, as the execution `execution_id`.
    Replay {
        id: DeadLetterId,
        execution_id: ExecutionId,
    },
    Resolve {
        id: DeadLetterId,
    },
}

/// What a finished run asks to commit: the reads to check and the writes to apply, in the
/// order the script made them (the last write to a key is the one kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Effects {
    pub reads: Vec<KvRead>,
    pub ranges: Vec<KvRangeRead>,
    pub writes: Vec<KvWrite>,
    pub dead_letters: Vec<DeadLetterAction>,
}

impl Effects {
    /// Whether the run needs a commit at all: it wrote something, or it read more than once (two
    /// reads must be checked to be one consistent view; a single read is one by itself).
    pub fn need_commit(&self) -> bool {
        !self.writes.is_empty()
            || !self.dead_letters.is_empty()
            || self.reads.len() + self.ranges.len() > 1
    }
}

/// A run's transaction as the executor keeps it while the script runs.
#[derive(Debug, Default)]
pub struct Transaction {
    /// The first thing each key read from the store showed.
    reads: HashMap<(CollectionName, KvKey), Seen>,
    ranges: Vec<KvRangeRead>,
    /// The last write to each key.
    writes: BTreeMap<(CollectionName, KvKey), Option<serde_json::Value>>,
    dead_letters: Vec<DeadLetterAction>,
}

/// What the run's own writes say about a key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Overlay<'a> {
    /// The run has not written it: read the store.
    Untouched,
    /// The run wrote this value.
    Written(&'a serde_json::Value),
    /// The run deleted it.
    Deleted,
}

impl Transaction {
    /// What the run wrote to the key, if anything.
    pub fn overlay(&self, collection: &CollectionName, key: &KvKey) -> Overlay<'_> {
        match self.writes.get(&(collection.clone(), key.clone())) {
            None => Overlay::Untouched,
            Some(Some(value)) => Overlay::Written(value),
            Some(None) => Overlay::Deleted,
        }
    }

    /// Records that a read of the key from the store saw `seen` (only the first read of a key
    /// counts: a later one that saw something else means the first no longer holds anyway).
    pub fn saw(&mut self, collection: &CollectionName, key: &KvKey, seen: Seen) {
        self.reads
            .entry((collection.clone(), key.clone()))
            .or_insert(seen);
    }

    pub fn write(
        &mut self,
        collection: &CollectionName,
        key: &KvKey,
        value: Option<serde_json::Value>,
    ) {
        self.writes.insert((collection.clone(), key.clone()), value);
    }

    pub fn dead_letter(&mut self, action: DeadLetterAction) {
        self.dead_letters.push(action);
    }

    /// Whether the run already acted on the dead letter.
    pub fn acted_on(&self, id: DeadLetterId) -> bool {
        self.dead_letters.iter().any(|action| match action {
            DeadLetterAction::Replay { id: acted, .. }
            | DeadLetterAction::Resolve { id: acted } => *acted == id,
        })
    }

    /// A page of `collection` as the run sees it: `page` as the store returned it for
    /// `request`, with versions (recorded as a range read), and the run's own writes laid over
    /// the keys that page covers — from after the request's cursor up to the page's last key, or
    /// to the end of the prefix when it is the last page. Returns at most `limit` items; when
    /// the run's writes add more, the page ends earlier, its cursor at the last key it shows.
    pub fn list(
        &mut self,
        collection: &CollectionName,
        request: &KvListRequest,
        page: VersionedPage,
    ) -> KvPage {
        let VersionedPage { items, cursor } = page;
        let more = cursor.is_some();
        self.ranges.push(KvRangeRead {
            collection: collection.clone(),
            request: request.clone(),
            entries: items
                .iter()
                .map(|(key, _, version)| (key.clone(), *version))
                .collect(),
            more,
        });
        // The store read the cursor already: one it did not issue never comes this far.
        let after = request
            .cursor
            .as_deref()
            .and_then(cursor::decode)
            .unwrap_or_default();
        let prefix = request.prefix.as_deref().unwrap_or_default();
        let last = if more {
            items.last().map(|(key, _, _)| key.clone())
        } else {
            None
        };
        let covered = |key: &str| {
            key > after.as_str()
                && key.starts_with(prefix)
                && last.as_deref().is_none_or(|last| key <= last)
        };
        let mut merged: BTreeMap<String, serde_json::Value> = items
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect();
        for ((written_collection, key), value) in &self.writes {
            if written_collection != collection || !covered(key.as_str()) {
                continue;
            }
            match value {
                Some(value) => merged.insert(key.as_str().to_owned(), value.clone()),
                None => merged.remove(key.as_str()),
            };
        }
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX).max(1);
        if merged.len() > limit {
            let items: Vec<_> = merged.into_iter().take(limit).collect();
            let cursor = items.last().map(|(key, _)| cursor::encode(key));
            return KvPage { items, cursor };
        }
        KvPage {
            items: merged.into_iter().collect(),
            cursor,
        }
    }

    /// What the run asks to commit.
    pub fn into_effects(self) -> Effects {
        let mut reads: Vec<KvRead> = self
            .reads
            .into_iter()
            .map(|((collection, key), seen)| KvRead {
                collection,
                key,
                seen,
            })
            .collect();
        // One order for every run: the commit checks them in it.
        reads.sort_by(|a, b| (&a.collection, &a.key).cmp(&(&b.collection, &b.key)));
        Effects {
            reads,
            ranges: self.ranges,
            writes: self
                .writes
                .into_iter()
                .map(|((collection, key), value)| KvWrite {
                    collection,
                    key,
                    value,
                })
                .collect(),
            dead_letters: self.dead_letters,
        }
    }
}

/// A page of KV entries with the version of each, keys ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionedPage {
    pub items: Vec<(String, serde_json::Value, Version)>,
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn c(name: &str) -> CollectionName {
        CollectionName::parse(name).expect("a collection name")
    }

    fn k(key: &str) -> KvKey {
        KvKey::parse(key).expect("a key")
    }

    fn request(prefix: Option<&str>, after: Option<&str>, limit: u32) -> KvListRequest {
        KvListRequest {
            prefix: prefix.map(str::to_owned),
            limit,
            cursor: after.map(cursor::encode),
        }
    }

    fn page(keys: &[&str], more: bool) -> VersionedPage {
        VersionedPage {
            items: keys
                .iter()
                .enumerate()
                .map(|(n, key)| ((*key).to_owned(), json!(n), n as Version + 1))
                .collect(),
            cursor: more.then(|| cursor::encode(keys.last().expect("a key"))),
        }
    }

    fn keys(page: &KvPage) -> Vec<&str> {
        page.items.iter().map(|(key, _)| key.as_str()).collect()
    }

    #[test]
    fn a_list_shows_the_runs_writes_within_the_keys_its_page_covers() {
        let mut tx = Transaction::default();
        tx.write(&c("users"), &k("a2"), Some(json!("new")));
        tx.write(&c("users"), &k("a3"), None);
        tx.write(&c("users"), &k("z"), Some(json!("past the page")));
        tx.write(&c("other"), &k("a4"), Some(json!("another collection")));
        let listed = tx.list(
            &c("users"),
            &request(None, None, 10),
            page(&["a1", "a3", "a5"], true),
        );
        assert_eq!(keys(&listed), ["a1", "a2", "a5"]);
        assert_eq!(
            listed.cursor.as_deref(),
            Some(cursor::encode("a5").as_str())
        );
        let last = tx.list(
            &c("users"),
            &request(None, Some("a5"), 10),
            page(&[], false),
        );
        assert_eq!(
            keys(&last),
            ["z"],
            "the last page covers the rest of the range"
        );
    }

    #[test]
    fn a_list_keeps_its_limit_and_ends_its_page_at_the_last_key_it_shows() {
        let mut tx = Transaction::default();
        tx.write(&c("c"), &k("b"), Some(json!(1)));
        let listed = tx.list(&c("c"), &request(None, None, 2), page(&["a", "c"], false));
        assert_eq!(keys(&listed), ["a", "b"]);
        assert_eq!(listed.cursor.as_deref(), Some(cursor::encode("b").as_str()));
    }

    #[test]
    fn a_list_with_a_prefix_ignores_written_keys_outside_it() {
        let mut tx = Transaction::default();
        tx.write(&c("c"), &k("user:2"), Some(json!(2)));
        tx.write(&c("c"), &k("team:1"), Some(json!(1)));
        let listed = tx.list(
            &c("c"),
            &request(Some("user:"), None, 10),
            page(&["user:1"], false),
        );
        assert_eq!(keys(&listed), ["user:1", "user:2"]);
    }

    #[test]
    fn effects_keep_the_first_read_of_a_key_and_the_last_write() {
        let mut tx = Transaction::default();
        tx.saw(&c("c"), &k("b"), Seen::At(3));
        tx.saw(&c("c"), &k("a"), Seen::Absent);
        tx.saw(&c("c"), &k("b"), Seen::At(4));
        tx.write(&c("c"), &k("a"), Some(json!(1)));
        tx.write(&c("c"), &k("a"), Some(json!(2)));
        assert_eq!(tx.overlay(&c("c"), &k("a")), Overlay::Written(&json!(2)));
        tx.write(&c("c"), &k("b"), None);
        assert_eq!(tx.overlay(&c("c"), &k("b")), Overlay::Deleted);
        assert_eq!(tx.overlay(&c("c"), &k("x")), Overlay::Untouched);
        let effects = tx.into_effects();
        assert_eq!(
            effects.reads,
            [
                KvRead {
                    collection: c("c"),
                    key: k("a"),
                    seen: Seen::Absent
                },
                KvRead {
                    collection: c("c"),
                    key: k("b"),
                    seen: Seen::At(3)
                },
            ]
        );
        assert_eq!(
            effects.writes,
            [
                KvWrite {
                    collection: c("c"),
                    key: k("a"),
                    value: Some(json!(2))
                },
                KvWrite {
                    collection: c("c"),
                    key: k("b"),
                    value: None
                },
            ]
        );
        assert!(effects.need_commit());
    }

    #[test]
    fn a_run_that_read_once_and_wrote_nothing_needs_no_commit() {
        let mut tx = Transaction::default();
        assert!(!Transaction::default().into_effects().need_commit());
        tx.saw(&c("c"), &k("a"), Seen::At(1));
        assert!(!tx.into_effects().need_commit());
        let mut tx = Transaction::default();
        tx.saw(&c("c"), &k("a"), Seen::At(1));
        tx.saw(&c("c"), &k("b"), Seen::Absent);
        assert!(
            tx.into_effects().need_commit(),
            "two reads must be one view"
        );
    }

    #[test]
    fn effects_cross_the_wire_unchanged() {
        let mut tx = Transaction::default();
        tx.saw(&c("c"), &k("a"), Seen::At(7));
        tx.write(&c("c"), &k("a"), Some(json!({"n": 1})));
        tx.dead_letter(DeadLetterAction::Resolve {
            id: DeadLetterId::new(),
        });
        let effects = tx.into_effects();
        let text = serde_json::to_string(&effects).expect("serialised");
        let back: Effects = serde_json::from_str(&text).expect("deserialised");
        assert_eq!(back, effects);
    }
}
