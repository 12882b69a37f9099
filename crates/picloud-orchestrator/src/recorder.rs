//! Group commits of the outbox. One thread owns the outbox's hot writes: it drains a channel and
//! commits whatever is waiting in one transaction — new async jobs, the records of sync requests
//! still running, and the deletions of finished attempts and answered requests — so concurrent
//! requests share a commit (and its fsync) instead of queueing for one each. `notes/outbox.md` measured why: one transaction per request
//! reaches 8 % of the bare server, a batching writer more than half.
//!
//! The writer is an OS thread rather than a task: it answers each caller itself and goes on to
//! the next commit at once, without waiting for the async runtime to schedule it, and on SQLite
//! it commits through a connection of its own ([`OutboxStore::outbox_committer`]).
//!
//! A caller does not wake the writer when it queues its job: it first yields to the runtime, which
//! defers it until the tasks that are ready now have run, and wakes the writer then. The requests
//! that arrived together are recorded together, in one commit and one wake-up of each thread,
//! instead of the first of them waking the writer for a commit of its own while the others are
//! still being parsed. It took `hello` at 32 connections from two regimes of throughput, depending
//! on which one a run fell into, to the faster one (bench/RESULTS.md).
//!
//! Runs' commits (issue #15) go the same way: a finished run's effects join the next commit,
//! checked and applied after its rows (`picloud_store::KvStore::commit_run`), and the caller
//! hears its run's verdict. A run that fails unexpectedly (a corrupt row) does not fail the rows
//! and runs beside it: the batch is committed again without its runs, then each run alone.
//!
//! A sync request's record is written only once its run has gone on for [`RECORD_SERVING_AFTER`]
//! (50 ms): its caller waits for nothing but the run, and one answered sooner — nearly every one —
//! is forgotten in the writer's memory, never written (issue #19: writing and deleting a record per
//! request halved `hello` on PostgreSQL and took a third of it on SQLite). The record stands for
//! the run in progress, for the sweep that records abandoned the requests of a node that died: a
//! node that dies loses with its callers' connections the record of runs younger than that.
//!
//! Finished attempts and answered requests do not start a commit of their own: they ride along
//! with the next batch of new rows, or go after `FINISH_DELAY` (100 ms) when none comes.
//! (Execution records have a thread and a connection of their own: `crate::journal`.) A finished
//! row that is never deleted (the process dies first) is harmless: its lease expires, and a sync
//! request's record is then recorded as abandoned, an async job run again (at-least-once).
//!
//! [`OutboxStore::outbox_committer`]: picloud_store::OutboxStore::outbox_committer

use std::collections::{HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use picloud_core::ExecutionId;
use picloud_store::{
    JobAttempt, NewJob, OutboxBatch, OutboxCommitter, OverLimit, RunCommit, RunVerdict, StoreError,
    SyncRequest,
};
use tokio::sync::oneshot;

/// The most entries one commit takes.
const MAX_BATCH: usize = 1_024;
/// How long a sync request runs before its record is written (see the module's documentation).
pub const RECORD_SERVING_AFTER: Duration = Duration::from_millis(50);
/// How long finished attempts wait for a batch of new jobs to ride along with.
const FINISH_DELAY: Duration = Duration::from_millis(100);
/// How often an idle writer looks whether its senders are gone (it is woken for everything else).
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The pause after a failed commit before the next (the database is likely down).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Finished attempts and answered requests kept for a later commit while the database is down;
/// beyond this the oldest are forgotten (their rows are reclaimed after the lease, and sync
/// requests recorded abandoned).
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
    /// The job's app has its quota of queued jobs (see [`Dispatcher::accept`]).
    ///
    /// [`Dispatcher::accept`]: crate::Dispatcher::accept
    #[error("{0}")]
    OverLimit(OverLimit),
}

