//! Runs the real `picloud` binary for the `picloud` crate's tests: a fresh database per server, a
//! free port, JSON logs read from stderr so the test learns the address and can look for log
//! lines. [`own_postgres`] gives a test a PostgreSQL server it may stop; [`runs`] counts the runs
//! of async jobs end to end.

pub mod own_postgres;
pub mod runs;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picloud_store::Backend;
use serde_json::Value;

use crate::{TestDatabase, ADMIN_PASSWORD};

/// Where a test server keeps its data; kept alive across restarts of the server.
pub struct Database {
    pub env: Vec<(String, String)>,
    _db: Option<TestDatabase>,
}

impl Database {
    /// A fresh database on `backend`, or `None` when PostgreSQL is not configured outside CI.
    pub fn fresh(backend: Backend) -> Option<Self> {
        let (config, db) = crate::database_config(backend)?;
        let mut env = vec![(
            "PICLOUD_DATA_DIR".to_owned(),
            config.data_dir.to_string_lossy().into_owned(),
        )];
        if let Some(url) = config.database_url {
            env.push(("PICLOUD_DATABASE_URL".to_owned(), url));
        }
        Some(Self { env, _db: Some(db) })
    }

    /// `PICLOUD_DATA_DIR`: where SQLite keeps its file.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.env
            .iter()
            .find(|(k, _)| k == "PICLOUD_DATA_DIR")
            .map(|(_, dir)| std::path::PathBuf::from(dir))
            .expect("every test database has a data directory")
    }

    /// A database the test runs itself (e.g. its own PostgreSQL server): only its environment.
    pub fn external(env: Vec<(String, String)>) -> Self {
        Self { env, _db: None }
    }
}

/// A running `picloud` process.
pub struct Process {
    child: Child,
    pub addr: String,
    /// The public listener (the apps), or the executor's.
    pub base: String,
    /// The admin listener of `serve` (the admin API); the public one for `executor`.
    pub admin_base: String,
    logs: Arc<Mutex<Vec<Value>>>,
}

/// A command that runs the `picloud` binary. Cargo builds it before the `picloud` crate's
/// integration tests and names it in `CARGO_BIN_EXE_picloud`; where that is not set at run time,
/// it sits next to the directory of the test executable (`target/<profile>/picloud`).
pub fn binary() -> Command {
    let path = std::env::var_os("CARGO_BIN_EXE_picloud")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let test_exe = std::env::current_exe().expect("the test executable's path");
            let profile_dir = test_exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("the test executable sits in target/<profile>/deps");
            profile_dir.join(format!("picloud{}", std::env::consts::EXE_SUFFIX))
        });
    assert!(
        path.exists(),
        "the picloud binary is not at {} (run the picloud crate's tests with cargo)",
        path.display()
    );
    Command::new(path)
}

impl Process {
    /// `picloud serve` on a free port with the database's environment and `extra` settings.
    pub fn serve(db: &Database, extra: &[(&str, &str)]) -> Self {
        let mut command = binary();
        command.env("PICLOUD_ADMIN_PASSWORD", ADMIN_PASSWORD);
        Self::serve_with(command, db, extra)
    }

    /// `picloud serve` without `PICLOUD_ADMIN_PASSWORD`.
    pub fn serve_without_password(db: &Database) -> Self {
        let mut command = binary();
        command.env_remove("PICLOUD_ADMIN_PASSWORD");
        Self::serve_with(command, db, &[])
    }

    fn serve_with(mut command: Command, db: &Database, extra: &[(&str, &str)]) -> Self {
        command
            .arg("serve")
            .env("PICLOUD_ADMIN_ADDR", "127.0.0.1:0")
            .envs(db.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Self::start(command, extra, "listening")
    }

    /// `picloud executor` on a free port, reaching `db` (scripts' KV calls go to the database
    /// from the executor process) with the same environment as the server.
    pub fn executor(db: &Database, extra: &[(&str, &str)]) -> Self {
        let mut command = binary();
        command
            .arg("executor")
            .env("PICLOUD_EXECUTOR_ADDR", "127.0.0.1:0")
            .envs(db.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Self::start(command, extra, "executor listening")
    }

    fn start(mut command: Command, extra: &[(&str, &str)], ready_message: &str) -> Self {
        command
            .env("PICLOUD_ADDR", "127.0.0.1:0")
            .env("PICLOUD_LOG_FORMAT", "json")
            .env("PICLOUD_LOG", "info")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the picloud binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().expect("log lock").push(value);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = logs
                .lock()
                .expect("log lock")
                .iter()
                .find(|l| l["message"] == ready_message)
                .and_then(|l| {
                    let addr = l["addr"].as_str()?.to_owned();
                    let admin = l["admin_addr"].as_str().unwrap_or(&addr).to_owned();
                    Some((addr, admin))
                });
            if let Some((addr, admin_addr)) = found {
                return Self {
                    child,
                    base: format!("http://{addr}"),
                    admin_base: format!("http://{admin_addr}"),
                    addr,
                    logs,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "picloud exited with {status} before it was ready; logs: {:#?}",
                    logs.lock().expect("log lock")
                );
            }
            assert!(
                Instant::now() < deadline,
                "picloud was not ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Whether a log line matching `matches` arrives within `timeout` (stderr is read by
    /// another thread, so a line written just before a response may not be here yet).
    pub fn log_arrives(&self, matches: impl Fn(&Value) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs.lock().expect("log lock").iter().any(&matches) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How many log lines so far match `matches`.
    pub fn count_logs(&self, matches: impl Fn(&Value) -> bool) -> usize {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| matches(l))
            .count()
    }

    /// The last `n` log lines, for failure messages.
    pub fn tail_logs(&self, n: usize) -> Vec<Value> {
        let logs = self.logs.lock().expect("log lock");
        logs[logs.len().saturating_sub(n)..].to_vec()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "picloud did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate();
        self.wait(Duration::from_secs(30))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test body per backend: `on_both_backends!(name, body_fn)` makes `name::sqlite` and
/// `name::postgres`, each calling `body_fn(Backend)` (which makes its own [`Database`]).
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::Backend::Sqlite).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::Backend::Postgres).await;
            }
        }
    };
}
