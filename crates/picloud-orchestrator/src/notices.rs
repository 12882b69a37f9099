//! What other nodes change, as it happens (issues #18, #19): on PostgreSQL the database tells
//! every node ([`Store::notices`]), and [`follow`] acts on it —
//!
//! - an async job committed anywhere wakes this node's idle dispatcher at once, rather than at
//!   its next poll (`PICLOUD_OUTBOX_POLL_MS`);
//! - a change to an app, its scripts or its routes reloads that app in the route index (and so
//!   the module versions its routes run), rather than at the index's next fingerprint poll
//!   (`PICLOUD_ROUTE_REFRESH_MS`);
//! - records another node wrote reach this node's live tails of their app.
//!
//! The polls stay: they catch up after a lost connection, when notices meanwhile are lost (and
//! on reconnecting this node reloads the index and claims once).
//!
//! [`Store::notices`]: picloud_store::Store::notices

use std::sync::Arc;
use std::time::Duration;

use picloud_store::{Notice, Store};
use tokio::sync::{watch, Notify};

use crate::index::RouteIndex;
use crate::tail::LogTail;

/// The pause after a lost connection before listening again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What [`follow`] keeps up to date.
pub struct Followers {
    pub index: Arc<RouteIndex>,
    /// The dispatcher's wake-up.
    pub wake: Arc<Notify>,
    pub tail: Arc<LogTail>,
    /// This node's name, in its notices of records: its tails had those already.
    pub origin: String,
}

/// Acts on the store's notices until `shutdown`; ends at once on a store without them (SQLite).
pub async fn follow(
    store: Arc<dyn Store>,
    followers: Followers,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut notices = match store.notices().await {
        Ok(Some(notices)) => notices,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!("other nodes' changes will be seen at the polls only: {err}");
            return;
        }
    };
    let Followers {
        index,
        wake,
        tail,
        origin,
    } = followers;
    loop {
        let notice = tokio::select! {
            notice = notices.next() => notice,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match notice {
            Ok(Notice::Jobs) => wake.notify_one(),
            Ok(Notice::Changed(app_id)) => {
                let _writes = index.lock_writes().await;
                if let Err(err) = index.refresh_app(store.as_ref(), app_id).await {
                    tracing::warn!(%app_id, "an app changed elsewhere could not be reloaded: {err}");
                }
            }
            Ok(Notice::Records(notice)) => {
                if notice.origin == origin || !tail.is_tailed(notice.app_id) {
                    continue;
                }
                match store
                    .executions_in_batches(notice.app_id, &notice.batches)
                    .await
                {
                    Ok(records) => records.iter().for_each(|record| tail.publish(record)),
                    Err(err) => {
                        tracing::warn!("another node's executions could not be read: {err}")
                    }
                }
            }
            Err(err) => {
                tracing::warn!("lost the notices of other nodes; listening again: {err}");
                tokio::time::sleep(RETRY_PAUSE).await;
                // What changed meanwhile was not told: catch up.
                if let Err(err) = index.reload(store.as_ref()).await {
                    tracing::warn!("the route index could not be reloaded: {err}");
                }
                wake.notify_one();
            }
        }
    }
}
