//! Scripts' KV writes on SQLite, as the group-commit task runs them in its transaction: one
//! statement reads all a write must know before it writes (see [`BeforeKvWrite`]), then an
//! upsert or a delete, the trigger jobs and the counts.

use picloud_core::services::WriteOrigin;
use picloud_core::{CollectionName, KvKey, KvOp};
use sqlx::{FromRow, Row as _};

use super::group_commit::Applied;
use super::WriteTransaction;
use crate::db::sqlite;
use crate::jobs::{count_write, enqueue, JobValues};
use crate::kv::{admit_kv_write, kv_entry_size, trigger_jobs, written};
use crate::rows::{json_value, KvTriggerRow, UsageRow};
use crate::sql::{self, app_usage_sql, kv_triggers_sql};
use crate::{AppQuotas, AppUsage, StoreError, StoreResult};

/// What a KV write reads before it writes, in one statement (see [`BeforeKvWrite`]).
const BEFORE_KV_WRITE: &str = sqlite!(
    "SELECT CAST(entry.value AS TEXT) AS prev, entry.size AS prev_size, ",
    "usage.kv_bytes, usage.queued_jobs, kv_trigger.* ",
    "FROM (SELECT 1) ",
    "LEFT JOIN kv_entries AS entry ",
    "ON entry.app_id = $1 AND entry.collection = $2 AND entry.key = $3 ",
    "LEFT JOIN (",
    app_usage_sql!(),
    ") AS usage ON TRUE ",
    "LEFT JOIN (",
    kv_triggers_sql!(),
    ") AS kv_trigger ON TRUE"
);

/// Stores `$4` of size `$5` under the key `($1, $2, $3)`.
const UPSERT_KV: &str = sqlite!(
    "INSERT INTO kv_entries (app_id, collection, key, value, size, created_at, updated_at) ",
    "VALUES ($1, $2, $3, $4, $5, ",
    now!(),
    ", ",
    now!(),
    ") ON CONFLICT (app_id, collection, key) DO UPDATE SET value = excluded.value, ",
    "size = excluded.size, updated_at = MAX(excluded.updated_at, kv_entries.updated_at)"
);

/// What a KV write needs to know before it writes: the entry under the key (its value and
/// size), the collection's KV triggers and what the app holds against its quotas, read in one
/// statement (one round trip to SQLite's thread rather than three). Read in the write's
/// transaction, whose lock keeps all of it as it is until the transaction ends: with one writer,
/// the quotas are checked exactly.
struct BeforeKvWrite {
    prev: Option<String>,
    prev_size: i64,
    /// `None` when the app is gone.
    usage: Option<AppUsage>,
    triggers: Vec<KvTriggerRow>,
}

impl BeforeKvWrite {
    async fn read(
        tx: &mut WriteTransaction,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Self> {
        let rows = sqlx::query(BEFORE_KV_WRITE)
            .bind(origin.app_id.to_string())
            .bind(collection.as_str())
            .bind(key.as_str())
            .fetch_all(&mut **tx)
            .await?;
        let mut before = Self {
            prev: None,
            prev_size: 0,
            usage: None,
            triggers: Vec::new(),
        };
        // One row per trigger, or one row of NULLs beside the entry and the usage when there is
        // none.
        for row in rows {
            before.prev = row.try_get("prev")?;
            before.prev_size = row.try_get::<Option<i64>, _>("prev_size")?.unwrap_or(0);
            let kv_bytes: Option<i64> = row.try_get("kv_bytes")?;
            let queued_jobs: Option<i64> = row.try_get("queued_jobs")?;
            before.usage = kv_bytes.map(|kv_bytes| {
                AppUsage::from(UsageRow {
                    kv_bytes,
                    queued_jobs: queued_jobs.unwrap_or(0),
                })
            });
            let trigger: Option<String> = row.try_get("id")?;
            if trigger.is_some() {
                before.triggers.push(KvTriggerRow::from_row(&row)?);
            }
        }
        Ok(before)
    }
}

/// Stores `text` (`value`, checked by the caller) under the key, enqueues the jobs of the KV
/// triggers the set fires and counts both, in the caller's write transaction. Refused before it
/// writes anything when the writer's app is gone or a quota or limit would be passed.
pub(super) async fn set_kv_entry(
    tx: &mut WriteTransaction,
    quotas: &AppQuotas,
    origin: WriteOrigin,
    collection: &CollectionName,
    key: &KvKey,
    value: &serde_json::Value,
    text: &str,
) -> StoreResult<Applied> {
    let before = BeforeKvWrite::read(tx, origin, collection, key).await?;
    let Some(usage) = before.usage else {
        return Ok(Applied::Refused(StoreError::NotFound("app")));
    };
    let prev_value = before
        .prev
        .map(|text| json_value("kv_entries", &text))
        .transpose()?;
    let jobs = trigger_jobs(
        origin,
        (collection, key),
        KvOp::Set,
        (Some(value), prev_value.as_ref()),
        before.triggers,
    )?;
    let size = kv_entry_size(collection, key, text);
    let bytes = size - before.prev_size;
    if let Err(over) = admit_kv_write(origin, usage, bytes, jobs.len(), quotas) {
        return Ok(Applied::Refused(StoreError::OverLimit(over)));
    }
    sqlx::query(UPSERT_KV)
        .bind(origin.app_id.to_string())
        .bind(collection.as_str())
        .bind(key.as_str())
        .bind(text)
        .bind(size)
        .execute(&mut **tx)
        .await?;
    enqueue(tx, &JobValues::all(&jobs)?).await?;
    count_write(tx, origin.app_id, bytes, jobs.len()).await?;
    Ok(Applied::Written(written(prev_value, &jobs)))
}

/// Deletes the entry, enqueues the jobs of the KV triggers the delete fires and counts both, in
/// the caller's write transaction. Deleting a missing entry writes nothing and fires nothing;
/// a delete whose jobs would pass a quota or limit is refused before it writes anything.
pub(super) async fn delete_kv_entry(
    tx: &mut WriteTransaction,
    quotas: &AppQuotas,
    origin: WriteOrigin,
    collection: &CollectionName,
    key: &KvKey,
) -> StoreResult<Applied> {
    let before = BeforeKvWrite::read(tx, origin, collection, key).await?;
    let (Some(prev), Some(usage)) = (before.prev, before.usage) else {
        return Ok(Applied::Written(written(None, &[])));
    };
    let prev_value = json_value("kv_entries", &prev)?;
    let jobs = trigger_jobs(
        origin,
        (collection, key),
        KvOp::Delete,
        (None, Some(&prev_value)),
        before.triggers,
    )?;
    let bytes = -before.prev_size;
    if let Err(over) = admit_kv_write(origin, usage, bytes, jobs.len(), quotas) {
        return Ok(Applied::Refused(StoreError::OverLimit(over)));
    }
    sqlx::query(sql::DELETE_KV.sqlite)
        .bind(origin.app_id.to_string())
        .bind(collection.as_str())
        .bind(key.as_str())
        .execute(&mut **tx)
        .await?;
    enqueue(tx, &JobValues::all(&jobs)?).await?;
    count_write(tx, origin.app_id, bytes, jobs.len()).await?;
    Ok(Applied::Written(written(Some(prev_value), &jobs)))
}