impl From<&StoreError> for RecordError {
    fn from(err: &StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => Self::Unavailable(cause.clone()),
            StoreError::OverLimit(over) => Self::OverLimit(over.clone()),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// What a later commit deletes.
#[derive(Debug, Clone, Copy)]
enum Done {
    Finished(JobAttempt),
    Served(ExecutionId),
}

enum Entry {
    /// An async job, accepted for its caller: on disk before the caller hears, to outlive a
    /// crash.
    Enqueue {
        job: Box<NewJob>,
        done: oneshot::Sender<Result<(), RecordError>>,
    },
    /// A sync request whose run started at `since`. Its record only stands for the run in
    /// progress (a crash that loses it loses the run it names too), so nobody waits for it, and
    /// its commit does not wait for the disk.
    Serving {
        request: Box<SyncRequest>,
        since: Instant,
    },
    Done(Done),
    Run {
        run: Box<RunCommit>,
        done: oneshot::Sender<Result<RunVerdict, RecordError>>,
    },
    /// Commit what came before, then end.
    Stop,
}

/// How the writer is woken: it parks rather than blocking on the channel, so that queueing an
/// entry does not wake it by itself.
struct Writer {
    thread: Thread,
    /// True while the writer waits with nothing due: then a finished attempt wakes it.
    idle: Arc<AtomicBool>,
}

/// The sending side; cheap to share.
#[derive(Clone)]
pub struct Recorder {
    sender: Sender<Entry>,
    writer: Arc<Writer>,
}

/// The writer thread, to stop at shutdown.
pub struct RecorderThread {
    sender: Sender<Entry>,
    writer: Arc<Writer>,
    thread: thread::JoinHandle<()>,
}

/// Wakes the writer when dropped: after the caller's yield, or when the caller is cancelled
/// during it (its job is queued all the same).
struct WakeOnDrop<'a>(&'a Thread);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.unpark();
    }
}

impl Recorder {
    /// Starts the writer thread, which commits through `committer`.
    pub fn start(committer: Box<dyn OutboxCommitter>) -> std::io::Result<(Self, RecorderThread)> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let idle = Arc::new(AtomicBool::new(false));
        let writer_idle = idle.clone();
        let thread = thread::Builder::new()
            .name("picloud-outbox".to_owned())
            .spawn(move || write_batches(committer, &receiver, &writer_idle))?;
        let writer = Arc::new(Writer {
            thread: thread.thread().clone(),
            idle,
        });
        Ok((
            Self {
                sender: sender.clone(),
                writer: writer.clone(),
            },
            RecorderThread {
                sender,
                writer,
                thread,
            },
        ))
    }

    /// Records the async `job`; returns once it is committed on disk.
    pub async fn enqueue(&self, job: NewJob) -> Result<(), RecordError> {
        let (done, answer) = oneshot::channel();
        let entry = Entry::Enqueue {
            job: Box::new(job),
            done,
        };
        self.send(entry).await?;
        answer.await.unwrap_or(Err(RecordError::Closed))
    }

    /// Records the sync request `request`, whose run starts now, should the run last
    /// [`RECORD_SERVING_AFTER`]; [`Recorder::served`] forgets it (or deletes it once written).
    /// Returns at once.
    pub fn serving(&self, request: SyncRequest) {
        // After shutdown nothing is recorded: the process is going, and its callers with it.
        self.later(Entry::Serving {
            request: Box::new(request),
            since: Instant::now(),
        });
    }

    /// Commits `run`'s effects (on disk when it returns); answers its verdict.
    pub async fn commit_run(&self, run: RunCommit) -> Result<RunVerdict, RecordError> {
        let (done, answer) = oneshot::channel();
        let entry = Entry::Run {
            run: Box::new(run),
            done,
        };
        self.send(entry).await?;
        answer.await.unwrap_or(Err(RecordError::Closed))
    }

    /// Queues `entry` and wakes the writer once the tasks that are ready now have run: the
    /// entries they queue meanwhile go into the same commit.
    async fn send(&self, entry: Entry) -> Result<(), RecordError> {
        self.sender.send(entry).map_err(|_| RecordError::Closed)?;
        let wake = WakeOnDrop(&self.writer.thread);
        tokio::task::yield_now().await;
        drop(wake);
        Ok(())
    }

    /// Deletes a finished attempt's row with a later commit.
    pub fn finished(&self, attempt: JobAttempt) {
        // After shutdown the row stays; its lease expires and the rules for orphans apply.
        self.later(Entry::Done(Done::Finished(attempt)));
    }

    /// Forgets the record of the sync request `id` (answered, or recorded abandoned): unwritten,
    /// it never is; written, a later commit deletes it.
    pub fn served(&self, id: ExecutionId) {
        self.later(Entry::Done(Done::Served(id)));
    }

    /// Queues `entry` for a later commit: the next one of new jobs, or one after
    /// `FINISH_DELAY` (`RECORD_SERVING_AFTER` for a sync request). Wakes the writer only when it
    /// waits with nothing due.
    fn later(&self, entry: Entry) {
        if self.sender.send(entry).is_ok() && self.writer.idle.load(Ordering::SeqCst) {
            self.writer.thread.unpark();
        }
    }
}

