//! The `rookery` binary: `serve`, the admin CLI (`user`, `check`, `migrate`) and configuration
//! loading.

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

const AFTER_HELP: &str = "\
CONFIGURATION:
    One TOML file (--config or ROOKERY_CONFIG); every key is documented in rookery.example.toml.
    Without a file, built-in defaults serve `localhost`: SQLite and a self-signed certificate
    in ./data, clients on 5222 (STARTTLS) and 5223 (TLS), the web app on http://localhost:5280/.
    Any key can be set from the environment as ROOKERY_<SECTION>__<KEY>=<TOML value>, e.g.
    ROOKERY_HOSTS='[\"example.org\"]' or ROOKERY_LIMITS__MAX_STANZA_BYTES=65536.

ENVIRONMENT:
    ROOKERY_CONFIG    the configuration file, as --config
    ROOKERY_LOG       log filter, e.g. `info` (default) or `rookery_server::s2s=debug,info`
    ROOKERY_WEB_ROOT  directory of the built web app (default web/dist)
    ROOKERY_*__*      configuration overrides (above)

FILES:
    <data_dir>/rookery.sqlite    the embedded database (default storage)
    <data_dir>/certs/            self-signed certificates made on first start
    <data_dir>/admin.sock        the admin socket the commands below use to reach a running
                                 server (owner-only)

SIGNALS:
    SIGTERM, SIGINT   stop: sessions are told <system-shutdown/> and flushed first
    SIGHUP            reload the configuration and certificates without dropping connections

EXIT STATUS:
    0 on success; 1 on any error, explained on standard error.

See docs/getting-started.md for a public deployment and docs/admin-api.json for the HTTP API.";

