//! The seam between the store's behaviour and its two databases, in the spirit of spin's
//! `factor-sqlite` `Connection`: SQL text and bound values in, rows out.
//!
//! - [`Engine`]: reads, one-statement writes and write transactions ([`WriteTx`]), plus the
//!   hooks where the backends truly differ (runs' commits, the outbox's claim and commits, migrate
//!   and close). [`crate::sqlite::SqliteStore`] and [`crate::postgres::PgStore`] implement it;
//!   every store trait has one implementation for any `Engine`, in the module of its domain.
//! - [`Sql`]: a statement in both dialects, built at compile time by [`dialects!`] from one
//!   text in which the pieces that differ are macros: `now!()` (the database's clock in
//!   milliseconds), `clock!()` (the same, read once for the statement), `greatest!()`,
//!   `jsonb!()` (the cast a JSON parameter needs), `for_update!()` and `skip_locked!()` (row
//!   locks, which SQLite, with its one writer, does without).
//! - [`Arg`]: a bound value; each backend binds a slice of them into its own arguments
//!   ([`arguments`]), so a call costs what `sqlx::query(…).bind(…)` cost.
//! - [`DbError`]: a database error not yet translated; `?` makes it a [`StoreError`], and
//!   [`OnConstraint::on_constraint`] makes a unique violation the caller expects a `Conflict`
//!   with the caller's sentence.
//!
//! The methods return `impl Future + Send` rather than boxed futures: the KV reads and the
//! outbox's paths run through here, and cost no allocation more than before.

use std::borrow::Cow;
use std::future::Future;

use picloud_core::{AppId, ExecutionId};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Arguments as _, Database, Encode, FromRow, Type};

use crate::commit::AnyRow;
use crate::errors::UniqueRule;
use crate::jobs::JobValues;
use crate::{
    AppQuotas, Backend, ClaimedJob, ExecutionWriter, JobAttempt, Notices, OutboxBatch,
    OutboxCommitter, PoolUsage, RunCommit, RunVerdict, StoreError, StoreResult,
};

/// A statement in SQLite's and PostgreSQL's dialects.
#[derive(Debug, Clone, Copy)]
pub struct Sql<'a> {
    pub sqlite: &'a str,
    pub postgres: &'a str,
}

impl<'a> Sql<'a> {
    /// A statement that reads the same in both dialects.
    pub const fn same(text: &'a str) -> Self {
        Self {
            sqlite: text,
            postgres: text,
        }
    }
}

/// A statement in SQLite's dialect, as a `&'static str`: the parts are `concat!`ed with the
/// dialect pieces (see the module's doc) defined as SQLite reads them.
macro_rules! sqlite {
    ($($part:expr),+ $(,)?) => {{
        #[allow(unused_macros)]
        macro_rules! now {
            () => { "CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER)" };
        }
        // SQLite's clock is stable within a statement.
        #[allow(unused_macros)]
        macro_rules! clock {
            () => { now!() };
        }
        #[allow(unused_macros)]
        macro_rules! greatest {
            () => { "MAX" };
        }
        #[allow(unused_macros)]
        macro_rules! jsonb {
            () => { "" };
        }
        #[allow(unused_macros)]
        macro_rules! for_update {
            () => { "" };
        }
        #[allow(unused_macros)]
        macro_rules! skip_locked {
            () => { "" };
        }
        concat!($($part),+)
    }};
}

/// [`sqlite!`] for PostgreSQL. Its clock is `clock_timestamp()`, not `now()`, which would stand
/// still for a whole transaction; `clock!()` reads it once, so a planner can compare an index
/// against it.
macro_rules! postgres {
    ($($part:expr),+ $(,)?) => {{
        #[allow(unused_macros)]
        macro_rules! now {
            () => { "(extract(epoch from clock_timestamp()) * 1000)::bigint" };
        }
        #[allow(unused_macros)]
        macro_rules! clock {
            () => { concat!("(SELECT ", now!(), ")") };
        }
        #[allow(unused_macros)]
        macro_rules! greatest {
            () => { "GREATEST" };
        }
        #[allow(unused_macros)]
        macro_rules! jsonb {
            () => { "::jsonb" };
        }
        #[allow(unused_macros)]
        macro_rules! for_update {
            () => { " FOR UPDATE" };
        }
        #[allow(unused_macros)]
        macro_rules! skip_locked {
            () => { " FOR UPDATE SKIP LOCKED" };
        }
        concat!($($part),+)
    }};
}

