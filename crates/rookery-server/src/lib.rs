//! The Rookery server: listeners, c2s streams, the router, modules and storage (RFC 6120, 6121).

pub mod accounts;
pub mod admin;
pub mod admin_http;
pub mod admin_socket;
pub mod archive;
pub mod c2s;
pub mod cluster;
pub mod component;
pub mod forms;
pub mod http;
pub mod inbox;
pub mod live_config;
pub mod logs;
pub mod lookalike;
pub mod metrics;
pub mod modules;
pub mod portable;
pub mod presence;
#[cfg(test)]
mod proptests;
pub mod rate;
pub mod router;
pub mod s2s;
pub mod scram;
pub mod secrets;
pub mod session;
pub mod storage;
pub mod throttle;
pub mod tls;

use rookery_core::config::Config;
use rookery_core::storage::Storage;
use session::{LocalRegistry, SessionRegistry};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sliding-window counters that limits are judged by (`throttle`).
pub struct Guards {
    /// Accounts registered openly, per address (an hour).
    pub registrations: throttle::Window<IpAddr>,
    /// Failed authentications per account name (15 minutes).
    pub account_failures: throttle::Window<String>,
    /// Subscription requests sent, per account (a minute).
    pub subscriptions: throttle::Window<String>,
}

impl Default for Guards {
    fn default() -> Self {
        use std::time::Duration;
        Guards {
            registrations: throttle::Window::new(Duration::from_secs(3600)),
            account_failures: throttle::Window::new(Duration::from_secs(900)),
            subscriptions: throttle::Window::new(Duration::from_secs(60)),
        }
    }
}

/// Shared server state; every connection task holds an `Arc<Server>`.
pub struct Server {
    /// The configuration, replaced by `reload` (SIGHUP).
    pub config: live_config::LiveConfig,
    pub storage: Arc<dyn Storage>,
    pub sessions: Arc<dyn SessionRegistry>,
    pub modules: modules::Registry,
    pub tls: tls::Tls,
    pub started: Instant,
    pub shutdown: CancellationToken,
    /// Recent authentication failures per address, for the growing delay.
    pub auth_failures: Mutex<std::collections::HashMap<IpAddr, (u32, Instant)>>,
    next_id: AtomicU64,
    /// Batched writes to message archives (XEP-0313).
    pub archive: archive::ArchiveWriter,
    /// Sessions that may be resumed (XEP-0198).
    pub sm: c2s::sm::Registry,
    /// Connection tasks, so shutdown can wait for each to flush.
    pub connections: tokio_util::task::TaskTracker,
    /// Open client connections per address (`limits.max_connections_per_ip`).
    pub c2s_per_ip: c2s::PerIp,
    /// Connected external components (XEP-0114).
    pub components: component::Registry,
    /// Server-to-server connections and the dialback secret.
    pub s2s: s2s::Manager,
    /// The cluster this node belongs to, when `cluster.redis` is set.
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: metrics::Metrics,
    /// Abuse counters: registrations per address, failed logins per account, subscription
    /// requests per sender.
    pub guards: Guards,
    /// This server, for tasks that outlive a call (outgoing s2s connections).
    this: std::sync::Weak<Server>,
}

impl Server {
    pub async fn new(config: Config) -> anyhow::Result<Arc<Server>> {
        std::fs::create_dir_all(&config.data_dir)?;
        let storage = storage::open(&config.storage_url()).await?;
        Self::with_storage(config, storage)
    }

    pub fn with_storage(config: Config, storage: Arc<dyn Storage>) -> anyhow::Result<Arc<Server>> {
        let tls = tls::Tls::load(&config)?;
        let mut registry = modules::Registry::default();
        for m in modules::builtin(&config) {
            if config.module_enabled(m.name()) {
                m.register(&mut registry);
            }
        }
        let s2s = s2s::Manager::new(&config, &tls)?;
        let cluster = cluster::Cluster::new(&config.cluster)?;
        let has_cluster = cluster.is_some();
        let sessions: Arc<dyn SessionRegistry> = match &cluster {
            Some(c) => Arc::new(cluster::ClusterRegistry::new(c.clone())),
            None => Arc::new(LocalRegistry::default()),
        };
        let metrics = metrics::Metrics::new();
        Ok(Arc::new_cyclic(|this| Server {
            cluster,
            this: this.clone(),
            components: component::Registry::default(),
            c2s_per_ip: c2s::PerIp::default(),
            s2s,
            config: live_config::LiveConfig::new(config),
            storage,
            sessions,
            modules: registry,
            tls,
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            auth_failures: Mutex::default(),
            // Ids name sessions across the cluster (carbons skip the sender's own): each run of a
            // node starts its counter at a random base of its own.
            next_id: AtomicU64::new(if has_cluster {
                (rand::random::<u64>() & 0xff_ffff) << 40 | 1
            } else {
                1
            }),
            connections: tokio_util::task::TaskTracker::new(),
            sm: c2s::sm::Registry::default(),
            archive: archive::ArchiveWriter::new(
                metrics.storage_histogram(metrics::StorageOp::ArchiveBatch),
            ),
            metrics,
            guards: Guards::default(),
        }))
    }

