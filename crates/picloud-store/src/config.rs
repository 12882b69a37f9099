//! Where the data lives ([`StoreConfig`], the database URL it names) and what each app may hold
//! ([`AppQuotas`], [`AppUsage`], [`OverLimit`]).

use std::path::{Path, PathBuf};

use crate::{StoreError, StoreResult};

/// Where the data lives. With no `database_url` the store is SQLite at
/// `<data_dir>/picloud.db`; a `postgres://` (or `postgresql://`) URL selects PostgreSQL; a
/// `sqlite://` URL names an SQLite file explicitly.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    /// Pool size (PostgreSQL connections; SQLite reader connections).
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before `Unavailable`.
    pub acquire_timeout_ms: u64,
    /// What every app may hold; the store refuses the writes that would pass it.
    pub quotas: AppQuotas,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("./picloud-data"),
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            quotas: AppQuotas::default(),
        }
    }
}

/// What each app may hold. The store counts both as they change (in the transaction of the
/// change), so a write checks them in O(1); see `migrations/*/0010_quotas.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppQuotas {
    /// Bytes of KV data: each entry counts its collection name, key and value (JSON text), plus
    /// [`KV_ENTRY_OVERHEAD`]. `PICLOUD_MAX_APP_STORED_BYTES`.
    pub stored_bytes: u64,
    /// Async jobs queued at once (pending or running): async requests, trigger events, replays.
    /// `PICLOUD_MAX_QUEUED_JOBS_PER_APP`.
    pub queued_jobs: u64,
}

impl Default for AppQuotas {
    fn default() -> Self {
        Self {
            stored_bytes: 256 * 1024 * 1024,
            queued_jobs: 10_000,
        }
    }
}

/// What a KV entry counts beyond its collection name, key and value: about what the database
/// keeps beside them (a row header, the app id, timestamps, an index entry), so that a million
/// one-byte entries are not counted as a megabyte.
pub const KV_ENTRY_OVERHEAD: u64 = 64;

/// What an app holds against its [`AppQuotas`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppUsage {
    /// The sum of its KV entries' sizes (see [`AppQuotas::stored_bytes`]).
    pub kv_bytes: u64,
    /// Its async jobs in the outbox, pending or running.
    pub queued_jobs: u64,
}

impl AppUsage {
    /// Whether the app may take `bytes` more (negative: it frees them) and `jobs` more queued
    /// jobs. Freeing bytes, and a change that enqueues nothing, always pass their check: an app
    /// at its quota can still delete and shrink its data.
    pub fn admit(&self, bytes: i64, jobs: u64, quotas: &AppQuotas) -> Result<(), OverLimit> {
        if jobs > 0 && self.queued_jobs.saturating_add(jobs) > quotas.queued_jobs {
            return Err(OverLimit::QueuedJobs {
                queued: self.queued_jobs,
                adding: jobs,
                quota: quotas.queued_jobs,
            });
        }
        let adding = u64::try_from(bytes).unwrap_or(0);
        if adding > 0 && self.kv_bytes.saturating_add(adding) > quotas.stored_bytes {
            return Err(OverLimit::StoredBytes {
                stored: self.kv_bytes,
                adding,
                quota: quotas.stored_bytes,
            });
        }
        Ok(())
    }
}

/// Why a write was refused before it wrote anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    /// It would take the app's KV data past its quota.
    #[error(
        "the app's KV data would grow to {} bytes, past its quota of {quota} bytes (it holds \
         {stored}); delete entries or store smaller values",
        stored.saturating_add(*adding)
    )]
    StoredBytes {
        stored: u64,
        adding: u64,
        quota: u64,
    },
    /// It would take the app's queued jobs past their quota.
    #[error(
        "the app has {queued} queued jobs and {adding} more would pass its limit of {quota}; \
         try again once some have run"
    )]
    QueuedJobs {
        queued: u64,
        adding: u64,
        quota: u64,
    },
    /// It would fire more trigger jobs than its execution may.
    #[error(
        "this execution's writes would fire {firing} trigger jobs, and it may fire only {left}"
    )]
    TriggerJobs { firing: u64, left: u32 },
}

/// The database a [`StoreConfig`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    pub(crate) fn parse(config: &StoreConfig) -> StoreResult<Self> {
        let Some(url) = config.database_url.as_deref().map(str::trim) else {
            return Ok(Self::Sqlite(config.data_dir.join("picloud.db")));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(Self::Sqlite(Path::new(path).to_owned())),
            _ => Err(StoreError::InvalidInput(format!(
                "PICLOUD_DATABASE_URL '{}' is not a database this server can use: \
                 use postgres://user:password@host/database, postgresql://…, or sqlite://path/to/file.db \
                 (or leave it unset for SQLite in the data directory)",
                redact(url)
            ))),
        }
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let shown: String = url.chars().take(100).collect();
    match (shown.find("://"), shown.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…@{}", &shown[..scheme_end], &shown[at + 1..])
        }
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: Option<&str>) -> StoreConfig {
        StoreConfig {
            database_url: url.map(str::to_owned),
            data_dir: PathBuf::from("/var/lib/picloud"),
            ..StoreConfig::default()
        }
    }

    #[test]
    fn no_database_url_means_sqlite_in_the_data_directory() {
        assert_eq!(
            Location::parse(&config(None)).expect("a location"),
            Location::Sqlite(PathBuf::from("/var/lib/picloud/picloud.db")),
            "the default is the data directory's picloud.db"
        );
    }

    #[test]
    fn postgres_and_sqlite_urls_select_their_backend() {
        for url in ["postgres://u:p@db/picloud", "postgresql://db/picloud"] {
            assert_eq!(
                Location::parse(&config(Some(url))).expect("a location"),
                Location::Postgres(url.to_owned()),
                "{url} is PostgreSQL"
            );
        }
        assert_eq!(
            Location::parse(&config(Some("sqlite:///srv/data/pc.db"))).expect("a location"),
            Location::Sqlite(PathBuf::from("/srv/data/pc.db")),
            "an absolute sqlite:// path"
        );
        assert_eq!(
            Location::parse(&config(Some("sqlite://data/pc.db"))).expect("a location"),
            Location::Sqlite(PathBuf::from("data/pc.db")),
            "a relative sqlite:// path"
        );
    }

    #[test]
    fn an_unknown_database_url_names_the_variable_and_hides_the_password() {
        let err = Location::parse(&config(Some("mysql://root:hunter2@db/x")))
            .expect_err("mysql is not supported");
        let StoreError::InvalidInput(message) = err else {
            panic!("expected InvalidInput, got {err:?}");
        };
        assert!(
            message.contains("PICLOUD_DATABASE_URL"),
            "names the variable: {message}"
        );
        assert!(
            message.contains("sqlite://"),
            "lists the accepted forms: {message}"
        );
        assert!(
            !message.contains("hunter2"),
            "never echoes a password: {message}"
        );
        assert!(
            Location::parse(&config(Some("sqlite://"))).is_err(),
            "sqlite:// needs a path"
        );
    }
}
