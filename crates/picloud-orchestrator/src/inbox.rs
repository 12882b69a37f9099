//! The inbox registry: how a sync HTTP request waits for the dispatcher. The handler opens an
//! inbox under its execution id before the job is recorded; the dispatcher delivers the outcome
//! there. When the handler has gone (timed out, or its client disconnected), its inbox is gone
//! too, and the dispatcher learns so — before running the job (it is not run) or after (the run
//! is recorded in `abandoned_executions`).
//!
//! [`InboxResolver`] is the seam (the changelog's): the dispatcher sees inboxes only through it.
//! [`InboxRegistry`], in process, is its implementation, and all PiCloud needs while a sync
//! request is always run by the node that accepted it (docs/cluster.md). One over the database
//! (`LISTEN`/`NOTIFY` on PostgreSQL) would let another node answer a caller waiting here.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use picloud_core::ExecutionId;
use tokio::sync::oneshot;

use crate::runner::Ran;

/// Where sync callers wait for their outcomes, and where runs deliver them.
pub trait InboxResolver: Send + Sync {
    /// Opens the inbox of `id`; it closes when the returned [`Inbox`] is dropped.
    fn open(self: Arc<Self>, id: ExecutionId) -> Inbox;
    /// Whether a caller still waits for `id`.
    fn is_waiting(&self, id: ExecutionId) -> bool;
    /// Hands `ran` to the caller waiting for `id`, or back when nobody waits.
    fn deliver(&self, id: ExecutionId, ran: Ran) -> Delivery;
    /// Closes the inbox of `id` (its caller went away).
    fn close(&self, id: ExecutionId);
    /// Inboxes open now (a gauge, and a check in tests that none leak).
    fn open_count(&self) -> usize;
}

/// The inboxes of this process.
#[derive(Default)]
pub struct InboxRegistry {
    /// A plain mutex: nothing awaits while it is held, and each hold is a map operation.
    waiting: Mutex<HashMap<ExecutionId, oneshot::Sender<Ran>>>,
}

/// Whether an outcome reached its caller.
#[derive(Debug)]
pub enum Delivery {
    Delivered,
    /// Nobody waits any more; the outcome comes back to the dispatcher (boxed: the rare case).
    Abandoned(Box<Ran>),
}

impl InboxRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl InboxResolver for InboxRegistry {
    fn open(self: Arc<Self>, id: ExecutionId) -> Inbox {
        let (sender, receiver) = oneshot::channel();
        self.waiting.lock().insert(id, sender);
        Inbox {
            id,
            receiver,
            resolver: self,
        }
    }

    fn is_waiting(&self, id: ExecutionId) -> bool {
        self.waiting
            .lock()
            .get(&id)
            .is_some_and(|sender| !sender.is_closed())
    }

    fn deliver(&self, id: ExecutionId, ran: Ran) -> Delivery {
        let sender = self.waiting.lock().remove(&id);
        match sender {
            Some(sender) => match sender.send(ran) {
                Ok(()) => Delivery::Delivered,
                Err(ran) => Delivery::Abandoned(Box::new(ran)),
            },
            None => Delivery::Abandoned(Box::new(ran)),
        }
    }

    fn close(&self, id: ExecutionId) {
        self.waiting.lock().remove(&id);
    }

    fn open_count(&self) -> usize {
        self.waiting.lock().len()
    }
}

/// A caller's side of an inbox.
pub struct Inbox {
    id: ExecutionId,
    receiver: oneshot::Receiver<Ran>,
    resolver: Arc<dyn InboxResolver>,
}

impl Inbox {
    /// The outcome, or `None` when the dispatcher dropped the job without an answer.
    pub async fn receive(&mut self) -> Option<Ran> {
        (&mut self.receiver).await.ok()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.resolver.close(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished() -> Ran {
        Ran::Overloaded(crate::gate::Refusal::Full)
    }

    #[tokio::test]
    async fn an_outcome_reaches_the_open_inbox() {
        let registry = InboxRegistry::new();
        let id = ExecutionId::new();
        let mut inbox = registry.clone().open(id);
        assert!(registry.is_waiting(id), "the caller waits");
        assert!(
            matches!(registry.deliver(id, finished()), Delivery::Delivered),
            "delivered to the waiting caller"
        );
        assert!(
            matches!(inbox.receive().await, Some(Ran::Overloaded(_))),
            "the caller receives it"
        );
        drop(inbox);
        assert_eq!(registry.open_count(), 0, "no inbox leaks");
    }

    #[test]
    fn a_dropped_inbox_is_abandoned_and_removed() {
        let registry = InboxRegistry::new();
        let id = ExecutionId::new();
        drop(registry.clone().open(id));
        assert!(!registry.is_waiting(id), "nobody waits after the drop");
        assert!(
            matches!(registry.deliver(id, finished()), Delivery::Abandoned(_)),
            "the outcome comes back"
        );
        assert_eq!(registry.open_count(), 0, "the entry is gone");
    }
}
