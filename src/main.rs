//! The `keygate` binary: parses the command line, loads the config, runs the command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use keygate::admin::ManageError;
use keygate::admin::manage::Manager;
use keygate::config::Settings;
use keygate::store::Store;

mod cli_import;
mod cli_keys;

#[derive(Parser)]
#[command(
    name = "keygate",
    version,
    about = "API-key authorization sidecar for Envoy and nginx"
)]
struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "KEYGATE_CONFIG",
        default_value = "config/keygate.yaml"
    )]
    config: PathBuf,
    /// Log format on stderr: text or json. The level comes from KEYGATE_LOG (default info).
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar.
    Serve,
    /// Validate the config and exit.
    CheckConfig,
    /// Exit 0 if the running keygate's HTTP listener answers /healthz (container health checks).
    Health,
    /// Manage keys.
    #[command(subcommand)]
    Keys(cli_keys::Keys),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(Accounts),
    /// Allowed requests per key and per UTC day for an account, and refused ones by reason.
    Usage {
        /// The account whose keys to report.
        #[arg(long)]
        account: String,
    },
    /// Management events, oldest first.
    Audit {
        /// Only this account's events.
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum Accounts {
    /// Show an account's plan and status.
    Get {
        /// The account id.
        id: String,
    },
    /// Set an account's plan and/or status (active, past_due, disabled).
    Set {
        /// The account id (1-128 of A-Z a-z 0-9 . _ : @ -).
        id: String,
        /// A plan from the config.
        #[arg(long)]
        plan: Option<String>,
        /// active, past_due or disabled (the last two refuse the account's keys with 403).
        #[arg(long)]
        status: Option<String>,
    },
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log_format);
    let settings = match Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        println!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }
    if let Command::Health = cli.command {
        return health(&settings);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli.command, settings, cli.config))
}

async fn run(command: Command, settings: Settings, config: PathBuf) -> ExitCode {
    if let Command::Serve = command {
        let token = std::env::var("KEYGATE_ADMIN_TOKEN").ok();
        return match keygate::server::start(settings, token).await {
            Ok(running) => {
                serve_signals(&running, &config).await;
                running.drain_and_shutdown().await;
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("keygate: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = Arc::new(settings);
    let store = match Store::open(&settings.store) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keygate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let m = Manager::new(settings, store, None);
    let actor = "cli";
    use cli_keys::json;
    let result: Result<serde_json::Value, ManageError> = match command {
        Command::Keys(keys) => cli_keys::run(&m, actor, keys).await,
        Command::Accounts(Accounts::Get { id }) => json(m.get_account(&id).await),
        Command::Accounts(Accounts::Set { id, plan, status }) => json(
            m.set_account(actor, &id, plan.map(Some), status.as_deref())
                .await,
        ),
        Command::Usage { account } => json(m.usage(&account).await),
        Command::Audit { account } => json(m.audit(account.as_deref()).await),
        Command::Serve | Command::CheckConfig | Command::Health => unreachable!("handled above"),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", e.to_json());
            eprintln!("keygate: {e}");
            ExitCode::from(match e.status() {
                400 => 2,
                404 => 3,
                409 => 4,
                _ => 1,
            })
        }
    }
}

/// Waits for SIGTERM or Ctrl-C; on SIGHUP reloads the config file meanwhile (a valid one is
/// applied atomically, an invalid one is refused and the running config stays).
#[cfg(unix)]
async fn serve_signals(running: &keygate::server::Running, config: &std::path::Path) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => match Settings::load(config) {
                Ok(s) => match running.reload(s).await {
                    Ok(()) => tracing::info!(config = %config.display(), "config reloaded"),
                    Err(e) => tracing::error!(error = %e, "config reload refused; the running config stays"),
                },
                Err(e) => tracing::error!(error = %e, "config reload refused; the running config stays"),
            },
        }
    }
}

#[cfg(not(unix))]
async fn serve_signals(_: &keygate::server::Running, _: &std::path::Path) {
    let _ = tokio::signal::ctrl_c().await;
}
/// One plain HTTP/1.0 request to `/healthz`; no client library needed for a probe.
fn health(settings: &Settings) -> ExitCode {
    use std::io::{Read, Write};
    let Some(mut addr) = settings.http else {
        eprintln!("keygate: listen.http is not configured");
        return ExitCode::FAILURE;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = std::time::Duration::from_secs(2);
    let ok = std::net::TcpStream::connect_timeout(&addr, timeout).and_then(|mut s| {
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n")?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf)?;
        Ok(buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"))
    });
    match ok {
        Ok(true) => ExitCode::SUCCESS,
        _ => {
            eprintln!("keygate: {addr}/healthz did not answer 200");
            ExitCode::FAILURE
        }
    }
}