#[derive(Parser)]
#[command(
    name = "rookery",
    version,
    about = "An XMPP server with its web chat app",
    long_about = "Rookery: an XMPP server (RFC 6120, 6121) with its web chat app, in one \
        binary. `rookery serve` runs it; the other commands administer it, a running server \
        through its admin socket or the storage directly.",
    after_long_help = AFTER_HELP
)]
struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults serve `localhost`.
    #[arg(long, short, global = true, env = "ROOKERY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum InviteAction {
    /// Make an invitation token and print its URI (`xmpp:HOST?register;preauth=TOKEN`).
    Create {
        /// The host to register on.
        #[arg(long, default_value = "localhost")]
        host: String,
        /// How many accounts it may register.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Days it stays valid.
        #[arg(long, default_value_t = 7)]
        days: u64,
        /// The only username it may register (reserved until it expires).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum RoomAction {
    /// Rooms with their names, occupant counts and whether they are persistent and public.
    List,
    /// Create a persistent room owned by OWNER.
    Create {
        /// The room's bare JID (room@conference.example.org).
        room: String,
        /// The owner's bare JID.
        owner: String,
        /// The room's name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Destroy a room; its occupants are told REASON.
    Destroy {
        room: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Live nodes with the number of sessions each serves.
    Status,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// Listens as configured (c2s, HTTP, and s2s when enabled), serves until SIGTERM or
    /// Ctrl-C, and reloads the configuration on SIGHUP. Logs go to standard error.
    #[command(
        after_long_help = "EXAMPLES:\n    rookery serve\n    rookery --config /etc/rookery/rookery.toml serve\n    ROOKERY_LOG=debug rookery serve"
    )]
    Serve,
    /// Manage accounts (works while the server runs).
    ///
    /// With a running server the change goes through its admin socket (sessions of a deleted
    /// or disabled account end at once); without one, straight to the storage.
    #[command(
        after_long_help = "EXAMPLES:\n    rookery user add alice@example.org          # the password is read from standard input\n    rookery user passwd alice@example.org\n    rookery user list example.org"
    )]
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Online sessions of the running server.
    Sessions {
        #[command(subcommand)]
        action: SessionAction,
    },
    /// Send a message to every online session of a host.
    ///
    /// A headline message from the host's own JID (XEP-0133 §4.23), to each session online now.
    #[command(
        after_long_help = "EXAMPLES:\n    rookery announce --host example.org --subject Maintenance 'Restart at 22:00 UTC'"
    )]
    Announce {
        /// The host whose sessions get it.
        #[arg(long, default_value = "localhost")]
        host: String,
        /// A subject line.
        #[arg(long)]
        subject: Option<String>,
        /// The text.
        message: String,
    },
    /// The message of the day, sent to each session as it signs in.
    Motd {
        #[command(subcommand)]
        action: MotdAction,
    },
    /// Counters of the running server.
    Stats,
    /// Invitations to register (XEP-0401/0445 tokens).
    ///
    /// With `registration.allow = false` (the default) and `registration.invites = true` (the
    /// default), only people holding an invitation can register an account, with a client that
    /// supports XEP-0445 (Conversations, Gajim, Dino, Monal...) opening the printed URI.
    #[command(
        after_long_help = "EXAMPLES:\n    rookery invite create --host example.org\n    rookery invite create --host example.org --uses 10 --days 30\n    rookery invite create --host example.org --user juliet"
    )]
    Invite {
        #[command(subcommand)]
        action: InviteAction,
    },
    /// Multi-user chat rooms of the running server (XEP-0045).
    #[command(
        after_long_help = "EXAMPLES:\n    rookery rooms list\n    rookery rooms create ops@conference.example.org alice@example.org --name Operations\n    rookery rooms destroy ops@conference.example.org --reason 'moved to #infra'"
    )]
    Rooms {
        #[command(subcommand)]
        action: RoomAction,
    },
    /// The cluster this node belongs to.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Live server-to-server streams.
    ///
    /// Each stream's direction, domains, how the peer was authenticated (sasl-external or
    /// dialback) and whether the stream is bidirectional (XEP-0288).
    S2s,
    /// Call any administration method of the running server.
    ///
    /// The methods are those Jabber-RPC (XEP-0009) offers; `rookery rpc system.listMethods`
    /// lists them. Parameters are strings, in order.
    Rpc { method: String, params: Vec<String> },
    /// Validate the configuration, certificates and ports, and print what would be served.
    ///
    /// Exits with status 1, naming the problem, when the file does not parse, a certificate
    /// does not load or a port cannot be bound. Run it before `systemctl reload`.
    Check,
    /// Copy all stored data into another, empty storage backend.
    ///
    /// Accounts, rosters, offline queues, key-value stores, archives, pubsub and uploads move
    /// from one backend (SQLite, PostgreSQL) into another, which must hold nothing yet. Stop the
    /// server first. Files of uploads kept on disk stay where they are.
    #[command(
        after_long_help = "EXAMPLES:\n    rookery migrate --from sqlite://data/rookery.sqlite --to postgres://rookery@db/rookery"
    )]
    Migrate {
        /// Source storage URL (sqlite://PATH, postgres://USER@HOST/DB, memory://).
        #[arg(long)]
        from: String,
        /// Target storage URL; it must hold nothing yet.
        #[arg(long)]
        to: String,
    },
    /// Export every user's data as one XEP-0227 file.
    ///
    /// SCRAM keys, rosters, vCards, private XML, offline messages, archives and PEP, in the
    /// format Prosody and ejabberd import too. Reads the configured storage; the file holds
    /// credentials: keep it private.
    #[command(
        after_long_help = "EXAMPLES:\n    rookery export --out users.xml\n    rookery export --host example.org > example.xml"
    )]
    Export {
        /// Where to write (created with owner-only permissions); standard output when absent.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Only these hosts (repeatable); all by default.
        #[arg(long)]
        host: Vec<String>,
    },
    /// Import a XEP-0227 file (from Rookery, Prosody or ejabberd).
    ///
    /// Reads it into the configured storage. Accounts that exist already are left as they are
    /// and listed.
    #[command(after_long_help = "EXAMPLES:\n    rookery import prosody-export.xml")]
    Import { file: std::path::PathBuf },
    /// Copy the database to a new file, while the server runs.
    ///
    /// For SQLite (the default storage) this is `VACUUM INTO`: one read transaction, so the
    /// copy is a snapshot even while the server writes, compacted, readable by its owner only.
    /// To restore, stop the server and put the copy in place of <data_dir>/rookery.sqlite
    /// (removing rookery.sqlite-wal and -shm). PostgreSQL has its own tools (pg_dump).
    #[command(
        after_long_help = "EXAMPLES:\n    rookery backup --out /var/backups/rookery-$(date +%F).sqlite"
    )]
    Backup {
        /// The file to write; it must not exist.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum SessionAction {
    /// List full JIDs, of one host or all.
    List { host: Option<String> },
    /// How many sessions there are.
    Count { host: Option<String> },
    /// End the sessions of an account (a bare JID) or one session (a full JID).
    End { jid: String },
}

