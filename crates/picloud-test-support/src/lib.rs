//! The one test harness of the workspace. By default: test backends for every crate's tests, a
//! fresh SQLite file or a fresh PostgreSQL database per test, and [`both_backends!`], which runs
//! one test body on each. Features add the rest, so that a crate's tests compile only what they
//! use (the store's tests do not compile the server):
//!
//! | feature | module | gives |
//! |---|---|---|
//! | (none) | this one, [`fixtures`] | the backends below, [`in_ci`], [`ADMIN_PASSWORD`]; store-level fixtures (app, endpoint script, page, `Conflict`) |
//! | `executor` | `executor` | `Harness`: the same body through the local and the remote executor client (`for_both_clients!`) |
//! | `platform` | `platform` | a platform (orchestrator) on a test store, its signed-in admin, app/script/route inputs |
//! | `http` | `http` | `Answer`, and `Admin`: a client signed in at the admin API with the fixtures (app, script, route, dead letters) |
//! | `server` | `server`, `scenario` | `TestServer` (`spawn_app`: the server in-process on a test store) and scenario tables: rows of request, expected status, body and side effects, run by one runner |
//! | `binary` | `binary` | the real `picloud` binary as a `Process` on a fresh `Database` (`on_both_backends!`), a PostgreSQL server of the test's own, counting runs of async jobs |
//! | `browser` | `browser` | `Chromium`: headless Chromium driven over the DevTools protocol (skipped outside CI when not installed) |
//!
//! | item | gives |
//! |---|---|
//! | [`both_backends!`] | two tests, `<name>::sqlite` and `<name>::postgres`, from one async body (`quotas: …,` first: on stores held to those [`AppQuotas`]) |
//! | [`with_store`], [`with_store_quotas`] | runs one body on one backend (what the macro calls) |
//! | [`fresh_store`], [`fresh_store_quotas`] | a migrated [`Store`] on a database of its own, and the [`TestDatabase`] to keep |
//! | [`database_config`] | an unmigrated [`StoreConfig`], for tests that start the real binary |
//! | [`TestDatabase`] | owns the throw-away database; keep it alive as long as the store |
//!
//! # PostgreSQL
//!
//! The PostgreSQL variant needs a server that tests may create databases on, named by
//! `PICLOUD_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`). Each test
//! gets a database `picloud_test_<uuid>` of its own, dropped (best effort) when its
//! [`TestDatabase`] is dropped.
//!
//! - Variable unset, not in CI: the PostgreSQL variant prints a line to stderr and passes
//!   without running, so `cargo test` works on a laptop with nothing installed.
//! - Variable unset with `CI=true` (or `CI=1`): the test **panics** — in CI a test that needs
//!   PostgreSQL fails rather than silently skipping.
//! - Variable set but the server unreachable: the test panics, in or out of CI; someone asked
//!   for PostgreSQL and should hear that it is not there.
//!
//! # Writing a test for both backends
//!
//! ```text
//! use picloud_test_support::both_backends;
//! use picloud_test_support::fixtures::{app, conflict};
//!
//! // A slug names one app on the whole instance.
//! both_backends!(a_slug_is_unique_per_instance, |store| async move {
//!     let shop = app(&store, "shop").await?;
//!     let message = conflict(store.create_app(&NewApp { slug: shop.slug, name: shop.name, expose_errors: false }).await, "a second shop")?;
//!     assert!(message.contains("'shop'"), "the sentence names the slug: {message}");
//!     Ok(())
//! });
//! ```
//!
//! (The examples here are `text`: they need a test crate's imports and features, and the tests
//! that use them are the real examples.)
//!
//! - `store` is an `Arc<dyn Store>`, migrated, on a database no other test sees.
//! - The body may return `()` (fail by panicking, e.g. with `assert!` / `expect`) or
//!   `anyhow::Result<()>` (an `Err` fails the test, its chain of causes printed); a body that
//!   uses `?` and ends in `Ok(())` needs no type annotation.
//! - The macro makes a module `<name>` holding the tests `sqlite` and `postgres`, each on a
//!   multi-threaded tokio runtime with two workers; `cargo test <name>` runs both and
//!   `cargo test ::sqlite` every SQLite variant. The module does `use super::*`, so the body
//!   sees the file's imports and helper functions. The calling crate needs `tokio` (with the
//!   `macros` and `rt-multi-thread` features) among its dev-dependencies.
//! - Doc comments and attributes before the name go on the module.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;
use url::Url;

