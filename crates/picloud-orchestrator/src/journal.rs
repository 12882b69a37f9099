//! Execution records on their way to the database (issue #18), and live tails across nodes.
//!
//! Records are written by a thread of their own through a connection of their own
//! ([`ExecutionStore::execution_writer`]; on SQLite into a file of their own), never by the
//! outbox's writer: on its thread, each record was an insert that every request's commit waited
//! behind (`hello` at 32 connections −19.5 % on SQLite, bench/RESULTS.md). An execution hands its
//! record over without waiting ([`Journal::keep`]); the thread sleeps [`GATHER`] after the first
//! one arrives, so that the records of that moment go in one transaction and senders meanwhile
//! wake nobody.
//!
//! - **Bounded.** At most [`QUEUE`] records wait. When the database falls that far behind, more
//!   are dropped (and counted, and logged) rather than slowing executions or growing memory
//!   without end. A failed write is tried again after a pause, while new records wait.
//! - **Per-app cap at write time.** A tenant that runs a million executions an hour must not fill
//!   the disk before the hourly sweep: the thread counts each app's records (an upper bound) and
//!   trims the app to `executions_per_app` whenever it holds [`TRIM_SLACK`] more. A record stores
//!   at most `max_log_bytes` of log ([`keep_log`]), so an app's records take at most about
//!   (`executions_per_app` + [`TRIM_SLACK`]) × `max_log_bytes` on disk.
//! - **Live tails across nodes.** On PostgreSQL each write notifies the other nodes
//!   ([`Store::notices`]), which read the records for their tails (`crate::notices`).
//!
//! [`ExecutionStore::execution_writer`]: picloud_store::ExecutionStore::execution_writer
//! [`Store::notices`]: picloud_store::Store::notices

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use picloud_core::exec::{LogLevel, LogLine};
use picloud_core::AppId;
use picloud_store::{ExecutionRecord, ExecutionWriter, StoreError};
use tokio::sync::oneshot;

/// The most records waiting for the thread.
pub const QUEUE: usize = 65_536;
/// How long records gather after the first before they are written together.
pub const GATHER: Duration = Duration::from_millis(200);
/// The most records one transaction writes.
const MAX_BATCH: usize = 4_096;
/// The pause after a failed write before the next try (the database is likely down).
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Records an app may hold beyond its cap before the thread trims it.
pub const TRIM_SLACK: u64 = 1_000;
/// The most records one trim deletes.
const MAX_TRIM: u32 = 100_000;

enum Message {
    Record(Box<ExecutionRecord>),
    /// Write what came before, then end; answered when done.
    Stop(oneshot::Sender<()>),
}

/// The sending side: cheap to clone, never waits.
#[derive(Clone)]
pub struct Journal {
    sender: Sender<Message>,
    dropped: Arc<AtomicU64>,
}

/// The thread, to stop at shutdown.
pub struct JournalThread {
    sender: Sender<Message>,
    thread: thread::JoinHandle<()>,
}

