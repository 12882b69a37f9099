//! Group commits of the outbox. One thread owns the outbox's hot writes: it drains a channel and
//! commits whatever is waiting in one transaction — new jobs (sync requests, async requests) and
//! the deletions of finished attempts — so concurrent requests share a commit (and its fsync)
//! instead of queueing for one each. `notes/outbox.md` measured why: one transaction per request
//! reaches 8 % of the bare server, a batching writer more than half.
//!
//! The writer is an OS thread rather than a task: it answers each caller itself and goes on to
//! the next commit at once, without waiting for the async runtime to schedule it, and on SQLite
//! it commits through a connection of its own ([`OutboxStore::outbox_committer`]).
//!
//! Finished attempts do not start a commit of their own: they ride along with the next batch of
//! new jobs, or go after `FINISH_DELAY` (100 ms) when none comes. A finished row that is never
//! deleted (the process dies first) is harmless: its lease expires, and a sync row is then
//! recorded as abandoned, an async one run again (at-least-once).
//!
//! [`OutboxStore::outbox_committer`]: picloud_store::OutboxStore::outbox_committer

use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use picloud_store::{JobAttempt, NewJob, OutboxBatch, OutboxCommitter, StoreError};
use tokio::sync::oneshot;

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
    /// Commit what came before, then end.
    Stop,
}

/// The sending side; cheap to share.
pub struct Recorder {
    sender: Sender<Entry>,
}

/// The writer thread, to stop at shutdown.
pub struct RecorderThread {
    sender: Sender<Entry>,
    thread: thread::JoinHandle<()>,
}

impl Recorder {
    /// Starts the writer thread, which commits through `committer`.
    pub fn start(committer: Box<dyn OutboxCommitter>) -> std::io::Result<(Self, RecorderThread)> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let thread = thread::Builder::new()
            .name("picloud-outbox".to_owned())
            .spawn(move || write_batches(committer, &receiver))?;
        Ok((
            Self {
                sender: sender.clone(),
            },
            RecorderThread { sender, thread },
        ))
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

impl RecorderThread {
    /// Commits what is already queued, then ends the thread; returns when it has.
    pub async fn stop(self) {
        let _ = self.sender.send(Entry::Stop);
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => {}
            _ => tracing::warn!("the outbox writer ended badly"),
        }
    }
}

/// What the writer found when it looked for the next entry.
enum Next {
    Entry(Entry),
    /// The finished attempts' deadline passed.
    Due,
    /// Every sender is gone.
    Gone,
}

/// The next entry, waiting for one no longer than until `flush_at` (the caller then takes what
/// else is waiting).
fn next_entry(receiver: &Receiver<Entry>, flush_at: Option<Instant>) -> Next {
    let Some(at) = flush_at else {
        return receiver.recv().map_or(Next::Gone, Next::Entry);
    };
    match receiver.recv_deadline(at) {
        Ok(entry) => Next::Entry(entry),
        Err(RecvTimeoutError::Timeout) => Next::Due,
        Err(RecvTimeoutError::Disconnected) => Next::Gone,
    }
}

fn write_batches(mut committer: Box<dyn OutboxCommitter>, receiver: &Receiver<Entry>) {
    let mut carried: Vec<JobAttempt> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<Result<(), RecordError>>> = Vec::new();
    let mut batch = OutboxBatch::default();
    let mut stopping = false;
    // When the finished attempts waiting now are committed even without new jobs.
    let mut flush_at: Option<Instant> = None;
    loop {
        let mut entries: Vec<Entry> = Vec::new();
        match next_entry(receiver, flush_at) {
            Next::Entry(entry) => entries.push(entry),
            Next::Due => {}
            Next::Gone => stopping = true,
        }
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
                Entry::Stop => stopping = true,
            }
        }
        let flush_finished = !carried.is_empty()
            && (stopping
                || carried.len() >= MAX_BATCH
                || flush_at.is_some_and(|at| Instant::now() >= at));
        if batch.enqueue.is_empty() && !flush_finished {
            if stopping {
                return;
            }
            continue;
        }
        batch.finished = std::mem::take(&mut carried);
        flush_at = None;
        // A panic is a bug, but it must not end the thread and every later request with it.
        let result = panic::catch_unwind(AssertUnwindSafe(|| committer.commit(&batch)))
            .unwrap_or_else(|_| Err(StoreError::Internal("an outbox commit panicked".to_owned())));
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
            thread::sleep(RETRY_PAUSE);
        } else if stopping && receiver.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use parking_lot::Mutex;
    use picloud_core::exec::HttpRequest;
    use picloud_core::{AppId, ExecutionId, JobMode, JobPayload, ScriptId};
    use picloud_store::StoreResult;

    use super::*;

    /// Keeps the batches it is given; panics on the first commit when told to.
    #[derive(Clone, Default)]
    struct Kept {
        batches: Arc<Mutex<Vec<OutboxBatch>>>,
        panic_once: Arc<AtomicBool>,
    }

    impl OutboxCommitter for Kept {
        fn commit(&mut self, batch: &OutboxBatch) -> StoreResult<()> {
            if self.panic_once.swap(false, Ordering::SeqCst) {
                panic!("a bug in a committer");
            }
            self.batches.lock().push(batch.clone());
            Ok(())
        }
    }

    fn job() -> NewJob {
        NewJob {
            id: ExecutionId::new(),
            app_id: AppId::new(),
            script_id: ScriptId::new(),
            mode: JobMode::Async,
            payload: JobPayload::Http {
                request: HttpRequest::default(),
            },
            trigger_depth: 0,
            claimed: None,
        }
    }

    fn attempt() -> JobAttempt {
        JobAttempt {
            id: ExecutionId::new(),
            attempt: 1,
        }
    }

    #[tokio::test]
    async fn a_finished_attempt_rides_along_with_the_next_new_job() {
        let kept = Kept::default();
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        let finished = attempt();
        recorder.finished(finished);
        let new = job();
        recorder.enqueue(new.clone(), true).await.expect("recorded");
        thread.stop().await;
        let batches = kept.batches.lock();
        assert_eq!(batches.len(), 1, "one commit: {batches:?}");
        assert_eq!(batches[0].enqueue, vec![new]);
        assert_eq!(batches[0].finished, vec![finished]);
        assert!(batches[0].durable);
    }

    #[tokio::test]
    async fn stopping_commits_the_finished_attempts_still_waiting() {
        let kept = Kept::default();
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        let finished = attempt();
        recorder.finished(finished);
        thread.stop().await;
        assert_eq!(
            kept.batches.lock().as_slice(),
            [OutboxBatch {
                finished: vec![finished],
                ..OutboxBatch::default()
            }],
            "committed before the stop returned, without waiting for the finish delay"
        );
        assert_eq!(
            recorder.enqueue(job(), true).await,
            Err(RecordError::Closed),
            "nothing is accepted after the stop"
        );
    }

    #[tokio::test]
    async fn a_panicking_commit_fails_its_callers_and_the_writer_goes_on() {
        let kept = Kept::default();
        kept.panic_once.store(true, Ordering::SeqCst);
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        let failed = recorder.enqueue(job(), true).await;
        assert!(
            matches!(failed, Err(RecordError::Failed(ref cause)) if cause.contains("panicked")),
            "{failed:?}"
        );
        recorder
            .enqueue(job(), true)
            .await
            .expect("the next commit works");
        thread.stop().await;
        assert_eq!(kept.batches.lock().len(), 1);
    }
}