#[derive(Subcommand)]
enum MotdAction {
    /// Print the message of the day.
    Show {
        #[arg(long, default_value = "localhost")]
        host: String,
    },
    /// Set the message of the day.
    Set {
        #[arg(long, default_value = "localhost")]
        host: String,
        #[arg(long)]
        subject: Option<String>,
        message: String,
    },
    /// Remove the message of the day.
    Delete {
        #[arg(long, default_value = "localhost")]
        host: String,
    },
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
    /// Disable an account: its sessions end and it cannot sign in.
    Disable { jid: String },
    /// Re-enable a disabled account.
    Enable { jid: String },
    /// Check a password against the stored SCRAM keys (read from standard input when not
    /// given); exits with 1 when it does not match.
    Check {
        jid: String,
        password: Option<String>,
    },
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
    let config = load_config(cli.config.as_ref())?;
    rookery_server::logs::init(config.log_format == rookery_core::config::LogFormat::Json);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve => serve(config, cli.config.clone()).await,
            Command::User { action } => user(config, action).await,
            Command::Sessions { action } => {
                let (method, params) = match action {
                    SessionAction::List { host } => ("sessions.list", opt_host(host)),
                    SessionAction::Count { host } => ("sessions.count", opt_host(host)),
                    SessionAction::End { jid } => ("sessions.end", serde_json::json!([jid])),
                };
                print_result(live(&config, method, params).await?);
                Ok(())
            }
            Command::Announce {
                host,
                subject,
                message,
            } => {
                let n = live(
                    &config,
                    "announce",
                    serde_json::json!([host, subject.unwrap_or_default(), message]),
                )
                .await?;
                println!("sent to {n} session(s)");
                Ok(())
            }
            Command::Motd { action } => motd(config, action).await,
            Command::Stats => {
                print_result(live(&config, "stats.get", serde_json::json!([])).await?);
                Ok(())
            }
            Command::Cluster {
                action: ClusterAction::Status,
            } => {
                print_result(live(&config, "cluster.status", serde_json::json!([])).await?);
                Ok(())
            }
            Command::Invite {
                action:
                    InviteAction::Create {
                        host,
                        uses,
                        days,
                        user,
                    },
            } => {
                let v = live(
                    &config,
                    "invites.create",
                    serde_json::json!([
                        host,
                        uses.to_string(),
                        days.to_string(),
                        user.unwrap_or_default()
                    ]),
                )
                .await?;
                println!("{}", v["uri"].as_str().unwrap_or_default());
                Ok(())
            }
            Command::Rooms { action } => {
                let (method, params) = match action {
                    RoomAction::List => ("rooms.list", serde_json::json!([])),
                    RoomAction::Create { room, owner, name } => {
                        ("rooms.create", serde_json::json!([room, owner, name]))
                    }
                    RoomAction::Destroy { room, reason } => (
                        "rooms.destroy",
                        serde_json::json!([room, reason.unwrap_or_default()]),
                    ),
                };
                print_result(live(&config, method, params).await?);
                Ok(())
            }
            Command::S2s => {
                print_result(live(&config, "s2s.list", serde_json::json!([])).await?);
                Ok(())
            }
            Command::Rpc { method, params } => {
                print_result(live(&config, &method, serde_json::json!(params)).await?);
                Ok(())
            }
            Command::Check => check(config).await,
            Command::Migrate { from, to } => migrate(&from, &to).await,
            Command::Export { out, host } => export(&config, out, &host).await,
            Command::Import { file } => import(&config, &file).await,
            Command::Backup { out } => backup(&config, &out).await,
        }
    })
}