impl Journal {
    /// Starts the thread, which writes through `writer`, keeps each app's records within
    /// `keep_per_app` (plus [`TRIM_SLACK`]) and each record's log within `max_log_bytes`.
    pub fn start(
        writer: Box<dyn ExecutionWriter>,
        keep_per_app: u64,
        max_log_bytes: usize,
    ) -> std::io::Result<(Journal, JournalThread)> {
        let (sender, receiver) = crossbeam_channel::bounded(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        let thread = thread::Builder::new()
            .name("picloud-records".to_owned())
            .spawn(move || {
                write_records(writer, &receiver, &counted, keep_per_app, max_log_bytes);
            })?;
        Ok((
            Journal {
                sender: sender.clone(),
                dropped,
            },
            JournalThread { sender, thread },
        ))
    }

    /// Hands `record` to the thread; drops it (and counts it) when [`QUEUE`] records wait.
    pub fn keep(&self, record: ExecutionRecord) {
        if let Err(TrySendError::Full(_)) = self.sender.try_send(Message::Record(Box::new(record)))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped so far because too many waited.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl JournalThread {
    /// Writes the records handed over before this call, then ends the thread.
    pub async fn stop(self) {
        let (done, finished) = oneshot::channel();
        let sender = self.sender;
        // The queue may be full: wait for room off the runtime's threads.
        let sent = tokio::task::spawn_blocking(move || sender.send(Message::Stop(done)).is_ok())
            .await
            .unwrap_or(false);
        if sent {
            let _ = finished.await;
        }
        let thread = self.thread;
        if !matches!(
            tokio::task::spawn_blocking(move || thread.join()).await,
            Ok(Ok(()))
        ) {
            tracing::warn!("the execution records' thread ended badly");
        }
    }
}

/// The thread's loop: wait for a record, gather for [`GATHER`], write, trim; until `Stop`.
fn write_records(
    mut writer: Box<dyn ExecutionWriter>,
    receiver: &Receiver<Message>,
    dropped: &AtomicU64,
    keep_per_app: u64,
    max_log_bytes: usize,
) {
    let mut counts = AppCounts::new(keep_per_app);
    let mut reported_drops = 0;
    loop {
        let first = match receiver.recv() {
            Ok(message) => message,
            Err(_) => return,
        };
        let mut batch: Vec<ExecutionRecord> = Vec::new();
        let mut stop = None;
        take(first, &mut batch, &mut stop);
        if stop.is_none() {
            // Senders meanwhile wake nobody: this thread is not waiting on the channel.
            thread::sleep(GATHER);
        }
        loop {
            while batch.len() < MAX_BATCH && stop.is_none() {
                match receiver.try_recv() {
                    Ok(message) => take(message, &mut batch, &mut stop),
                    Err(_) => break,
                }
            }
            for record in &mut batch {
                keep_log(&mut record.logs, max_log_bytes);
            }
            write(writer.as_mut(), &batch, stop.is_some());
            counts.trim(writer.as_mut(), &batch);
            batch.clear();
            if stop.is_some() || receiver.is_empty() {
                break;
            }
        }
        let drops = dropped.load(Ordering::Relaxed);
        if drops > reported_drops {
            tracing::warn!(
                dropped = drops - reported_drops,
                "execution records were dropped: more than {QUEUE} waited for the database"
            );
            reported_drops = drops;
        }
        if let Some(done) = stop {
            let _ = done.send(());
            return;
        }
    }
}

/// Keeps the first lines of `logs` whose messages fit in `max_bytes`, then one saying how many
/// were left out (a line that does not fit whole is left out whole).
fn keep_log(logs: &mut Vec<LogLine>, max_bytes: usize) {
    let mut used = 0;
    let Some(cut) = logs.iter().position(|line| {
        used += line.message.len();
        used > max_bytes
    }) else {
        return;
    };
    let left = logs.len() - cut;
    let bytes: usize = logs[cut..].iter().map(|line| line.message.len()).sum();
    let at = logs[cut].at;
    logs.truncate(cut);
    logs.push(LogLine {
        level: LogLevel::Warn,
        message: format!(
            "{left} more log lines ({bytes} bytes) are not kept in this record: a record keeps \
             {max_bytes} bytes of log (PICLOUD_RECORD_MAX_LOG_BYTES); the live tail shows them all"
        ),
        at,
        discarded: false,
    });
}

fn take(
    message: Message,
    batch: &mut Vec<ExecutionRecord>,
    stop: &mut Option<oneshot::Sender<()>>,
) {
    match message {
        Message::Record(record) => batch.push(*record),
        Message::Stop(done) => *stop = Some(done),
    }
}

/// Writes `batch`, trying again after a pause until it is written — or once only when
/// `stopping` (the records are then lost, and logged so).
fn write(writer: &mut dyn ExecutionWriter, batch: &[ExecutionRecord], stopping: bool) {
    if batch.is_empty() {
        return;
    }
    loop {
        let written = panic::catch_unwind(AssertUnwindSafe(|| writer.write(batch)))
            .unwrap_or_else(|_| Err(StoreError::Internal("a write of records panicked".into())));
        match written {
            Ok(()) => return,
            Err(err) if stopping => {
                tracing::warn!(records = batch.len(), "execution records are lost: {err}");
                return;
            }
            Err(err) => {
                tracing::warn!(
                    records = batch.len(),
                    "execution records could not be written; trying again: {err}"
                );
                thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// How many records each app holds at most, as far as this thread knows.
struct AppCounts {
    keep: u64,
    held: HashMap<AppId, u64>,
}

impl AppCounts {
    fn new(keep: u64) -> Self {
        Self {
            keep,
            held: HashMap::new(),
        }
    }

    /// Counts `written` and trims each app that may hold [`TRIM_SLACK`] more than its cap. An
    /// app not seen before may hold its cap already (written before a restart, or by another
    /// node): it counts as full.
    fn trim(&mut self, writer: &mut dyn ExecutionWriter, written: &[ExecutionRecord]) {
        for record in written {
            *self.held.entry(record.app_id).or_insert(self.keep) += 1;
        }
        for (app_id, held) in &mut self.held {
            if *held < self.keep.saturating_add(TRIM_SLACK) {
                continue;
            }
            let limit = u32::try_from(*held - self.keep)
                .unwrap_or(u32::MAX)
                .min(MAX_TRIM);
            match writer.trim(*app_id, self.keep, limit) {
                Ok(_) => *held = self.keep,
                Err(err) => {
                    tracing::warn!(app_id = %app_id, "execution records not trimmed: {err}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;
    use picloud_core::{ExecutionId, ScriptId, Timestamp};
    use picloud_store::StoreResult;

    use super::*;

    /// Keeps what it is given; fails the first write when told to.
    #[derive(Clone, Default)]
    struct Kept {
        writes: Arc<Mutex<Vec<Vec<ExecutionRecord>>>>,
        trims: Arc<Mutex<Vec<(AppId, u64, u32)>>>,
        fail_once: Arc<std::sync::atomic::AtomicBool>,
    }

    impl ExecutionWriter for Kept {
        fn write(&mut self, records: &[ExecutionRecord]) -> StoreResult<()> {
            if self.fail_once.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down for a moment".into()));
            }
            self.writes.lock().push(records.to_vec());
            Ok(())
        }

        fn trim(&mut self, app_id: AppId, keep: u64, limit: u32) -> StoreResult<u64> {
            self.trims.lock().push((app_id, keep, limit));
            Ok(u64::from(limit))
        }
    }

    fn record(app_id: AppId) -> ExecutionRecord {
        ExecutionRecord::fixture(app_id, ScriptId::new(), ExecutionId::new(), 1)
    }

    #[tokio::test]
    async fn records_gather_into_one_write_and_a_failed_write_is_tried_again() {
        let kept = Kept::default();
        kept.fail_once.store(true, Ordering::SeqCst);
        let (journal, thread) =
            Journal::start(Box::new(kept.clone()), 100, 1_024).expect("a thread");
        let app = AppId::new();
        let records: Vec<ExecutionRecord> = (0..5).map(|_| record(app)).collect();
        for record in &records {
            journal.keep(record.clone());
        }
        // Written after the gathering and one retry: wait for it rather than guess its time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while kept.writes.lock().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *kept.writes.lock(),
            vec![records.clone()],
            "one write of all five, after the failed one"
        );
        let last = record(app);
        journal.keep(last.clone());
        thread.stop().await;
        assert_eq!(
            kept.writes.lock().last(),
            Some(&vec![last]),
            "written at stop"
        );
        assert_eq!(journal.dropped(), 0);
    }

    #[test]
    fn an_app_is_trimmed_to_its_cap_once_it_may_hold_the_slack_more() {
        let mut kept = Kept::default();
        let keep = 50;
        let mut counts = AppCounts::new(keep);
        let (busy, quiet) = (AppId::new(), AppId::new());
        let batch = |app, n| (0..n).map(|_| record(app)).collect::<Vec<_>>();
        counts.trim(&mut kept, &batch(busy, TRIM_SLACK - 1));
        counts.trim(&mut kept, &batch(quiet, 3));
        assert!(kept.trims.lock().is_empty(), "within the slack");
        counts.trim(&mut kept, &batch(busy, 1));
        assert_eq!(*kept.trims.lock(), vec![(busy, keep, 1_000)]);
        counts.trim(&mut kept, &batch(busy, TRIM_SLACK - 1));
        assert_eq!(kept.trims.lock().len(), 1, "counted from the cap again");
    }

    #[tokio::test]
    async fn a_full_queue_drops_records_rather_than_waiting() {
        /// Says when its first write starts, and blocks it until released.
        struct Stuck(
            std::sync::mpsc::SyncSender<()>,
            Option<std::sync::mpsc::Receiver<()>>,
        );
        impl ExecutionWriter for Stuck {
            fn write(&mut self, _: &[ExecutionRecord]) -> StoreResult<()> {
                if let Some(gate) = self.1.take() {
                    let _ = self.0.send(());
                    let _ = gate.recv();
                }
                Ok(())
            }
            fn trim(&mut self, _: AppId, _: u64, _: u32) -> StoreResult<u64> {
                Ok(0)
            }
        }
        let (release, gate) = std::sync::mpsc::channel();
        let (entered, writing) = std::sync::mpsc::sync_channel(1);
        let (journal, thread) =
            Journal::start(Box::new(Stuck(entered, Some(gate))), 1_000_000, 1_024)
                .expect("a thread");
        let app = AppId::new();
        journal.keep(record(app));
        tokio::task::spawn_blocking(move || writing.recv())
            .await
            .expect("waited")
            .expect("the first write started");
        // The thread is stuck writing the first; the queue fills, and then records are dropped.
        for _ in 0..QUEUE + 10 {
            journal.keep(record(app));
        }
        assert_eq!(journal.dropped(), 10);
        release.send(()).expect("released");
        thread.stop().await;
    }

    #[test]
    fn a_record_keeps_its_first_lines_within_the_bytes_and_says_what_it_left_out() {
        let line = |message: &str| LogLine {
            level: LogLevel::Info,
            message: message.to_owned(),
            at: Timestamp::now(),
            discarded: false,
        };
        let mut logs = vec![
            line("0123456789"),
            line("abcdefghij"),
            line("x"),
            line("yz"),
        ];
        let whole = logs.clone();
        keep_log(&mut logs, 23);
        assert_eq!(logs, whole, "23 bytes of messages fit whole");
        keep_log(&mut logs, 15);
        assert_eq!(
            logs[..1],
            whole[..1],
            "the first line fits, the second does not"
        );
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[1].level, LogLevel::Warn);
        assert!(
            logs[1]
                .message
                .starts_with("3 more log lines (13 bytes) are not kept"),
            "{}",
            logs[1].message
        );
    }
}
