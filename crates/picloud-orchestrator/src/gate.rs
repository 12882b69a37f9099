//! The execution gate: at most N executions run at once, and one app at most its share of them.
//! A request that cannot get a permit within a bounded wait is refused ([`Admission::Overloaded`])
//! rather than queued without end: under overload, callers get a quick `503` instead of a slow
//! timeout.
//!
//! The share (issue #13: 80 calls of one app's 5 s script left another app's hello `503`): each
//! app has a semaphore of its own with `share` permits, taken before one of the gate's. An app's
//! callers beyond its share wait on their app's semaphore, holding nothing of the gate's, so the
//! gate's other permits stay free for the other apps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use picloud_core::AppId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// The answer at the gate.
#[derive(Debug)]
pub enum Admission {
    /// Run now; the permits are returned when this value is dropped.
    Admitted(GatePermit),
    /// Nothing ran: no permit came free within the wait.
    Overloaded(Refusal),
}

/// Why the gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every permit stayed taken for the whole wait.
    #[error("too many executions are running; try again shortly")]
    Full,
    /// The app held its whole share for the whole wait; other apps still get in.
    #[error(
        "this app is running as many executions at once as its share of the server allows \
         ({share}); try again shortly, or make its scripts finish sooner"
    )]
    AppShare { share: usize },
}

pub struct Gate {
    semaphore: Arc<Semaphore>,
    capacity: usize,
    /// The permits one app may hold at once.
    app_share: usize,
    /// Each app's semaphore of `app_share` permits, while the app holds or waits for one (and
    /// until the next new app comes, see [`Gate::app_semaphore`]). A `parking_lot` mutex: it is
    /// held for a map lookup, never across an await.
    apps: Mutex<HashMap<AppId, Arc<Semaphore>>>,
    wait: Duration,
    metrics: Arc<Metrics>,
}

impl Gate {
    /// A gate of `capacity` permits (at least one) where callers wait at most `wait`, and one app
    /// holds at most `app_share_percent` % of the permits (at least one).
    pub fn new(
        capacity: usize,
        app_share_percent: u8,
        wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let capacity = capacity.max(1);
        let app_share = (capacity * usize::from(app_share_percent.min(100)) / 100).max(1);
        metrics.set_gate_capacity(capacity);
        Self {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity,
            app_share,
            apps: Mutex::new(HashMap::new()),
            wait,
            metrics,
        }
    }

    /// Waits at most the gate's wait: for a caller holding a connection.
    pub async fn acquire(&self, app: AppId) -> Admission {
        self.enter(app, Some(Instant::now() + self.wait)).await
    }

    /// Waits as long as it takes: for queued jobs, which nobody is waiting on and which already
    /// hold a lease (the dispatcher claims no more than the gate has room for, so the wait is
    /// short).
    pub async fn acquire_patiently(&self, app: AppId) -> Admission {
        self.enter(app, None).await
    }

    /// The app's permit, then the gate's, both by `deadline`. Every caller takes them in this
    /// order, so no two wait for each other.
    async fn enter(&self, app: AppId, deadline: Option<Instant>) -> Admission {
        let Some(app_permit) = take(self.app_semaphore(app), deadline).await else {
            return self.refuse(Refusal::AppShare {
                share: self.app_share,
            });
        };
        let Some(permit) = take(self.semaphore.clone(), deadline).await else {
            return self.refuse(Refusal::Full);
        };
        self.metrics.gate_entered();
        Admission::Admitted(GatePermit {
            _permit: permit,
            _app_permit: app_permit,
            metrics: self.metrics.clone(),
        })
    }

    fn refuse(&self, refusal: Refusal) -> Admission {
        self.metrics.gate_refused(refusal);
        Admission::Overloaded(refusal)
    }

    /// The semaphore of `app`'s share. When an app comes that has none, the entries nothing
    /// holds (no permit, no waiter: only the map's reference is left) are dropped, so the map
    /// keeps the apps running or waiting, and idle ones only until the next new app comes.
    fn app_semaphore(&self, app: AppId) -> Arc<Semaphore> {
        let mut apps = self.apps.lock();
        if let Some(semaphore) = apps.get(&app) {
            return semaphore.clone();
        }
        // References are only taken under this lock, so a count of one cannot grow meanwhile.
        apps.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        apps.entry(app)
            .or_insert_with(|| Arc::new(Semaphore::new(self.app_share)))
            .clone()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The permits one app may hold at once.
    pub fn app_share(&self) -> usize {
        self.app_share
    }

    pub fn in_use(&self) -> usize {
        self.capacity - self.semaphore.available_permits()
    }
}

/// A permit of `semaphore`: at once when one is free (no timer on the way of every request),
/// else the first to come free by `deadline` (no deadline: as long as it takes); `None` when
/// none did. A semaphore is closed only by `close`, which is never called: an error is a `None`
/// too.
async fn take(
    semaphore: Arc<Semaphore>,
    deadline: Option<Instant>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = semaphore.clone().try_acquire_owned() {
        return Some(permit);
    }
    let wait = semaphore.acquire_owned();
    let acquired = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, wait).await.ok()?,
        None => wait.await,
    };
    acquired.ok()
}

