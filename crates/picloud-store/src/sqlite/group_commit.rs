//! Group commits of scripts' KV writes on SQLite.
//!
//! A script's KV write is durable when it returns (`synchronous = FULL`), and SQLite has one
//! writer: a transaction of its own per write would cap a busy server at one fsync per write. So
//! [`KvWriteQueue`] hands every write to one task, which takes all the writes waiting, runs them
//! in one `BEGIN IMMEDIATE` transaction on the writer connection, commits once, and only then
//! answers each caller with its own result. (PostgreSQL needs none of this: its concurrent
//! commits already share WAL flushes.)
//!
//! - **No timer.** The task starts a transaction as soon as one write waits; writes group up only
//!   because they arrive while the previous commit is in flight. A lone write is never delayed.
//! - **Arrival order.** The writes of a batch run one after another in the order they were
//!   queued, so two writes to one key see each other exactly as serial transactions would.
//! - **A caller hears back after the commit that holds its write.** When that commit fails, every
//!   caller of the batch gets the error.
//! - **One write's failure is its own.** A write refused before it wrote anything (its app is
//!   gone) is answered with its refusal and the batch goes on. A write that fails unexpectedly
//!   half-way leaves the transaction in doubt: it is rolled back and every write of the batch is
//!   run again in a transaction of its own, so that only the failing one fails. (A SAVEPOINT per
//!   write would isolate it too, but costs two more statements for every write of every batch,
//!   to save work only in a case that should not happen.)
//! - **A caller that stops waiting** (its script hit its deadline) before its batch starts is
//!   skipped; once its batch has started, its write may commit without anyone hearing of it.
//! - **Lifetime.** The task ends when the last clone of the queue — that is, of the store — is
//!   dropped. After [`Store::close`](crate::Store::close) it answers every write `Unavailable`.

use picloud_core::services::WriteOrigin;
use picloud_core::{CollectionName, KvKey};
use tokio::sync::{mpsc, oneshot};

use super::kv::{delete_kv_entry, set_kv_entry};
use super::{WriteTransaction, WriterConnection};
use crate::db::WriteTx;
use crate::{AppQuotas, KvWritten, StoreError, StoreResult};

/// The most writes one transaction takes: enough for every request a busy server has in flight,
/// few enough that the first writer of a batch is not kept long by the rest of it.
const MAX_BATCH: usize = 256;

/// One KV write, as the group-commit task runs it.
#[derive(Debug)]
pub(super) enum KvWrite {
    Set {
        origin: WriteOrigin,
        collection: CollectionName,
        key: KvKey,
        value: serde_json::Value,
        /// `value` as stored, checked by the caller before it queued the write.
        text: String,
    },
    Delete {
        origin: WriteOrigin,
        collection: CollectionName,
        key: KvKey,
    },
}

impl KvWrite {
    /// Runs the write in `tx`, within `quotas`. `Err` is an unexpected failure, after which the
    /// transaction may hold part of the write.
    async fn apply(&self, tx: &mut WriteTransaction, quotas: &AppQuotas) -> StoreResult<Applied> {
        match self {
            Self::Set {
                origin,
                collection,
                key,
                value,
                text,
            } => set_kv_entry(tx, quotas, *origin, collection, key, value, text).await,
            Self::Delete {
                origin,
                collection,
                key,
            } => delete_kv_entry(tx, quotas, *origin, collection, key).await,
        }
    }
}

/// What one write did in the transaction it ran in.
#[derive(Debug)]
pub(super) enum Applied {
    /// Done; committing the transaction keeps it.
    Written(KvWritten),
    /// Refused before it wrote anything (its app is gone, or it would pass a quota or limit):
    /// the transaction is as it was, and the other writes in it go on.
    Refused(StoreError),
}

/// A queued write and the caller waiting for it.
#[derive(Debug)]
struct Queued {
    write: KvWrite,
    caller: oneshot::Sender<StoreResult<KvWritten>>,
}

impl Queued {
    fn answer(self, result: StoreResult<KvWritten>) {
        // A caller that stopped waiting is not told; its write stays as it is.
        let _ = self.caller.send(result);
    }
}

/// The way into the group-commit task; cloned with the store.
///
/// Unbounded: every queued write has a caller waiting for it, so the queue never holds more
/// than the callers in flight, and those are bounded where scripts run.
#[derive(Debug, Clone)]
pub(super) struct KvWriteQueue {
    sender: mpsc::UnboundedSender<Queued>,
}