pub use picloud_store::{AppQuotas, Backend, Store, StoreConfig};

#[cfg(feature = "binary")]
pub mod binary;
#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "executor")]
pub mod executor;
pub mod fixtures;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "platform")]
pub mod platform;
#[cfg(feature = "server")]
pub mod scenario;
#[cfg(feature = "server")]
pub mod server;

/// Polls `probe` every 20 ms until it answers `Some`, or fails the test after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The instance admin's password in every test that makes one.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// Names the PostgreSQL server that tests create their databases on.
pub const DATABASE_URL_VAR: &str = "PICLOUD_TEST_DATABASE_URL";

/// Pool size of a test store: enough for concurrent requests in a test, small enough that many
/// tests side by side stay below PostgreSQL's connection limit.
const TEST_MAX_CONNECTIONS: u32 = 4;

/// Runs one async test body on both backends; see the [crate documentation](crate). With
/// `on runner,` first, each test is a plain `#[test]` that hands the body's future to `runner`
/// (a `fn(impl Future<Output = ()>)`), for bodies that need a runtime built their own way. With
/// `quotas: expr,` first, the stores are held to those [`AppQuotas`].
#[macro_export]
macro_rules! both_backends {
    (quotas: $quotas:expr, $(#[$meta:meta])* $name:ident, $body:expr $(,)?) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::with_store_quotas($crate::Backend::Sqlite, $quotas, $body).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::with_store_quotas($crate::Backend::Postgres, $quotas, $body).await;
            }
        }
    };
    (on $runner:path, $(#[$meta:meta])* $name:ident, $body:expr $(,)?) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn sqlite() {
                $runner($crate::with_store($crate::Backend::Sqlite, $body));
            }

            #[test]
            fn postgres() {
                $runner($crate::with_store($crate::Backend::Postgres, $body));
            }
        }
    };
    ($(#[$meta:meta])* $name:ident, $body:expr $(,)?) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::with_store($crate::Backend::Sqlite, $body).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::with_store($crate::Backend::Postgres, $body).await;
            }
        }
    };
}

/// What a test body may return: `()`, or a `Result` whose `Err` fails the test.
pub trait TestOutcome {
    /// Panics when the outcome is a failure.
    fn check(self);
}

impl TestOutcome for () {
    fn check(self) {}
}

// Exactly one `Result` implementation, so that a body ending in `Ok(())` after `?` needs no
// type annotation: the compiler picks anyhow's error type from this impl.
impl TestOutcome for anyhow::Result<()> {
    fn check(self) {
        if let Err(err) = self {
            panic!("the test body failed: {err:?}");
        }
    }
}

/// Runs `body` with a fresh, migrated store on `backend`, then drops the database. Returns
/// without running `body` when PostgreSQL is not configured outside CI (see the crate docs).
pub async fn with_store<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future,
    Fut::Output: TestOutcome,
{
    with_store_quotas(backend, AppQuotas::default(), body).await;
}

