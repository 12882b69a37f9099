//! The inbox registry: how a sync HTTP request waits for the dispatcher. The handler opens an
//! inbox under its execution id before the job is recorded; the dispatcher delivers the outcome
//! there. When the handler has gone (timed out, or its client disconnected), its inbox is gone
//! too, and the dispatcher learns so — before running the job (it is not run) or after (the run
//! is recorded in `abandoned_executions`).
//!
//! In-process only: a sync request is always run by the node that accepted it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use picloud_core::ExecutionId;
use tokio::sync::oneshot;

use crate::runner::Ran;

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

    /// Opens the inbox of `id`; it closes when the returned [`Inbox`] is dropped.
    pub fn open(self: &Arc<Self>, id: ExecutionId) -> Inbox {
        let (sender, receiver) = oneshot::channel();
        self.waiting.lock().insert(id, sender);
        Inbox {
            id,
            receiver,
            registry: self.clone(),
        }
    }

    /// Whether a caller still waits for `id`.
    pub fn is_waiting(&self, id: ExecutionId) -> bool {
        self.waiting
            .lock()
            .get(&id)
            .is_some_and(|sender| !sender.is_closed())
    }

    pub fn deliver(&self, id: ExecutionId, ran: Ran) -> Delivery {
        let sender = self.waiting.lock().remove(&id);
        match sender {
            Some(sender) => match sender.send(ran) {
                Ok(()) => Delivery::Delivered,
                Err(ran) => Delivery::Abandoned(Box::new(ran)),
            },
            None => Delivery::Abandoned(Box::new(ran)),
        }
    }

    /// Inboxes open now (a gauge, and a check in tests that none leak).
    pub fn open_count(&self) -> usize {
        self.waiting.lock().len()
    }
}

/// A caller's side of an inbox.
pub struct Inbox {
    id: ExecutionId,
    receiver: oneshot::Receiver<Ran>,
    registry: Arc<InboxRegistry>,
}

impl Inbox {
    /// The outcome, or `None` when the dispatcher dropped the job without an answer.
    pub async fn receive(&mut self) -> Option<Ran> {
        (&mut self.receiver).await.ok()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.registry.waiting.lock().remove(&self.id);
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
        let mut inbox = registry.open(id);
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
        drop(registry.open(id));
        assert!(!registry.is_waiting(id), "nobody waits after the drop");
        assert!(
            matches!(registry.deliver(id, finished()), Delivery::Abandoned(_)),
            "the outcome comes back"
        );
        assert_eq!(registry.open_count(), 0, "the entry is gone");
    }
}