impl KvWriteQueue {
    /// Starts the task that commits the writes queued here on `writer` (the store's pool of one
    /// connection), within `quotas`. Needs a tokio runtime, as opening the store does.
    pub(super) fn start(writer: WriterConnection, quotas: AppQuotas) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(commit_batches(writer, quotas, receiver));
        Self { sender }
    }

    /// Queues `write` and waits for the commit that holds it.
    pub(super) async fn write(&self, write: KvWrite) -> StoreResult<KvWritten> {
        let (caller, answer) = oneshot::channel();
        self.sender
            .send(Queued { write, caller })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The task is gone: the runtime it ran on has shut down (or it panicked).
fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite KV writer has stopped".to_owned())
}

/// The group-commit task: waits for a write, takes every write waiting with it (up to
/// [`MAX_BATCH`]) and commits them together; ends when every sender is gone.
async fn commit_batches(
    writer: WriterConnection,
    quotas: AppQuotas,
    mut queue: mpsc::UnboundedReceiver<Queued>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&writer, &quotas, std::mem::take(&mut batch)).await;
    }
}

/// One step of the task: commits `batch` and answers every caller in it.
async fn commit_batch(writer: &WriterConnection, quotas: &AppQuotas, mut batch: Vec<Queued>) {
    batch.retain(|queued| !queued.caller.is_closed());
    let Err(RolledBack { batch, error }) = write_together(writer, quotas, batch).await else {
        return;
    };
    if let [_] = batch.as_slice() {
        // It ran alone already: running it again would only repeat the failure.
        answer_all(batch, &error);
        return;
    }
    tracing::warn!(%error, writes = batch.len(), "a KV group commit failed; writing each alone");
    for queued in batch {
        if let Err(RolledBack { batch, error }) = write_together(writer, quotas, vec![queued]).await
        {
            answer_all(batch, &error);
        }
    }
}

/// A batch whose transaction was rolled back because one of its writes failed with `error`;
/// none of its callers has been answered.
struct RolledBack {
    batch: Vec<Queued>,
    error: StoreError,
}