async fn serve(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let running = rookery_server::start(config).await?;
    tracing::info!(hosts = ?running.server.config.hosts, "rookery is running");
    wait_for_signal(&running.server, path.as_ref()).await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C; meanwhile each SIGHUP reloads the configuration (file and
/// environment, as at start) into the running server.
#[cfg(unix)]
async fn wait_for_signal(server: &rookery_server::Server, path: Option<&PathBuf>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = hup.recv() => {
                let reloaded = match load_config(path) {
                    Ok(c) => server.reload(c).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = reloaded {
                    tracing::error!("configuration not reloaded: {e:#}");
                }
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal(_server: &rookery_server::Server, _path: Option<&PathBuf>) {
    let _ = tokio::signal::ctrl_c().await;
}

fn opt_host(host: Option<String>) -> serde_json::Value {
    match host {
        Some(h) => serde_json::json!([h]),
        None => serde_json::json!([]),
    }
}

fn print_result(v: serde_json::Value) {
    match v {
        serde_json::Value::Array(items) => {
            for i in items {
                match i {
                    serde_json::Value::String(s) => println!("{s}"),
                    other => println!("{other}"),
                }
            }
        }
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                println!("{k}: {v}");
            }
        }
        serde_json::Value::String(s) => println!("{s}"),
        other => println!("{other}"),
    }
}

/// Calls the running server through its admin socket.
async fn try_live(
    config: &Config,
    method: &str,
    params: serde_json::Value,
) -> anyhow::Result<Option<serde_json::Value>> {
    #[cfg(unix)]
    {
        let socket = rookery_server::admin_socket::path(&config.data_dir);
        match rookery_server::admin_socket::call(&socket, method, params).await? {
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(e)) => Err(anyhow::anyhow!(e)),
            None => Ok(None),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (config, method, params);
        Ok(None)
    }
}

/// Like [`try_live`], for operations that need the running server.
async fn live(
    config: &Config,
    method: &str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    try_live(config, method, params).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no running server answers on {} (start it with `rookery serve`)",
            config.data_dir.join("admin.sock").display()
        )
    })
}

async fn motd(config: Config, action: MotdAction) -> anyhow::Result<()> {
    let (method, params) = match action {
        MotdAction::Show { host } => ("motd.get", serde_json::json!([host])),
        MotdAction::Set {
            host,
            subject,
            message,
        } => (
            "motd.set",
            serde_json::json!([host, subject.unwrap_or_default(), message]),
        ),
        MotdAction::Delete { host } => ("motd.delete", serde_json::json!([host])),
    };
    // The message of the day is stored data: without a running server, edit storage directly.
    let v = match try_live(&config, method, params.clone()).await? {
        Some(v) => v,
        None => {
            let server = Server::new(config).await?;
            let p: Vec<rookery_server::modules::rpc::Value> = params
                .as_array()
                .unwrap()
                .iter()
                .map(rookery_server::modules::rpc::Value::from_json)
                .collect();
            rookery_server::modules::rpc::call(&server, method, &p)
                .await
                .map_err(|f| anyhow::anyhow!(f.1))?
                .to_json()
        }
    };
    match v {
        serde_json::Value::Null => println!("(no message of the day)"),
        serde_json::Value::Bool(_) => println!("done"),
        other => print_result(other),
    }
    Ok(())
}

