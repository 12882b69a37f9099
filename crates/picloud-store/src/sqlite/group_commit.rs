//! Group commits of runs on SQLite.
//!
//! A run's commit is durable when it returns (`synchronous = FULL`), and SQLite has one writer: a
//! transaction of its own per run would cap a busy server at one fsync per run. So [`RunQueue`]
//! hands every run to one task, which takes all the runs waiting, commits them in one
//! `BEGIN IMMEDIATE` transaction on the writer connection (`crate::commit`, one run after the
//! other), commits once, and only then answers each caller with its own verdict. (PostgreSQL
//! needs none of this: its concurrent commits already share WAL flushes.)
//!
//! - **No timer.** The task starts a transaction as soon as one run waits; runs group up only
//!   because they arrive while the previous commit is in flight. A lone run is never delayed.
//! - **Arrival order.** The runs of a batch are checked and applied one after another in the
//!   order they were queued, each against what the earlier ones wrote: serial transactions.
//! - **A caller hears back after the commit that holds its run.** When that commit fails, every
//!   caller of the batch gets the error.
//! - **One run's verdict is its own.** A run that conflicts or is refused writes nothing, and
//!   the batch goes on. A run that fails unexpectedly half-way leaves the transaction in doubt:
//!   it is rolled back and every run of the batch is committed again in a transaction of its
//!   own, so that only the failing one fails.
//! - **A caller that stops waiting** (its request was cancelled) before its batch starts is
//!   skipped; once its batch has started, its run may commit without anyone hearing of it.
//! - **Lifetime.** The task ends when the last clone of the queue — that is, of the store — is
//!   dropped. After [`Store::close`](crate::Store::close) it answers every run `Unavailable`.

use tokio::sync::{mpsc, oneshot};

use super::{WriteTransaction, WriterConnection};
use crate::commit::commit_runs;
use crate::db::WriteTx;
use crate::{AppQuotas, RunCommit, RunVerdict, StoreError, StoreResult};

/// The most runs one transaction takes: enough for every request a busy server has in flight,
/// few enough that the first run of a batch is not kept long by the rest of it.
const MAX_BATCH: usize = 256;

/// A queued run and the caller waiting for it.
#[derive(Debug)]
struct Queued {
    run: RunCommit,
    caller: oneshot::Sender<StoreResult<RunVerdict>>,
}

impl Queued {
    fn answer(self, result: StoreResult<RunVerdict>) {
        // A caller that stopped waiting is not told; its run stays as it is.
        let _ = self.caller.send(result);
    }
}

/// The way into the group-commit task; cloned with the store.
///
/// Unbounded: every queued run has a caller waiting for it, so the queue never holds more than
/// the callers in flight, and those are bounded where scripts run.
#[derive(Debug, Clone)]
pub(super) struct RunQueue {
    sender: mpsc::UnboundedSender<Queued>,
}

impl RunQueue {
    /// Starts the task that commits the runs queued here on `writer` (the store's pool of one
    /// connection), within `quotas`. Needs a tokio runtime, as opening the store does.
    pub(super) fn start(writer: WriterConnection, quotas: AppQuotas) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(commit_batches(writer, quotas, receiver));
        Self { sender }
    }

    /// Queues `run` and waits for the commit that holds it.
    pub(super) async fn commit(&self, run: RunCommit) -> StoreResult<RunVerdict> {
        let (caller, answer) = oneshot::channel();
        self.sender
            .send(Queued { run, caller })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The task is gone: the runtime it ran on has shut down (or it panicked).
fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite commit writer has stopped".to_owned())
}

/// The group-commit task: waits for a run, takes every run waiting with it (up to
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
    tracing::warn!(%error, runs = batch.len(), "a group commit failed; committing each run alone");
    for queued in batch {
        if let Err(RolledBack { batch, error }) = write_together(writer, quotas, vec![queued]).await
        {
            answer_all(batch, &error);
        }
    }
}

/// A batch whose transaction was rolled back because one of its runs failed with `error`;
/// none of its callers has been answered.
struct RolledBack {
    batch: Vec<Queued>,
    error: StoreError,
}

/// Commits the runs of `batch` in order in one `BEGIN IMMEDIATE` transaction, commits it once
/// and answers every caller — unless a run fails unexpectedly: then the transaction is rolled
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
    let runs: Vec<RunCommit> = batch.iter().map(|queued| queued.run.clone()).collect();
    let verdicts = match commit_runs(&mut tx, quotas, &runs).await {
        Ok(verdicts) => verdicts,
        // Dropping the open transaction rolls it back.
        Err(error) => return Err(RolledBack { batch, error }),
    };
    match commit(tx).await {
        Ok(()) => {
            for (queued, verdict) in batch.into_iter().zip(verdicts) {
                queued.answer(Ok(verdict));
            }
        }
        Err(error) => answer_all(batch, &error),
    }
    Ok(())
}

