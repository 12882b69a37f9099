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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::cursor;
use crate::docs::{Query, StoredDoc};
use crate::events::{CollectionName, KvKey};
use crate::services::{Found, KvListRequest, KvPage};
use crate::{DeadLetterId, DocumentId, ExecutionId};

/// The commit that last wrote a KV entry or a document: its app's commit sequence
/// (`app_usage.kv_version`), which never goes back, so an entry deleted and written again never
/// shows a version seen before.
pub type Version = i64;

/// What a read of one key saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    Absent,
    At(Version),
}

/// A read of one key (a KV key, a document id) from the store, with what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read<K> {
    pub collection: CollectionName,
    pub key: K,
    pub seen: Seen,
}

pub type KvRead = Read<KvKey>;
pub type DocRead = Read<DocumentId>;

/// A `list` read from the store: the page it asked for and the keys (or document ids) and
/// versions it got. At commit the same page must come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRead {
    pub collection: CollectionName,
    pub request: KvListRequest,
    pub entries: Vec<(String, Version)>,
    /// Whether the page had a next one.
    pub more: bool,
}

pub type KvRangeRead = RangeRead;

/// A write of the run: the value to store under the key, or `None` to delete it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write<K, V> {
    pub collection: CollectionName,
    pub key: K,
    pub value: Option<V>,
}

pub type KvWrite = Write<KvKey, serde_json::Value>;
pub type DocWrite = Write<DocumentId, StoredDoc>;

/// A `find` read from the store: the query, how many documents it fetched, the collection's
/// version when it looked, and the ids and versions it got, in order. At commit the same query
/// must find the same — which an unchanged collection version proves without running it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRead {
    pub collection: CollectionName,
    pub query: Query,
    pub fetch: u32,
    pub collection_version: Version,
    pub results: Vec<(DocumentId, Version)>,
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

/// What a run read and wrote of its app's documents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocEffects {
    pub reads: Vec<DocRead>,
    pub ranges: Vec<RangeRead>,
    pub queries: Vec<QueryRead>,
    pub writes: Vec<DocWrite>,
}

/// What a finished run asks to commit: the reads to check and the writes to apply, in the
/// order the script made them (the last write to a key is the one kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Effects {
    pub reads: Vec<KvRead>,
    pub ranges: Vec<KvRangeRead>,
    pub writes: Vec<KvWrite>,
    /// Boxed: most runs touch no document, and an outcome carrying effects moves by value.
    #[serde(default)]
    pub docs: Box<DocEffects>,
    pub dead_letters: Vec<DeadLetterAction>,
}

impl Effects {
    /// Whether the run changes anything: a KV or document write, a dead-letter action.
    pub fn writes_anything(&self) -> bool {
        !self.writes.is_empty() || !self.docs.writes.is_empty() || !self.dead_letters.is_empty()
    }

    /// Whether the run needs a commit at all: it wrote something, or it read more than once (two
    /// reads must be checked to be one consistent view; a single read is one by itself).
    pub fn need_commit(&self) -> bool {
        let docs = &self.docs;
        self.writes_anything()
            || self.reads.len()
                + self.ranges.len()
                + docs.reads.len()
                + docs.ranges.len()
                + docs.queries.len()
                > 1
    }
}

/// A key of a [`Keyspace`]: a KV key or a document id, which lists compare as text.
pub trait TxKey: Ord + Hash + Clone {
    fn text(&self) -> Cow<'_, str>;
}

impl TxKey for KvKey {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
}

impl TxKey for DocumentId {
    fn text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

/// What a run read from and wrote to one store (KV, documents), keyed by collection and key.
#[derive(Debug)]
pub struct Keyspace<K, V> {
    /// The first thing each key read from the store showed.
    reads: HashMap<(CollectionName, K), Seen>,
    ranges: Vec<RangeRead>,
    /// The last write to each key.
    writes: BTreeMap<(CollectionName, K), Option<V>>,
}

impl<K, V> Default for Keyspace<K, V> {
    fn default() -> Self {
        Self {
            reads: HashMap::new(),
            ranges: Vec::new(),
            writes: BTreeMap::new(),
        }
    }
}

/// What the run's own writes say about a key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Overlay<'a, V = serde_json::Value> {
    /// The run has not written it: read the store.
    Untouched,
    /// The run wrote this value.
    Written(&'a V),
    /// The run deleted it.
    Deleted,
}

impl<K: TxKey, V: Clone> Keyspace<K, V> {
    /// What the run wrote to the key, if anything.
    pub fn overlay(&self, collection: &CollectionName, key: &K) -> Overlay<'_, V> {
        match self.writes.get(&(collection.clone(), key.clone())) {
            None => Overlay::Untouched,
            Some(Some(value)) => Overlay::Written(value),
            Some(None) => Overlay::Deleted,
        }
    }

    /// Records that a read of the key from the store saw `seen` (only the first read of a key
    /// counts: a later one that saw something else means the first no longer holds anyway).
    pub fn saw(&mut self, collection: &CollectionName, key: &K, seen: Seen) {
        self.reads
            .entry((collection.clone(), key.clone()))
            .or_insert(seen);
    }

    pub fn write(&mut self, collection: &CollectionName, key: &K, value: Option<V>) {
        self.writes.insert((collection.clone(), key.clone()), value);
    }

