//! A run's commit (issue #15), written once over [`CommitTx`]: the runs the platform commits go
//! with the outbox's group commits on the recorder's thread (SQLite: its own rusqlite
//! connection; PostgreSQL: its own connection), several runs to a transaction; a store's own
//! `commit_run` (`kv_set`, a replay from the admin API) goes through a [`WriteTx`]. Either way,
//! each run is one [`CommitBatch::run`]:
//!
//! 1. **Lock the app.** Its `app_usage` row, the first time the batch touches the app (locked on
//!    PostgreSQL until the transaction ends). Every commit that writes an app's KV holds it, so
//!    what the checks below read stays as it is until this transaction commits, on every node.
//!    Lock order, for every path that takes several: `app_usage`, then outbox rows, then KV
//!    entries, then dead letters.
//! 2. **Fence.** For a run of an outbox job, its row at the run's attempt; gone: `Fenced`.
//! 3. **Check the reads.** Each key read is still at the version seen (or still absent); each
//!    page read comes back with the same keys at the same versions; each dead letter acted on is
//!    still the app's and open. Anything else: `Conflict`.
//! 4. **Plan.** The writes' sizes, the jobs of the KV triggers they fire (`picloud_core::firing`,
//!    from the value each replaces), checked against the run's trigger-job limit and the app's
//!    quotas: `Refused` when over.
//! 5. **Apply.** The writes at the app's next version, the jobs, the dead-letter actions, the
//!    job's row deleted. The app's counts are written once per batch ([`CommitBatch::finish`]).
//!
//! Nothing is written before step 5, so a run that is not committed leaves the transaction as
//! it found it and the other runs of its batch go on.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use picloud_core::docs::{data_text, DOC_MAX_BYTES};
use picloud_core::events::kv_value_text;
use picloud_core::firing::{DocsChange, DocsTriggerRule, KvChange, KvTriggerRule};
use picloud_core::tx::{DeadLetterAction, DocWrite, Effects, KvRangeRead, Seen, Version};
use picloud_core::{AppId, CollectionName, DocumentId, KvKey, KvOp, Resolution};

use std::future::Future;

use crate::db::{Arg, Row, Sql, WriteTx};
use crate::docs::{doc_args, doc_page_holds, query_holds};
use crate::jobs::{enqueue, triggered_job, JobValues};
use crate::kv::{entry_args, KvRange, Listed};
use crate::rows::{json_value, DocsTriggerRow, KvTriggerRow, UsageRow};
use crate::{
    sql, AppQuotas, AppUsage, Backend, NewJob, OverLimit, RunCommit, RunVerdict, StoreResult,
    KV_ENTRY_OVERHEAD,
};

/// A row read through sqlx or through rusqlite (SQLite's connections of our own: the outbox
/// committer's, and the threads' readers, `crate::sqlite::direct`).
pub trait AnyRow: Row {
    fn from_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;

    /// The bytes it holds, for reads bounded by them (`Engine::read_rows_within`); rows never
    /// read that way count nothing.
    fn bytes(&self) -> usize {
        0
    }
}

/// What a column's value holds, in bytes.
trait ColumnBytes {
    fn bytes(&self) -> usize;
}

impl ColumnBytes for String {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl ColumnBytes for Option<String> {
    fn bytes(&self) -> usize {
        self.as_ref().map_or(0, String::len)
    }
}

impl ColumnBytes for i64 {
    fn bytes(&self) -> usize {
        8
    }
}

macro_rules! commit_rows {
    ($(($($column:tt: $kind:ty),+)),+ $(,)?) => {
        $(
            impl AnyRow for ($($kind,)+) {
                fn from_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                    Ok(($(row.get::<_, $kind>($column)?,)+))
                }

                fn bytes(&self) -> usize {
                    0 $(+ ColumnBytes::bytes(&self.$column))+
                }
            }
        )+
    };
}

commit_rows! {
    (0: String),
    (0: i64),
    (0: String, 1: i64),
    (0: String, 1: i64, 2: i64),
    (0: String, 1: Option<String>),
    (0: String, 1: String, 2: i64),
    (0: String, 1: i64, 2: i64, 3: i64),
    (0: String, 1: String, 2: i64, 3: i64, 4: i64),
}