/// A place in the gate; dropping it lets the next caller in.
#[derive(Debug)]
pub struct GatePermit {
    _permit: OwnedSemaphorePermit,
    _app_permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        self.metrics.gate_left();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(capacity: usize, app_share_percent: u8, wait_ms: u64) -> Gate {
        Gate::new(
            capacity,
            app_share_percent,
            Duration::from_millis(wait_ms),
            Arc::new(Metrics::default()),
        )
    }

    fn admitted(admission: Admission) -> GatePermit {
        match admission {
            Admission::Admitted(permit) => permit,
            Admission::Overloaded(refusal) => panic!("expected to get in, refused: {refusal}"),
        }
    }

    fn refusal(admission: Admission) -> Refusal {
        match admission {
            Admission::Admitted(_) => panic!("expected a refusal, got in"),
            Admission::Overloaded(refusal) => refusal,
        }
    }

    #[tokio::test]
    async fn a_full_gate_refuses_after_the_bounded_wait_and_admits_again_when_freed() {
        let gate = gate(1, 100, 50);
        let app = AppId::new();
        let first = admitted(gate.acquire(app).await);
        assert_eq!(gate.in_use(), 1, "one permit is taken");
        let started = std::time::Instant::now();
        assert_eq!(
            refusal(gate.acquire(AppId::new()).await),
            Refusal::Full,
            "another app's caller is refused: the gate is full"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "after waiting the configured time"
        );
        drop(first);
        assert_eq!(gate.in_use(), 0, "dropping the permit frees it");
        admitted(gate.acquire(app).await);
    }

    #[tokio::test]
    async fn a_waiting_caller_gets_in_when_a_permit_frees_within_the_wait() {
        let gate = Arc::new(gate(1, 100, 5_000));
        let first = admitted(gate.acquire(AppId::new()).await);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { matches!(gate.acquire(AppId::new()).await, Admission::Admitted(_)) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(
            waiter.await.expect("join"),
            "the waiter is admitted once the permit is free"
        );
    }

    // Issue #13: 80 concurrent calls of one app's 5 s script made another app's hello 503.
    #[tokio::test]
    async fn an_app_at_its_share_is_refused_while_other_apps_still_get_in() {
        let gate = gate(4, 50, 50);
        let (greedy, other) = (AppId::new(), AppId::new());
        let held = [
            admitted(gate.acquire(greedy).await),
            admitted(gate.acquire(greedy).await),
        ];
        let refused = refusal(gate.acquire(greedy).await);
        assert_eq!(
            refused,
            Refusal::AppShare { share: 2 },
            "the third is beyond half of four"
        );
        assert!(
            refused.to_string().contains("its share"),
            "the message says the app is at its share: {refused}"
        );
        assert_eq!(
            gate.in_use(),
            2,
            "the refused caller held no permit of the gate's"
        );
        let others = [
            admitted(gate.acquire(other).await),
            admitted(gate.acquire(other).await),
        ];
        assert_eq!(gate.in_use(), 4, "the other app got the rest");
        drop(held);
        drop(others);
        admitted(gate.acquire(greedy).await);
    }

    #[tokio::test]
    async fn a_queued_job_beyond_its_apps_share_waits_without_taking_a_permit() {
        let gate = Arc::new(gate(2, 50, 50));
        let (greedy, other) = (AppId::new(), AppId::new());
        let held = admitted(gate.acquire_patiently(greedy).await);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire_patiently(greedy).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the job waits for its app's permit");
        let theirs = admitted(gate.acquire(other).await);
        drop(theirs);
        drop(held);
        admitted(waiter.await.expect("join"));
    }

    #[test]
    fn an_apps_share_is_a_percentage_of_the_gate_and_at_least_one() {
        for (capacity, percent, share) in [
            (8, 50, 4),
            (8, 75, 6),
            (8, 100, 8),
            (3, 50, 1),
            (4, 1, 1),
            (1, 50, 1),
            (64, 50, 32),
        ] {
            assert_eq!(
                gate(capacity, percent, 1).app_share(),
                share,
                "{percent} % of {capacity}"
            );
        }
    }

    #[tokio::test]
    async fn the_gate_forgets_an_idle_app_when_another_comes() {
        let gate = gate(4, 50, 1);
        let (first, second, third) = (AppId::new(), AppId::new(), AppId::new());
        drop(admitted(gate.acquire(first).await));
        let held = admitted(gate.acquire(second).await);
        assert_eq!(
            gate.apps.lock().keys().copied().collect::<Vec<_>>(),
            vec![second],
            "the idle app is gone, the running one is kept"
        );
        let _also = admitted(gate.acquire(third).await);
        assert_eq!(gate.apps.lock().len(), 2, "both running apps are kept");
        drop(held);
    }

    #[test]
    fn a_gate_of_zero_still_admits_one() {
        let gate = gate(0, 50, 1);
        assert_eq!(
            gate.capacity(),
            1,
            "zero would refuse everything; one is the minimum"
        );
        assert_eq!(gate.app_share(), 1, "and one app may take it");
    }
}
