//! The client commands of the real binary against a real server (#18): `picloud login` keeps a
//! private profile, `picloud logs` prints an app's execution records from it or from a token,
//! `--follow` streams new ones, and every refusal is a sentence that says what went wrong. The
//! client speaks only HTTP, so SQLite is enough.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use picloud_store::Backend;
use picloud_test_support::binary::{binary, Database, Process};
use picloud_test_support::http::{get_json, sign_in, Admin};
use picloud_test_support::ADMIN_PASSWORD;
use serde_json::json;
use tempfile::TempDir;

const ORDERS: &str = r#"
let id = ctx.request.params.id;
log::info(`loading order ${id}`);
#{ id: id }
"#;

const BOOM: &str = r#"log::warn("about to fail");
throw "boom";"#;

/// The client commands with a configuration directory of their own (not created yet), and none
/// of the caller's settings.
struct Cli {
    home: TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            home: TempDir::new().expect("a temporary directory"),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("picloud")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = binary();
        command
            .args(args)
            .env("PICLOUD_CONFIG_DIR", self.config_dir())
            .env_remove("PICLOUD_URL")
            .env_remove("PICLOUD_TOKEN")
            .env_remove("PICLOUD_PROFILE")
            .env_remove("PICLOUD_PASSWORD")
            .env_remove("PICLOUD_USERNAME")
            .env_remove("NO_COLOR");
        command
    }

    /// Runs `picloud args…` with `stdin`, to its end.
    fn run(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn picloud");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("picloud ends"))
    }

    fn login(&self, admin_base: &str) -> Run {
        self.run(
            &["login", "--url", admin_base],
            &format!("{ADMIN_PASSWORD}\n"),
        )
    }
}

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Asserts that the run failed with `code` and that stderr says each of `phrases`.
    fn refused(&self, code: i32, phrases: &[&str], what: &str) {
        assert_eq!(self.code, Some(code), "{what}: the exit code\n{self}");
        for phrase in phrases {
            assert!(
                self.stderr.contains(phrase),
                "{what}: the message says '{phrase}'\n{self}"
            );
        }
    }
}

/// The header lines of `logs` output (its log and error lines are indented).
fn headers(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| !l.starts_with(' ')).collect()
}

/// A server with the app `shop`: `GET /orders/{id}` logs and answers, `GET /boom` throws; each
/// called once and its record written.
async fn shop(extra: &[(&str, &str)]) -> (Database, Process, Admin, String) {
    let db = Database::fresh(Backend::Sqlite).expect("SQLite needs no set-up");
    let server = Process::serve(&db, extra);
    let admin = Admin::login(&server.admin_base, ADMIN_PASSWORD).await;
    let app_id = admin.create_app("shop").await;
    admin
        .add_route(&app_id, "orders", ORDERS, "GET", "/orders/{id}")
        .await;
    admin.add_route(&app_id, "boom", BOOM, "GET", "/boom").await;
    let (status, body) = get_json(&format!("{}/shop/orders/17", server.base)).await;
    assert_eq!(status, 200, "the orders route answers: {body}");
    let (status, body) = get_json(&format!("{}/shop/boom", server.base)).await;
    assert_eq!(status, 500, "the boom route fails: {body}");
    wait_for_records(&admin, &app_id, 2).await;
    (db, server, admin, app_id)
}

/// Waits until the app has `count` execution records (they are written shortly after the
/// responses).
async fn wait_for_records(admin: &Admin, app_id: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin
            .get(&format!("/api/v1/admin/apps/{app_id}/executions"))
            .await;
        assert_eq!(status, 200, "list the records: {body}");
        if body["items"].as_array().map_or(0, Vec::len) >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} records within 10 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;

    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{} exists: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// After `picloud login`, `picloud logs --app` needs nothing else: it prints the records oldest
