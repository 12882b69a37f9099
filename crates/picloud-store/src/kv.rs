//! [`KvStore`]: reads written once for both backends; every write is a run's commit
//! (`crate::commit`), which each backend runs its own way (SQLite group-commits them on its one
//! writer, PostgreSQL commits each in a transaction of its own).

use async_trait::async_trait;
use picloud_core::services::{KvListRequest, WriteOrigin};
use picloud_core::tx::{Effects, KvRead, KvWrite, Seen, Version};
use picloud_core::{AppId, CollectionName, KvKey};

use crate::db::{Arg, Engine, Sql};
use crate::paging::{prefix_range, Window};
use crate::rows::json_value;
use crate::{sql, KvStore, KvWritten, Page, RunCommit, RunVerdict, StoreError, StoreResult};

#[async_trait]
impl<E: Engine> KvStore for E {
    async fn kv_read(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Option<(serde_json::Value, Version)>> {
        let entry: Option<(String, i64)> = self
            .read_rows(sql::GET_KV, &entry_args(app_id, collection, key))
            .await?
            .pop();
        entry
            .map(|(text, version)| Ok((json_value("kv_entries", &text)?, version)))
            .transpose()
    }

    async fn kv_version(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Option<Version>> {
        let version: Option<(i64,)> = self
            .read_rows(sql::KV_VERSION, &entry_args(app_id, collection, key))
            .await?
            .pop();
        Ok(version.map(|(version,)| version))
    }

    async fn kv_page(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
        max_bytes: usize,
    ) -> StoreResult<Page<(String, serde_json::Value, Version)>> {
        let range = KvRange::new(request, Listed::Values)?;
        let app_id = app_id.to_string();
        let rows: Vec<(String, String, i64)> = self
            .read_rows_within(range.sql(), &range.args(&app_id, collection), max_bytes)
            .await?
            .ok_or(StoreError::ReadTooLarge(max_bytes))?;
        let items = rows
            .into_iter()
            .map(|(key, value, version)| Ok((key, json_value("kv_entries", &value)?, version)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(range.window.page(items, |(key, _, _)| key.clone()))
    }

    async fn commit_run(&self, run: RunCommit) -> StoreResult<RunVerdict> {
        self.commit(run).await
    }
}

/// Binds `$1` app, `$2` collection, `$3` key.
pub(crate) fn entry_args<'a>(
    app_id: AppId,
    collection: &'a CollectionName,
    key: &'a KvKey,
) -> [Arg<'a>; 3] {
    [
        app_id.to_string().into(),
        collection.as_str().into(),
        key.as_str().into(),
    ]
}

/// How often [`write_one`] runs again when other commits keep changing its key.
const WRITE_ONE_TRIES: usize = 100;

/// `kv_set` (`value`) or `kv_delete` (`None`): a run that reads the key and writes it, run again
/// while another commit changes the key between its read and its commit.
pub(crate) async fn write_one<S: KvStore + ?Sized>(
    store: &S,
    origin: WriteOrigin,
    collection: &CollectionName,
    key: &KvKey,
    value: Option<&serde_json::Value>,
) -> StoreResult<KvWritten> {
    for _ in 0..WRITE_ONE_TRIES {
        let prev = store.kv_read(origin.app_id, collection, key).await?;
        if prev.is_none() && value.is_none() {
            return Ok(KvWritten {
                prev_value: None,
                jobs_enqueued: 0,
            });
        }
        let seen = prev
            .as_ref()
            .map_or(Seen::Absent, |(_, version)| Seen::At(*version));
        let run = RunCommit {
            origin,
            effects: Effects {
                reads: vec![KvRead {
                    collection: collection.clone(),
                    key: key.clone(),
                    seen,
                }],
                writes: vec![KvWrite {
                    collection: collection.clone(),
                    key: key.clone(),
                    value: value.cloned(),
                }],
                ..Effects::default()
            },
            finishes: None,
        };
        match store.commit_run(run).await? {
            RunVerdict::Committed { trigger_jobs } => {
                return Ok(KvWritten {
                    prev_value: prev.map(|(value, _)| value),
                    jobs_enqueued: trigger_jobs,
                })
            }
            RunVerdict::Conflict => continue,
            RunVerdict::Refused(over) => return Err(StoreError::OverLimit(over)),
            RunVerdict::AppGone => return Err(StoreError::NotFound("app")),
            RunVerdict::Fenced => {
                return Err(StoreError::Internal(
                    "a KV write without a job was fenced".to_owned(),
                ))
            }
        }
    }
    Err(StoreError::Unavailable(format!(
        "the KV entry '{key}' was changed by others during {WRITE_ONE_TRIES} tries"
    )))
}

/// What a KV list reads of each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    /// Key, value and version: a page for the caller.
    Values,
    /// Key and version: a run's commit checking the page it read.
    Versions,
}

/// The SQL of a KV list and its bounds: keys after the window's cursor and, with a prefix, in
/// the prefix's range — bounds an index walks, never a `LIKE` (whose `%` and `_` a key may hold).
#[derive(Debug)]
pub(crate) struct KvRange {
    pub window: Window,
    sql: &'static str,
    from: String,
    to: Option<String>,
}

macro_rules! list_kv {
    ($columns:literal, $from:literal, $to:literal) => {
        concat!(
            "SELECT key, ",
            $columns,
            " FROM kv_entries ",
            "WHERE app_id = $1 AND collection = $2 AND key ",
            $from,
            " $3",
            $to,
            " ORDER BY key LIMIT $4"
        )
    };
}

macro_rules! list_kv_variants {
    ($columns:literal) => {
        [
            list_kv!($columns, ">", ""),
            list_kv!($columns, ">=", ""),
            list_kv!($columns, ">", " AND key < $5"),
            list_kv!($columns, ">=", " AND key < $5"),
        ]
    };
}

const LIST_VALUES: [&str; 4] = list_kv_variants!("CAST(value AS TEXT) AS value, version");
const LIST_VERSIONS: [&str; 4] = list_kv_variants!("version");

impl KvRange {
    pub fn new(request: &KvListRequest, listed: Listed) -> StoreResult<Self> {
        let window = Window::of_keys(request)?;
        let prefix = request.prefix.as_deref().unwrap_or_default();
        let to = prefix_range(prefix)?;
        // One lower bound, so that both databases walk the index from it: the cursor (exclusive)
        // when it is at or past the prefix, else the prefix (inclusive).
        let (from, inclusive) = if window.after.as_str() >= prefix {
            (window.after.clone(), false)
        } else {
            (prefix.to_owned(), true)
        };
        let variants = match listed {
            Listed::Values => &LIST_VALUES,
            Listed::Versions => &LIST_VERSIONS,
        };
        let sql = variants[usize::from(inclusive) + 2 * usize::from(to.is_some())];
        Ok(Self {
            window,
            sql,
            from,
            to,
        })
    }

    pub fn sql(&self) -> Sql<'static> {
        Sql::same(self.sql)
    }

    /// Binds `$1` app, `$2` collection, `$3` the lower bound, `$4` the rows to fetch, and `$5`
    /// the upper bound when there is one.
    pub fn args<'a>(&'a self, app_id: &'a str, collection: &'a CollectionName) -> Vec<Arg<'a>> {
        let mut args: Vec<Arg<'a>> = vec![
            app_id.into(),
            collection.as_str().into(),
            self.from.as_str().into(),
            self.window.fetch().into(),
        ];
        if let Some(to) = &self.to {
            args.push(to.as_str().into());
        }
        args
    }
}
