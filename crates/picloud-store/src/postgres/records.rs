//! Execution records on PostgreSQL: the records thread's writer, on a connection of its own
//! (beside the outbox's committer, so neither waits for the other), and the notices that tell
//! every node's live tails what the others wrote.
//!
//! A commit of records sends, in the same transaction, one `NOTIFY picloud_executions` per app
//! and [`IDS_PER_NOTICE`] batches (usually one: an app's records of a write are one batch):
//! `origin app_id id,id,…`, each batch by the id of its newest record. PostgreSQL delivers them
//! at commit, so a node that hears of a batch can read it (`super::notices`).

use picloud_core::{AppId, RecordId};
use sqlx::postgres::PgConnection;
use sqlx::Connection;

use super::committer::OwnConnection;
use crate::executions::BatchKey;
use crate::executions::{record_executions, trim_executions};
use crate::{ExecutionRecord, ExecutionWriter, RecordNotice, StoreResult};

/// The channel of the notices.
pub(super) const CHANNEL: &str = "picloud_executions";
/// Batch ids per notice: PostgreSQL's payloads hold less than 8,000 bytes, an id 36 and a comma.
const IDS_PER_NOTICE: usize = 200;

pub(super) struct PgExecutionWriter {
    pub(super) conn: OwnConnection,
    /// The writing node, named in its notices.
    pub(super) origin: String,
}

impl ExecutionWriter for PgExecutionWriter {
    /// Without waiting for the WAL's flush (the connection's own): a crash may lose the last
    /// records, which promise nothing to anyone.
    fn write(&mut self, records: &[ExecutionRecord]) -> StoreResult<()> {
        self.conn.run(async |conn: &mut PgConnection| {
            let mut tx = conn.begin().await?;
            let batches = record_executions(&mut tx, records).await?;
            let notices = notices(&self.origin, &batches);
            sqlx::query("SELECT pg_notify($1, notice) FROM unnest($2::text[]) AS notice")
                .bind(CHANNEL)
                .bind(&notices)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn trim(&mut self, app_id: AppId, keep: u64, limit: u32) -> StoreResult<u64> {
        self.conn.run(async |conn: &mut PgConnection| {
            let mut tx = conn.begin().await?;
            let trimmed = trim_executions(&mut tx, app_id, keep, limit).await?;
            tx.commit().await?;
            Ok(trimmed)
        })
    }
}

/// The payloads that announce `batches`: per app, [`IDS_PER_NOTICE`] at a time.
fn notices(origin: &str, batches: &[BatchKey]) -> Vec<String> {
    let mut by_app: Vec<(AppId, Vec<RecordId>)> = Vec::new();
    for &(app_id, id) in batches {
        match by_app.iter_mut().find(|(app, _)| *app == app_id) {
            Some((_, ids)) => ids.push(id),
            None => by_app.push((app_id, vec![id])),
        }
    }
    by_app
        .iter()
        .flat_map(|(app, ids)| {
            ids.chunks(IDS_PER_NOTICE).map(move |chunk| {
                let ids: Vec<String> = chunk.iter().map(RecordId::to_string).collect();
                format!("{origin} {app} {}", ids.join(","))
            })
        })
        .collect()
}

/// The notice a payload carries; `None` for one that is not ours.
pub(super) fn parse(payload: &str) -> Option<RecordNotice> {
    let mut parts = payload.splitn(3, ' ');
    let origin = parts.next()?.to_owned();
    let app_id = AppId::parse(parts.next()?).ok()?;
    let batches = parts
        .next()?
        .split(',')
        .map(RecordId::parse)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(RecordNotice {
        origin,
        app_id,
        batches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_each_apps_batches_in_payloads_postgres_accepts() {
        let (a, b) = (AppId::new(), AppId::new());
        let batches: Vec<BatchKey> = (0..450)
            .map(|n| (if n % 10 == 0 { b } else { a }, RecordId::new()))
            .collect();
        let origin = "4242-0193aaaa-0000-7000-8000-000000000000";
        let payloads = notices(origin, &batches);
        assert_eq!(payloads.len(), 4, "405 of a in 3 notices, 45 of b in 1");
        let mut heard: Vec<BatchKey> = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < 8_000, "{} bytes", payload.len());
            let notice = parse(payload).expect("a notice");
            assert_eq!(notice.origin, origin);
            heard.extend(notice.batches.iter().map(|id| (notice.app_id, *id)));
        }
        heard.sort();
        let mut sent = batches.clone();
        sent.sort();
        assert_eq!(heard, sent, "every batch, with its app");
        assert_eq!(parse("someone else's"), None);
    }
}