/// The transaction a run's commit is written in: reads of [`AnyRow`]s, writes, and the
/// outbox's insert of jobs. Every [`WriteTx`] is one; so is the SQLite committer's rusqlite
/// transaction, whose futures are ready at once (and which is not `Send`: it stays on its thread).
pub(crate) trait CommitTx {
    const BACKEND: Backend;

    fn fetch_optional<R: AnyRow>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Option<R>>> + Send;

    fn fetch_all<R: AnyRow>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Vec<R>>> + Send;

    fn execute(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Puts `jobs` (any number) into the outbox.
    fn insert_jobs(&mut self, jobs: &[JobValues]) -> impl Future<Output = StoreResult<()>> + Send;
}

impl<W: WriteTx> CommitTx for W {
    const BACKEND: Backend = W::BACKEND;

    async fn fetch_optional<R: AnyRow>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<R>> {
        Ok(WriteTx::fetch_optional(self, sql, args).await?)
    }

    async fn fetch_all<R: AnyRow>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<R>> {
        Ok(WriteTx::fetch_all(self, sql, args).await?)
    }

    async fn execute(&mut self, sql: Sql<'_>, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(WriteTx::execute(self, sql, args).await?)
    }

    async fn insert_jobs(&mut self, jobs: &[JobValues]) -> StoreResult<()> {
        Ok(enqueue(self, jobs).await?)
    }
}

/// The runs committed in one transaction, and what they changed of each app's counts.
struct CommitBatch<'q> {
    quotas: &'q AppQuotas,
    /// The apps the batch touched; `None` for an app that is gone.
    apps: BTreeMap<AppId, Option<AppCounts>>,
    /// The KV triggers of each collection the batch wrote.
    kv_triggers: HashMap<(AppId, CollectionName), Vec<KvTriggerRule>>,
    /// The docs triggers of each collection the batch wrote.
    docs_triggers: HashMap<(AppId, CollectionName), Vec<DocsTriggerRule>>,
}

/// An app's usage as the batch found it, and what the batch's committed runs add to it.
struct AppCounts {
    usage: AppUsage,
    version: Version,
    bytes: i64,
    jobs: i64,
    commits: i64,
}

impl AppCounts {
    /// The usage with the batch's earlier runs counted.
    fn now(&self) -> AppUsage {
        AppUsage {
            kv_bytes: self.usage.kv_bytes.saturating_add_signed(self.bytes),
            queued_jobs: self.usage.queued_jobs.saturating_add_signed(self.jobs),
        }
    }
}

/// A KV write of a run, planned: what it stores and what it replaces.
struct Planned<'r> {
    collection: &'r CollectionName,
    key: &'r KvKey,
    /// The JSON text to store and its size; `None` deletes.
    text: Option<(String, i64)>,
}

/// A document write of a run, planned: the data to store and its size; `None` deletes.
struct PlannedDoc<'r> {
    write: &'r DocWrite,
    text: Option<(String, i64)>,
}

/// What a key (or a document) holds before a run's write: its value (JSON text), size and
/// version.
type Before = Option<(String, i64, i64)>;

/// A write planned against what it replaces: the text it stores and its size (`None` deletes),
/// the bytes it adds (negative: frees), and the value it replaces.
struct Replacing {
    text: Option<(String, i64)>,
    bytes: i64,
    prev: Option<serde_json::Value>,
}

/// The write of `text` (checked: an error is the store refusing it) under `key` of
/// `collection` of `table`, in place of `prev`.
fn replacing(
    table: &'static str,
    collection: &CollectionName,
    key: &str,
    text: Result<Option<String>, picloud_core::InputError>,
    prev: Before,
) -> StoreResult<Replacing> {
    let text = text
        .map_err(|err| crate::StoreError::InvalidInput(err.message))?
        .map(|text| {
            let size = entry_size(collection, key, &text);
            (text, size)
        });
    let prev_size = prev.as_ref().map_or(0, |(_, size, _)| *size);
    let bytes = text.as_ref().map_or(0, |(_, size)| *size) - prev_size;
    let prev = prev
        .map(|(text, _, _)| json_value(table, &text))
        .transpose()?;
    Ok(Replacing { text, bytes, prev })
}