/// Runs the writes of `batch` in order in one `BEGIN IMMEDIATE` transaction, commits it once and
/// answers every caller — unless a write fails unexpectedly: then the transaction is rolled
/// back and the batch comes back unanswered.
async fn write_together(
    writer: &WriterConnection,
    quotas: &AppQuotas,
    batch: Vec<Queued>,
) -> Result<(), RolledBack> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = match writer.begin().await {
        Ok(tx) => tx,
        Err(error) => {
            answer_all(batch, &error.into());
            return Ok(());
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for queued in &batch {
        match queued.write.apply(&mut tx, quotas).await {
            Ok(Applied::Written(written)) => results.push(Ok(written)),
            Ok(Applied::Refused(refusal)) => results.push(Err(refusal)),
            Err(error) => {
                // Dropping an open transaction rolls it back.
                drop(tx);
                return Err(RolledBack { batch, error });
            }
        }
    }
    match tx.commit().await.map_err(StoreError::from) {
        Ok(()) => {
            for (queued, result) in batch.into_iter().zip(results) {
                queued.answer(result);
            }
        }
        Err(error) => answer_all(batch, &error),
    }
    Ok(())
}

/// Tells every caller of `batch` that its write failed with `error`: nothing of it committed.
fn answer_all(batch: Vec<Queued>, error: &StoreError) {
    for queued in batch {
        queued.answer(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use picloud_core::events::kv_value_text;
    use picloud_core::{AppId, AppName, AppSlug, KvOp, ScriptKind, ScriptName, TriggerDetail};
    use serde_json::json;
    use tempfile::TempDir;
    use tokio::task::JoinSet;

    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::{
        AppStore, KvStore, NewApp, NewScript, NewTrigger, ScriptStore, Store, StoreConfig,
        TriggerStore,
    };

    /// A migrated store on a file of its own with one app; keep the directory as long as the
    /// store.
    async fn store_with_app() -> (SqliteStore, AppId, TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("t.db"), &StoreConfig::default())
            .await
            .expect("the store opens");
        store.migrate().await.expect("the store migrates");
        let app = store
            .create_app(&NewApp {
                slug: AppSlug::parse("shop").expect("a slug"),
                name: AppName::parse("Shop").expect("a name"),
                expose_errors: false,
            })
            .await
            .expect("the app");
        (store, app.id, dir)
    }

    /// Counts the transactions the writer connection commits from now on: SQLite's own count,
    /// not one the code under test keeps.
    async fn count_commits(store: &SqliteStore) -> Arc<AtomicUsize> {
        let commits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&commits);
        let mut conn = store.writer_connection().await;
        conn.lock_handle()
            .await
            .expect("its SQLite handle")
            .set_commit_hook(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                true
            });
        commits
    }

    fn origin(app_id: AppId) -> WriteOrigin {
        WriteOrigin {
            app_id,
            trigger_depth: 0,
            trigger_jobs_left: 100,
        }
    }

    fn collection(name: &str) -> CollectionName {
        CollectionName::parse(name).expect("a collection name")
    }

    fn key(name: &str) -> KvKey {
        KvKey::parse(name).expect("a key")
    }

    fn set(app_id: AppId, name: &str, k: &str, value: serde_json::Value) -> KvWrite {
        KvWrite::Set {
            origin: origin(app_id),
            collection: collection(name),
            key: key(k),
            text: kv_value_text(&value).expect("a value that fits"),
            value,
        }
    }

    fn delete(app_id: AppId, name: &str, k: &str) -> KvWrite {
        KvWrite::Delete {
            origin: origin(app_id),
            collection: collection(name),
            key: key(k),
        }
    }

    /// `writes` queued as one batch, and where each of their callers hears back.
    fn batch(
        writes: Vec<KvWrite>,
    ) -> (Vec<Queued>, Vec<oneshot::Receiver<StoreResult<KvWritten>>>) {
        writes
            .into_iter()
            .map(|write| {
                let (caller, answer) = oneshot::channel();
                (Queued { write, caller }, answer)
            })
            .unzip()
    }

    /// The `prev_value` each caller was answered, or its error.
    async fn answers(
        answers: Vec<oneshot::Receiver<StoreResult<KvWritten>>>,
    ) -> Vec<StoreResult<Option<serde_json::Value>>> {
        let mut prev_values = Vec::new();
        for answer in answers {
            let written = answer.await.expect("every caller is answered");
            prev_values.push(written.map(|written| written.prev_value));
        }
        prev_values
    }

    async fn stored(
        store: &SqliteStore,
        app_id: AppId,
        name: &str,
        k: &str,
    ) -> Option<serde_json::Value> {
        store
            .kv_get(app_id, &collection(name), &key(k))
            .await
            .expect("a read")
    }

    // The reason this module exists: one transaction (and fsync) per write capped a busy server
    // at what the disk can sync.
    #[tokio::test]
    async fn concurrent_writes_share_commits() {
        let (store, app_id, _dir) = store_with_app().await;
        let commits = count_commits(&store).await;
        let mut writers = JoinSet::new();
        for i in 0..50 {
            let store = store.clone();
            writers.spawn(async move {
                store
                    .kv_set(
                        origin(app_id),
                        &collection("c"),
                        &key(&format!("k{i}")),
                        &json!(i),
                    )
                    .await
            });
        }
        while let Some(joined) = writers.join_next().await {
            joined
                .expect("the writer finishes")
                .expect("the write succeeds");
        }
        let commits = commits.load(Ordering::SeqCst);
        assert!(
            (1..50).contains(&commits),
            "50 concurrent writes take fewer than 50 commits, took {commits}"
        );
    }

    #[tokio::test]
    async fn a_batch_runs_in_arrival_order_and_a_refused_write_fails_alone() {
        let (store, app_id, _dir) = store_with_app().await;
        let gone = AppId::new();
        let commits = count_commits(&store).await;
        let (queued, callers) = batch(vec![
            set(app_id, "c", "k", json!(1)),
            set(app_id, "c", "k", json!(2)),
            delete(app_id, "c", "k"),
            set(gone, "c", "k", json!("lost")),
            set(app_id, "c", "k", json!(3)),
            delete(app_id, "c", "missing"),
        ]);
        commit_batch(&store.writer, &AppQuotas::default(), queued).await;
        let answers = answers(callers).await;
        assert!(
            matches!(answers[3], Err(StoreError::NotFound("app"))),
            "the write of an app that is gone is refused: {:?}",
            answers[3]
        );
        let others: Vec<_> = answers
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .map(|(_, answer)| answer.expect("the others are written"))
            .collect();
        assert_eq!(
            others,
            [None, Some(json!(1)), Some(json!(2)), None, None],
            "each write sees the ones queued before it"
        );
        assert_eq!(
            stored(&store, app_id, "c", "k").await,
            Some(json!(3)),
            "the last set stays"
        );
        assert_eq!(
            commits.load(Ordering::SeqCst),
            1,
            "one commit for the batch"
        );
    }

    // A corrupt trigger row fails a set after its upsert ran: committing the batch would keep
    // half of that write.
    #[tokio::test]
    async fn an_unexpected_failure_rolls_the_batch_back_and_fails_only_its_write() {
        let (store, app_id, _dir) = store_with_app().await;
        let handler = store
            .create_script(&NewScript {
                app_id,
                name: ScriptName::parse("on-broken", ScriptKind::Endpoint).expect("a name"),
                kind: ScriptKind::Endpoint,
                source: "\"hi\"".to_owned(),
            })
            .await
            .expect("the handler");
        store
            .create_trigger(&NewTrigger {
                app_id,
                script_id: handler.id,
                detail: TriggerDetail::Kv {
                    collection: collection("broken"),
                    key_prefix: None,
                    ops: vec![KvOp::Set],
                },
            })
            .await
            .expect("the trigger");
        sqlx::query("UPDATE kv_trigger_details SET ops = 'explode'")
            .execute(&store.writer.pool)
            .await
            .expect("the trigger is corrupted");
        let commits = count_commits(&store).await;

        let (queued, callers) = batch(vec![
            set(app_id, "good", "a", json!(1)),
            set(app_id, "broken", "x", json!(1)),
            set(app_id, "good", "b", json!(2)),
        ]);
        commit_batch(&store.writer, &AppQuotas::default(), queued).await;
        let answers = answers(callers).await;

        assert!(
            matches!(answers[0], Ok(None)),
            "the first write commits: {:?}",
            answers[0]
        );
        assert!(
            matches!(answers[1], Err(StoreError::Internal(_))),
            "the failing write fails: {:?}",
            answers[1]
        );
        assert!(
            matches!(answers[2], Ok(None)),
            "the last write commits: {:?}",
            answers[2]
        );
        assert_eq!(
            stored(&store, app_id, "good", "a").await,
            Some(json!(1)),
            "a is stored"
        );
        assert_eq!(
            stored(&store, app_id, "good", "b").await,
            Some(json!(2)),
            "b is stored"
        );
        assert_eq!(
            stored(&store, app_id, "broken", "x").await,
            None,
            "nothing of the failing write is kept"
        );
        assert_eq!(
            commits.load(Ordering::SeqCst),
            2,
            "the batch rolled back; the two good writes committed alone"
        );
    }

    #[tokio::test]
    async fn a_write_whose_caller_left_before_its_batch_started_is_skipped() {
        let (store, app_id, _dir) = store_with_app().await;
        let (queued, mut callers) = batch(vec![
            set(app_id, "c", "left", json!(1)),
            set(app_id, "c", "stayed", json!(2)),
        ]);
        drop(callers.remove(0));
        commit_batch(&store.writer, &AppQuotas::default(), queued).await;
        assert!(
            matches!(answers(callers).await[..], [Ok(None)]),
            "the caller who stayed is answered"
        );
        assert_eq!(stored(&store, app_id, "c", "left").await, None, "skipped");
        assert_eq!(
            stored(&store, app_id, "c", "stayed").await,
            Some(json!(2)),
            "written"
        );
    }

    #[tokio::test]
    async fn after_close_a_write_is_answered_unavailable() {
        let (store, app_id, _dir) = store_with_app().await;
        store.close().await;
        let written = tokio::time::timeout(
            Duration::from_secs(5),
            store.kv_set(origin(app_id), &collection("c"), &key("k"), &json!(1)),
        )
        .await
        .expect("the write is answered, not left waiting");
        assert!(
            matches!(written, Err(StoreError::Unavailable(_))),
            "a closed store is unavailable: {written:?}"
        );
    }

    #[tokio::test]
    async fn the_task_ends_when_its_queue_is_dropped() {
        let (store, _app_id, _dir) = store_with_app().await;
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(commit_batches(
            store.writer.clone(),
            AppQuotas::default(),
            receiver,
        ));
        drop(sender);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends")
            .expect("without panicking");
    }
}
