//! The execution gate: at most N executions run at once. A request that cannot get a permit
//! within a bounded wait is refused ([`Admission::Overloaded`]) rather than queued without end:
//! under overload, callers get a quick `503` instead of a slow timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The answer at the gate.
#[derive(Debug)]
pub enum Admission {
    /// Run now; the permit is returned when this value is dropped.
    Admitted(GatePermit),
    /// Every permit stayed taken for the whole wait.
    Overloaded,
}

pub struct Gate {
    semaphore: Arc<Semaphore>,
    capacity: usize,
    wait: Duration,
    metrics: Arc<Metrics>,
}

impl Gate {
    /// A gate of `capacity` permits (at least one) where callers wait at most `wait`.
    pub fn new(capacity: usize, wait: Duration, metrics: Arc<Metrics>) -> Self {
        let capacity = capacity.max(1);
        metrics.set_gate_capacity(capacity);
        Self {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity,
            wait,
            metrics,
        }
    }

    /// Waits at most the gate's wait: for a caller holding a connection.
    pub async fn acquire(&self) -> Admission {
        match tokio::time::timeout(self.wait, self.semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => self.admitted(permit),
            // Timed out, or the semaphore was closed (never done): both mean "not now".
            Ok(Err(_)) | Err(_) => Admission::Overloaded,
        }
    }

    /// Waits as long as it takes: for queued jobs, which nobody is waiting on and which already
    /// hold a lease (the dispatcher claims no more than the gate holds, so the wait is short).
    pub async fn acquire_patiently(&self) -> Admission {
        match self.semaphore.clone().acquire_owned().await {
            Ok(permit) => self.admitted(permit),
            Err(_) => Admission::Overloaded,
        }
    }

    fn admitted(&self, permit: OwnedSemaphorePermit) -> Admission {
        self.metrics.gate_entered();
        Admission::Admitted(GatePermit {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn in_use(&self) -> usize {
        self.capacity - self.semaphore.available_permits()
    }
}

/// A place in the gate; dropping it lets the next caller in.
#[derive(Debug)]
pub struct GatePermit {
    _permit: OwnedSemaphorePermit,
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

    #[tokio::test]
    async fn a_full_gate_refuses_after_the_bounded_wait_and_admits_again_when_freed() {
        let gate = Gate::new(1, Duration::from_millis(50), Arc::new(Metrics::new()));
        let first = gate.acquire().await;
        assert!(
            matches!(first, Admission::Admitted(_)),
            "the first caller gets in"
        );
        assert_eq!(gate.in_use(), 1, "one permit is taken");
        let started = std::time::Instant::now();
        assert!(
            matches!(gate.acquire().await, Admission::Overloaded),
            "the second caller is refused"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "after waiting the configured time"
        );
        drop(first);
        assert_eq!(gate.in_use(), 0, "dropping the permit frees it");
        assert!(
            matches!(gate.acquire().await, Admission::Admitted(_)),
            "the gate admits again"
        );
    }

    #[tokio::test]
    async fn a_waiting_caller_gets_in_when_a_permit_frees_within_the_wait() {
        let gate = Arc::new(Gate::new(
            1,
            Duration::from_secs(5),
            Arc::new(Metrics::new()),
        ));
        let first = gate.acquire().await;
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { matches!(gate.acquire().await, Admission::Admitted(_)) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(
            waiter.await.expect("join"),
            "the waiter is admitted once the permit is free"
        );
    }

    #[test]
    fn a_gate_of_zero_still_admits_one() {
        let gate = Gate::new(0, Duration::from_millis(1), Arc::new(Metrics::new()));
        assert_eq!(
            gate.capacity(),
            1,
            "zero would refuse everything; one is the minimum"
        );
    }
}