/// What the documents a run writes hold before it.
type DocsBefore<'r> = HashMap<(&'r CollectionName, DocumentId), Before>;

impl<'q> CommitBatch<'q> {
    fn new(quotas: &'q AppQuotas) -> Self {
        Self {
            quotas,
            apps: BTreeMap::new(),
            kv_triggers: HashMap::new(),
            docs_triggers: HashMap::new(),
        }
    }

    /// Commits `run` into `tx` when its reads hold and its writes are admitted; see the module's
    /// doc. `Err` is a database failure, after which `tx` may hold part of the run: roll it back.
    async fn run<T: CommitTx>(&mut self, tx: &mut T, run: &RunCommit) -> StoreResult<RunVerdict> {
        let app_id = run.origin.app_id;
        let app = app_id.to_string();
        // 1. The app, locked.
        self.lock_app(tx, app_id).await?;
        if self.apps.get(&app_id).is_some_and(Option::is_none) {
            return Ok(RunVerdict::AppGone);
        }
        // 2. The fence.
        let mut finished_job = false;
        if let Some(attempt) = run.finishes {
            let held: Option<(i64,)> = tx
                .fetch_optional(
                    sql::LOCK_ATTEMPT,
                    &[
                        attempt.id.to_string().into(),
                        i64::from(attempt.attempt).into(),
                    ],
                )
                .await?;
            if held.is_none() {
                return Ok(RunVerdict::Fenced);
            }
            finished_job = true;
        }
        // 3. The reads. What the written keys hold is read once, for the check and the plan.
        let effects = &run.effects;
        let mut before: HashMap<(&CollectionName, &KvKey), Before> = HashMap::new();
        for write in &effects.writes {
            let row: Before = tx
                .fetch_optional(
                    sql::KV_BEFORE_WRITE,
                    &entry_args(app_id, &write.collection, &write.key),
                )
                .await?;
            before.insert((&write.collection, &write.key), row);
        }
        let mut docs_before: DocsBefore = HashMap::new();
        for write in &effects.docs.writes {
            let row: Before = tx
                .fetch_optional(
                    sql::DOC_BEFORE_WRITE,
                    &doc_args(app_id, &write.collection, write.key),
                )
                .await?;
            docs_before.insert((&write.collection, write.key), row);
        }
        if !self.reads_hold(tx, &app, run, &before).await?
            || !docs_reads_hold(tx, &app, run, &docs_before).await?
        {
            return Ok(RunVerdict::Conflict);
        }
        // 4. The plan.
        let mut planned = Vec::with_capacity(effects.writes.len());
        let mut jobs: Vec<NewJob> = Vec::new();
        let mut bytes = 0i64;
        for write in &effects.writes {
            let prev = before
                .remove(&(&write.collection, &write.key))
                .unwrap_or_default();
            if prev.is_none() && write.value.is_none() {
                // Deleting what is not there changes nothing and fires nothing.
                continue;
            }
            let text = write.value.as_ref().map(kv_value_text).transpose();
            let Replacing {
                text,
                bytes: added,
                prev: prev_value,
            } = replacing(
                "kv_entries",
                &write.collection,
                write.key.as_str(),
                text,
                prev,
            )?;
            bytes += added;
            let rules = trigger_rules::<_, KvTriggerRow, _>(
                &mut self.kv_triggers,
                tx,
                sql::KV_TRIGGERS,
                app_id,
                &write.collection,
            )
            .await?;
            let change = KvChange {
                collection: &write.collection,
                key: &write.key,
                op: if write.value.is_some() {
                    KvOp::Set
                } else {
                    KvOp::Delete
                },
                value: write.value.as_ref(),
                prev_value: prev_value.as_ref(),
                trigger_depth: run.origin.trigger_depth,
            };
            jobs.extend(
                change
                    .firings(rules)
                    .into_iter()
                    .map(|firing| triggered_job(app_id, firing)),
            );
            planned.push(Planned {
                collection: &write.collection,
                key: &write.key,
                text,
            });
        }
        let mut planned_docs = Vec::with_capacity(effects.docs.writes.len());
        for write in &effects.docs.writes {
            let prev = docs_before
                .remove(&(&write.collection, write.key))
                .unwrap_or_default();
            if let Some((doc, bytes_changed)) =
                self.plan_doc(tx, run, write, prev, &mut jobs).await?
            {
                bytes += bytes_changed;
                planned_docs.push(doc);
            }
        }
        let firing = jobs.len() as u64;
        if firing > u64::from(run.origin.trigger_jobs_left) {
            return Ok(RunVerdict::Refused(OverLimit::TriggerJobs {
                firing,
                left: run.origin.trigger_jobs_left,
            }));
        }
        let replays = effects
            .dead_letters
            .iter()
            .filter(|action| matches!(action, DeadLetterAction::Replay { .. }))
            .count() as u64;
        let counts = self
            .apps
            .get_mut(&app_id)
            .and_then(Option::as_mut)
            .expect("the app was locked above");
        if let Err(over) = counts.now().admit(bytes, firing + replays, self.quotas) {
            return Ok(RunVerdict::Refused(over));
        }
        // 5. Apply.
        let version = counts.version + 1;
        for write in &planned {
            let entry = entry_args(app_id, write.collection, write.key);
            match &write.text {
                Some((text, size)) => {
                    let [app, collection, key] = entry;
                    tx.execute(
                        sql::UPSERT_KV,
                        &[
                            app,
                            collection,
                            key,
                            text.as_str().into(),
                            (*size).into(),
                            version.into(),
                        ],
                    )
                    .await?;
                }
                None => {
                    tx.execute(sql::DELETE_KV, &entry).await?;
                }
            }
        }
        for doc in &planned_docs {
            let write = doc.write;
            let [app, collection, id] = doc_args(app_id, &write.collection, write.key);
            match (&doc.text, &write.value) {
                (Some((text, size)), Some(stored)) => {
                    tx.execute(
                        sql::UPSERT_DOC,
                        &[
                            app,
                            collection,
                            id,
                            text.as_str().into(),
                            (*size).into(),
                            version.into(),
                            stored.created_at.as_millis().into(),
                            stored.updated_at.as_millis().into(),
                        ],
                    )
                    .await?;
                }
                _ => {
                    tx.execute(sql::DELETE_DOC, &[app, collection, id]).await?;
                }
            }
        }
        let written: std::collections::BTreeSet<&CollectionName> = planned_docs
            .iter()
            .map(|doc| &doc.write.collection)
            .collect();
        for collection in written {
            tx.execute(
                sql::SET_DOC_COLLECTION_VERSION,
                &[
                    app_id.to_string().into(),
                    collection.as_str().into(),
                    version.into(),
                ],
            )
            .await?;
        }
        if !jobs.is_empty() {
            tx.insert_jobs(&JobValues::all(&jobs)?).await?;
        }
        for action in &effects.dead_letters {
            let (id, resolution) = match action {
                DeadLetterAction::Replay { id, execution_id } => {
                    tx.execute(
                        sql::REPLAY_DEAD_LETTER,
                        &[id.to_string().into(), execution_id.to_string().into()],
                    )
                    .await?;
                    (id, Resolution::Replayed)
                }
                DeadLetterAction::Resolve { id } => (id, Resolution::Resolved),
            };
            tx.execute(
                sql::CLOSE_DEAD_LETTER,
                &[id.to_string().into(), resolution.as_str().into()],
            )
            .await?;
        }
        if let Some(attempt) = run.finishes {
            tx.execute(
                sql::DELETE_ATTEMPT,
                &[
                    attempt.id.to_string().into(),
                    i64::from(attempt.attempt).into(),
                ],
            )
            .await?;
        }
        if !planned.is_empty() || !planned_docs.is_empty() {
            counts.version = version;
            counts.commits += 1;
        }
        counts.bytes += bytes;
        counts.jobs += (firing + replays) as i64 - i64::from(finished_job);
        Ok(RunVerdict::Committed {
            trigger_jobs: u32::try_from(firing).unwrap_or(u32::MAX),
        })
    }

