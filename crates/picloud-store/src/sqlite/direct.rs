//! Statements on SQLite connections of our own, through rusqlite on the calling thread: the
//! outbox committer's transaction (`committer`) and the KV reads of scripts ([`Readers`]).
//! sqlx runs each SQLite connection on a thread of its own, so a statement through it costs two
//! thread wake-ups; these cost none (bench/RESULTS.md, #15).

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{CachedStatement, Connection, ErrorCode, OpenFlags};

use crate::commit::AnyRow;
use crate::db::{Arg, Sql};
use crate::{StoreError, StoreResult};

/// The statement `sql` on `conn`, prepared once per connection, with `args` bound to `$1`, `$2`,
/// … wherever they appear (a statement may use them out of order).
pub(super) fn statement<'c>(
    conn: &'c Connection,
    sql: Sql<'_>,
    args: &[Arg<'_>],
) -> rusqlite::Result<CachedStatement<'c>> {
    let mut statement = conn.prepare_cached(sql.sqlite)?;
    // Each of the statement's parameters by its name (`$n`): no name is formatted and looked up
    // per argument, which cost a hot statement of 16 parameters more than its binding.
    for index in 1..=statement.parameter_count() {
        let Some(arg) = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| args.get(n.checked_sub(1)?))
        else {
            continue;
        };
        match arg {
            Arg::Text(text) => statement.raw_bind_parameter(index, text.as_ref()),
            Arg::OptText(text) => statement.raw_bind_parameter(index, text.as_deref()),
            Arg::Int(n) => statement.raw_bind_parameter(index, n),
            Arg::OptInt(n) => statement.raw_bind_parameter(index, n),
            Arg::Bool(b) => statement.raw_bind_parameter(index, b),
            Arg::OptBool(b) => statement.raw_bind_parameter(index, b),
            Arg::Bytes(bytes) => statement.raw_bind_parameter(index, bytes),
            Arg::Blob(bytes) => statement.raw_bind_parameter(index, bytes),
            Arg::Float(x) => statement.raw_bind_parameter(index, x),
        }?;
    }
    Ok(statement)
}

/// The rows of `sql` on `conn`.
pub(super) fn rows<R: AnyRow>(
    conn: &Connection,
    sql: Sql<'_>,
    args: &[Arg<'_>],
) -> rusqlite::Result<Vec<R>> {
    Ok(rows_within(conn, sql, args, usize::MAX)?.unwrap_or_default())
}

/// The rows of `sql` on `conn` while they hold at most `max_bytes`; `None` past it.
pub(super) fn rows_within<R: AnyRow>(
    conn: &Connection,
    sql: Sql<'_>,
    args: &[Arg<'_>],
    max_bytes: usize,
) -> rusqlite::Result<Option<Vec<R>>> {
    let mut statement = statement(conn, sql, args)?;
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let row = R::from_rusqlite(row)?;
        bytes = bytes.saturating_add(row.bytes());
        if bytes > max_bytes {
            return Ok(None);
        }
        out.push(row);
    }
    Ok(Some(out))
}

/// Busy, locked or unopenable files are the database being out of reach for now.
pub(super) fn sqlite_error(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}

/// Read-only connections to one store's file, one per thread that reads, opened on its first
/// read: a script's KV reads run on its executor thread.
#[derive(Debug, Clone)]
pub(super) struct Readers {
    /// Tells this store's connections from other stores' on the same thread.
    id: u64,
    path: PathBuf,
    /// Set by `Store::close`: reads are then refused, as the closed pools refuse them.
    closed: Arc<AtomicBool>,
}

/// The connections a thread keeps, newest last; a thread that reads many stores (a test
/// process) keeps the last few.
const CONNECTIONS_PER_THREAD: usize = 8;

thread_local! {
    static CONNECTIONS: RefCell<Vec<(u64, Connection)>> = const { RefCell::new(Vec::new()) };
}

impl Readers {
    pub(super) fn new(path: PathBuf) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            path,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// The rows of `sql` on this thread's connection to the store.
    pub(super) fn rows<R: AnyRow>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> StoreResult<Vec<R>> {
        Ok(self.rows_within(sql, args, usize::MAX)?.unwrap_or_default())
    }

    /// [`Readers::rows`] while they hold at most `max_bytes`; `None` past it.
    pub(super) fn rows_within<R: AnyRow>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        max_bytes: usize,
    ) -> StoreResult<Option<Vec<R>>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is closed".to_owned()));
        }
        CONNECTIONS.with(|connections| {
            let mut connections = connections.borrow_mut();
            let at = match connections.iter().position(|(id, _)| *id == self.id) {
                Some(at) => at,
                None => {
                    if connections.len() >= CONNECTIONS_PER_THREAD {
                        connections.remove(0);
                    }
                    connections.push((self.id, self.open().map_err(sqlite_error)?));
                    connections.len() - 1
                }
            };
            rows_within(&connections[at].1, sql, args, max_bytes).map_err(sqlite_error)
        })
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }
}
