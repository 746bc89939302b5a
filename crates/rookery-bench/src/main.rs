//! rookery-bench: signs in N XMPP clients over STARTTLS with SCRAM, sends 1:1 messages (or
//! groupchat messages in one XEP-0045 room that all clients join) at a target rate, and reports
//! logins/s, delivered messages/s and delivery latency percentiles.

// The generator allocates per message; glibc's allocator was a tenth of its time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rookery_bench::{client, procstat, scram, spread, stats, tls, traffic};

use anyhow::{Context, Result};
use clap::Parser;
use client::{Registered, Settings};
use rustls::pki_types::ServerName;
use scram::{Mechanism, SaltCache};
use stats::{Idle, LoginStats, RegisterStats, Report, Traffic};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use traffic::Schedule;

/// Lead time between handing out schedules and the first message.
const START_LEAD: Duration = Duration::from_millis(100);
/// How long after the messaging window a message may still arrive without counting as lost.
const GRACE: Duration = Duration::from_secs(2);
/// Time for a server to finish the work the logins left (presence, caches) before holding idle.
const SETTLE: Duration = Duration::from_secs(3);

/// XMPP load generator: logins over STARTTLS + SCRAM, then 1:1 chat messages at a fixed rate.
#[derive(Parser, Debug)]
#[command(name = "rookery-bench", version)]
struct Args {
    /// Server address to connect to.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5222)]
    port: u16,
    /// Spread the clients over several servers (the nodes of a cluster), HOST:PORT, repeated:
    /// client i signs in to server i mod N and sends to the next client on another server, so
    /// every message crosses servers. Registration goes to the first. Replaces --host/--port.
    #[arg(long = "server", value_name = "HOST:PORT", value_parser = spread::parse_server)]
    servers: Vec<(String, u16)>,
    /// XMPP domain: the stream's `to`, the TLS server name and the accounts' domain.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Number of clients; account i is PREFIXi@DOMAIN.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Password of every account.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Messages per second, in total across all clients.
    #[arg(long, default_value_t = 10000)]
    rate: u64,
    /// Seconds of messaging.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Logins (and registrations) in flight at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    connect_concurrency: u32,
    /// Create each account first with XEP-0077 in-band registration ("already exists" is fine).
    #[arg(long)]
    register: bool,
    /// Stop after --register: no logins, no messaging.
    #[arg(long, requires = "register")]
    register_only: bool,
    #[arg(long, value_enum, default_value_t = Mechanism::ScramSha256)]
    mechanism: Mechanism,
    /// Print the results as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Seconds one login (or registration) may take before it counts as failed.
    #[arg(long, default_value_t = 60)]
    login_timeout: u64,
    /// Room mode: every client joins this MUC room (e.g. bench@conference.localhost) and sends
    /// groupchat messages there; each one is delivered to every occupant.
    #[arg(long)]
    room: Option<String>,
    /// Stay on plain TCP (no STARTTLS); the server must allow it.
    #[arg(long)]
    plain: bool,
    /// Hold the signed-in sessions idle for this many seconds before messaging.
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// The server's process id: with --hold, report its resident memory per signed-in session
    /// (growth from before the logins to the end of the hold) and its CPU use while held idle.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    stats::now_nanos(); // start the process clock
                        // On its one core the generator must cost less per message than the server it loads: one
                        // thread runs without the work-stealing scheduler's bookkeeping.
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads as usize)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rookery-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = args.json;
    let result = runtime.block_on(run(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            let registered = report
                .register
                .as_ref()
                .is_some_and(|r| r.failures.total() == 0);
            if report.login.ok == 0 && !(registered && report.login.failures.total() == 0) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("rookery-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<Report> {
    let server_name = ServerName::try_from(args.domain.clone())
        .with_context(|| format!("'{}' is not a valid TLS server name", args.domain))?;
    let connector = TlsConnector::from(tls::client_config()?);
    let servers = if args.servers.is_empty() {
        vec![(args.host.clone(), args.port)]
    } else {
        args.servers.clone()
    };
    // One `Settings` per server; they differ only in the address.
    let settings: Vec<Arc<Settings>> = servers
        .into_iter()
        .map(|(host, port)| {
            Arc::new(Settings {
                host,
                port,
                domain: args.domain.clone(),
                password: args.password.clone(),
                mechanism: args.mechanism,
                connector: connector.clone(),
                server_name: server_name.clone(),
                salt_cache: SaltCache::default(),
                login_timeout: Duration::from_secs(args.login_timeout),
                plain: args.plain,
            })
        })
        .collect();
    if settings.len() > 1 {
        let list: Vec<String> = settings
            .iter()
            .map(|s| format!("{}:{}", s.host, s.port))
            .collect();
        eprintln!("clients spread round robin over {}", list.join(", "));
    }

    let register = if args.register {
        eprintln!("registering {} accounts...", args.clients);
        Some(register_phase(&args, &settings[0]).await)
    } else {
        None
    };

    if args.register_only {
        return Ok(Report {
            clients: args.clients as usize,
            register,
            login: LoginStats::default(),
            duration: Duration::ZERO,
            target_rate: 0,
            delivered_in_window: 0,
            traffic: Arc::new(Traffic::default()),
            idle: None,
        });
    }
    eprintln!(
        "logging in {} clients, {} at a time...",
        args.clients, args.connect_concurrency
    );
    let traffic = Arc::new(Traffic::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let before = args.server_pid.map(procstat::sample).transpose()?;
    let (login, online, tasks) = login_phase(&args, &settings, &traffic, &stop_rx).await;
    if args.room.is_some() {
        traffic.fanout.store(online.len() as u64, Ordering::SeqCst);
    }
    eprintln!(
        "{} online, {} failed in {:.2} s",
        login.ok,
        login.failures.total(),
        login.wall.as_secs_f64()
    );

    let idle = if args.hold > 0 {
        let sessions = online.len() as u64;
        eprintln!("holding {sessions} sessions idle for {} s...", args.hold);
        tokio::time::sleep(SETTLE).await;
        let settled = args.server_pid.map(procstat::sample).transpose()?;
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
        let held = args.server_pid.map(procstat::sample).transpose()?;
        match (before, settled, held) {
            (Some(before), Some(settled), Some(held)) => Some(Idle {
                sessions,
                before,
                held,
                cpu_at_rest: held.cpu.saturating_sub(settled.cpu),
                hold: Duration::from_secs(args.hold),
            }),
            _ => None,
        }
    } else {
        None
    };

    let duration = Duration::from_secs(args.duration);
    if idle.is_none() && args.rate > 0 && !duration.is_zero() {
        // The rate measured is a sustained one: the work the logins left behind must not be
        // counted against the first messages.
        tokio::time::sleep(SETTLE).await;
    }
    eprintln!(
        "messaging at {}/s for {} s...",
        args.rate,
        duration.as_secs()
    );
    let delivered_in_window =
        messaging_phase(args.rate, duration, online, args.room.as_deref(), &traffic).await;

    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(Report {
        clients: args.clients as usize,
        register,
        login,
        duration,
        target_rate: args.rate,
        delivered_in_window,
        traffic,
        idle,
    })
}

/// Registers every account, `connect_concurrency` at a time.
async fn register_phase(args: &Args, settings: &Arc<Settings>) -> RegisterStats {
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let mut tasks = JoinSet::new();
    for i in 0..args.clients {
        let user = format!("{}{i}", args.prefix);
        let (settings, limit) = (settings.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            client::register(&settings, &user).await
        });
    }
    let mut stats = RegisterStats::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(Registered::Created)) => stats.created += 1,
            Ok(Ok(Registered::AlreadyExists)) => stats.existed += 1,
            Ok(Err(e)) => stats.failures.add(&format!("{e:#}")),
            Err(e) => stats.failures.add(&format!("task failed: {e}")),
        }
    }
    stats.wall = started.elapsed();
    stats
}