impl RecorderThread {
    /// Commits what is already queued, then ends the thread; returns when it has.
    pub async fn stop(self) {
        let _ = self.sender.send(Entry::Stop);
        self.writer.thread.unpark();
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => {}
            _ => tracing::warn!("the outbox writer ended badly"),
        }
    }
}

/// `committer.commit(batch)`, a panic (a bug) made an error: it must not end the thread and every
/// later request with it.
fn commit(
    committer: &mut dyn OutboxCommitter,
    batch: &OutboxBatch,
) -> Result<Vec<RunVerdict>, StoreError> {
    panic::catch_unwind(AssertUnwindSafe(|| committer.commit(batch)))
        .unwrap_or_else(|_| Err(StoreError::Internal("an outbox commit panicked".to_owned())))
}

/// Forgets the oldest of `carried` beyond `MAX_CARRIED`.
fn keep_newest<T>(carried: &mut Vec<T>) {
    let excess = carried.len().saturating_sub(MAX_CARRIED);
    carried.drain(..excess);
}

/// The sync requests started and not answered whose records are not written yet: written once
/// they have run [`RECORD_SERVING_AFTER`].
#[derive(Default)]
struct Unwritten {
    requests: HashMap<ExecutionId, SyncRequest>,
    /// When each started, in that order; the ids of those answered meanwhile are skipped.
    started: VecDeque<(Instant, ExecutionId)>,
}

impl Unwritten {
    fn start(&mut self, request: SyncRequest, since: Instant) {
        self.started.push_back((since, request.id));
        self.requests.insert(request.id, request);
    }

    /// Forgets `id`; whether it was here (its record then never written).
    fn answer(&mut self, id: ExecutionId) -> bool {
        self.requests.remove(&id).is_some()
    }

    /// Moves those that have run `RECORD_SERVING_AFTER` at `now` to `due`.
    fn take_due(&mut self, now: Instant, due: &mut Vec<SyncRequest>) {
        while let Some(&(since, id)) = self.started.front() {
            if now < since + RECORD_SERVING_AFTER {
                break;
            }
            self.started.pop_front();
            due.extend(self.requests.remove(&id));
        }
    }

    /// When the next falls due.
    fn next_due(&mut self) -> Option<Instant> {
        while let Some(&(since, id)) = self.started.front() {
            if self.requests.contains_key(&id) {
                return Some(since + RECORD_SERVING_AFTER);
            }
            self.started.pop_front();
        }
        None
    }
}

/// Takes what is waiting, at most `MAX_BATCH` jobs and runs; `None` once every sender is gone.
/// The sync requests' entries do not count: all of them are read before the writer looks which
/// requests have run long enough to be written, lest one be written whose answer waits unread.
fn take_waiting(receiver: &Receiver<Entry>) -> Option<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut batched = 0;
    while batched < MAX_BATCH {
        match receiver.try_recv() {
            Ok(entry) => {
                batched += usize::from(matches!(entry, Entry::Enqueue { .. } | Entry::Run { .. }));
                entries.push(entry);
            }
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) if entries.is_empty() => return None,
            Err(TryRecvError::Disconnected) => break,
        }
    }
    Some(entries)
}