/// [`with_store`] on a store held to `quotas`.
pub async fn with_store_quotas<F, Fut>(backend: Backend, quotas: AppQuotas, body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future,
    Fut::Output: TestOutcome,
{
    let Some((store, database)) = fresh_store_quotas(backend, quotas).await else {
        return;
    };
    body(store).await.check();
    drop(database);
}

/// A migrated store on a database of its own, with the [`TestDatabase`] that owns it (keep it
/// alive as long as the store); `None` when PostgreSQL is not configured outside CI.
///
/// # Panics
/// When the database cannot be created, opened or migrated, and when PostgreSQL is required
/// (`CI=true`) but not configured.
pub async fn fresh_store(backend: Backend) -> Option<(Arc<dyn Store>, TestDatabase)> {
    fresh_store_quotas(backend, AppQuotas::default()).await
}

/// [`fresh_store`] held to `quotas`.
///
/// # Panics
/// Like [`fresh_store`].
pub async fn fresh_store_quotas(
    backend: Backend,
    quotas: AppQuotas,
) -> Option<(Arc<dyn Store>, TestDatabase)> {
    let database = TestDatabase::create(backend).await?;
    let config = StoreConfig {
        quotas,
        ..database.config().clone()
    };
    let store = picloud_store::open(&config)
        .await
        .unwrap_or_else(|err| panic!("the {backend:?} test store does not open: {err}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|err| panic!("the {backend:?} test store does not migrate: {err}"));
    Some((store, database))
}

/// An unmigrated configuration for a fresh database, for tests that run the real binary with
/// `PICLOUD_DATABASE_URL` (when `database_url` is `Some`) and `PICLOUD_DATA_DIR`; `None` when
/// PostgreSQL is not configured outside CI. Callable from sync and async code alike.
///
/// # Panics
/// Like [`fresh_store`].
pub fn database_config(backend: Backend) -> Option<(StoreConfig, TestDatabase)> {
    let database = block_on(TestDatabase::create(backend))?;
    Some((database.config().clone(), database))
}

/// A throw-away database. SQLite: a temporary directory holding `picloud.db`. PostgreSQL: a
/// database of its own on the server at `PICLOUD_TEST_DATABASE_URL` (and a temporary data
/// directory). Dropping it removes both; dropping the PostgreSQL database is best effort.
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
    config: StoreConfig,
    /// The data directory; removed on drop.
    dir: TempDir,
    /// PostgreSQL only: where to drop the database from.
    postgres: Option<PgDatabase>,
}

#[derive(Debug)]
struct PgDatabase {
    server_url: String,
    name: String,
}

impl TestDatabase {
    /// A fresh, empty database on `backend`; see [`fresh_store`] for when it is `None`.
    pub async fn create(backend: Backend) -> Option<Self> {
        let dir = tempfile::Builder::new()
            .prefix("picloud-test-")
            .tempdir()
            .unwrap_or_else(|err| panic!("a temporary directory for the test database: {err}"));
        let mut config = StoreConfig {
            database_url: None,
            data_dir: dir.path().to_owned(),
            max_connections: TEST_MAX_CONNECTIONS,
            acquire_timeout_ms: 10_000,
            quotas: AppQuotas::default(),
        };
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let server_url = postgres_server()?;
                let (database_url, name) = create_pg_database(&server_url).await;
                config.database_url = Some(database_url);
                Some(PgDatabase { server_url, name })
            }
        };
        Some(Self {
            backend,
            config,
            dir,
            postgres,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The configuration that opens this database.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The data directory (SQLite keeps `picloud.db` here).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(db) = self.postgres.take() {
            // Dropping a database takes a few hundred milliseconds (a checkpoint), so it runs on
            // a detached thread while the next test proceeds. FORCE ends the connections a store
            // may still hold. A drop cut short by the end of the test process, or one that
            // fails, leaves the database behind, which the throw-away server tolerates.
            std::thread::spawn(move || {
                let _ = block_on(async move {
                    let mut conn = PgConnection::connect(&db.server_url).await?;
                    let drop_sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.name);
                    conn.execute(drop_sql.as_str()).await?;
                    conn.close().await
                });
            });
        }
    }
}

/// The server URL from `PICLOUD_TEST_DATABASE_URL`, or `None` (skip) outside CI.
fn postgres_server() -> Option<String> {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if in_ci() => panic!(
            "{DATABASE_URL_VAR} is not set but CI is: tests that need PostgreSQL must run in CI; \
             point {DATABASE_URL_VAR} at a server where tests may create databases"
        ),
        _ => {
            eprintln!("skipped the PostgreSQL variant: set {DATABASE_URL_VAR} to run it");
            None
        }
    }
}

/// Whether the tests run in CI (`CI=true` or `CI=1`): then a test that needs PostgreSQL (or its
/// binaries) fails where it would otherwise skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci.eq_ignore_ascii_case("true") || ci == "1")
}

/// Creates `picloud_test_<uuid>` on the server; returns its URL and name.
async fn create_pg_database(server_url: &str) -> (String, String) {
    let shown = redact(server_url);
    let mut url = Url::parse(server_url)
        .unwrap_or_else(|err| panic!("{DATABASE_URL_VAR} '{shown}' is not a URL: {err}"));
    let name = format!("picloud_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(server_url)
        .await
        .unwrap_or_else(|err| {
            panic!("PostgreSQL at {DATABASE_URL_VAR}='{shown}' cannot be reached: {err}")
        });
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap_or_else(|err| panic!("CREATE DATABASE {name} on '{shown}' failed: {err}"));
    let _ = conn.close().await;
    url.set_path(&format!("/{name}"));
    (url.into(), name)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.into()
        }
        Ok(parsed) => parsed.into(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own, so that it
/// works from sync code and from inside another runtime alike. A panic in `future` is resumed
/// on the caller's thread.
fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|err| panic!("a runtime for test set-up: {err}"))
                .block_on(future)
        });
        match worker.join() {
            Ok(output) => output,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