    /// The run's writes to `collection`: each key with its value (`None`: deleted).
    pub fn written<'s>(
        &'s self,
        collection: &'s CollectionName,
    ) -> impl Iterator<Item = (&'s K, Option<&'s V>)> + 's {
        self.writes
            .iter()
            .filter(move |((written, _), _)| written == collection)
            .map(|((_, key), value)| (key, value.as_ref()))
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
        page: VersionedPage<V>,
    ) -> KvPage<V> {
        let VersionedPage { items, cursor } = page;
        let more = cursor.is_some();
        self.ranges.push(RangeRead {
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
        let mut merged: BTreeMap<String, V> = items
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect();
        for ((written_collection, key), value) in &self.writes {
            let key = key.text();
            if written_collection != collection || !covered(&key) {
                continue;
            }
            match value {
                Some(value) => merged.insert(key.into_owned(), value.clone()),
                None => merged.remove(key.as_ref()),
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

    fn into_parts(self) -> KeyspaceEffects<K, V> {
        let mut reads: Vec<Read<K>> = self
            .reads
            .into_iter()
            .map(|((collection, key), seen)| Read {
                collection,
                key,
                seen,
            })
            .collect();
        // One order for every run: the commit checks them in it.
        reads.sort_by(|a, b| (&a.collection, &a.key).cmp(&(&b.collection, &b.key)));
        let writes = self
            .writes
            .into_iter()
            .map(|((collection, key), value)| Write {
                collection,
                key,
                value,
            })
            .collect();
        (reads, self.ranges, writes)
    }
}

/// What a [`Keyspace`] asks to commit: its reads, ranges and writes.
type KeyspaceEffects<K, V> = (Vec<Read<K>>, Vec<RangeRead>, Vec<Write<K, V>>);

/// A run's transaction as the executor keeps it while the script runs.
#[derive(Debug, Default)]
pub struct Transaction {
    kv: Keyspace<KvKey, serde_json::Value>,
    docs: Keyspace<DocumentId, StoredDoc>,
    queries: Vec<QueryRead>,
    dead_letters: Vec<DeadLetterAction>,
}

impl Transaction {
    /// What the run wrote to the KV key, if anything.
    pub fn overlay(&self, collection: &CollectionName, key: &KvKey) -> Overlay<'_> {
        self.kv.overlay(collection, key)
    }

    /// Records what a read of the KV key from the store saw (see [`Keyspace::saw`]).
    pub fn saw(&mut self, collection: &CollectionName, key: &KvKey, seen: Seen) {
        self.kv.saw(collection, key, seen);
    }

    pub fn write(
        &mut self,
        collection: &CollectionName,
        key: &KvKey,
        value: Option<serde_json::Value>,
    ) {
        self.kv.write(collection, key, value);
    }

    /// A KV page as the run sees it (see [`Keyspace::list`]).
    pub fn list(
        &mut self,
        collection: &CollectionName,
        request: &KvListRequest,
        page: VersionedPage,
    ) -> KvPage {
        self.kv.list(collection, request, page)
    }

    /// The run's documents: what it read and wrote of them.
    pub fn docs(&mut self) -> &mut Keyspace<DocumentId, StoredDoc> {
        &mut self.docs
    }

    /// How many documents a `find` of `query` in `collection` must fetch from the store so that,
    /// once the run's own writes are laid over them, `query.limit` remain whenever the
    /// collection has them.
    pub fn find_fetch(&self, collection: &CollectionName, query: &Query) -> u32 {
        let written = self.docs.written(collection).count();
        query
            .limit
            .saturating_add(u32::try_from(written).unwrap_or(u32::MAX))
    }

    /// The documents a `find` of `query` shows the run: `found` as the store returned it when
    /// asked for [`Transaction::find_fetch`] documents (recorded as a query read), without the
    /// ones the run wrote, with those of the run's writes that match, in the query's order, at
    /// most `query.limit`.
    pub fn find(
        &mut self,
        collection: &CollectionName,
        query: &Query,
        fetch: u32,
        found: Found,
    ) -> Vec<(String, StoredDoc)> {
        let Found {
            collection_version,
            docs: found,
        } = found;
        self.queries.push(QueryRead {
            collection: collection.clone(),
            query: query.clone(),
            fetch,
            collection_version,
            results: found
                .iter()
                .map(|(id, _, version)| (*id, *version))
                .collect(),
        });
        let mut written = HashMap::new();
        for (id, doc) in self.docs.written(collection) {
            written.insert(*id, doc);
        }
        let mut shown: Vec<(String, StoredDoc)> = found
            .into_iter()
            .filter(|(id, _, _)| !written.contains_key(id))
            .map(|(id, doc, _)| (id.to_string(), doc))
            .collect();
        for (id, doc) in written {
            if let Some(doc) = doc.filter(|doc| query.matches(&doc.data)) {
                shown.push((id.to_string(), doc.clone()));
            }
        }
        shown.sort_by(|a, b| query.order((&a.0, &a.1.data), (&b.0, &b.1.data)));
        shown.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
        shown
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

    /// What the run asks to commit.
    pub fn into_effects(self) -> Effects {
        let (reads, ranges, writes) = self.kv.into_parts();
        let (doc_reads, doc_ranges, doc_writes) = self.docs.into_parts();
        Effects {
            reads,
            ranges,
            writes,
            docs: Box::new(DocEffects {
                reads: doc_reads,
                ranges: doc_ranges,
                queries: self.queries,
                writes: doc_writes,
            }),
            dead_letters: self.dead_letters,
        }
    }
}

/// A page of KV entries (or documents) with the version of each, keys ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedPage<V = serde_json::Value> {
    pub items: Vec<(String, V, Version)>,
    pub cursor: Option<String>,
}

impl<V> Default for VersionedPage<V> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            cursor: None,
        }
    }
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
