//! The command line. Every setting is a flag and a `PICLOUD_*` variable (the flag wins); clap
//! checks each value at start-up, and [`explain`] names the variable when a bad value came from
//! the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use picloud_core::records::ExecutionSource;
use picloud_core::{HeaderNames, InputError, Limits};
use picloud_orchestrator::{
    CommitConfig, DispatchConfig, JobConfig, PasswordPolicy, PlatformConfig, RedactedHeaders,
    RetentionConfig,
};
use picloud_store::{AppQuotas, StoreConfig};
use reqwest::Url;

#[derive(Debug, Parser)]
#[command(
    name = "picloud",
    version,
    about = "A self-hosted serverless platform: Rhai scripts behind HTTP routes, in one binary.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format: `human` for people, `json` for log collectors.
    #[arg(long, env = "PICLOUD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax, e.g. `info` or `picloud=debug,sqlx=warn`.
    #[arg(long, env = "PICLOUD_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Threads of the async runtime (HTTP, the dispatcher, quick scripts run inline). Default:
    /// one less than the cores, at least one: the executor threads and SQLite's connection
    /// threads work beside them.
    #[arg(long, env = "PICLOUD_ASYNC_THREADS", global = true, value_parser = in_range(1, 1024))]
    pub async_threads: Option<usize>,
}

impl Cli {
    /// The async runtime's threads: as set, or one less than the cores (at least one).
    pub fn async_threads(&self) -> usize {
        self.async_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |cores| cores.get().saturating_sub(1))
                .max(1)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: public routes, the admin API, health and metrics.
    Serve(Box<ServeArgs>),
    /// Run a remote executor that `picloud serve` calls through PICLOUD_EXECUTOR_URL.
    Executor(ExecutorArgs),
    /// Apply pending database migrations, then exit.
    Migrate(DatabaseArgs),
    /// Manage users directly in the database (for automation, and for a locked-out admin).
    User(UserArgs),
    /// Sign in to a server and keep the session in a profile, for `picloud logs`.
    Login(LoginArgs),
    /// End a profile's session on the server and forget it.
    Logout(ProfileArgs),
    /// Show an app's execution records, oldest first; `--follow` streams new ones.
    Logs(Box<LogsArgs>),
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub action: UserAction,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub password_policy: PasswordPolicyArgs,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user. The password comes from stdin with --password-stdin, else from
    /// PICLOUD_NEW_PASSWORD, else a random one is generated and printed once.
    Create {
        username: String,
        /// Make the user an instance admin.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a user's password (ends its sessions); the password comes as for `create`.
    Passwd {
        username: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List the users, one per line: id, username, flags.
    List,
}

/// The admin listener the client commands talk to when neither a flag nor a profile names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081";

/// Where the client commands keep their sessions: named profiles in one file, readable by its
/// owner only.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The profile: which session of `picloud login` to use, keep or end.
    #[arg(long, env = "PICLOUD_PROFILE", default_value = "default")]
    pub profile: String,

    /// The directory of `profiles.json`. Default: `$XDG_CONFIG_HOME/picloud`, else
    /// `~/.config/picloud`.
    #[arg(long, env = "PICLOUD_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's admin listener.
    #[arg(long, env = "PICLOUD_URL", default_value = DEFAULT_URL, value_parser = server_url)]
    pub url: Url,

    /// The user to sign in as.
    #[arg(long, env = "PICLOUD_USERNAME", default_value = "admin")]
    pub username: String,

    /// The password (else it is asked at the terminal, or read from the first line of stdin).
    #[arg(
        long = "password-env-value",
        env = "PICLOUD_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub password: Option<String>,

    #[command(flatten)]
    pub profile: ProfileArgs,
}

/// Which server a client command talks to, with which credential: the flags, else the profile.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's admin listener. Default: the profile's, else `http://127.0.0.1:8081`.
    #[arg(long, env = "PICLOUD_URL", value_parser = server_url)]
    pub url: Option<Url>,

    /// A session token (`ps_…`) or an API key (`pk_…`). Default: the profile's session, when
    /// the profile is for the same URL.
    #[arg(long, env = "PICLOUD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[command(flatten)]
    pub profile: ProfileArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The app, by its slug.
    #[arg(long)]
    pub app: String,

    /// After the newest records, print new ones as executions finish, until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,

    /// Only the records of this script (by name).
    #[arg(long)]
    pub script: Option<String>,

    /// Only failed executions (every outcome but `ok`).
    #[arg(long)]
    pub errors: bool,

    /// Only executions started by this: `sync`, `async`, `kv`, `docs`, `dead_letter`, `test`.
    #[arg(long, value_parser = execution_source)]
    pub source: Option<ExecutionSource>,

    /// How many of the newest records to print first.
    #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,

    /// The password (prefer --password-stdin: a variable can leak through the process table).
    #[arg(
        long = "password-env-value",
        env = "PICLOUD_NEW_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub password: Option<String>,
}