/// A [`Sql`] from one text: `dialects!("UPDATE … SET at = ", now!(), " WHERE …")`.
macro_rules! dialects {
    ($($part:expr),+ $(,)?) => {
        $crate::db::Sql {
            sqlite: $crate::db::sqlite!($($part),+),
            postgres: $crate::db::postgres!($($part),+),
        }
    };
}

pub(crate) use {dialects, postgres, sqlite};

/// A value bound to a statement's parameter.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Text(Cow<'a, str>),
    OptText(Option<Cow<'a, str>>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    OptBool(Option<bool>),
    Bytes(&'a [u8]),
    Blob(Vec<u8>),
    Float(f64),
}

/// `From` each kind of value into [`Arg`], so that call sites write `value.into()`.
macro_rules! arg_from {
    ($($kind:ty => |$value:ident| $arg:expr;)+) => {
        $(
            impl<'a> From<$kind> for Arg<'a> {
                fn from($value: $kind) -> Self {
                    $arg
                }
            }
        )+
    };
}

arg_from! {
    &'a str => |value| Arg::Text(Cow::Borrowed(value));
    &'a String => |value| Arg::Text(Cow::Borrowed(value));
    String => |value| Arg::Text(Cow::Owned(value));
    Option<&'a str> => |value| Arg::OptText(value.map(Cow::Borrowed));
    Option<String> => |value| Arg::OptText(value.map(Cow::Owned));
    i64 => |value| Arg::Int(value);
    Option<i64> => |value| Arg::OptInt(value);
    bool => |value| Arg::Bool(value);
    Option<bool> => |value| Arg::OptBool(value);
    &'a [u8] => |value| Arg::Bytes(value);
    Vec<u8> => |value| Arg::Blob(value);
    f64 => |value| Arg::Float(value);
}

/// Binds `args` in order into `DB`'s arguments.
pub fn arguments<'q, DB>(args: &'q [Arg<'_>]) -> DbResult<DB::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
    Option<bool>: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
{
    let mut bound = DB::Arguments::default();
    for arg in args {
        match arg {
            Arg::Text(text) => bound.add(text.as_ref()),
            Arg::OptText(text) => bound.add(text.as_deref()),
            Arg::Int(n) => bound.add(*n),
            Arg::OptInt(n) => bound.add(*n),
            Arg::Bool(b) => bound.add(*b),
            Arg::OptBool(b) => bound.add(*b),
            Arg::Bytes(bytes) => bound.add(*bytes),
            Arg::Blob(bytes) => bound.add(bytes.as_slice()),
            Arg::Float(x) => bound.add(*x),
        }
        .map_err(|err| DbError(sqlx::Error::Encode(err)))?;
    }
    Ok(bound)
}

/// A row both backends decode: the row structs derive `sqlx::FromRow` generically.
pub trait Row: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin {}

impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// A database error on its way to a [`StoreError`] (see [`crate::errors`]).
#[derive(Debug)]
pub struct DbError(pub sqlx::Error);

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        Self(err)
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// A unique violation the caller expects, as a user's error: realworld-axum-sqlx's
/// `on_constraint`, where the write happens.
pub trait OnConstraint<T> {
    /// `Conflict(sentence())` when `rule` refused the write; any other error as `?` translates
    /// it.
    fn on_constraint(self, rule: UniqueRule, sentence: impl FnOnce() -> String) -> StoreResult<T>;
}

impl<T> OnConstraint<T> for DbResult<T> {
    fn on_constraint(self, rule: UniqueRule, sentence: impl FnOnce() -> String) -> StoreResult<T> {
        self.map_err(|err| {
            if rule.refused(&err.0) {
                StoreError::Conflict(sentence())
            } else {
                err.into()
            }
        })
    }
}

/// A write transaction: SQLite's `BEGIN IMMEDIATE` on its one writer connection, a pooled
/// PostgreSQL connection's transaction. Dropped without [`WriteTx::commit`], it rolls back.
pub trait WriteTx: Send {
    const BACKEND: Backend;

    fn fetch_optional<R: Row>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = DbResult<Option<R>>> + Send;

    fn fetch_all<R: Row>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = DbResult<Vec<R>>> + Send;

    /// Returns the rows affected.
    fn execute(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = DbResult<u64>> + Send;

    /// Puts `jobs` (at most [`crate::jobs::JOBS_PER_INSERT`]) into the outbox with
    /// [`crate::jobs::insert_jobs`]; see [`crate::jobs::enqueue`].
    fn insert_jobs(&mut self, jobs: &[JobValues]) -> impl Future<Output = DbResult<()>> + Send;

    fn commit(self) -> impl Future<Output = DbResult<()>> + Send;
}

/// A database PiCloud's stores run on. See the module's doc; the hooks after the first group
/// are what the two backends do differently, each for a reason its implementation gives.
pub trait Engine: Send + Sync + 'static {
    const BACKEND: Backend;

    type Write: WriteTx;

    /// What each app may hold ([`crate::StoreConfig::quotas`]).
    fn app_quotas(&self) -> &AppQuotas;

    /// A read (SQLite: on the reader pool, beside the writer).
    fn fetch_optional<R: Row>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = DbResult<Option<R>>> + Send;

    fn fetch_all<R: Row>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = DbResult<Vec<R>>> + Send;

    /// One statement that writes, in a transaction of its own; returns its row, if any.
    fn write_optional<R: Row>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = DbResult<Option<R>>> + Send;

    /// One statement that writes, in a transaction of its own; returns the rows affected.
    fn write(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> impl Future<Output = DbResult<u64>> + Send;

    fn begin_write(&self) -> impl Future<Output = DbResult<Self::Write>> + Send;

    /// The rows of a read of scripts' data (`crate::kv`): on SQLite through the calling thread's
    /// own connection (`crate::sqlite::direct`), with no hop to another thread.
    fn read_rows<R: AnyRow>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Vec<R>>> + Send;

    /// [`Engine::read_rows`], stopping once the rows hold more than `max_bytes`
    /// ([`AnyRow::bytes`]): `None` then. A script's page or find brings at most what the
    /// execution may hold into the process.
    fn read_rows_within<R: AnyRow>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        max_bytes: usize,
    ) -> impl Future<Output = StoreResult<Option<Vec<R>>>> + Send;

    /// [`crate::KvStore::commit_run`]: `crate::commit` in a transaction (SQLite: shared with
    /// the runs that wait beside it).
    fn commit(&self, run: RunCommit) -> impl Future<Output = StoreResult<RunVerdict>> + Send;

    /// [`crate::OutboxStore::commit_outbox`].
    fn write_outbox(
        &self,
        batch: &OutboxBatch,
    ) -> impl Future<Output = StoreResult<Vec<RunVerdict>>> + Send;

    /// [`crate::OutboxStore::outbox_committer`].
    fn committer(&self) -> StoreResult<Box<dyn OutboxCommitter>>;

    /// Where execution records are read and swept: this engine on PostgreSQL, the records' own
    /// file on SQLite.
    type Records: Records;

    fn records(&self) -> &Self::Records;

    /// [`crate::ExecutionStore::execution_writer`].
    fn execution_writer(&self, origin: &str) -> StoreResult<Box<dyn ExecutionWriter>>;

    /// [`crate::Store::notices`].
    fn listen(&self) -> impl Future<Output = StoreResult<Option<Notices>>> + Send;

    /// [`crate::OutboxStore::claim_jobs`], `limit` > 0.
    fn claim(
        &self,
        owner: &str,
        limit: u32,
        per_app: u32,
        running: &[(AppId, u32)],
        lease_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<ClaimedJob>>> + Send;

    /// [`crate::OutboxStore::extend_leases`], `jobs` and `serving` not both empty.
    fn extend(
        &self,
        owner: &str,
        jobs: &[JobAttempt],
        serving: &[ExecutionId],
        lease_ms: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// [`crate::OutboxStore::sweep_sync_requests`].
    fn sweep_sync(&self, rotate_after_ms: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    /// [`crate::Store::migrate`].
    fn run_migrations(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// [`crate::Store::close`].
    fn close_pools(&self) -> impl Future<Output = ()> + Send;

    /// [`crate::Store::pools`].
    fn pool_usage(&self) -> Vec<PoolUsage>;
}

/// How full `pool` is now, as `name`.
pub(crate) fn pool_usage<D: Database>(name: &'static str, pool: &sqlx::Pool<D>) -> PoolUsage {
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    PoolUsage {
        name,
        in_use: pool.size().saturating_sub(idle),
        idle,
        capacity: pool.options().get_max_connections(),
    }
}

/// The statements execution records need: reads and single-statement writes.
pub trait Records: Send + Sync {
    fn fetch_all<R: Row>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = DbResult<Vec<R>>> + Send;

    fn write(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> impl Future<Output = DbResult<u64>> + Send;
}

impl<E: Engine> Records for E {
    fn fetch_all<R: Row>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = DbResult<Vec<R>>> + Send {
        Engine::fetch_all(self, sql, args)
    }

    fn write(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> impl Future<Output = DbResult<u64>> + Send {
        Engine::write(self, sql, args)
    }
}
