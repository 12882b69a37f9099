//! `picloud`: the one binary.
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | the command line: every flag with its `PICLOUD_*` variable |
//! | this file | start-up and shutdown of `serve`, `executor` and `migrate`; `user` |
//! | [`session`] | `login`, `logout`: a session on a running server, kept in a profile |
//! | [`logs`] | `logs`: an app's execution records, and the live tail |
//! | [`client`] | the admin API as the client commands speak it |
//! | [`profiles`] | the profiles file of the client commands |
//! | [`sse`] | server-sent events, parsed as they arrive |

mod client;
mod config;
mod logs;
mod profiles;
mod session;
mod sse;

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use picloud_executor::RemoteExecutorClient;
use picloud_orchestrator::{Executors, PasswordPolicy, Platform, PlatformConfig, ServiceError};
use picloud_store::StoreConfig;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{
    AdminAddr, Cli, Command, DatabaseArgs, ExecutorArgs, LogFormat, PasswordArgs, ServeArgs,
    UserAction, UserArgs,
};

fn main() -> ExitCode {
    let command = Cli::command();
    let cli = match command
        .clone()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            if err.use_stderr() {
                eprintln!("{}", config::explain(err, &command));
            } else {
                // --help and --version go to stdout, as clap prints them.
                let _ = err.print();
            }
            return ExitCode::from(code);
        }
    };

    if let Err(err) = init_tracing(&cli) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().worker_threads(cli.async_threads());
    // Scripts that finish quickly without a data call run inline on the runtime's threads, which
    // then need a script's stack (reserved address space; pages are committed as touched).
    if let Some(limits) = cli.command.sandbox_limits() {
        runtime.thread_stack_size(
            RUNTIME_STACK_HEADROOM + picloud_executor::inline_stack_size(&limits),
        );
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let is_client = cli.command.is_client();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Executor(args) => executor(args).await,
            Command::Migrate(args) => migrate(args).await,
            Command::User(args) => user(args).await,
            Command::Login(args) => session::login(args).await,
            Command::Logout(args) => session::logout(args).await,
            Command::Logs(args) => logs::run(*args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_client {
                eprintln!("error: {err:#}");
            } else {
                tracing::error!("{err:#}");
            }
            if err.is::<client::UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Stack the async runtime's own frames (hyper, axum, the dispatcher) take below an inline
/// script's.
const RUNTIME_STACK_HEADROOM: usize = 1024 * 1024;

fn init_tracing(cli: &Cli) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&cli.log).with_context(|| {
        format!(
            "PICLOUD_LOG / --log: '{}' is not a valid log filter",
            cli.log
        )
    })?;
    // Colours only for a person at a terminal: a file or a pipe gets plain text (#18).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

async fn open_store(config: &StoreConfig) -> anyhow::Result<Arc<dyn picloud_store::Store>> {
    let store = picloud_store::open(config)
        .await
        .context("cannot open the database")?;
    store
        .migrate()
        .await
        .context("cannot apply the database migrations")?;
    Ok(store)
}

async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let store = open_store(&args.store_config()).await?;
    tracing::info!(backend = ?store.backend(), "migrations are applied");
    store.close().await;
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let signals = ShutdownSignals::install()?;
    let origins = args.origins()?;
    let store = open_store(&args.quotas.store_config(&args.database)).await?;

    let local = picloud_orchestrator::local_executor(store.clone(), args.sandbox.executor_config());
    let executors = match &args.executor_url {
        Some(url) => {
            let timeout = Duration::from_millis(args.sandbox.execution_timeout_ms + 10_000);
            let remote = RemoteExecutorClient::new(url, args.executor_token.clone(), timeout)
                .with_context(|| format!("PICLOUD_EXECUTOR_URL: '{url}' is not usable"))?;
            tracing::info!(url = %url, "scripts run in a remote executor");
            Executors::Remote {
                executor: Arc::new(remote),
                local,
            }
        }
        None => Executors::Local(local),
    };

    let platform_config = PlatformConfig {
        gate_size: args.gate_size(),
        gate_app_share_percent: args.gate_app_share,
        gate_wait_ms: args.gate_wait_ms,
        session_ttl_ms: i64::try_from(args.session_ttl_hours * 3_600_000).unwrap_or(i64::MAX),
        login_throttle: args.login_throttle(),
        password_policy: args.password_policy.policy()?,
        jobs: args.jobs.jobs(),
        commits: args.jobs.commits(),
        dispatch: args.dispatch.config(args.shutdown_grace_secs),
        retention: args.jobs.retention(),
        route_refresh_ms: args.route_refresh_ms,
        redacted_headers: args.redacted_headers(),
        records: picloud_orchestrator::runner::RecordPolicy {
            sync_successes: args.record_sync_successes,
            max_log_bytes: args.record_max_log_bytes,
        },
        metrics: args.metrics.config(),
    };
    let platform = Platform::start(store.clone(), executors, platform_config)
        .await
        .context("cannot start the platform")?;

    let created = platform
        .auth()
        .ensure_instance_admin(args.admin_password.as_deref())
        .await
        .map_err(|err| match err {
            // Only a given password can fail the policy: a generated one passes it.
            ServiceError::Invalid(refused) => anyhow::anyhow!(
                "PICLOUD_ADMIN_PASSWORD / --admin-password: {} \
                 (PICLOUD_MIN_PASSWORD_LENGTH sets the minimum; leave the variable unset \
                 for a generated password)",
                refused.message
            ),
            other => anyhow::Error::new(other).context("cannot create the instance admin"),
        })?;
    if let Some(password) = created {
        tracing::warn!(
            username = "admin",
            password = %password,
            "created the instance admin with a generated password; it is shown only this once"
        );
    }

    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("PICLOUD_ADDR: cannot listen on {}", args.addr))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let admin_listener = match args.admin_addr {
        AdminAddr::At(admin_addr) => Some(
            TcpListener::bind(admin_addr)
                .await
                .with_context(|| format!("PICLOUD_ADMIN_ADDR: cannot listen on {admin_addr}"))?,
        ),
        AdminAddr::Off => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .context("cannot read the bound admin address")?;
    tracing::info!(
        %addr,
        admin_addr = admin_addr.map(|a| a.to_string()),
        admin_host = args.admin_host.as_deref(),
        apps_domain = args.apps_domain.as_deref(),
        backend = ?store.backend(),
        startup_ms = started.elapsed().as_millis() as u64,
        "listening"
    );

    let listeners = picloud_server::Listeners {
        public: listener,
        admin: admin_listener,
    };
    let server_config = picloud_server::ServerConfig {
        max_body_bytes: args.max_body_bytes,
        timeouts: args.http_timeouts(),
        origins,
        metrics_token: args.metrics.token(),
    };
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let served = run_until_drained(
        |stop| picloud_server::serve(listeners, platform.clone(), server_config, stop),
        grace,
        signals,
    )
    .await;
    platform.shutdown().await;
    store.close().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// `picloud user create|passwd|list`, on the database directly: no server, no session.
async fn user(args: UserArgs) -> anyhow::Result<()> {
    use std::io::Write as _;

    let policy = args.password_policy.policy()?;
    let store = open_store(&args.database.store_config()).await?;
    let auth = picloud_orchestrator::Auth::new(
        store.clone(),
        PlatformConfig::default().session_ttl_ms,
        picloud_orchestrator::ThrottleConfig::default(),
        policy,
    );
    let mut out = std::io::stdout().lock();
    let result = async {
        match args.action {
            UserAction::Create {
                username,
                admin,
                password,
            } => {
                let name = picloud_core::Username::parse(&username)
                    .map_err(|err| anyhow::anyhow!("{}", err.message))?;
                let (password, generated) = new_password(&password, policy)?;
                let user = auth
                    .create_user(&name, &password, admin)
                    .await
                    .with_context(|| format!("cannot create the user '{username}'"))?;
                writeln!(out, "created user {} ({})", user.username, user.id)?;
                if generated {
                    writeln!(out, "password: {password}")?;
                }
            }
            UserAction::Passwd { username, password } => {
                let name = picloud_core::Username::parse(&username)
                    .map_err(|err| anyhow::anyhow!("{}", err.message))?;
                let found = store
                    .user_credentials(&name)
                    .await?
                    .with_context(|| format!("there is no user '{username}'"))?;
                let (password, generated) = new_password(&password, policy)?;
                auth.set_password(found.user.id, &password).await?;
                writeln!(
                    out,
                    "changed the password of {username}; its sessions have ended"
                )?;
                if generated {
                    writeln!(out, "password: {password}")?;
                }
            }
            UserAction::List => {
                let mut page = picloud_store::PageRequest::default();
                loop {
                    let users = store.list_users(&page).await?;
                    for user in &users.items {
                        let mut flags = Vec::new();
                        if user.is_instance_admin {
                            flags.push("admin");
                        }
                        if user.disabled {
                            flags.push("disabled");
                        }
                        writeln!(out, "{}\t{}\t{}", user.id, user.username, flags.join(","))?;
                    }
                    match users.next_cursor {
                        Some(cursor) => page.cursor = Some(cursor),
                        None => break,
                    }
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result
}

/// The password for `user create|passwd`: stdin, the variable, or a new random one that passes
/// `policy` (`true`).
fn new_password(args: &PasswordArgs, policy: PasswordPolicy) -> anyhow::Result<(String, bool)> {
    if args.password_stdin {
        return Ok((password_from_stdin()?, false));
    }
    if let Some(password) = args.password.clone().filter(|p| !p.is_empty()) {
        return Ok((password, false));
    }
    Ok((policy.generate(), true))
}

/// The first line of stdin, without its line end; not empty.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "the password read from stdin is empty"
    );
    Ok(password)
}

async fn executor(args: ExecutorArgs) -> anyhow::Result<()> {
    let signals = ShutdownSignals::install()?;
    // Scripts read the data from here; what they write comes back in their outcomes, for the
    // serving node to commit.
    let store = open_store(&args.quotas.store_config(&args.database)).await?;
    let local = picloud_orchestrator::local_executor(store.clone(), args.sandbox.executor_config());
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("PICLOUD_EXECUTOR_ADDR: cannot listen on {}", args.addr))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    if args.token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the executor listens beyond loopback without PICLOUD_EXECUTOR_TOKEN: anyone who reaches it can run code");
    }
    tracing::info!(%addr, "executor listening");
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    run_until_drained(
        |stop| picloud_executor::remote::serve(listener, local, args.token, stop),
        grace,
        signals,
    )
    .await?;
    store.close().await;
    tracing::info!("executor stopped");
    Ok(())
}

/// SIGTERM and Ctrl-C, listened for from the start: a signal that arrives while the server
/// starts (after `listening` is logged, before it serves) stops it gracefully instead of killing
/// it, as the signals' default action would.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The first of the signals.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {},
            _ = self.interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs a server until SIGTERM / Ctrl-C, then tells it to shut down gracefully and gives
/// in-flight work `grace` to finish.
async fn run_until_drained<S, F>(
    start: S,
    grace: Duration,
    mut signals: ShutdownSignals,
) -> anyhow::Result<()>
where
    S: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
    F: Future<Output = std::io::Result<()>>,
{
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop = Box::pin(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let server = start(stop);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.context("the server failed"),
        () = signals.recv() => {
            tracing::info!("shutting down: draining in-flight requests");
            let _ = stop_tx.send(true);
        }
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.context("the server failed"),
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "in-flight work did not finish in time; exiting anyway"
            );
            Ok(())
        }
    }
}