/// Parks until woken, or until `due` when something is due then. With nothing due, a finished
/// attempt or a sync request wakes the writer too (`idle`).
fn wait(receiver: &Receiver<Entry>, due: Option<Instant>, idle: &AtomicBool) {
    if let Some(at) = due {
        thread::park_timeout(at.saturating_duration_since(Instant::now()));
        return;
    }
    idle.store(true, Ordering::SeqCst);
    // A finished attempt sent before `idle` was set is seen here; one sent after it wakes us.
    if receiver.is_empty() {
        thread::park_timeout(IDLE_CHECK);
    }
    idle.store(false, Ordering::SeqCst);
}

fn write_batches(
    mut committer: Box<dyn OutboxCommitter>,
    receiver: &Receiver<Entry>,
    idle: &AtomicBool,
) {
    let mut carried: Vec<Done> = Vec::new();
    let mut unwritten = Unwritten::default();
    let mut waiters: Vec<oneshot::Sender<Result<(), RecordError>>> = Vec::new();
    let mut run_waiters: Vec<oneshot::Sender<Result<RunVerdict, RecordError>>> = Vec::new();
    let mut batch = OutboxBatch::default();
    let mut stopping = false;
    // When the finished attempts are committed even without new jobs. Set after a commit of new
    // jobs too: their attempts will finish, and need not wake the writer when they do.
    let mut flush_at: Option<Instant> = None;
    loop {
        let entries = take_waiting(receiver).unwrap_or_else(|| {
            stopping = true;
            Vec::new()
        });
        for entry in entries {
            match entry {
                Entry::Enqueue { job, done } => {
                    batch.enqueue.push(*job);
                    batch.durable = true;
                    waiters.push(done);
                }
                Entry::Serving { request, since } => unwritten.start(*request, since),
                Entry::Done(Done::Served(id)) if unwritten.answer(id) => {}
                Entry::Done(done) => {
                    flush_at.get_or_insert_with(|| Instant::now() + FINISH_DELAY);
                    carried.push(done);
                }
                Entry::Run { run, done } => {
                    batch.runs.push(*run);
                    run_waiters.push(done);
                }
                Entry::Stop => stopping = true,
            }
        }
        let now = Instant::now();
        unwritten.take_due(now, &mut batch.serving);
        let due = flush_at.is_some_and(|at| now >= at);
        let flush_finished = !carried.is_empty() && (stopping || carried.len() >= MAX_BATCH || due);
        let recording = !batch.enqueue.is_empty() || !batch.serving.is_empty();
        if !recording && batch.runs.is_empty() && !flush_finished {
            if stopping {
                return;
            }
            if due {
                // The attempts expected to finish have not: wait for them without a deadline.
                flush_at = None;
            }
            let next = [flush_at, unwritten.next_due()].into_iter().flatten().min();
            wait(receiver, next, idle);
            continue;
        }
        for done in carried.drain(..) {
            match done {
                Done::Finished(attempt) => batch.finished.push(attempt),
                Done::Served(id) => batch.served.push(id),
            }
        }
        let mut result = commit(committer.as_mut(), &batch);
        if result.is_err() && !batch.runs.is_empty() {
            // One run may be what failed: the rows without the runs, then each run alone.
            let runs = std::mem::take(&mut batch.runs);
            result = commit(committer.as_mut(), &batch);
            for (run, done) in runs.into_iter().zip(run_waiters.drain(..)) {
                let alone = OutboxBatch {
                    runs: vec![run],
                    ..OutboxBatch::default()
                };
                let verdict = commit(committer.as_mut(), &alone).and_then(|mut verdicts| {
                    verdicts.pop().ok_or_else(|| {
                        StoreError::Internal("a run's commit gave no verdict".to_owned())
                    })
                });
                let _ = done.send(verdict.map_err(|err| RecordError::from(&err)));
            }
        }
        let answer = result.as_ref().map(|_| ()).map_err(RecordError::from);
        for done in waiters.drain(..) {
            let _ = done.send(answer.clone());
        }
        let verdicts = result.as_ref().map_err(RecordError::from);
        for (i, done) in run_waiters.drain(..).enumerate() {
            let verdict = verdicts.clone().and_then(|verdicts| {
                verdicts
                    .get(i)
                    .cloned()
                    .ok_or_else(|| RecordError::Failed("a run's commit gave no verdict".to_owned()))
            });
            let _ = done.send(verdict);
        }
        flush_at = recording.then(|| Instant::now() + FINISH_DELAY);
        batch.enqueue.clear();
        batch.serving.clear();
        batch.runs.clear();
        batch.durable = false;
        let finished = std::mem::take(&mut batch.finished);
        let served = std::mem::take(&mut batch.served);
        if let Err(err) = result {
            tracing::warn!("an outbox commit failed: {err}");
            carried.extend(finished.into_iter().map(Done::Finished));
            carried.extend(served.into_iter().map(Done::Served));
            flush_at = (!carried.is_empty()).then(|| Instant::now() + RETRY_PAUSE);
            keep_newest(&mut carried);
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
    use std::future::Future;
    use std::task::Poll;

    use parking_lot::Mutex;
    use picloud_core::exec::HttpRequest;
    use picloud_core::{AppId, ExecutionId, JobPayload, ScriptId};
    use picloud_store::{Lease, StoreResult};

    use super::*;

    /// Keeps the batches it is given; panics on the first commit when told to; takes
    /// `commit_time` over each.
    #[derive(Clone, Default)]
    struct Kept {
        batches: Arc<Mutex<Vec<OutboxBatch>>>,
        panic_once: Arc<AtomicBool>,
        commit_time: Duration,
    }

    impl OutboxCommitter for Kept {
        fn commit(&mut self, batch: &OutboxBatch) -> StoreResult<Vec<RunVerdict>> {
            if self.panic_once.swap(false, Ordering::SeqCst) {
                panic!("a bug in a committer");
            }
            std::thread::sleep(self.commit_time);
            self.batches.lock().push(batch.clone());
            Ok(batch
                .runs
                .iter()
                .map(|_| RunVerdict::Committed { trigger_jobs: 0 })
                .collect())
        }
    }

    fn job() -> NewJob {
        NewJob {
            id: ExecutionId::new(),
            app_id: AppId::new(),
            script_id: ScriptId::new(),
            payload: JobPayload::Http {
                request: HttpRequest::default(),
            },
            trigger_depth: 0,
        }
    }

    fn request() -> SyncRequest {
        SyncRequest {
            id: ExecutionId::new(),
            app_id: AppId::new(),
            script_id: ScriptId::new(),
            lease: Lease {
                owner: "node".to_owned(),
                lease_ms: 30_000,
            },
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
        let answered = ExecutionId::new();
        recorder.served(answered);
        let new = job();
        recorder.enqueue(new.clone()).await.expect("recorded");
        thread.stop().await;
        let batches = kept.batches.lock();
        assert_eq!(batches.len(), 1, "one commit: {batches:?}");
        assert_eq!(batches[0].enqueue, vec![new]);
        assert_eq!(batches[0].finished, vec![finished]);
        assert_eq!(batches[0].served, vec![answered]);
        assert!(batches[0].durable, "an async job is committed on disk");
    }

    #[tokio::test]
    async fn a_sync_request_is_written_once_it_has_run_for_a_moment_and_never_when_answered_sooner()
    {
        let kept = Kept::default();
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        writer_idle(&recorder).await;
        let (quick, slow) = (request(), request());
        recorder.serving(quick.clone());
        recorder.serving(slow.clone());
        recorder.served(quick.id);
        assert!(
            commits_within(&kept, 1, IDLE_CHECK / 2).await,
            "the request woke the idle writer, which wrote it after RECORD_SERVING_AFTER"
        );
        recorder.served(slow.id);
        thread.stop().await;
        let batches = kept.batches.lock();
        assert_eq!(
            batches.as_slice(),
            [
                OutboxBatch {
                    serving: vec![slow.clone()],
                    ..OutboxBatch::default()
                },
                OutboxBatch {
                    served: vec![slow.id],
                    ..OutboxBatch::default()
                },
            ],
            "the slow request written (not on disk: it stands for a run in progress), then \
             deleted; the quick one never"
        );
    }

    #[tokio::test]
    async fn thousands_of_sync_requests_answered_while_the_writer_commits_write_nothing() {
        let kept = Kept {
            commit_time: RECORD_SERVING_AFTER * 4,
            ..Kept::default()
        };
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        let recorder = Arc::new(recorder);
        let accepting = recorder.clone();
        let committing = tokio::spawn(async move { accepting.enqueue(job()).await });
        tokio::time::sleep(RECORD_SERVING_AFTER / 2).await;
        // While the job's commit holds the writer: more requests than a take of jobs holds
        // (MAX_BATCH), every answer after every request. When the commit ends they have all run
        // long enough to be written; the writer reads the answers before it looks.
        let answered: Vec<_> = (0..5 * MAX_BATCH).map(|_| request()).collect();
        let ids: Vec<_> = answered.iter().map(|request| request.id).collect();
        for request in answered {
            recorder.serving(request);
        }
        for id in ids {
            recorder.served(id);
        }
        committing
            .await
            .expect("the task")
            .expect("the job recorded");
        tokio::time::sleep(RECORD_SERVING_AFTER * 2).await;
        thread.stop().await;
        let batches = kept.batches.lock();
        assert_eq!(batches.len(), 1, "the job's commit alone: {batches:?}");
        assert_eq!(batches[0].serving, [], "no request written");
    }

    /// Waits until the writer has found nothing to do and parks: from then on, only a wake-up
    /// makes it look for entries. (`idle` is set just before the writer's last look at the
    /// channel; the pause lets it reach the park.)
    async fn writer_idle(recorder: &Recorder) {
        while !recorder.writer.idle.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    /// Waits up to `limit` for `kept` to hold `n` commits.
    async fn commits_within(kept: &Kept, n: usize, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while kept.batches.lock().len() < n {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_queued_by_tasks_that_are_ready_together_share_one_commit() {
        let kept = Kept::default();
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        writer_idle(&recorder).await;
        let recorder = Arc::new(recorder);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    // Work before the job is queued (parsing a request, say): without the yield,
                    // the first job's wake-up would commit it while the next task still works.
                    std::thread::sleep(Duration::from_millis(2));
                    recorder.enqueue(job()).await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("the task").expect("recorded");
        }
        thread.stop().await;
        let sizes: Vec<usize> = kept
            .batches
            .lock()
            .iter()
            .map(|b| b.enqueue.len())
            .collect();
        assert_eq!(sizes, [10], "one commit for the ten jobs");
    }

    #[tokio::test]
    async fn a_job_whose_caller_is_cancelled_while_yielding_is_committed_at_once() {
        let kept = Kept::default();
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        writer_idle(&recorder).await;
        let mut enqueue = Box::pin(recorder.enqueue(job()));
        let first = std::future::poll_fn(|cx| Poll::Ready(enqueue.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "queued, then yielding");
        drop(enqueue);
        assert!(
            commits_within(&kept, 1, IDLE_CHECK / 2).await,
            "the dropped caller woke the writer; it did not wait for its idle check"
        );
        thread.stop().await;
    }

    #[tokio::test]
    async fn a_finished_attempt_wakes_an_idle_writer_and_is_committed_after_the_delay() {
        let kept = Kept::default();
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        writer_idle(&recorder).await;
        let finished = attempt();
        recorder.finished(finished);
        assert!(
            commits_within(&kept, 1, IDLE_CHECK / 2).await,
            "committed after FINISH_DELAY, not after the idle check"
        );
        assert_eq!(kept.batches.lock()[0].finished, vec![finished]);
        thread.stop().await;
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
            recorder.enqueue(job()).await,
            Err(RecordError::Closed),
            "nothing is accepted after the stop"
        );
    }

    #[tokio::test]
    async fn a_panicking_commit_fails_its_callers_and_the_writer_goes_on() {
        let kept = Kept::default();
        kept.panic_once.store(true, Ordering::SeqCst);
        let (recorder, thread) = Recorder::start(Box::new(kept.clone())).expect("the thread");
        let failed = recorder.enqueue(job()).await;
        assert!(
            matches!(failed, Err(RecordError::Failed(ref cause)) if cause.contains("panicked")),
            "{failed:?}"
        );
        recorder
            .enqueue(job())
            .await
            .expect("the next commit works");
        thread.stop().await;
        assert_eq!(kept.batches.lock().len(), 1);
    }
}