    /// The `Arc` this server lives in (it always does: see `with_storage`).
    pub fn arc(&self) -> Arc<Server> {
        self.this
            .upgrade()
            .expect("the server is alive while in use")
    }

    /// Per-user data a module caches (`modules::UserCache`) changed here: other cluster nodes
    /// drop their copies.
    pub fn changed_user_data(&self, topic: &str, user: &rookery_core::BareJid) {
        if let Some(c) = &self.cluster {
            c.invalidate(topic, user);
        }
    }

    /// Applies a new configuration to the running server without dropping connections (SIGHUP):
    /// certificates are read again (if that fails, nothing changes), and admins, limits,
    /// registration, HTTP, TLS, federation policy and modules' options take effect for what
    /// happens next. Parts fixed at start (hosts, data directory, storage, listeners, cluster,
    /// which modules run, services' subdomains, components) keep their running values; the
    /// names of those that differ are returned, to be applied by a restart.
    pub async fn reload(&self, mut new: Config) -> anyhow::Result<Vec<&'static str>> {
        let old = &*self.config;
        let mut restart = Vec::new();
        macro_rules! fixed {
            ($($field:ident),*) => {$(
                if format!("{:?}", new.$field) != format!("{:?}", old.$field) {
                    restart.push(stringify!($field));
                }
                new.$field = old.$field.clone();
            )*};
        }
        fixed!(hosts, data_dir, storage, listen, cluster, components, log_format);
        if new.modules.disabled != old.modules.disabled {
            restart.push("modules.disabled");
            new.modules.disabled = old.modules.disabled.clone();
        }
        self.tls.reload(&new)?;
        for m in &self.modules.reloadable {
            restart.extend(m.reload(&new).await);
        }
        // What the modules kept, the configuration says too.
        let (n, o) = (&mut new.modules, &old.modules);
        n.muc.subdomain.clone_from(&o.muc.subdomain);
        n.pubsub.subdomain.clone_from(&o.pubsub.subdomain);
        n.proxy65.subdomain.clone_from(&o.proxy65.subdomain);
        n.proxy65.listen.clone_from(&o.proxy65.listen);
        n.upload.subdomain.clone_from(&o.upload.subdomain);
        n.upload.store = o.upload.store;
        n.upload.path.clone_from(&o.upload.path);
        self.config.replace(new);
        if restart.is_empty() {
            tracing::info!("configuration reloaded");
        } else {
            tracing::warn!(
                sections = restart.join(", "),
                "configuration reloaded; these changes need a restart"
            );
        }
        Ok(restart)
    }

    /// Whether `user` is spared the rate limits (an administrator, with `limits.admins_exempt`).
    pub fn exempt(&self, user: &rookery_core::BareJid) -> bool {
        self.config.limits.admins_exempt && admin::is_admin(self, user)
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A started server with the addresses it actually listens on (ports may have been 0).
pub struct Running {
    pub server: Arc<Server>,
    pub c2s: Vec<SocketAddr>,
    pub c2s_direct_tls: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub s2s: Vec<SocketAddr>,
    pub s2s_direct_tls: Vec<SocketAddr>,
    pub component: Vec<SocketAddr>,
    listeners: JoinSet<()>,
}

impl Running {
    /// Graceful stop: stop accepting, tell every client `<system-shutdown/>`, let sessions flush.
    pub async fn shutdown(mut self) {
        self.server.shutdown.cancel();
        self.server.connections.close();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.server.connections.wait(),
        )
        .await;
        if let Some(c) = &self.server.cluster {
            c.leave().await;
        }
        self.listeners.abort_all();
        while self.listeners.join_next().await.is_some() {}
    }
}