/// The rule every new password follows; shared by `serve` (the first admin, the admin API) and
/// `user` (create, passwd).
#[derive(Debug, Args)]
pub struct PasswordPolicyArgs {
    /// The fewest characters a new password may have. Passwords set before keep logging in.
    #[arg(long, env = "PICLOUD_MIN_PASSWORD_LENGTH",
          default_value_t = PasswordPolicy::DEFAULT_MIN_CHARS,
          value_parser = in_range(*PasswordPolicy::MIN_CHARS_RANGE.start(), *PasswordPolicy::MIN_CHARS_RANGE.end()))]
    pub min_password_length: usize,
}

impl PasswordPolicyArgs {
    pub fn policy(&self) -> Result<PasswordPolicy, InputError> {
        PasswordPolicy::new(self.min_password_length)
    }
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Where the embedded SQLite database lives (`<dir>/picloud.db`) when no database URL is set.
    #[arg(long, env = "PICLOUD_DATA_DIR", default_value = "./picloud-data")]
    pub data_dir: PathBuf,

    /// `postgres://user:pass@host/db` selects PostgreSQL; `sqlite://path` names an SQLite file.
    #[arg(long, env = "PICLOUD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Database connections in the pool.
    #[arg(long, env = "PICLOUD_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
}

impl DatabaseArgs {
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            max_connections: self.db_max_connections,
            ..StoreConfig::default()
        }
    }
}

/// What each app may hold; shared by `serve` and `executor`, which both write scripts' data.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// Bytes of KV data one app may hold: each entry counts its collection name, key and value
    /// as JSON, plus 64. A write that would pass it is refused; deletes and shrinking writes
    /// always pass. There is no "unlimited": a large value (2^50, 1 PiB, at most) serves.
    #[arg(long, env = "PICLOUD_MAX_APP_STORED_BYTES",
          default_value_t = AppQuotas::default().stored_bytes,
          value_parser = clap::value_parser!(u64).range(1024..=1 << 50))]
    pub max_app_stored_bytes: u64,

    /// Async jobs (requests, trigger events, replays) one app may have queued or running; past
    /// it, async requests get 429 and writes that would fire triggers are refused.
    #[arg(long, env = "PICLOUD_MAX_QUEUED_JOBS_PER_APP",
          default_value_t = AppQuotas::default().queued_jobs,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_queued_jobs_per_app: u64,
}

impl QuotaArgs {
    /// `database`'s store, held to these quotas.
    pub fn store_config(&self, database: &DatabaseArgs) -> StoreConfig {
        StoreConfig {
            quotas: AppQuotas {
                stored_bytes: self.max_app_stored_bytes,
                queued_jobs: self.max_queued_jobs_per_app,
            },
            ..database.store_config()
        }
    }
}

/// The sandbox's bounds and the executor's own resources; shared by `serve` and `executor`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Rhai operations one execution may perform.
    #[arg(long, env = "PICLOUD_MAX_OPERATIONS", default_value_t = Limits::default().max_operations,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_operations: u64,

    /// Nested function calls (recursion depth).
    #[arg(long, env = "PICLOUD_MAX_CALL_LEVELS", default_value_t = Limits::default().max_call_levels,
          value_parser = in_range(1, 256))]
    pub max_call_levels: usize,

    /// Expression nesting depth, at the top level and inside functions.
    #[arg(long, env = "PICLOUD_MAX_EXPR_DEPTH", default_value_t = Limits::default().max_expr_depth,
          value_parser = in_range(8, 256))]
    pub max_expr_depth: usize,

    /// Bytes of one string built by one call (`pad`, `replace`, regex replacements…).
    #[arg(long, env = "PICLOUD_MAX_STRING_SIZE", default_value_t = Limits::default().max_string_size,
          value_parser = in_range(1024, 1 << 30))]
    pub max_string_size: usize,

    /// Items of one array built by one call (`pad`, `split`, `to_chars`, `blob`…).
    #[arg(long, env = "PICLOUD_MAX_ARRAY_SIZE", default_value_t = Limits::default().max_array_size,
          value_parser = in_range(16, 100_000_000))]
    pub max_array_size: usize,

    /// Bytes of log one execution keeps; past it, its lines are dropped and counted.
    #[arg(long, env = "PICLOUD_MAX_LOG_BYTES", default_value_t = Limits::default().max_log_bytes,
          value_parser = in_range(1024, 1 << 30))]
    pub max_log_bytes: usize,

    /// Data writes (`kv.set`, `kv.delete`, `docs.create`, `docs.update`, `docs.delete`) one
    /// execution may make.
    #[arg(long, env = "PICLOUD_MAX_WRITES", default_value_t = Limits::default().max_writes,
          value_parser = in_range(1, 10_000_000))]
    pub max_writes: usize,

    /// Bytes of memory one execution may hold at once (also the largest response body).
    #[arg(long, env = "PICLOUD_MAX_MEMORY_BYTES", default_value_t = Limits::default().max_memory_bytes,
          value_parser = in_range(1 << 20, 1 << 34))]
    pub max_memory_bytes: usize,

    /// Bytes of one document's data as JSON text (at most 16 MiB).
    #[arg(long, env = "PICLOUD_MAX_DOCUMENT_BYTES",
          default_value_t = Limits::default().max_document_bytes,
          value_parser = in_range(1024, picloud_core::docs::DOC_MAX_BYTES))]
    pub max_document_bytes: usize,

    /// Wall-clock time one execution may take, in milliseconds.
    #[arg(long, env = "PICLOUD_EXECUTION_TIMEOUT_MS", default_value_t = Limits::default().timeout_ms,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub execution_timeout_ms: u64,

    /// Compiled scripts kept in the AST cache.
    #[arg(long, env = "PICLOUD_SCRIPT_CACHE_SIZE", default_value_t = 256,
          value_parser = in_range(1, 1_000_000))]
    pub script_cache_size: usize,

    /// Compiled modules kept for imports (by app and name; a saved module replaces its entry).
    #[arg(long, env = "PICLOUD_MODULE_CACHE_SIZE", default_value_t = 512,
          value_parser = in_range(1, 1_000_000))]
    pub module_cache_size: usize,

    /// Executor threads (each runs one script at a time). Default: four per core, at least 4 and
    /// at most 64 (a script's time limit is wall-clock time, which more threads per core share).
    #[arg(long, env = "PICLOUD_EXECUTOR_THREADS", default_value_t = picloud_executor::default_threads(),
          value_parser = in_range(1, 4096))]
    pub executor_threads: usize,
}

