//! Retention: dead letters, abandoned-execution records and execution records older than their
//! retention (and an app's execution records beyond its newest `executions_per_app`) are
//! deleted in bounded batches, on every node (the store's deletes skip rows another node is
//! deleting, so running them side by side is safe). Each sweep also refreshes the statistics of
//! the documents' indexes (`DocStore::refresh_doc_statistics`), as collections grow.

use std::sync::Arc;
use std::time::Duration;

use picloud_store::{Store, StoreResult};
use tokio::sync::watch;

use crate::config::RetentionConfig;

/// Rows deleted per statement, so a large backlog never holds a long transaction.
const BATCH: u32 = 1_000;
const DAY_MS: i64 = 24 * 3_600_000;

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub dead_letters: u64,
    pub abandoned_executions: u64,
    pub executions: u64,
}

/// Deletes everything past its retention now.
pub async fn sweep_once(store: &dyn Store, config: &RetentionConfig) -> StoreResult<Swept> {
    let dead_letter_age = i64::from(config.dead_letter_days) * DAY_MS;
    let abandoned_age = i64::from(config.abandoned_execution_days) * DAY_MS;
    let mut swept = Swept::default();
    loop {
        let deleted = store.sweep_dead_letters(dead_letter_age, BATCH).await?;
        swept.dead_letters += deleted;
        if deleted < u64::from(BATCH) {
            break;
        }
    }
    loop {
        let deleted = store
            .sweep_abandoned_executions(abandoned_age, BATCH)
            .await?;
        swept.abandoned_executions += deleted;
        if deleted < u64::from(BATCH) {
            break;
        }
    }
    let execution_age = i64::from(config.execution_days) * DAY_MS;
    loop {
        let deleted = store
            .sweep_executions(execution_age, config.executions_per_app, BATCH)
            .await?;
        swept.executions += deleted;
        if deleted < u64::from(BATCH) {
            break;
        }
    }
    Ok(swept)
}

/// Sweeps every [`RetentionConfig::sweep_interval_secs`] until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    config: RetentionConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.sweep_interval_secs.max(1));
    loop {
        match sweep_once(store.as_ref(), &config).await {
            Ok(swept) if swept != Swept::default() => tracing::info!(
                dead_letters = swept.dead_letters,
                abandoned_executions = swept.abandoned_executions,
                executions = swept.executions,
                "retention sweep"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!("the retention sweep failed; it runs again later: {err}"),
        }
        if let Err(err) = store.refresh_doc_statistics().await {
            tracing::warn!(
                "refreshing the documents' statistics failed; it runs again later: {err}"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