/// A client that logged in and waits for its schedule.
struct LoggedIn {
    jid: String,
    /// Which of the servers it signed in to.
    server: usize,
    schedule: oneshot::Sender<Schedule>,
}

/// What a client task tells the main task once its login is over.
struct LoginReport {
    index: usize,
    outcome: Result<(Duration, LoggedIn), String>,
}

/// Starts one task per client and waits until every login has succeeded or failed. The tasks of
/// the clients that got online keep running: they receive, and send once given a schedule.
async fn login_phase(
    args: &Args,
    settings: &[Arc<Settings>],
    traffic: &Arc<Traffic>,
    stop: &watch::Receiver<bool>,
) -> (LoginStats, Vec<LoggedIn>, Vec<JoinHandle<()>>) {
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    // Room mode: client 0 creates and configures the room; the others join once it is open.
    let (room_open_tx, room_open) = watch::channel(false);
    let room_open_tx = Arc::new(room_open_tx);
    let tasks = (0..args.clients as usize)
        .map(|index| {
            let user = format!("{}{index}", args.prefix);
            let server = spread::server_of(index, settings.len());
            let (settings, limit) = (settings[server].clone(), limit.clone());
            let (report_tx, stop, traffic) = (report_tx.clone(), stop.clone(), traffic.clone());
            let (room, max_users) = (args.room.clone(), args.clients);
            let (mut room_open, room_open_tx) = (room_open.clone(), room_open_tx.clone());
            tokio::spawn(async move {
                let permit = limit
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let mut result = client::login(&settings, &user).await;
                drop(permit);
                if let (Some(room), Ok(online)) = (&room, &mut result) {
                    let joined = async {
                        if index > 0 {
                            room_open.wait_for(|open| *open).await?;
                        }
                        client::join_room(online, room, &user, max_users).await
                    };
                    let joined = tokio::time::timeout(settings.login_timeout, joined).await;
                    result = match joined {
                        Ok(Ok(())) => result,
                        Ok(Err(e)) => Err(e.context("muc join")),
                        Err(_) => Err(anyhow::anyhow!("muc join: timeout")),
                    };
                }
                if index == 0 {
                    // Open the gate even on failure: the others then fail on their own.
                    let _ = room_open_tx.send(true);
                }
                match result {
                    Err(e) => {
                        let outcome = Err(format!("{e:#}"));
                        let _ = report_tx.send(LoginReport { index, outcome });
                    }
                    Ok(online) => {
                        let (schedule_tx, schedule_rx) = oneshot::channel();
                        let logged_in = LoggedIn {
                            jid: online.jid.clone(),
                            server,
                            schedule: schedule_tx,
                        };
                        let outcome = Ok((online.login_time, logged_in));
                        let _ = report_tx.send(LoginReport { index, outcome });
                        drop(report_tx);
                        traffic::run(online, index, schedule_rx, stop, traffic).await;
                    }
                }
            })
        })
        .collect();
    drop(report_tx);

    let mut stats = LoginStats::default();
    let mut online: Vec<Option<LoggedIn>> = (0..args.clients).map(|_| None).collect();
    while let Some(report) = reports.recv().await {
        match report.outcome {
            Ok((time, logged_in)) => {
                stats.record_ok(time);
                online[report.index] = Some(logged_in);
            }
            Err(reason) => stats.failures.add(&reason),
        }
    }
    stats.wall = started.elapsed();
    (stats, online.into_iter().flatten().collect(), tasks)
}