impl Command {
    /// The script limits of a command that runs scripts in this process.
    pub fn sandbox_limits(&self) -> Option<Limits> {
        match self {
            Command::Serve(args) => Some(args.sandbox.limits()),
            Command::Executor(args) => Some(args.sandbox.limits()),
            Command::Migrate(_)
            | Command::User(_)
            | Command::Login(_)
            | Command::Logout(_)
            | Command::Logs(_) => None,
        }
    }

    /// Whether the command is a client of a running server: its failures are sentences for a
    /// person at a terminal, not log lines.
    pub fn is_client(&self) -> bool {
        matches!(
            self,
            Command::Login(_) | Command::Logout(_) | Command::Logs(_)
        )
    }
}

impl SandboxArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_operations: self.max_operations,
            max_call_levels: self.max_call_levels,
            max_expr_depth: self.max_expr_depth,
            max_function_expr_depth: self.max_expr_depth,
            max_string_size: self.max_string_size,
            max_array_size: self.max_array_size,
            timeout_ms: self.execution_timeout_ms,
            max_log_bytes: self.max_log_bytes,
            max_writes: self.max_writes,
            max_memory_bytes: self.max_memory_bytes,
            max_document_bytes: self.max_document_bytes,
            ..Limits::default()
        }
    }

    pub fn executor_config(&self) -> picloud_executor::ExecutorConfig {
        picloud_executor::ExecutorConfig {
            limits: self.limits(),
            script_cache_size: self.script_cache_size,
            module_cache_size: self.module_cache_size,
            threads: self.executor_threads,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the public listener: the apps' routes (`0.0.0.0:8080` to accept other
    /// machines; port 0 picks a free port).
    #[arg(long, env = "PICLOUD_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Address of the admin listener: the admin API, the dashboard and `/metrics`, on an origin
    /// no tenant's page shares. `off` serves the admin surface only to `PICLOUD_ADMIN_HOST`.
    #[arg(long, env = "PICLOUD_ADMIN_ADDR", default_value = "127.0.0.1:8081", value_parser = admin_addr)]
    pub admin_addr: AdminAddr,

    /// A host name (e.g. `admin.example.com`) whose requests to the public listener reach the
    /// admin surface instead of the apps: one port behind a proxy, two origins.
    #[arg(long, env = "PICLOUD_ADMIN_HOST", value_parser = host_name)]
    pub admin_host: Option<String>,

    /// Serve each app on a host of its own, `<slug>.<domain>` (e.g. `apps.example.com`), so
    /// that one app's pages cannot read another's cookies. Path routing (`/<slug>/…`) is off
    /// then.
    #[arg(long, env = "PICLOUD_APPS_DOMAIN", value_parser = host_name)]
    pub apps_domain: Option<String>,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub quotas: QuotaArgs,

    #[command(flatten)]
    pub sandbox: SandboxArgs,

    #[command(flatten)]
    pub jobs: JobArgs,

    #[command(flatten)]
    pub dispatch: DispatchArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// How often the route index looks for changes made through other nodes, in milliseconds.
    #[arg(long, env = "PICLOUD_ROUTE_REFRESH_MS", default_value_t = PlatformConfig::default().route_refresh_ms,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub route_refresh_ms: u64,

    /// The instance admin's password, used once when the database is empty (and then it must
    /// pass the password policy). When unset, a random password is generated and printed once.
    #[arg(long, env = "PICLOUD_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    #[command(flatten)]
    pub password_policy: PasswordPolicyArgs,

    /// Run scripts in a `picloud executor` at this URL instead of in this process.
    #[arg(long, env = "PICLOUD_EXECUTOR_URL")]
    pub executor_url: Option<String>,

    /// The bearer token the remote executor expects.
    #[arg(long, env = "PICLOUD_EXECUTOR_TOKEN", hide_env_values = true)]
    pub executor_token: Option<String>,

    /// Executions that may run at once; more wait at the gate. Default: PICLOUD_EXECUTOR_THREADS
    /// (with PICLOUD_EXECUTOR_URL, set it to the remote executor's threads).
    #[arg(long, env = "PICLOUD_MAX_CONCURRENT_EXECUTIONS",
          value_parser = in_range(1, 100_000))]
    pub max_concurrent_executions: Option<usize>,

    /// The percentage of the concurrent executions one app may hold at once (at least one): an
    /// app's requests beyond it wait, then get 503, while other apps still get in.
    #[arg(long, env = "PICLOUD_GATE_APP_SHARE", default_value_t = picloud_orchestrator::DEFAULT_GATE_APP_SHARE_PERCENT,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub gate_app_share: u8,

    /// How long a request waits at a full gate before it gets 503, in milliseconds.
    #[arg(long, env = "PICLOUD_GATE_WAIT_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub gate_wait_ms: u64,

    /// Largest request body accepted, in bytes (larger gets 413).
    #[arg(long, env = "PICLOUD_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = in_range(1024, 1 << 30))]
    pub max_body_bytes: usize,

    /// How long a client has to send a request's head, in milliseconds; also how long a
    /// kept-alive connection may sit idle between requests.
    #[arg(long, env = "PICLOUD_HTTP_HEADER_TIMEOUT_MS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub http_header_timeout_ms: u64,

    /// How long a request body may take whatever its rate, in milliseconds.
    #[arg(long, env = "PICLOUD_HTTP_BODY_GRACE_MS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub http_body_grace_ms: u64,

    /// Past the grace, the average rate (bytes per second) below which a request body is cut off
    /// with 408.
    #[arg(long, env = "PICLOUD_HTTP_BODY_MIN_RATE", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub http_body_min_rate: u64,

    /// How long a login session lasts, in hours.
    #[arg(long, env = "PICLOUD_SESSION_TTL_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub session_ttl_hours: u64,

    /// How long SIGTERM / Ctrl-C waits for in-flight requests, and for the async jobs this node
    /// runs, before exiting, in seconds.
    #[arg(long, env = "PICLOUD_SHUTDOWN_GRACE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,

    /// Failed logins of one account (four times as many from one address) within the window
    /// before further attempts are refused with 429 for a while.
    #[arg(long, env = "PICLOUD_LOGIN_MAX_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub login_max_failures: u32,

    /// How long failed logins are remembered, in seconds.
    #[arg(long, env = "PICLOUD_LOGIN_WINDOW_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_window_secs: u64,

    /// The first delay after the threshold, in milliseconds; it doubles with each further
    /// failure, up to the window.
    #[arg(long, env = "PICLOUD_LOGIN_DELAY_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub login_delay_ms: u64,

    /// Request headers that async jobs do not store, comma-separated, in addition to
    /// authorization, proxy-authorization, cookie and x-api-key (a route may keep some with its
    /// `keep_headers`).
    #[arg(long, env = "PICLOUD_REDACTED_HEADERS", default_value = "",
          value_parser = header_list)]
    pub redacted_headers: HeaderNames,

    /// Whether a sync request that succeeded leaves an execution record (failures always do, as
    /// do async jobs, trigger handlers and test runs). `false` spares the most
    /// latency-sensitive routes the record's write.
    #[arg(long, env = "PICLOUD_RECORD_SYNC_SUCCESSES", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub record_sync_successes: bool,

    /// Bytes of log an execution record stores (its first lines, then a line saying how many
    /// were left out): with the per-app count, what one app's records can take on disk. The
    /// live tail shows the whole log (`PICLOUD_MAX_LOG_BYTES`).
    #[arg(long, env = "PICLOUD_RECORD_MAX_LOG_BYTES",
          default_value_t = picloud_orchestrator::runner::RecordPolicy::default().max_log_bytes,
          value_parser = in_range(1024, 1 << 30))]
    pub record_max_log_bytes: usize,
}

