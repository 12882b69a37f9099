//! Scripts' KV writes on PostgreSQL, each in a transaction of its own (its concurrent commits
//! already share WAL flushes): the upsert reads the value it replaces under the row's lock, and
//! the app's usage is locked last, just before the commit.

use picloud_core::services::WriteOrigin;
use picloud_core::{AppId, CollectionName, KvKey, KvOp};
use sqlx::{Postgres, Transaction};

use crate::db::{postgres, Sql, WriteTx};
use crate::jobs::{count_write, enqueue, JobValues};
use crate::kv::{admit_kv_write, kv_entry_size, trigger_jobs, written};
use crate::rows::{json_value, one, KvTriggerRow, UsageRow};
use crate::{sql, AppQuotas, AppUsage, KvWritten, NewJob, StoreError, StoreResult};

use super::PgStore;

type Tx = Transaction<'static, Postgres>;

/// How often [`upsert_kv`] tries when other transactions keep inserting and deleting the key.
const UPSERT_TRIES: usize = 5;

const LOCK_KV: &str = "SELECT CAST(value AS TEXT), size FROM kv_entries \
     WHERE app_id = $1 AND collection = $2 AND key = $3 FOR UPDATE";
const UPDATE_KV: &str = postgres!(
    "UPDATE kv_entries SET value = $4::jsonb, size = $5, updated_at = GREATEST(",
    now!(),
    ", updated_at) WHERE app_id = $1 AND collection = $2 AND key = $3"
);
const INSERT_KV: &str = postgres!(
    "INSERT INTO kv_entries (app_id, collection, key, value, size, created_at, updated_at) ",
    "SELECT apps.id, $2, $3, $4::jsonb, $5, clock.now, clock.now FROM apps, (SELECT ",
    now!(),
    " AS now) AS clock WHERE apps.id = $1 ON CONFLICT (app_id, collection, key) DO NOTHING"
);

/// Stores `value` (JSON text) of `size` under the key and returns the value and size it
/// replaces, read under the row's lock: the previous value is exactly the one this write
/// replaced, even when another transaction writes the same key at the same time.
async fn upsert_kv(
    tx: &mut Tx,
    app_id: AppId,
    collection: &CollectionName,
    key: &KvKey,
    value: &str,
    size: i64,
) -> StoreResult<Option<(String, i64)>> {
    let app = app_id.to_string();
    let entry = [
        app.as_str().into(),
        collection.as_str().into(),
        key.as_str().into(),
        value.into(),
        size.into(),
    ];
    for _ in 0..UPSERT_TRIES {
        let prev: Option<(String, i64)> =
            tx.fetch_optional(Sql::same(LOCK_KV), &entry[..3]).await?;
        if let Some(prev) = prev {
            tx.execute(Sql::same(UPDATE_KV), &entry).await?;
            return Ok(Some(prev));
        }
        // A conflicting insert waits for the other transaction; once it committed, the next
        // round finds its row and locks it.
        if tx.execute(Sql::same(INSERT_KV), &entry).await? > 0 {
            return Ok(None);
        }
        let (apps,): (i64,) = one(tx.fetch_optional(sql::APP_EXISTS, &entry[..1]).await?)?;
        if apps == 0 {
            return Err(StoreError::NotFound("app"));
        }
    }
    Err(StoreError::Unavailable(format!(
        "the KV entry '{key}' was inserted and deleted by others during {UPSERT_TRIES} tries"
    )))
}

/// The jobs of the KV triggers of `collection` that the writer's `op` on `key` fires, from
/// `prev_value` to `value`.
async fn kv_trigger_jobs(
    tx: &mut Tx,
    origin: WriteOrigin,
    (collection, key): (&CollectionName, &KvKey),
    op: KvOp,
    values: (Option<&serde_json::Value>, Option<&serde_json::Value>),
) -> StoreResult<Vec<NewJob>> {
    let triggers: Vec<KvTriggerRow> = tx
        .fetch_all(
            sql::KV_TRIGGERS,
            &[origin.app_id.to_string().into(), collection.as_str().into()],
        )
        .await?;
    trigger_jobs(origin, (collection, key), op, values, triggers)
}

/// Checks a KV write of `bytes` that fires `jobs` against the writer's limit and its app's
/// quotas, then enqueues the jobs and counts the write; `OverLimit` (the caller's transaction
/// is to be dropped, rolling the write back) when it may not go ahead.
async fn finish_kv_write(
    tx: &mut Tx,
    quotas: &AppQuotas,
    origin: WriteOrigin,
    bytes: i64,
    jobs: &[NewJob],
) -> StoreResult<()> {
    enqueue(tx, &JobValues::all(jobs)?).await?;
    let usage: Option<UsageRow> = tx
        .fetch_optional(sql::LOCK_APP_USAGE, &[origin.app_id.to_string().into()])
        .await?;
    let usage = AppUsage::from(usage.ok_or(StoreError::NotFound("app"))?);
    admit_kv_write(origin, usage, bytes, jobs.len(), quotas).map_err(StoreError::OverLimit)?;
    Ok(count_write(tx, origin.app_id, bytes, jobs.len()).await?)
}

impl PgStore {
    pub(super) async fn set_kv_entry(
        &self,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
        value: &serde_json::Value,
        text: &str,
    ) -> StoreResult<KvWritten> {
        let size = kv_entry_size(collection, key, text);
        let mut tx = self.pool.begin().await?;
        let prev = upsert_kv(&mut tx, origin.app_id, collection, key, text, size).await?;
        let prev_size = prev.as_ref().map_or(0, |(_, size)| *size);
        let prev_value = prev
            .map(|(text, _)| json_value("kv_entries", &text))
            .transpose()?;
        let jobs = kv_trigger_jobs(
            &mut tx,
            origin,
            (collection, key),
            KvOp::Set,
            (Some(value), prev_value.as_ref()),
        )
        .await?;
        finish_kv_write(&mut tx, &self.quotas, origin, size - prev_size, &jobs).await?;
        tx.commit().await?;
        Ok(written(prev_value, &jobs))
    }

    pub(super) async fn delete_kv_entry(
        &self,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<KvWritten> {
        let mut tx = self.pool.begin().await?;
        let prev: Option<(String, i64)> = tx
            .fetch_optional(
                sql::DELETE_KV,
                &[
                    origin.app_id.to_string().into(),
                    collection.as_str().into(),
                    key.as_str().into(),
                ],
            )
            .await?;
        let Some((prev, prev_size)) = prev else {
            return Ok(written(None, &[]));
        };
        let prev_value = json_value("kv_entries", &prev)?;
        let jobs = kv_trigger_jobs(
            &mut tx,
            origin,
            (collection, key),
            KvOp::Delete,
            (None, Some(&prev_value)),
        )
        .await?;
        finish_kv_write(&mut tx, &self.quotas, origin, -prev_size, &jobs).await?;
        tx.commit().await?;
        Ok(written(Some(prev_value), &jobs))
    }
}