async fn user(config: Config, action: UserAction) -> anyhow::Result<()> {
    // With a server running, go through it so live sessions follow (a deleted or disabled
    // account's sessions end); otherwise work on storage directly.
    let live_call = match &action {
        UserAction::Del { jid } => Some(("users.delete", serde_json::json!([jid]))),
        UserAction::Disable { jid } => Some(("users.disable", serde_json::json!([jid]))),
        UserAction::Enable { jid } => Some(("users.enable", serde_json::json!([jid]))),
        _ => None,
    };
    if let Some((method, params)) = live_call {
        if let Some(v) = try_live(&config, method, params).await? {
            println!(
                "{}: {}",
                method.trim_start_matches("users."),
                v.as_str().unwrap_or_default()
            );
            return Ok(());
        }
    }
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
        UserAction::Check { jid, password: p } => {
            let user = accounts::parse_user(&server.config, &jid)?;
            let creds = server
                .storage
                .credentials(&user)
                .await?
                .with_context(|| format!("no account {user}"))?;
            if !rookery_server::scram::verify_password(&creds, &password(p)?) {
                anyhow::bail!("the password does not match {user}'s");
            }
            println!("the password matches {user}'s");
        }
        UserAction::Disable { jid } => {
            let user = rookery_server::admin::set_disabled(&server, &jid, true).await?;
            println!("disabled {user}");
        }
        UserAction::Enable { jid } => {
            let user = rookery_server::admin::set_disabled(&server, &jid, false).await?;
            println!("enabled {user}");
        }
    }
    Ok(())
}

async fn migrate(from: &str, to: &str) -> anyhow::Result<()> {
    anyhow::ensure!(from != to, "--from and --to name the same storage");
    // Opening a SQLite path creates the file: a mistyped source would copy nothing, quietly.
    if let Some(path) = from.strip_prefix("sqlite://") {
        anyhow::ensure!(
            std::path::Path::new(path).exists(),
            "source database {path} does not exist"
        );
    }
    let source = rookery_server::storage::open(from)
        .await
        .context("opening the source storage")?;
    let target = rookery_server::storage::open(to)
        .await
        .context("opening the target storage")?;
    let report = rookery_server::storage::copy(source.as_ref(), target.as_ref()).await?;
    println!("copied {report}");
    Ok(())
}

async fn backup(config: &Config, out: &std::path::Path) -> anyhow::Result<()> {
    let url = config.storage_url();
    let storage = rookery_server::storage::open(&url)
        .await
        .context("opening the storage")?;
    if !storage.backup(out).await? {
        anyhow::bail!(
            "{} has no built-in backup: use the database's own tools (pg_dump for PostgreSQL)",
            url.split('@').next_back().unwrap_or(&url)
        );
    }
    eprintln!("database copied to {}", out.display());
    Ok(())
}

async fn export(
    config: &Config,
    out: Option<std::path::PathBuf>,
    hosts: &[String],
) -> anyhow::Result<()> {
    let storage = rookery_server::storage::open(&config.storage_url())
        .await
        .context("opening the storage")?;
    let (doc, report) = rookery_server::portable::export(storage.as_ref(), hosts).await?;
    let xml = format!("<?xml version='1.0' encoding='UTF-8'?>\n{}\n", doc.to_xml());
    match out {
        Some(path) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new();
            f.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
            f.open(&path)
                .with_context(|| format!("creating {}", path.display()))?
                .write_all(xml.as_bytes())?;
            eprintln!("exported {} users to {}", report.users, path.display());
        }
        None => print!("{xml}"),
    }
    Ok(())
}

async fn import(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc = rookery_server::portable::parse(&text)
        .with_context(|| format!("{} is not a readable XML document", file.display()))?;
    let storage = rookery_server::storage::open(&config.storage_url())
        .await
        .context("opening the storage")?;
    let report = rookery_server::portable::import(storage.as_ref(), &doc).await?;
    println!("imported {} users", report.users);
    for s in &report.skipped {
        println!("skipped {s}: the account exists");
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
    let proxy65 = if c.module_enabled("proxy65") {
        vec![c.modules.proxy65.listen.clone()]
    } else {
        vec![]
    };
    let (s2s, s2s_direct) = if c.s2s.enabled {
        (c.listen.s2s.clone(), c.listen.s2s_direct_tls.clone())
    } else {
        (vec![], vec![])
    };
    for (what, addrs) in [
        ("c2s (STARTTLS)", &c.listen.c2s),
        ("c2s (direct TLS)", &c.listen.c2s_direct_tls),
        ("http", &c.listen.http),
        ("https", &c.listen.https),
        ("s2s", &s2s),
        ("s2s (direct TLS)", &s2s_direct),
        ("SOCKS5 proxy", &proxy65),
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