/// The admin listener's address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAddr {
    At(SocketAddr),
    Off,
}

fn admin_addr(value: &str) -> Result<AdminAddr, String> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(AdminAddr::Off);
    }
    value
        .trim()
        .parse()
        .map(AdminAddr::At)
        .map_err(|_| format!("'{value}' is neither an address like 127.0.0.1:8081 nor 'off'"))
}

/// A DNS host name, lower-cased: labels of letters, digits and `-`, no port, no scheme.
fn host_name(value: &str) -> Result<String, String> {
    let name = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "'{value}' is not a host name: give only the name, like admin.example.com, without a scheme or a port"
        ))
    }
}

impl ServeArgs {
    /// Executions that may run at once: as set, or as many as there are executor threads.
    pub fn gate_size(&self) -> usize {
        self.max_concurrent_executions
            .unwrap_or(self.sandbox.executor_threads)
    }

    /// Where the admin surface and the apps are served; refuses settings that would serve the
    /// admin surface nowhere, or on the apps' own listener.
    pub fn origins(&self) -> anyhow::Result<picloud_server::Origins> {
        match self.admin_addr {
            AdminAddr::Off if self.admin_host.is_none() => anyhow::bail!(
                "PICLOUD_ADMIN_ADDR is off and PICLOUD_ADMIN_HOST is not set: the admin API needs an origin of its own; set one of them"
            ),
            AdminAddr::At(admin) if admin == self.addr && admin.port() != 0 => anyhow::bail!(
                "PICLOUD_ADMIN_ADDR and PICLOUD_ADDR are both {admin}: the admin API and the apps must not share an origin; give the admin listener another port"
            ),
            _ => {}
        }
        Ok(picloud_server::Origins {
            admin_host: self.admin_host.clone(),
            apps_domain: self.apps_domain.clone(),
        })
    }