/// first, as plain text into a pipe, and its filters narrow them; `logout` ends the session on
/// the server too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_keeps_a_private_profile_that_logs_then_uses() {
    let (_db, server, admin, _app_id) = shop(&[]).await;
    let cli = Cli::new();

    let login = cli.login(&server.admin_base);
    assert_eq!(login.code, Some(0), "login succeeds\n{login}");
    assert!(
        login.stdout.contains("logged in") && login.stdout.contains("'default'"),
        "login says where the session went\n{login}"
    );
    let profiles = cli.config_dir().join("profiles.json");
    #[cfg(unix)]
    {
        assert_eq!(mode_of(&profiles), 0o600, "the profile holds a token");
        assert_eq!(
            mode_of(&cli.config_dir()),
            0o700,
            "a new directory is private"
        );
    }
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&profiles).expect("the profiles file"))
            .expect("JSON");
    let token = file["profiles"]["default"]["token"]
        .as_str()
        .expect("the session token is kept")
        .to_owned();
    assert!(token.starts_with("ps_"), "a session token: {file}");

    let logs = cli.run(&["logs", "--app", "shop"], "");
    assert_eq!(logs.code, Some(0), "logs with only --app\n{logs}");
    let lines = headers(&logs.stdout);
    assert_eq!(lines.len(), 2, "a header per record\n{logs}");
    assert!(
        lines[0].contains("  sync  GET /orders/17  ok 200  "),
        "the first record first, with source, summary and outcome\n{logs}"
    );
    assert!(
        lines[1].contains("GET /boom  runtime_error  "),
        "then the failure\n{logs}"
    );
    for expected in [
        "    info  loading order 17\n",
        "    warn  about to fail\n",
        "boom",
        "(at 2:1)",
    ] {
        assert!(
            logs.stdout.contains(expected),
            "the output has '{expected}'\n{logs}"
        );
    }
    assert!(
        !logs.stdout.contains('\u{1b}'),
        "no escape codes into a pipe\n{logs}"
    );

    let errors = cli.run(&["logs", "--app", "shop", "--errors"], "");
    assert_eq!(errors.code, Some(0), "--errors\n{errors}");
    let lines = headers(&errors.stdout);
    assert!(
        lines.len() == 1 && lines[0].contains("GET /boom"),
        "only the failure\n{errors}"
    );
    let one_script = cli.run(&["logs", "--app", "shop", "--script", "orders"], "");
    let lines = headers(&one_script.stdout);
    assert!(
        lines.len() == 1 && lines[0].contains("GET /orders/17"),
        "only the script's record\n{one_script}"
    );

    let logout = cli.run(&["logout"], "");
    assert_eq!(logout.code, Some(0), "logout succeeds\n{logout}");
    let (status, _) = Admin::signed_in(reqwest::Client::new(), &admin.base, token)
        .get("/api/v1/auth/me")
        .await;
    assert_eq!(status, 401, "the session ended on the server");
    let file = std::fs::read_to_string(&profiles).expect("the profiles file");
    assert!(!file.contains("ps_"), "the session is forgotten: {file}");
    cli.run(&["logs", "--app", "shop"], "").refused(
        2,
        &["not logged in", "picloud login"],
        "logs after logout",
    );
}

/// A wrong password, a disabled account, too many failures and an unreachable server each get
/// a sentence of their own, and no profile is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refusals_say_what_went_wrong() {
    let db = Database::fresh(Backend::Sqlite).expect("SQLite needs no set-up");
    let server = Process::serve(&db, &[("PICLOUD_LOGIN_MAX_FAILURES", "1")]);
    let admin = Admin::login(&server.admin_base, ADMIN_PASSWORD).await;
    let (status, carol) = admin
        .post(
            "/api/v1/admin/users",
            json!({"username": "carol", "password": "carols-password"}),
        )
        .await;
    assert_eq!(status, 201, "create carol: {carol}");
    let (status, body) = admin
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/admin/users/{}", carol["id"].as_str().expect("id")),
            Some(json!({"disabled": true})),
        )
        .await
        .parts();
    assert_eq!(status, 200, "disable carol: {body}");
    let cli = Cli::new();
    let url = server.admin_base.as_str();

    cli.run(
        &["login", "--url", url, "--username", "carol"],
        "carols-password\n",
    )
    .refused(1, &["'carol' is disabled"], "a disabled account");
    cli.run(&["login", "--url", url], "not the password\n")
        .refused(
            1,
            &["wrong username or password for 'admin'", url],
            "a wrong password",
        );
    cli.run(&["login", "--url", url], "not the password\n")
        .refused(
            1,
            &["too many failed logins", "try again in"],
            "past PICLOUD_LOGIN_MAX_FAILURES",
        );
    let nowhere = format!("http://{}", free_address());
    cli.run(&["login", "--url", &nowhere], "whatever\n")
        .refused(
            1,
            &[&nowhere, "not reachable"],
            "a server that is not there",
        );
    assert!(
        !cli.config_dir().join("profiles.json").exists(),
        "no profile is written for a failed login"
    );
}

/// An address nothing listens on, below Linux's range of ephemeral ports (32768 on): a server
/// restarted on it must find it free, and a port in that range may meanwhile become a client's
/// own end — the follower's, whose retries against a port with no listener can even connect it
/// to itself (a TCP self-connect), which made the restart fail with "Address already in use".
fn free_address() -> std::net::SocketAddr {
    // Apart for each process and each call, so two callers are not handed one port.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = std::process::id()
        .wrapping_mul(7_919)
        .wrapping_add(call.wrapping_mul(101))
        % 10_000;
    (0..10_000u32)
        .map(|offset| u16::try_from(20_000 + (start + offset) % 10_000).expect("a port"))
        .find_map(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port))
                .and_then(|listener| listener.local_addr())
                .ok()
        })
        .expect("a free port below the ephemeral range")
}