    /// Plans a document write of `run` that replaces `prev`: the jobs of the docs triggers it
    /// fires go into `jobs`; answers the write and the bytes it adds (negative: frees), or
    /// `None` when it changes nothing (deleting a document that is not there).
    async fn plan_doc<'r, T: CommitTx>(
        &mut self,
        tx: &mut T,
        run: &RunCommit,
        write: &'r DocWrite,
        prev: Before,
        jobs: &mut Vec<NewJob>,
    ) -> StoreResult<Option<(PlannedDoc<'r>, i64)>> {
        if prev.is_none() && write.value.is_none() {
            return Ok(None);
        }
        let app_id = run.origin.app_id;
        let text = write
            .value
            .as_ref()
            .map(|stored| data_text(&stored.data, DOC_MAX_BYTES))
            .transpose();
        let id = write.key.to_string();
        let Replacing {
            text,
            bytes,
            prev: prev_data,
        } = replacing("docs", &write.collection, &id, text, prev)?;
        let rules = trigger_rules::<_, DocsTriggerRow, _>(
            &mut self.docs_triggers,
            tx,
            sql::DOCS_TRIGGERS,
            app_id,
            &write.collection,
        )
        .await?;
        let change = DocsChange {
            collection: &write.collection,
            id: write.key,
            data: write.value.as_ref().map(|stored| &stored.data),
            prev_data: prev_data.as_ref(),
            trigger_depth: run.origin.trigger_depth,
        };
        jobs.extend(
            change
                .firings(rules)
                .into_iter()
                .map(|firing| triggered_job(app_id, firing)),
        );
        Ok(Some((PlannedDoc { write, text }, bytes)))
    }

    /// Locks the app's `app_usage` row and reads its counts, the first time the batch meets the
    /// app.
    async fn lock_app<T: CommitTx>(&mut self, tx: &mut T, app_id: AppId) -> StoreResult<()> {
        if let Entry::Vacant(slot) = self.apps.entry(app_id) {
            let usage: Option<UsageRow> = tx
                .fetch_optional(sql::LOCK_APP_USAGE, &[app_id.to_string().into()])
                .await?;
            slot.insert(usage.map(|row| AppCounts {
                version: row.kv_version,
                usage: AppUsage::from(row),
                bytes: 0,
                jobs: 0,
                commits: 0,
            }));
        }
        Ok(())
    }

    /// Writes the counts of the apps the batch's runs changed, in the apps' order.
    async fn finish<T: CommitTx>(self, tx: &mut T) -> StoreResult<()> {
        for (app_id, counts) in self.apps {
            let Some(counts) = counts else { continue };
            if counts.bytes != 0 || counts.jobs != 0 || counts.commits != 0 {
                tx.execute(
                    sql::COUNT_WRITE,
                    &[
                        app_id.to_string().into(),
                        counts.bytes.into(),
                        counts.jobs.into(),
                        counts.commits.into(),
                    ],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Whether every read of `run` still holds; `before` holds what the keys it writes hold.
    async fn reads_hold<T: CommitTx>(
        &self,
        tx: &mut T,
        app: &str,
        run: &RunCommit,
        before: &HashMap<(&CollectionName, &KvKey), Before>,
    ) -> StoreResult<bool> {
        let Effects {
            reads,
            ranges,
            dead_letters,
            ..
        } = &run.effects;
        let app_id = run.origin.app_id;
        for read in reads {
            let version = match before.get(&(&read.collection, &read.key)) {
                Some(row) => row.as_ref().map(|(_, _, version)| *version),
                None => {
                    let row: Option<(i64,)> = tx
                        .fetch_optional(
                            sql::KV_VERSION,
                            &entry_args(app_id, &read.collection, &read.key),
                        )
                        .await?;
                    row.map(|(version,)| version)
                }
            };
            let now = version.map_or(Seen::Absent, Seen::At);
            if now != read.seen {
                return Ok(false);
            }
        }
        for range in ranges {
            if !page_holds(tx, app, range).await? {
                return Ok(false);
            }
        }
        for action in dead_letters {
            let (DeadLetterAction::Replay { id, .. } | DeadLetterAction::Resolve { id }) = action;
            let row: Option<(String, Option<String>)> = tx
                .fetch_optional(sql::LOCK_DEAD_LETTER, &[id.to_string().into()])
                .await?;
            let open = row.is_some_and(|(owner, resolution)| {
                owner == app_id.to_string() && resolution.is_none()
            });
            if !open {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The trigger rules (`Rule`, from rows `R` of `sql`: the app `$1`, the collection `$2`) of the
/// app's `collection`, read once per batch into `cache`.
async fn trigger_rules<'c, T, R, Rule>(
    cache: &'c mut HashMap<(AppId, CollectionName), Vec<Rule>>,
    tx: &mut T,
    sql: Sql<'static>,
    app_id: AppId,
    collection: &CollectionName,
) -> StoreResult<&'c [Rule]>
where
    T: CommitTx,
    R: AnyRow,
    Rule: TryFrom<R, Error = crate::StoreError>,
{
    let slot = (app_id, collection.clone());
    if !cache.contains_key(&slot) {
        let rows: Vec<R> = tx
            .fetch_all(
                sql,
                &[app_id.to_string().into(), collection.as_str().into()],
            )
            .await?;
        let rules = rows
            .into_iter()
            .map(Rule::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        cache.insert(slot.clone(), rules);
    }
    Ok(cache.get(&slot).map_or(&[], Vec::as_slice))
}

/// Commits `runs` in `tx`, in order, each against what the ones before it wrote; a verdict for
/// each. The apps' `app_usage` rows are locked first, in the apps' order, so that two nodes
/// committing runs of the same apps never wait for each other in a cycle. `Err` is a database
/// failure: roll `tx` back.
pub(crate) async fn commit_runs<T: CommitTx>(
    tx: &mut T,
    quotas: &AppQuotas,
    runs: &[RunCommit],
) -> StoreResult<Vec<RunVerdict>> {
    let mut batch = CommitBatch::new(quotas);
    let apps: std::collections::BTreeSet<AppId> =
        runs.iter().map(|run| run.origin.app_id).collect();
    for app_id in apps {
        batch.lock_app(tx, app_id).await?;
    }
    let mut verdicts = Vec::with_capacity(runs.len());
    for run in runs {
        verdicts.push(batch.run(tx, run).await?);
    }
    batch.finish(tx).await?;
    Ok(verdicts)
}

/// Whether the page `range` read comes back with the same keys at the same versions.
async fn page_holds<T: CommitTx>(tx: &mut T, app: &str, range: &KvRangeRead) -> StoreResult<bool> {
    let query = KvRange::new(&range.request, Listed::Versions)?;
    let rows: Vec<(String, i64)> = tx
        .fetch_all(query.sql(), &query.args(app, &range.collection))
        .await?;
    let page = query.window.page(rows, |(key, _)| key.clone());
    Ok(page.items == range.entries && page.next_cursor.is_some() == range.more)
}

/// Whether every read `run` made of its app's documents still holds; `before` holds what the
/// documents it writes hold.
async fn docs_reads_hold<T: CommitTx>(
    tx: &mut T,
    app: &str,
    run: &RunCommit,
    before: &DocsBefore<'_>,
) -> StoreResult<bool> {
    let docs = &run.effects.docs;
    for read in &docs.reads {
        let version = match before.get(&(&read.collection, read.key)) {
            Some(row) => row.as_ref().map(|(_, _, version)| *version),
            None => {
                let row: Option<(i64,)> = tx
                    .fetch_optional(
                        sql::DOC_VERSION,
                        &doc_args(run.origin.app_id, &read.collection, read.key),
                    )
                    .await?;
                row.map(|(version,)| version)
            }
        };
        if version.map_or(Seen::Absent, Seen::At) != read.seen {
            return Ok(false);
        }
    }
    for range in &docs.ranges {
        if !doc_page_holds(tx, app, range).await? {
            return Ok(false);
        }
    }
    for query in &docs.queries {
        if !query_holds(tx, app, query).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What an entry (or a document) counts against its app's stored bytes (`kv_entries.size`,
/// `docs.size`); see [`crate::AppQuotas::stored_bytes`].
pub(crate) fn entry_size(collection: &CollectionName, key: &str, text: &str) -> i64 {
    let bytes = collection.as_str().len() + key.len() + text.len();
    i64::try_from(bytes as u64 + KV_ENTRY_OVERHEAD).unwrap_or(i64::MAX)
}
