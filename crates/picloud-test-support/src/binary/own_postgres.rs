//! A throw-away PostgreSQL 15 server that a test owns, so it can stop and start it (a database
//! outage) without disturbing the shared test server. Started by `.ci/postgres.sh`; as root the
//! cluster runs as the `postgres` user, like that script does.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::in_ci;

/// Where the PostgreSQL 15 binaries are (`PG_BIN` overrides, as for `.ci/postgres.sh`).
fn pg_bin() -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A free TCP port on the loopback interface (free when asked; PostgreSQL takes it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

pub struct OwnPostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl OwnPostgres {
    /// Starts a fresh cluster. Outside CI, `None` (with a line on stderr) when the binaries are
    /// missing; in CI (`CI=true`) that is a failure.
    pub fn start() -> Option<Self> {
        let bin = pg_bin();
        if !bin.join("pg_ctl").exists() || !bin.join("initdb").exists() {
            assert!(
                !in_ci(),
                "the PostgreSQL 15 binaries are not in {} but CI is set: this test must run in CI",
                bin.display()
            );
            eprintln!(
                "skipped: no PostgreSQL binaries in {} (set PG_BIN to run this test)",
                bin.display()
            );
            return None;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("picloud-own-pg-{}-{nanos}", std::process::id()));
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/postgres.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .env("PG_BIN", &bin)
            .output()
            .expect("run .ci/postgres.sh");
        let server = Self { dir, port, bin };
        assert!(
            output.status.success(),
            "{} start failed: {}\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr),
            server.server_log()
        );
        Some(server)
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A directory the test may use for other files (PiCloud's data directory).
    pub fn scratch_dir(&self) -> PathBuf {
        self.dir.join("scratch")
    }

    /// `pg_ctl stop -m <mode>` (`fast` ends the connections, `immediate` is a crash).
    pub fn stop(&self, mode: &str) {
        let status = self
            .pg_ctl()
            .args(["-m", mode, "-w", "-t", "60", "stop"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run pg_ctl stop");
        assert!(status.success(), "pg_ctl stop -m {mode} failed");
    }

    /// Starts the stopped cluster again, on the same port.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on",
            self.port,
            self.dir.display()
        );
        let status = self
            .pg_ctl()
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run pg_ctl start");
        assert!(
            status.success(),
            "pg_ctl start failed: {}",
            self.server_log()
        );
    }

    /// `pg_ctl -D <data> …`, as the `postgres` user when running as root.
    fn pg_ctl(&self) -> Command {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(pg_ctl);
            command
        } else {
            Command::new(pg_ctl)
        };
        command.arg("-D").arg(self.dir.join("data"));
        command
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