async fn commit(tx: WriteTransaction) -> StoreResult<()> {
    Ok(tx.commit().await?)
}

/// Tells every caller of `batch` that its run failed with `error`: nothing of it committed.
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

    use picloud_core::services::WriteOrigin;
    use picloud_core::tx::{Effects, KvRead, KvWrite, Seen};
    use picloud_core::{
        AppId, AppName, AppSlug, CollectionName, KvKey, KvOp, ScriptKind, ScriptName, TriggerDetail,
    };
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

    /// A run that writes `value` (`None`: deletes) under the key, having read it as `read`
    /// (`None`: without reading it).
    fn run(
        app_id: AppId,
        name: &str,
        k: &str,
        read: Option<Seen>,
        value: Option<serde_json::Value>,
    ) -> RunCommit {
        RunCommit {
            origin: origin(app_id),
            effects: Effects {
                reads: read
                    .map(|seen| KvRead {
                        collection: collection(name),
                        key: key(k),
                        seen,
                    })
                    .into_iter()
                    .collect(),
                writes: vec![KvWrite {
                    collection: collection(name),
                    key: key(k),
                    value,
                }],
                ..Effects::default()
            },
            finishes: None,
        }
    }

    fn set(app_id: AppId, name: &str, k: &str, value: serde_json::Value) -> RunCommit {
        run(app_id, name, k, None, Some(value))
    }

    /// `runs` queued as one batch, and where each of their callers hears back.
    fn batch(
        runs: Vec<RunCommit>,
    ) -> (Vec<Queued>, Vec<oneshot::Receiver<StoreResult<RunVerdict>>>) {
        runs.into_iter()
            .map(|run| {
                let (caller, answer) = oneshot::channel();
                (Queued { run, caller }, answer)
            })
            .unzip()
    }

    /// The verdict each caller was answered, or its error.
    async fn answers(
        answers: Vec<oneshot::Receiver<StoreResult<RunVerdict>>>,
    ) -> Vec<StoreResult<RunVerdict>> {
        let mut verdicts = Vec::new();
        for answer in answers {
            verdicts.push(answer.await.expect("every caller is answered"));
        }
        verdicts
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
    async fn a_batch_checks_each_run_against_the_runs_before_it() {
        let (store, app_id, _dir) = store_with_app().await;
        let gone = AppId::new();
        let commits = count_commits(&store).await;
        const COMMITTED: RunVerdict = RunVerdict::Committed { trigger_jobs: 0 };
        let (queued, callers) = batch(vec![
            // Both read the key absent; the first to commit wins, the second conflicts.
            run(app_id, "c", "k", Some(Seen::Absent), Some(json!(1))),
            run(app_id, "c", "k", Some(Seen::Absent), Some(json!(2))),
            set(gone, "c", "k", json!("lost")),
            // A write without a read always commits, the last one wins.
            set(app_id, "c", "k", json!(3)),
            run(app_id, "c", "missing", Some(Seen::Absent), None),
        ]);
        commit_batch(&store.writer, &AppQuotas::default(), queued).await;
        let answers: Vec<RunVerdict> = answers(callers)
            .await
            .into_iter()
            .map(|answer| answer.expect("every run has a verdict"))
            .collect();
        assert_eq!(
            answers,
            [
                COMMITTED,
                RunVerdict::Conflict,
                RunVerdict::AppGone,
                COMMITTED,
                COMMITTED
            ]
        );
        assert_eq!(
            stored(&store, app_id, "c", "k").await,
            Some(json!(3)),
            "the last set stays"
        );
        let (_, version) = store
            .kv_read(app_id, &collection("c"), &key("k"))
            .await
            .expect("a read")
            .expect("the entry");
        assert_eq!(version, 2, "two runs wrote the app's KV");
        assert_eq!(
            commits.load(Ordering::SeqCst),
            1,
            "one commit for the batch"
        );
    }

    // A corrupt trigger row fails a run after the run before it was applied: committing the
    // batch would keep whatever the failing run did before it failed.
    #[tokio::test]
    async fn an_unexpected_failure_rolls_the_batch_back_and_fails_only_its_write() {
        let (store, app_id, _dir) = store_with_app().await;
        let handler = store
            .create_script(&NewScript {
                app_id,
                name: ScriptName::parse("on-broken", ScriptKind::Endpoint).expect("a name"),
                kind: ScriptKind::Endpoint,
                source: "\"hi\"".to_owned(),
                imports: Vec::new(),
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
            matches!(answers[0], Ok(RunVerdict::Committed { .. })),
            "the first write commits: {:?}",
            answers[0]
        );
        assert!(
            matches!(answers[1], Err(StoreError::Internal(_))),
            "the failing write fails: {:?}",
            answers[1]
        );
        assert!(
            matches!(answers[2], Ok(RunVerdict::Committed { .. })),
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
            matches!(
                answers(callers).await[..],
                [Ok(RunVerdict::Committed { .. })]
            ),
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
