//! Group commits of the outbox. One task owns the outbox's hot writes: it drains a channel and
//! commits whatever is waiting in one transaction — new jobs (sync requests, async requests) and
//! the deletions of finished attempts — so concurrent requests share a commit (and its fsync)
//! instead of queueing for one each. `notes/outbox.md` measured why: one transaction per request
//! reaches 8 % of the bare server, a batching writer more than half.
//!
//! Finished attempts do not start a commit of their own: they ride along with the next batch of
//! new jobs, or go after [`FINISH_DELAY`] when none comes. A finished row that is never deleted
//! (the process dies first) is harmless: its lease expires, and a sync row is then recorded as
//! abandoned, an async one run again (at-least-once).

use std::sync::Arc;
use std::time::Duration;

use picloud_store::{JobAttempt, NewJob, OutboxBatch, Store, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The most entries one commit takes.
const MAX_BATCH: usize = 1_024;
/// How long finished attempts wait for a batch of new jobs to ride along with.
const FINISH_DELAY: Duration = Duration::from_millis(100);
/// The pause after a failed commit before the next (the database is likely down).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Finished attempts kept for a later commit while the database is down; beyond this the oldest
/// are forgotten (their rows are reclaimed after the lease, and sync ones recorded abandoned).
const MAX_CARRIED: usize = 100_000;

/// Why a job was not recorded. Nothing was accepted: the caller must not report success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the job could not be recorded: {0}")]
    Failed(String),
    #[error("the server is shutting down")]
    Closed,
}

impl From<&StoreError> for RecordError {
    fn from(err: &StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => Self::Unavailable(cause.clone()),
            other => Self::Failed(other.to_string()),
        }
    }
}

enum Entry {
    Enqueue {
        job: Box<NewJob>,
        durable: bool,
        done: oneshot::Sender<Result<(), RecordError>>,
    },
    Finished(JobAttempt),
}

/// The sending side; cheap to share.
pub struct Recorder {
    sender: mpsc::UnboundedSender<Entry>,
}

impl Recorder {
    /// Starts the writer task. It stops when `shutdown` turns true, after committing what is
    /// already queued.
    pub fn start(store: Arc<dyn Store>, shutdown: watch::Receiver<bool>) -> (Self, JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_batches(store, receiver, shutdown));
        (Self { sender }, task)
    }

    /// Records `job`; returns once it is committed (and on disk when `durable`).
    pub async fn enqueue(&self, job: NewJob, durable: bool) -> Result<(), RecordError> {
        let (done, answer) = oneshot::channel();
        self.sender
            .send(Entry::Enqueue {
                job: Box::new(job),
                durable,
                done,
            })
            .map_err(|_| RecordError::Closed)?;
        answer.await.unwrap_or(Err(RecordError::Closed))
    }

    /// Deletes a finished attempt's row with a later commit.
    pub fn finished(&self, attempt: JobAttempt) {
        // After shutdown the row stays; its lease expires and the rules for orphans apply.
        let _ = self.sender.send(Entry::Finished(attempt));
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    mut receiver: mpsc::UnboundedReceiver<Entry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut carried: Vec<JobAttempt> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<Result<(), RecordError>>> = Vec::new();
    let mut batch = OutboxBatch::default();
    let mut stopping = false;
    // When the finished attempts waiting now are committed even without new jobs.
    let mut flush_at: Option<Instant> = None;
    loop {
        let first = tokio::select! {
            entry = receiver.recv() => {
                // Every sender is gone: nothing more can come.
                stopping |= entry.is_none();
                entry
            }
            () = sleep_until(flush_at) => None,
            _ = shutdown.changed(), if !stopping => { stopping = true; None }
        };
        let mut entries: Vec<Entry> = first.into_iter().collect();
        while entries.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(entry) => entries.push(entry),
                Err(_) => break,
            }
        }
        for entry in entries {
            match entry {
                Entry::Enqueue { job, durable, done } => {
                    batch.enqueue.push(*job);
                    batch.durable |= durable;
                    waiters.push(done);
                }
                Entry::Finished(attempt) => {
                    flush_at.get_or_insert_with(|| Instant::now() + FINISH_DELAY);
                    carried.push(attempt);
                }
            }
        }
        let flush_finished = !carried.is_empty()
            && (stopping
                || carried.len() >= MAX_BATCH
                || flush_at.is_some_and(|at| Instant::now() >= at));
        if batch.enqueue.is_empty() && !flush_finished {
            if stopping && carried.is_empty() {
                return;
            }
            continue;
        }
        batch.finished = std::mem::take(&mut carried);
        flush_at = None;
        let result = store.commit_outbox(&batch).await;
        let answer = result.as_ref().map(|_| ()).map_err(RecordError::from);
        for done in waiters.drain(..) {
            let _ = done.send(answer.clone());
        }
        batch.enqueue.clear();
        batch.durable = false;
        if let Err(err) = result {
            tracing::warn!("an outbox commit failed: {err}");
            carried = std::mem::take(&mut batch.finished);
            if !carried.is_empty() {
                flush_at = Some(Instant::now() + RETRY_PAUSE);
            }
            if carried.len() > MAX_CARRIED {
                let excess = carried.len() - MAX_CARRIED;
                carried.drain(..excess);
            }
            if stopping {
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        } else if stopping && receiver.is_empty() {
            return;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