/// Hands each online client its slot of the schedule: with M clients online, client p sends
/// every M/rate seconds starting p/rate seconds in, to the next online client (p+1) mod M (the
/// next one on another server, with several: `spread::targets`), so the total is `rate`
/// messages/s spread evenly. Returns the deliveries made within the window,
/// after waiting (at most `GRACE`) for the rest.
async fn messaging_phase(
    rate: u64,
    duration: Duration,
    online: Vec<LoggedIn>,
    room: Option<&str>,
    traffic: &Traffic,
) -> u64 {
    if online.is_empty() || rate == 0 || duration.is_zero() {
        return 0;
    }
    let m = online.len();
    let window_ns = duration.as_nanos();
    let period_ns = (m as u128 * 1_000_000_000 / rate as u128).max(1);
    let start = Instant::now() + START_LEAD;
    let end = start + duration;
    let jids: Vec<String> = online.iter().map(|c| c.jid.clone()).collect();
    let servers: Vec<usize> = online.iter().map(|c| c.server).collect();
    let targets = spread::targets(&servers);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    for (p, client) in online.into_iter().enumerate() {
        let offset_ns = p as u128 * 1_000_000_000 / rate as u128;
        let count = if offset_ns < window_ns {
            (window_ns - offset_ns).div_ceil(period_ns) as u64
        } else {
            0
        };
        let _ = client.schedule.send(Schedule {
            target: room
                .map(str::to_string)
                .unwrap_or_else(|| jids[targets[p]].clone()),
            kind: if room.is_some() { "groupchat" } else { "chat" },
            first: start + Duration::from_nanos(offset_ns as u64),
            period: Duration::from_nanos(period_ns as u64),
            count,
            end,
            done: done_tx.clone(),
        });
    }
    drop(done_tx);

    tokio::time::sleep_until(end).await;
    let in_window = traffic.delivered.load(Ordering::SeqCst);
    let grace_end = end + GRACE;
    // The channel closes once every sender has finished its schedule.
    let _ = tokio::time::timeout_at(grace_end, done_rx.recv()).await;
    let _ = tokio::time::timeout_at(grace_end, traffic.all_delivered()).await;
    in_window
}