    pub fn redacted_headers(&self) -> RedactedHeaders {
        RedactedHeaders::with_extra(self.redacted_headers.clone())
    }

    pub fn http_timeouts(&self) -> picloud_server::HttpTimeouts {
        picloud_server::HttpTimeouts {
            header: std::time::Duration::from_millis(self.http_header_timeout_ms),
            body_grace: std::time::Duration::from_millis(self.http_body_grace_ms),
            body_min_bytes_per_sec: self.http_body_min_rate,
        }
    }

    pub fn login_throttle(&self) -> picloud_orchestrator::ThrottleConfig {
        picloud_orchestrator::ThrottleConfig {
            max_failures: self.login_max_failures,
            window: std::time::Duration::from_secs(self.login_window_secs),
            base_delay: std::time::Duration::from_millis(self.login_delay_ms),
            max_delay: std::time::Duration::from_secs(self.login_window_secs),
        }
    }
}

/// Async jobs' retries and the retention of what failed: the changelog's
/// `TriggerConfig::from_env`, as flags.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// A triggered run deeper than this is skipped and logged (a trigger loop), not retried.
    #[arg(long, env = "PICLOUD_MAX_TRIGGER_DEPTH", default_value_t = JobConfig::default().max_trigger_depth,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub max_trigger_depth: u32,

    /// Attempts of an async job or trigger event before it is dead-lettered.
    #[arg(long, env = "PICLOUD_TRIGGER_RETRY_MAX_ATTEMPTS", default_value_t = JobConfig::default().retry_max_attempts,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub trigger_retry_max_attempts: u32,

    /// The delay before the second attempt, in milliseconds; it doubles with each attempt.
    #[arg(long, env = "PICLOUD_TRIGGER_RETRY_BASE_MS", default_value_t = JobConfig::default().retry_base_ms,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub trigger_retry_base_ms: u64,

    /// The longest delay between attempts, in milliseconds.
    #[arg(long, env = "PICLOUD_TRIGGER_RETRY_MAX_MS", default_value_t = JobConfig::default().retry_max_ms,
          value_parser = clap::value_parser!(u64).range(1..=604_800_000))]
    pub trigger_retry_max_ms: u64,

    /// Days a dead letter is kept before the sweeper deletes it.
    #[arg(long, env = "PICLOUD_DEAD_LETTER_RETENTION_DAYS", default_value_t = RetentionConfig::default().dead_letter_days,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub dead_letter_retention_days: u32,

    /// Days an abandoned-execution record is kept.
    #[arg(long, env = "PICLOUD_ABANDONED_EXECUTIONS_RETENTION_DAYS", default_value_t = RetentionConfig::default().abandoned_execution_days,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub abandoned_executions_retention_days: u32,

    /// Days an execution record (its outcome and log) is kept.
    #[arg(long, env = "PICLOUD_EXECUTION_RETENTION_DAYS", default_value_t = RetentionConfig::default().execution_days,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub execution_retention_days: u32,

    /// The most execution records kept per app: its newest.
    #[arg(long, env = "PICLOUD_EXECUTION_RETENTION_PER_APP", default_value_t = RetentionConfig::default().executions_per_app,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub execution_retention_per_app: u64,

    /// How often the retention sweepers run, in seconds.
    #[arg(long, env = "PICLOUD_SWEEP_INTERVAL_SECS", default_value_t = RetentionConfig::default().sweep_interval_secs,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub sweep_interval_secs: u64,

    /// Trigger jobs one execution's writes may fire (a trigger whose handler writes its own
    /// collection fans out; the depth cap bounds only the chain's length). A run whose commit
    /// would fire more writes nothing and fails with `limit_exceeded`.
    #[arg(long, env = "PICLOUD_MAX_TRIGGER_JOBS_PER_EXECUTION",
          default_value_t = CommitConfig::default().max_trigger_jobs,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_trigger_jobs_per_execution: u32,

    /// Runs of one execution whose commit keeps conflicting (others changed what it read)
    /// before it fails with `409 conflict`, or an async job's attempt fails.
    #[arg(long, env = "PICLOUD_CONFLICT_MAX_RUNS", default_value_t = CommitConfig::default().max_runs,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub conflict_max_runs: u32,
}

