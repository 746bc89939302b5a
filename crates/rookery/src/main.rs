//! The `rookery` binary: `serve`, the admin CLI (`user`, `check`) and configuration loading.

use anyhow::Context;
use clap::{Parser, Subcommand};
use rookery_core::config::Config;
use rookery_server::{accounts, Server};
use std::io::BufRead;
use std::path::PathBuf;

// glibc's allocator spent a tenth of the server's time consolidating free lists under fan-out
// load (perf, 200-occupant room); mimalloc keeps per-thread free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "rookery", version, about = "An XMPP server")]
struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults serve `localhost`.
    #[arg(long, short, global = true, env = "ROOKERY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage accounts (works while the server runs).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Validate the configuration, certificates and ports, and print what would be served.
    Check,
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account; the password is read from standard input when not given.
    Add {
        jid: String,
        password: Option<String>,
    },
    /// Delete an account and everything stored for it.
    Del { jid: String },
    /// Set an account's password.
    Passwd {
        jid: String,
        password: Option<String>,
    },
    /// List accounts of one host, or of every host.
    List { host: Option<String> },
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let (text, origin) = match path {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (String::new(), "(defaults)".to_string()),
    };
    Ok(Config::parse(&text, &origin, std::env::vars())?)
}

fn password(given: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!p.is_empty(), "no password given");
    Ok(p)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROOKERY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = load_config(cli.config.as_ref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::User { action } => user(config, action).await,
            Command::Check => check(config).await,
        }
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let running = rookery_server::start(config).await?;
    tracing::info!(hosts = ?running.server.config.hosts, "rookery is running");
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn user(config: Config, action: UserAction) -> anyhow::Result<()> {
    let server = Server::new(config).await?;
    match action {
        UserAction::Add { jid, password: p } => {
            let user = accounts::parse_user(&server.config, &jid)?;
            accounts::create(&server, &user, &password(p)?).await?;
            println!("created {user}");
        }
        UserAction::Del { jid } => {
            let user = accounts::parse_user(&server.config, &jid)?;
            accounts::delete(&server, &user).await?;
            println!("deleted {user}");
        }
        UserAction::Passwd { jid, password: p } => {
            let user = accounts::parse_user(&server.config, &jid)?;
            accounts::set_password(&server, &user, &password(p)?).await?;
            println!("password changed for {user}");
        }
        UserAction::List { host } => {
            let hosts = match host {
                Some(h) => vec![h],
                None => server.config.hosts.clone(),
            };
            for h in hosts {
                for j in server.storage.list_accounts(&h).await? {
                    println!("{j}");
                }
            }
        }
    }
    Ok(())
}

async fn check(config: Config) -> anyhow::Result<()> {
    let server = Server::new(config)
        .await
        .context("configuration, storage or certificates")?;
    let c = &server.config;
    println!("hosts: {}", c.hosts.join(", "));
    println!("storage: {}", c.storage_url());
    println!("data dir: {}", c.data_dir.display());
    let mut problems = 0;
    for (what, addrs) in [
        ("c2s (STARTTLS)", &c.listen.c2s),
        ("c2s (direct TLS)", &c.listen.c2s_direct_tls),
        ("http", &c.listen.http),
    ] {
        for a in addrs {
            match std::net::TcpListener::bind(a) {
                Ok(_) => println!("{what}: {a} (free)"),
                Err(e) => {
                    problems += 1;
                    println!("{what}: {a} cannot be bound: {e}");
                }
            }
        }
    }
    println!(
        "TLS required before authentication: {}",
        c.tls.require_encryption
    );
    println!(
        "in-band registration: {}",
        if c.registration.allow {
            "open"
        } else {
            "closed"
        }
    );
    anyhow::ensure!(problems == 0, "{problems} listen address(es) unavailable");
    println!("configuration OK");
    Ok(())
}
