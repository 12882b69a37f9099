//! [`KvStore`]: reads written once for both backends; writes through each backend's hook (SQLite
//! group-commits them, PostgreSQL upserts under a row lock), which share what a KV write must
//! decide before it writes: its entry's size, the jobs its triggers fire, whether its app may
//! take it.

use async_trait::async_trait;
use picloud_core::events::kv_value_text;
use picloud_core::firing::{KvChange, KvTriggerRule};
use picloud_core::services::{KvListRequest, WriteOrigin};
use picloud_core::{AppId, CollectionName, KvKey, KvOp};

use crate::db::Engine;
use crate::jobs::triggered_job;
use crate::paging::{prefix_range, Window};
use crate::rows::{json_value, one, KvTriggerRow};
use crate::{
    sql, AppQuotas, AppUsage, KvStore, KvWritten, NewJob, OverLimit, Page, StoreError, StoreResult,
    KV_ENTRY_OVERHEAD,
};

#[async_trait]
impl<E: Engine> KvStore for E {
    async fn kv_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Option<serde_json::Value>> {
        let value: Option<(String,)> = self
            .fetch_optional(
                sql::GET_KV,
                &[
                    app_id.to_string().into(),
                    collection.as_str().into(),
                    key.as_str().into(),
                ],
            )
            .await?;
        value
            .map(|(text,)| json_value("kv_entries", &text))
            .transpose()
    }

    async fn kv_has(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<bool> {
        let (entries,): (i64,) = one(self
            .fetch_optional(
                sql::COUNT_KV,
                &[
                    app_id.to_string().into(),
                    collection.as_str().into(),
                    key.as_str().into(),
                ],
            )
            .await?)?;
        Ok(entries > 0)
    }

    async fn kv_set(
        &self,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
        value: &serde_json::Value,
    ) -> StoreResult<KvWritten> {
        let text = kv_value_text(value).map_err(|err| StoreError::InvalidInput(err.message))?;
        self.set_kv(origin, collection, key, value, text).await
    }

    async fn kv_delete(
        &self,
        origin: WriteOrigin,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<KvWritten> {
        self.delete_kv(origin, collection, key).await
    }

    async fn kv_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> StoreResult<Page<(String, serde_json::Value)>> {
        let window = Window::of_keys(request)?;
        let range = KvRange::new(&window, request.prefix.as_deref())?;
        let app_id = app_id.to_string();
        let bounds = [
            app_id.as_str().into(),
            collection.as_str().into(),
            range.from.as_str().into(),
            window.fetch().into(),
            range.to.as_deref().into(),
        ];
        // `$5` only when the range has an upper bound.
        let bound = if range.to.is_some() { 5 } else { 4 };
        let rows: Vec<(String, String)> = self
            .fetch_all(crate::db::Sql::same(range.sql), &bounds[..bound])
            .await?;
        let items = rows
            .into_iter()
            .map(|(key, value)| Ok((key, json_value("kv_entries", &value)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(window.page(items, |(key, _)| key.clone()))
    }
}

/// The jobs of the KV triggers of `collection` (`triggers`, as [`sql::KV_TRIGGERS`] reads them)
/// that the writer's `op` on `key` fires, from `prev_value` to `value`.
pub(crate) fn trigger_jobs(
    origin: WriteOrigin,
    (collection, key): (&CollectionName, &KvKey),
    op: KvOp,
    (value, prev_value): (Option<&serde_json::Value>, Option<&serde_json::Value>),
    triggers: Vec<KvTriggerRow>,
) -> StoreResult<Vec<NewJob>> {
    if triggers.is_empty() {
        return Ok(Vec::new());
    }
    let rules = triggers
        .into_iter()
        .map(KvTriggerRule::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    let change = KvChange {
        collection,
        key,
        op,
        value,
        prev_value,
        trigger_depth: origin.trigger_depth,
    };
    Ok(change
        .firings(&rules)
        .into_iter()
        .map(|firing| {
            tracing::debug!(script_id = %firing.script_id, "a KV trigger fires");
            triggered_job(origin.app_id, firing)
        })
        .collect())
}

/// What a KV write reports: the value it replaced and how many jobs it enqueued.
pub(crate) fn written(prev_value: Option<serde_json::Value>, jobs: &[NewJob]) -> KvWritten {
    KvWritten {
        prev_value,
        jobs_enqueued: u32::try_from(jobs.len()).unwrap_or(u32::MAX),
    }
}

/// What an entry counts against its app's stored bytes (`kv_entries.size`); see
/// [`crate::AppQuotas::stored_bytes`].
pub(crate) fn kv_entry_size(collection: &CollectionName, key: &KvKey, text: &str) -> i64 {
    let bytes = collection.as_str().len() + key.as_str().len() + text.len();
    i64::try_from(bytes as u64 + KV_ENTRY_OVERHEAD).unwrap_or(i64::MAX)
}

/// Whether a KV write that changes its app's bytes by `bytes` and fires `jobs` trigger jobs may
/// go ahead: within what its execution may still enqueue, then within the app's quotas.
pub(crate) fn admit_kv_write(
    origin: WriteOrigin,
    usage: AppUsage,
    bytes: i64,
    jobs: usize,
    quotas: &AppQuotas,
) -> Result<(), OverLimit> {
    let jobs = jobs as u64;
    if jobs > u64::from(origin.trigger_jobs_left) {
        return Err(OverLimit::TriggerJobs {
            firing: jobs,
            left: origin.trigger_jobs_left,
        });
    }
    usage.admit(bytes, jobs, quotas)
}

/// The SQL of a KV list and its bounds: keys after the window's cursor and, with a prefix, in
/// the prefix's range — bounds an index walks, never a `LIKE` (whose `%` and `_` a key may hold).
#[derive(Debug)]
pub(crate) struct KvRange {
    /// Binds `$1` app, `$2` collection, `$3` [`KvRange::from`], `$4` the rows to fetch, and
    /// `$5` [`KvRange::to`] when there is one.
    pub sql: &'static str,
    pub from: String,
    pub to: Option<String>,
}

macro_rules! list_kv {
    ($from:literal, $to:literal) => {
        concat!(
            "SELECT key, CAST(value AS TEXT) AS value FROM kv_entries ",
            "WHERE app_id = $1 AND collection = $2 AND key ",
            $from,
            " $3",
            $to,
            " ORDER BY key LIMIT $4"
        )
    };
}

impl KvRange {
    pub fn new(window: &Window, prefix: Option<&str>) -> StoreResult<Self> {
        let prefix = prefix.unwrap_or_default();
        let to = prefix_range(prefix)?;
        // One lower bound, so that both databases walk the index from it: the cursor (exclusive)
        // when it is at or past the prefix, else the prefix (inclusive).
        let (from, inclusive) = if window.after.as_str() >= prefix {
            (window.after.clone(), false)
        } else {
            (prefix.to_owned(), true)
        };
        let sql = match (inclusive, to.is_some()) {
            (false, false) => list_kv!(">", ""),
            (true, false) => list_kv!(">=", ""),
            (false, true) => list_kv!(">", " AND key < $5"),
            (true, true) => list_kv!(">=", " AND key < $5"),
        };
        Ok(Self { sql, from, to })
    }
}