impl JobArgs {
    pub fn jobs(&self) -> JobConfig {
        JobConfig {
            max_trigger_depth: self.max_trigger_depth,
            retry_max_attempts: self.trigger_retry_max_attempts,
            retry_base_ms: self.trigger_retry_base_ms,
            retry_max_ms: self.trigger_retry_max_ms.max(self.trigger_retry_base_ms),
        }
    }

    pub fn commits(&self) -> CommitConfig {
        CommitConfig {
            max_runs: self.conflict_max_runs,
            max_trigger_jobs: self.max_trigger_jobs_per_execution,
        }
    }

    pub fn retention(&self) -> RetentionConfig {
        RetentionConfig {
            dead_letter_days: self.dead_letter_retention_days,
            abandoned_execution_days: self.abandoned_executions_retention_days,
            execution_days: self.execution_retention_days,
            executions_per_app: self.execution_retention_per_app,
            sweep_interval_secs: self.sweep_interval_secs,
        }
    }
}

/// How the dispatcher works the outbox.
#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// How long a claimed job is held before another node may take it, in milliseconds (a
    /// heartbeat extends it while the job runs).
    #[arg(long, env = "PICLOUD_OUTBOX_LEASE_MS", default_value_t = DispatchConfig::default().lease_ms,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub outbox_lease_ms: u64,

    /// How often due jobs are looked for without a wake-up, in milliseconds (jobs accepted by
    /// other nodes, retries coming due).
    #[arg(long, env = "PICLOUD_OUTBOX_POLL_MS", default_value_t = DispatchConfig::default().poll_ms,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub outbox_poll_ms: u64,

    /// How long a sync request waits for its script before 504, in milliseconds.
    #[arg(long, env = "PICLOUD_SYNC_WAIT_MS", default_value_t = DispatchConfig::default().sync_wait_ms,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub sync_wait_ms: u64,
}

impl DispatchArgs {
    /// The dispatcher's settings; at shutdown it gives running jobs `shutdown_grace_secs`.
    pub fn config(&self, shutdown_grace_secs: u64) -> DispatchConfig {
        DispatchConfig {
            lease_ms: self.outbox_lease_ms,
            poll_ms: self.outbox_poll_ms,
            sync_wait_ms: self.sync_wait_ms,
            shutdown_grace_ms: shutdown_grace_secs.saturating_mul(1_000),
        }
    }
}

/// What `/metrics` shows, and to whom.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Apps whose executions get an `app` label of their own (the first to run); the rest count
    /// under `app="(other)"`. Also the most apps the dead-letter gauge names.
    #[arg(long, env = "PICLOUD_METRICS_MAX_APPS",
          default_value_t = picloud_orchestrator::MetricsConfig::default().max_apps,
          value_parser = in_range(0, 10_000))]
    pub metrics_max_apps: usize,

    /// (app, script) pairs whose executions get a `script` label of their own (the first to
    /// run); the rest count under their app with `script="(other)"`.
    #[arg(long, env = "PICLOUD_METRICS_MAX_SCRIPTS",
          default_value_t = picloud_orchestrator::MetricsConfig::default().max_scripts,
          value_parser = in_range(0, 100_000))]
    pub metrics_max_scripts: usize,

    /// A bearer token `/metrics` asks for; unset, it answers anyone who reaches the admin
    /// surface.
    #[arg(long, env = "PICLOUD_METRICS_TOKEN", hide_env_values = true, value_parser = metrics_token)]
    pub metrics_token: Option<String>,
}

impl MetricsArgs {
    pub fn config(&self) -> picloud_orchestrator::MetricsConfig {
        picloud_orchestrator::MetricsConfig {
            max_apps: self.metrics_max_apps,
            max_scripts: self.metrics_max_scripts,
        }
    }

    pub fn token(&self) -> Option<picloud_server::MetricsToken> {
        self.metrics_token
            .as_deref()
            .map(picloud_server::MetricsToken::new)
    }
}

/// A token sent in an `Authorization` header: printable ASCII without spaces.
fn metrics_token(value: &str) -> Result<String, String> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value.to_owned())
    } else {
        Err(
            "a bearer token travels in a header: use printable ASCII characters without spaces"
                .to_owned(),
        )
    }
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// Address to listen on. Keep it private: anyone who reaches it can run code.
    #[arg(long, env = "PICLOUD_EXECUTOR_ADDR", default_value = "127.0.0.1:8090")]
    pub addr: SocketAddr,

    /// The database the scripts' data calls (KV, dead letters) reach: the same one the
    /// serving nodes use.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The quotas the scripts' writes are held to: set them as on the serving nodes.
    #[command(flatten)]
    pub quotas: QuotaArgs,

    /// A bearer token callers must present (recommended whenever the address is not loopback).
    #[arg(long, env = "PICLOUD_EXECUTOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// How long SIGTERM / Ctrl-C waits for in-flight executions before exiting, in seconds.
    #[arg(long, env = "PICLOUD_SHUTDOWN_GRACE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,
}