pub async fn start(config: Config) -> anyhow::Result<Running> {
    let server = Server::new(config).await?;
    start_with(server).await
}

pub async fn start_with(server: Arc<Server>) -> anyhow::Result<Running> {
    let mut started: Vec<*const ()> = Vec::new();
    for svc in server.modules.services.values() {
        // One module may serve several domains; start it once.
        let key = Arc::as_ptr(svc) as *const ();
        if !started.contains(&key) {
            started.push(key);
            svc.start(&server).await;
        }
    }
    let mut listeners = JoinSet::new();
    if let Some(c) = &server.cluster {
        for task in c.run(&server).await? {
            listeners.spawn(task);
        }
    }
    #[cfg(unix)]
    match admin_socket::bind(&server).await {
        Ok(Some(l)) => {
            let server = server.clone();
            listeners.spawn(async move {
                if let Err(e) = admin_socket::serve(server, l).await {
                    tracing::error!(%e, "admin socket failed");
                }
            });
        }
        Ok(None) => {}
        // The server works without it; only the CLI's live operations need it.
        Err(e) => tracing::warn!(%e, "admin socket unavailable"),
    }
    {
        let server = server.clone();
        listeners.spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                every.tick().await;
                // Read each time: a reload may change it.
                let retention = server.config.modules.mam.retention_days;
                if retention == 0 {
                    continue;
                }
                let cutoff =
                    chrono::Utc::now().timestamp_micros() - retention as i64 * 86_400_000_000;
                match server.storage.archive_expire(cutoff).await {
                    Ok(n) if n > 0 => tracing::info!(n, "expired archived messages"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(%e, "archive expiry failed"),
                }
            }
        });
    }
    for l in &server.modules.listeners {
        listeners.spawn(l.bind(server.clone()).await?);
    }
    let mut c2s = Vec::new();
    let mut direct = Vec::new();
    let mut http_addrs = Vec::new();
    for (addrs, direct_tls, out) in [
        (&server.config.listen.c2s, false, &mut c2s),
        (&server.config.listen.c2s_direct_tls, true, &mut direct),
    ] {
        for a in addrs {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?;
            out.push(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, direct_tls, "c2s listening");
            listeners.spawn(c2s::accept_loop(server.clone(), l, direct_tls));
        }
    }
    // BOSH sessions are shared, so a client may poll any HTTP listener.
    let bosh: Arc<c2s::bosh::Sessions> = Arc::default();
    for a in &server.config.listen.http {
        let l = TcpListener::bind(a)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?;
        http_addrs.push(l.local_addr()?);
        tracing::info!(addr = %l.local_addr()?, "http listening");
        listeners.spawn(http::serve(server.clone(), l, bosh.clone()));
    }
    let mut https_addrs = Vec::new();
    for a in &server.config.listen.https {
        let l = TcpListener::bind(a)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?;
        https_addrs.push(l.local_addr()?);
        tracing::info!(addr = %l.local_addr()?, "https listening");
        let tl = http::TlsListener::new(&server, l)?;
        listeners.spawn(http::serve_tls(server.clone(), tl, bosh.clone()));
    }
    let mut s2s_addrs = Vec::new();
    let mut s2s_direct_addrs = Vec::new();
    if server.config.s2s.enabled {
        for a in &server.config.listen.s2s {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?;
            s2s_addrs.push(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "s2s listening");
            listeners.spawn(s2s::accept_loop(server.clone(), l, false));
        }
        for a in &server.config.listen.s2s_direct_tls {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?;
            s2s_direct_addrs.push(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "s2s direct TLS listening");
            listeners.spawn(s2s::accept_loop(server.clone(), l, true));
        }
    }
    let mut component_addrs = Vec::new();
    if !server.config.components.is_empty() {
        for a in &server.config.listen.component {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?;
            component_addrs.push(l.local_addr()?);
            tracing::info!(addr = %l.local_addr()?, "component listener");
            listeners.spawn(component::accept_loop(server.clone(), l));
        }
    }
    Ok(Running {
        server,
        c2s,
        c2s_direct_tls: direct,
        http: http_addrs,
        https: https_addrs,
        s2s: s2s_addrs,
        s2s_direct_tls: s2s_direct_addrs,
        component: component_addrs,
        listeners,
    })
}