/// `--token` takes an API key as well as a session; an app or script that does not exist, or
/// that the credential may not read, is named in the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_takes_a_token_and_names_what_it_cannot_find() {
    let (_db, server, admin, _app_id) = shop(&[]).await;
    let (status, key) = admin
        .post(
            "/api/v1/admin/api-keys",
            json!({"name": "ci", "scopes": ["app:read"]}),
        )
        .await;
    assert_eq!(status, 201, "create a key: {key}");
    let key = key["secret"].as_str().expect("the key").to_owned();
    assert!(key.starts_with("pk_"), "an API key: {key}");
    let cli = Cli::new();
    let url = server.admin_base.as_str();

    let logs = cli.run(
        &["logs", "--url", url, "--token", &key, "--app", "shop"],
        "",
    );
    assert_eq!(logs.code, Some(0), "an API key reads the records\n{logs}");
    assert_eq!(headers(&logs.stdout).len(), 2, "both records\n{logs}");

    cli.run(
        &["logs", "--url", url, "--token", &key, "--app", "shopp"],
        "",
    )
    .refused(
        1,
        &["no app 'shopp'", "did you mean 'shop'?"],
        "an unknown slug",
    );
    cli.run(
        &[
            "logs",
            "--url",
            url,
            "--token",
            &admin.token,
            "--app",
            "shop",
            "--script",
            "ordrs",
        ],
        "",
    )
    .refused(
        1,
        &["'shop' has no script 'ordrs'", "did you mean 'orders'?"],
        "an unknown script",
    );

    let (status, body) = admin
        .post(
            "/api/v1/admin/users",
            json!({"username": "bob", "password": "bobs-password-1"}),
        )
        .await;
    assert_eq!(status, 201, "create bob: {body}");
    let bob = sign_in(&admin.http, url, "bob", "bobs-password-1").await;
    cli.run(
        &["logs", "--url", url, "--token", &bob, "--app", "shop"],
        "",
    )
    .refused(1, &["no app 'shop'"], "someone who may not read the app");
    cli.run(
        &[
            "logs",
            "--url",
            url,
            "--token",
            "ps_not-a-session",
            "--app",
            "shop",
        ],
        "",
    )
    .refused(
        1,
        &["refused the credential"],
        "a token the server does not know",
    );
}

/// `picloud logs --follow` running, its stdout read line by line; killed when dropped.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl Follower {
    fn start(cli: &Cli, admin: &Admin) -> Self {
        let mut child = cli
            .command(&[
                "logs",
                "--url",
                &admin.base,
                "--token",
                &admin.token,
                "--app",
                "shop",
                "--follow",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn picloud logs --follow");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to 15 s for a line with `wanted`.
    fn wait_for(&mut self, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let found = line.contains(wanted);
                self.seen.push(line);
                if found {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "logs --follow ended ({status}) before '{wanted}'; stderr: {}; stdout: {:#?}",
                    self.stderr(),
                    self.seen
                );
            }
        }
        panic!("no line with '{wanted}' within 15 s: {:#?}", self.seen);
    }

    /// How many lines so far contain `text`.
    fn count(&mut self, text: &str) -> usize {
        self.seen.extend(self.lines.try_iter());
        self.seen.iter().filter(|l| l.contains(text)).count()
    }

    /// Waits up to 15 s for the command to end by itself.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("logs --follow did not end within 15 s: {:#?}", self.seen);
    }

    /// What it wrote on stderr (once it has ended).
    fn stderr(&mut self) -> String {
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(
            self.child.stderr.as_mut().expect("stderr is piped"),
            &mut stderr,
        );
        stderr
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--follow` prints the newest records, then a record of a request made after it started, and
/// a record that both the list and the live tail bring only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_records_of_requests_made_after_it_started() {
    let (_db, server, admin, _app_id) = shop(&[]).await;
    let mut follower = Follower::start(&Cli::new(), &admin);
    follower.wait_for("GET /boom");

    let (status, body) = get_json(&format!("{}/shop/orders/18", server.base)).await;
    assert_eq!(status, 200, "the orders route answers: {body}");
    follower.wait_for("GET /orders/18");
    assert_eq!(
        follower.count("GET /orders/17"),
        1,
        "the older record is printed once: {:#?}",
        follower.seen
    );
}

/// A server that dies mid-stream is reconnected to once it is back, and what ran there is
/// printed; a server that ends the tail itself (at shutdown) ends `--follow`, exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_reconnects_to_a_server_that_comes_back_and_ends_with_its_tail() {
    let admin_addr = free_address().to_string();
    let env = [("PICLOUD_ADMIN_ADDR", admin_addr.as_str())];
    let (db, mut server, admin, _app_id) = shop(&env).await;
    let mut follower = Follower::start(&Cli::new(), &admin);
    follower.wait_for("GET /boom");

    server.kill();
    let server = Process::serve(&db, &env);
    let (status, body) = get_json(&format!("{}/shop/orders/19", server.base)).await;
    assert_eq!(status, 200, "the restarted server answers: {body}");
    follower.wait_for("GET /orders/19");

    assert!(server.stop().success(), "SIGTERM exits cleanly");
    assert_eq!(
        follower.exit_code(),
        Some(0),
        "the tail the server ended ends --follow; stderr: {}",
        follower.stderr()
    );
    assert_eq!(
        follower.count("GET /boom"),
        1,
        "what was printed before the reconnection is not printed again: {:#?}",
        follower.seen
    );
}