/// A comma-separated list of header names.
fn header_list(value: &str) -> Result<HeaderNames, String> {
    HeaderNames::parse_list("redacted_headers", value).map_err(|err| err.message)
}

/// The URL of a server's admin listener: plain HTTP (this build has no TLS client).
fn server_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value)
        .map_err(|err| format!("'{value}' is not a URL ({err}); e.g. http://127.0.0.1:8081"))?;
    match url.scheme() {
        "http" if url.host().is_some() => Ok(url),
        "http" => Err(format!("'{value}' names no host")),
        "https" => Err(format!(
            "'{value}': this build speaks plain HTTP only; reach the admin listener over http \
             (on its private port, or through an SSH tunnel)"
        )),
        other => Err(format!("'{value}': '{other}' is not http")),
    }
}

fn execution_source(value: &str) -> Result<ExecutionSource, String> {
    ExecutionSource::parse(value).ok_or_else(|| {
        let sources: Vec<&str> = ExecutionSource::ALL.iter().map(|s| s.as_str()).collect();
        format!("'{value}' is not a source: use {}", sources.join(", "))
    })
}

/// A `usize` parser that accepts `min..=max`.
fn in_range(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |value: &str| {
        let n: usize = value
            .trim()
            .parse()
            .map_err(|_| format!("'{value}' is not a whole number"))?;
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is outside the accepted range {min}..={max}"))
        }
    }
}

/// Adds the name of the environment variable to a clap error about a bad value, when the value
/// came from that variable (clap's message names only the flag).
pub fn explain(err: clap::Error, command: &clap::Command) -> String {
    use clap::error::ContextKind;
    let rendered = err.render().to_string();
    let Some(arg) = err.get(ContextKind::InvalidArg).map(ToString::to_string) else {
        return rendered;
    };
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches("--");
    let env = all_args(command)
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    match env {
        Some(env) if std::env::var_os(&env).is_some() => {
            format!("{rendered}\n(the value came from the environment variable {env})")
        }
        _ => rendered,
    }
}

