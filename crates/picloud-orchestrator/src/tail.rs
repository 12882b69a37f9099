//! The live tail (issue #18): an app's execution records as they finish, for the admin API's
//! Server-Sent Events stream and `picloud logs --follow`.
//!
//! Each app that someone tails has a ring of its last [`RING`] records
//! ([`tokio::sync::broadcast`]): publishing never waits for a reader, and a reader that falls
//! further behind than the ring learns it ([`TailEnd::Missed`]) and is dropped by its stream. An app
//! nobody tails costs a publisher one atomic load. At most [`MAX_TAILS_PER_APP`] tails of one app
//! are open at once, so a tenant cannot hold an unbounded number of streams.
//!
//! Records of executions on this node are published when they finish; on PostgreSQL, other
//! nodes' records arrive through the database once written (`crate::journal`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use picloud_core::records::ExecutionRecord;
use picloud_core::AppId;
use tokio::sync::broadcast;

/// Records kept for a tail that reads behind. A record holds at most `max_log_bytes` (256 KiB)
/// of log, so a tailed app's ring holds at most 64 MiB, and only while someone tails it.
pub const RING: usize = 256;
/// Tails of one app open at once.
pub const MAX_TAILS_PER_APP: usize = 32;

#[derive(Default)]
pub struct LogTail {
    /// Tails open, across apps: zero lets a publisher skip the map.
    open: AtomicUsize,
    closed: AtomicBool,
    apps: RwLock<HashMap<AppId, broadcast::Sender<Arc<ExecutionRecord>>>>,
}

/// Why a tail cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The app has [`MAX_TAILS_PER_APP`] tails open.
    TooMany,
    /// The server is shutting down.
    Closed,
}

/// Why a tail ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailEnd {
    /// It read further behind than the ring: this many records were lost to it.
    Missed(u64),
    /// The server is shutting down.
    Closed,
}

impl LogTail {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether anyone tails `app`: a record nobody keeps and nobody tails need not be made.
    pub fn is_tailed(&self, app: AppId) -> bool {
        self.open.load(Ordering::Relaxed) > 0 && self.apps.read().contains_key(&app)
    }

    /// Hands `record` to the tails of its app, if any; never waits.
    pub fn publish(&self, record: &ExecutionRecord) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(ring) = self.apps.read().get(&record.app_id) {
            // An error means the last tail closed meanwhile: nobody to tell.
            let _ = ring.send(Arc::new(record.clone()));
        }
    }

    /// Ends every tail (each reads what it has, then [`TailEnd::Closed`]) and refuses new ones:
    /// at shutdown, so that open streams do not hold the server's drain.
    pub fn close(&self) {
        let mut apps = self.apps.write();
        self.closed.store(true, Ordering::Relaxed);
        apps.clear();
    }

    /// Opens a tail of `app`'s records from now on.
    pub fn subscribe(self: &Arc<Self>, app: AppId) -> Result<Tail, Refused> {
        let mut apps = self.apps.write();
        if self.closed.load(Ordering::Relaxed) {
            return Err(Refused::Closed);
        }
        let ring = apps
            .entry(app)
            .or_insert_with(|| broadcast::channel(RING).0);
        if ring.receiver_count() >= MAX_TAILS_PER_APP {
            return Err(Refused::TooMany);
        }
        let receiver = ring.subscribe();
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Tail {
            app,
            receiver,
            hub: self.clone(),
        })
    }
}

/// One reader of an app's records; closing it (dropping) forgets the app's ring when it was the
/// last.
pub struct Tail {
    app: AppId,
    receiver: broadcast::Receiver<Arc<ExecutionRecord>>,
    hub: Arc<LogTail>,
}

impl Tail {
    /// The next record; `Err` when this tail fell behind by more than the ring, or was closed.
    pub async fn next(&mut self) -> Result<Arc<ExecutionRecord>, TailEnd> {
        self.receiver.recv().await.map_err(|err| match err {
            broadcast::error::RecvError::Lagged(missed) => TailEnd::Missed(missed),
            broadcast::error::RecvError::Closed => TailEnd::Closed,
        })
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let mut apps = self.hub.apps.write();
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
        // This tail's receiver is still counted until it drops, after this.
        if apps
            .get(&self.app)
            .is_some_and(|ring| ring.receiver_count() <= 1)
        {
            apps.remove(&self.app);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picloud_core::{ExecutionId, ScriptId};

    fn record(app_id: AppId, summary: &str) -> ExecutionRecord {
        ExecutionRecord {
            summary: summary.to_owned(),
            ..ExecutionRecord::fixture(app_id, ScriptId::new(), ExecutionId::new(), 1)
        }
    }

    #[tokio::test]
    async fn a_tail_reads_its_apps_records_and_a_slow_one_learns_what_it_missed() {
        let hub = Arc::new(LogTail::new());
        let (a, b) = (AppId::new(), AppId::new());
        assert!(!hub.is_tailed(a));
        hub.publish(&record(a, "before anyone listened"));
        let mut tail = hub.subscribe(a).expect("a tail");
        assert!(hub.is_tailed(a) && !hub.is_tailed(b));
        hub.publish(&record(b, "another app's"));
        hub.publish(&record(a, "GET /one"));
        assert_eq!(tail.next().await.expect("a record").summary, "GET /one");

        for n in 0..RING + 5 {
            hub.publish(&record(a, &format!("GET /{n}")));
        }
        assert_eq!(tail.next().await, Err(TailEnd::Missed(5)));
        drop(tail);
        assert!(!hub.is_tailed(a), "the last tail closed forgets the app");
        assert!(hub.apps.read().is_empty());
        assert_eq!(hub.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_app_has_a_bounded_number_of_tails() {
        let hub = Arc::new(LogTail::new());
        let app = AppId::new();
        let tails: Vec<Tail> = (0..MAX_TAILS_PER_APP)
            .map(|_| hub.subscribe(app).expect("a tail"))
            .collect();
        assert!(hub.subscribe(app).is_err());
        assert!(
            hub.subscribe(AppId::new()).is_ok(),
            "another app's are apart"
        );
        drop(tails);
        assert!(hub.subscribe(app).is_ok());
    }

    #[tokio::test]
    async fn closing_ends_every_tail_and_refuses_new_ones() {
        let hub = Arc::new(LogTail::new());
        let app = AppId::new();
        let mut tail = hub.subscribe(app).expect("a tail");
        hub.publish(&record(app, "GET /last"));
        hub.close();
        assert_eq!(tail.next().await.expect("what it had").summary, "GET /last");
        assert_eq!(tail.next().await, Err(TailEnd::Closed));
        assert!(matches!(hub.subscribe(app), Err(Refused::Closed)));
    }
}