fn all_args(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    command.get_arguments().chain(
        command
            .get_subcommands()
            .flat_map(|sub| sub.get_arguments()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_need_no_configuration() {
        let cli = Cli::try_parse_from(["picloud", "serve"]).expect("serve with no flags");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(
            args.addr.to_string(),
            "127.0.0.1:8080",
            "the documented default address"
        );
        assert_eq!(
            args.sandbox.limits(),
            Limits::default(),
            "the sandbox defaults are core's"
        );
    }

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let argv = ["picloud", "serve"].iter().chain(flags).copied();
        match Cli::try_parse_from(argv).expect("valid flags").command {
            Command::Serve(args) => *args,
            _ => panic!("expected serve"),
        }
    }

    #[test]
    fn the_admin_surface_listens_on_its_own_loopback_port_by_default() {
        let args = serve_args(&[]);
        assert_eq!(
            args.admin_addr,
            AdminAddr::At("127.0.0.1:8081".parse().expect("an address")),
            "the documented default"
        );
        assert!(args.origins().is_ok(), "the defaults are a valid pair");
    }

    #[test]
    fn the_admin_surface_must_have_an_origin_of_its_own() {
        let err = serve_args(&["--admin-addr", "off"])
            .origins()
            .expect_err("no admin origin at all");
        assert!(
            err.to_string().contains("PICLOUD_ADMIN_HOST"),
            "the message says what to set: {err}"
        );
        let err = serve_args(&["--addr", "0.0.0.0:9000", "--admin-addr", "0.0.0.0:9000"])
            .origins()
            .expect_err("the apps' own listener");
        assert!(
            err.to_string().contains("another port"),
            "the message says what to do: {err}"
        );
        let origins = serve_args(&["--admin-addr", "OFF", "--admin-host", "Admin.Example.com"])
            .origins()
            .expect("a host of its own");
        assert_eq!(
            origins.admin_host.as_deref(),
            Some("admin.example.com"),
            "host names are lower-cased"
        );
    }

    #[test]
    fn host_names_are_names_only() {
        for bad in [
            "https://admin.example.com",
            "admin.example.com:8443",
            "",
            "a..b",
            "-a.com",
            "a b",
        ] {
            assert!(host_name(bad).is_err(), "'{bad}' is refused");
        }
        assert_eq!(
            host_name("Apps.Example.COM.").as_deref(),
            Ok("apps.example.com"),
            "lower-cased, without the root dot"
        );
    }

    #[test]
    fn the_async_runtime_leaves_a_core_unless_told_otherwise() {
        let cli = Cli::try_parse_from(["picloud", "serve"]).expect("serve with no flags");
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(cli.async_threads(), cores.saturating_sub(1).max(1));
        let cli = Cli::try_parse_from(["picloud", "serve", "--async-threads", "3"])
            .expect("three threads");
        assert_eq!(cli.async_threads(), 3, "as set");
        assert!(
            Cli::try_parse_from(["picloud", "serve", "--async-threads", "0"]).is_err(),
            "at least one"
        );
    }

    #[test]
    fn redacted_headers_add_to_the_defaults_and_a_bad_name_is_refused() {
        let cli = Cli::try_parse_from([
            "picloud",
            "serve",
            "--redacted-headers",
            "X-Session, x-internal-token",
        ])
        .expect("two header names");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(
            args.redacted_headers.iter().collect::<Vec<_>>(),
            vec!["x-session", "x-internal-token"],
            "lower-cased, in order"
        );
        let err = Cli::try_parse_from(["picloud", "serve", "--redacted-headers", "x-ok, not ok"])
            .expect_err("a name with a space");
        assert!(
            err.to_string().contains("not ok"),
            "the message names the bad value: {err}"
        );
    }

    #[test]
    fn the_password_minimum_is_12_unless_set_within_8_to_128() {
        let cli = Cli::try_parse_from(["picloud", "serve"]).expect("serve with no flags");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(
            args.password_policy.policy(),
            Ok(PasswordPolicy::default()),
            "the default policy"
        );
        let cli = Cli::try_parse_from(["picloud", "user", "--min-password-length", "20", "list"])
            .expect("user takes the setting too");
        let Command::User(args) = cli.command else {
            panic!("expected user")
        };
        assert_eq!(
            args.password_policy.policy().map(PasswordPolicy::min_chars),
            Ok(20),
            "as set"
        );
        let err = Cli::try_parse_from(["picloud", "serve", "--min-password-length", "7"])
            .expect_err("below 8");
        assert!(
            err.to_string().contains("8..=128"),
            "the message gives the range: {err}"
        );
    }

    #[test]
    fn the_gate_follows_the_executor_threads_which_follow_the_cores() {
        let args = serve_args(&[]);
        assert_eq!(
            args.sandbox.executor_threads,
            picloud_executor::default_threads(),
            "threads for this machine"
        );
        assert_eq!(
            args.gate_size(),
            args.sandbox.executor_threads,
            "the gate follows"
        );
        assert_eq!(
            args.gate_app_share, 75,
            "an app may hold three quarters of the gate"
        );
        assert_eq!(
            serve_args(&["--executor-threads", "6"]).gate_size(),
            6,
            "the gate follows the threads as set"
        );
        assert_eq!(
            serve_args(&[
                "--executor-threads",
                "6",
                "--max-concurrent-executions",
                "10"
            ])
            .gate_size(),
            10,
            "unless it is set itself"
        );
        for bad in ["0", "101"] {
            let err = Cli::try_parse_from(["picloud", "serve", "--gate-app-share", bad])
                .expect_err("a share outside 1..=100 %");
            assert!(
                err.to_string().contains("1..=100"),
                "the message gives the range: {err}"
            );
        }
    }

    #[test]
    fn the_client_commands_take_plain_http_urls_and_known_sources_only() {
        let cli = Cli::try_parse_from(["picloud", "logs", "--app", "shop", "--source", "kv"])
            .expect("logs needs only --app");
        let Command::Logs(args) = cli.command else {
            panic!("expected logs")
        };
        assert_eq!(args.limit, 20, "the newest 20 by default");
        assert_eq!(args.source, Some(ExecutionSource::Kv), "as set");
        for (url, says) in [
            ("https://admin.example.com", "plain HTTP only"),
            ("ftp://admin.example.com", "is not http"),
            ("admin.example.com", "is not a URL"),
        ] {
            let err = Cli::try_parse_from(["picloud", "login", "--url", url])
                .expect_err("not a plain HTTP URL");
            assert!(err.to_string().contains(says), "{url}: {err}");
        }
        let err = Cli::try_parse_from(["picloud", "logs", "--app", "a", "--source", "cron"])
            .expect_err("no such source");
        assert!(
            err.to_string().contains("dead_letter"),
            "the message lists the sources: {err}"
        );
    }

    #[test]
    fn metrics_are_guarded_by_default_and_a_token_must_fit_in_a_header() {
        let args = serve_args(&[]);
        assert_eq!(
            args.metrics.config(),
            picloud_orchestrator::MetricsConfig::default(),
            "the orchestrator's defaults"
        );
        assert!(args.metrics.token().is_none(), "no token unless set");
        let args = serve_args(&["--metrics-token", "s3cret", "--metrics-max-scripts", "0"]);
        assert_eq!(
            args.metrics.token(),
            Some(picloud_server::MetricsToken::new("s3cret")),
            "as set"
        );
        assert_eq!(args.metrics.config().max_scripts, 0, "per-app series only");
        for bad in ["", "two words"] {
            let err = Cli::try_parse_from(["picloud", "serve", "--metrics-token", bad])
                .expect_err("not a header value");
            assert!(
                err.to_string().contains("printable ASCII"),
                "the message says what a token may hold: {err}"
            );
        }
    }

    #[test]
    fn a_bad_number_is_refused_with_the_accepted_range() {
        let err = Cli::try_parse_from(["picloud", "serve", "--executor-threads", "0"])
            .expect_err("zero threads");
        assert!(
            err.to_string().contains("1..=4096"),
            "the message gives the range: {err}"
        );
    }
}
