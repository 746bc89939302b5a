//! The TOML configuration (`rookery.example.toml` documents every key), with environment overrides.

use serde::Deserialize;
use std::path::PathBuf;

mod transfer;
pub use transfer::{
    ExtdiscoOptions, ExternalService, Proxy65Options, ServiceSecret, UploadContents, UploadOptions,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Virtual hosts served; the first is the default.
    pub hosts: Vec<String>,
    /// Where SQLite, generated certificates and uploads live.
    pub data_dir: PathBuf,
    /// `sqlite://path` (default: `<data_dir>/rookery.sqlite`); `postgres://…` for cluster mode.
    #[serde(deserialize_with = "storage_url")]
    pub storage: Option<String>,
    /// Bare JIDs with administrative rights.
    pub admins: Vec<String>,
    pub listen: ListenConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub registration: RegistrationConfig,
    pub http: HttpConfig,
    pub modules: ModulesConfig,
    /// Federation with other servers (RFC 6120 server-to-server, XEP-0220 dialback).
    pub s2s: S2sConfig,
    /// External components (XEP-0114), each on its own domain.
    pub components: Vec<ComponentConfig>,
    /// Several nodes serving as one (sessions and node-to-node delivery on Redis).
    pub cluster: ClusterConfig,
    /// `human` (default) or `json`: one JSON object per line, with the connection's span (peer
    /// address, JID). The level comes from `ROOKERY_LOG` (default `info`), which is not a config
    /// key, hence not a `[log]` table.
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// `storage = "URL"`, or `[storage] url = "URL"` as cluster operators write it.
fn storage_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Storage {
        Url(String),
        Table { url: String },
    }
    Ok(Option::<Storage>::deserialize(d)?.map(|s| match s {
        Storage::Url(u) | Storage::Table { url: u } => u,
    }))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The shared Redis (`redis://host:6379/0`); without it this node serves alone.
    pub redis: Option<String>,
    /// This node's name, unique in the cluster (default: the machine's host name and the c2s
    /// port would not be unique on one machine, so it is required with `redis`).
    pub node: Option<String>,
    /// Prefix of every Redis key and channel, so clusters can share one Redis.
    pub prefix: String,
    /// How often this node says it is alive.
    pub heartbeat_ms: u64,
    /// A node silent for this long is dead: its sessions are purged and its rooms move.
    pub node_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            node: None,
            prefix: "rookery".into(),
            heartbeat_ms: 1000,
            node_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Accept and open server-to-server connections (the listener is `listen.s2s`).
    pub enabled: bool,
    /// Where to connect for a domain, bypassing DNS (`"example.org" = "10.0.0.5:5269"`).
    pub routes: std::collections::BTreeMap<String, String>,
    /// Secret for dialback keys (XEP-0185); without one, a random secret is kept in the data dir.
    pub dialback_secret: Option<String>,
    /// Close a connection with no traffic for this long.
    pub idle_timeout_seconds: u64,
    /// Give up connecting to a remote server after this long (stanzas bounce).
    pub connect_timeout_seconds: u64,
    /// Stanzas queued per remote domain while its connection is set up.
    pub max_queue: usize,
    /// Trust anchors (PEM) for remote servers' certificates, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Require every remote server to prove its domain with a certificate that verifies
    /// (RFC 6125); dialback alone is then not enough (Prosody's `s2s_secure_auth`).
    pub secure_auth: bool,
    /// Remote domains that must present a valid certificate even when `secure_auth` is off.
    pub secure_domains: Vec<String>,
    /// Remote domains allowed to authenticate by dialback alone even when `secure_auth` is on.
    pub insecure_domains: Vec<String>,
    /// Bytes per second one incoming server stream may send on average (0: unlimited).
    pub rate_bytes_per_second: u64,
}

impl S2sConfig {
    /// Whether `domain` must authenticate with a certificate (no dialback-only peers).
    pub fn requires_certificate(&self, domain: &str) -> bool {
        let listed = |l: &[String]| l.iter().any(|d| d.eq_ignore_ascii_case(domain));
        if self.secure_auth {
            !listed(&self.insecure_domains)
        } else {
            listed(&self.secure_domains)
        }
    }
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            enabled: false,
            routes: Default::default(),
            dialback_secret: None,
            idle_timeout_seconds: 600,
            connect_timeout_seconds: 10,
            max_queue: 1000,
            ca_file: None,
            secure_auth: false,
            secure_domains: Vec::new(),
            insecure_domains: Vec::new(),
            rate_bytes_per_second: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The component's domain (`gateway.example.org`); stanzas to it and its JIDs go to it.
    pub domain: String,
    /// The shared secret of the XEP-0114 handshake.
    pub secret: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hosts: vec!["localhost".into()],
            data_dir: PathBuf::from("./data"),
            storage: None,
            admins: Vec::new(),
            listen: ListenConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            registration: RegistrationConfig::default(),
            http: HttpConfig::default(),
            modules: ModulesConfig::default(),
            s2s: S2sConfig::default(),
            components: Vec::new(),
            cluster: ClusterConfig::default(),
            log_format: LogFormat::Human,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Directory of the built web app served at `/` (default: `web/dist`, or `ROOKERY_WEB_ROOT`).
    pub web_root: Option<PathBuf>,
    /// Origins allowed to use BOSH and host-meta from other sites (`["*"]` for any).
    pub cors_origins: Vec<String>,
    /// Treat WebSocket and BOSH clients as encrypted: set this when a TLS-terminating proxy sits
    /// in front. Loopback clients always count as encrypted.
    pub behind_tls_proxy: bool,
    /// Seconds a BOSH session may go without a request before it ends.
    pub bosh_inactivity_seconds: u64,
    /// Longest `wait` a BOSH client may ask for.
    pub bosh_max_wait_seconds: u64,
    /// Serve Prometheus metrics at `/metrics` to any client, not only to loopback ones.
    pub metrics_public: bool,
    /// Serve the admin API (`/api/v1/`) and page (`/admin/`) to any client, not only to
    /// loopback ones (they still need an administrator's token).
    pub admin_public: bool,
    /// Hours an admin API token stays valid.
    pub admin_token_hours: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            web_root: None,
            cors_origins: Vec::new(),
            behind_tls_proxy: false,
            bosh_inactivity_seconds: 60,
            bosh_max_wait_seconds: 60,
            metrics_public: false,
            admin_public: false,
            admin_token_hours: 12,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Client connections with STARTTLS (RFC 6120).
    pub c2s: Vec<String>,
    /// Client connections with direct TLS (XEP-0368).
    pub c2s_direct_tls: Vec<String>,
    /// HTTP: the web app, WebSocket and BOSH.
    pub http: Vec<String>,
    /// The same over TLS (HTTPS, WSS), with the hosts' certificates.
    pub https: Vec<String>,
    /// Server-to-server connections, when `s2s.enabled`.
    pub s2s: Vec<String>,
    /// Server-to-server connections with direct TLS (XEP-0368, `_xmpps-server._tcp`).
    pub s2s_direct_tls: Vec<String>,
    /// External components (XEP-0114), when any are configured; local only by default.
    pub component: Vec<String>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            c2s: vec!["0.0.0.0:5222".into()],
            c2s_direct_tls: vec!["0.0.0.0:5223".into()],
            http: vec!["127.0.0.1:5280".into()],
            https: Vec::new(),
            s2s: vec!["0.0.0.0:5269".into()],
            s2s_direct_tls: Vec::new(),
            component: vec!["127.0.0.1:5347".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Refuse authentication before STARTTLS.
    pub require_encryption: bool,
    /// Certificates per host; a host without one gets a self-signed certificate on first start.
    pub certificates: Vec<CertificateConfig>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            require_encryption: true,
            certificates: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub host: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza accepted from an authenticated client, in bytes.
    pub max_stanza_bytes: usize,
    /// Largest element accepted before authentication.
    pub max_stanza_bytes_unauthenticated: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
    /// Concurrent sessions (resources) per account.
    pub max_sessions_per_user: usize,
    /// Messages kept for an offline user; more are bounced.
    pub max_offline_messages: usize,
    /// Bytes per second a client may send on average (0: unlimited).
    pub rate_bytes_per_second: u64,
    /// Seconds a client may take to authenticate before it is dropped.
    pub auth_timeout_seconds: u64,
    /// Idle seconds after which the server pings a client (XEP-0199).
    pub ping_interval_seconds: u64,
    /// Seconds a pinged client has to answer before it is dropped.
    pub ping_timeout_seconds: u64,
    /// Roster items per account.
    pub max_roster_items: usize,
    /// Seconds a dropped session with stream management waits to be resumed (XEP-0198).
    pub resume_timeout_seconds: u64,
    /// Open client connections (TCP and direct TLS) from one IP address; more are refused with
    /// `policy-violation` (0: unlimited).
    pub max_connections_per_ip: usize,
    /// Failed authentications from one address (within five minutes of each other) after which
    /// it may not authenticate at all for `auth_ban_seconds` (0: never banned).
    pub auth_ban_failures: u32,
    pub auth_ban_seconds: u64,
    /// Failed authentications for one account name, from any address, within 15 minutes at
    /// which that name may not authenticate until the oldest of them is 15 minutes old (0:
    /// never). Names that do not exist are counted alike, so the answer never says which
    /// accounts exist.
    pub auth_account_failures: usize,
    /// Stanzas per second a client may send on average, in bursts of up to one second's worth
    /// (0: unlimited); beyond it the session waits before taking the next stanza.
    pub rate_stanzas_per_second: u32,
    /// Bytes per second all client connections from one address may send together (0:
    /// unlimited); TCP and direct TLS connections, as `max_connections_per_ip` counts them.
    pub rate_bytes_per_second_per_ip: u64,
    /// Stanzas per second all client connections from one address may send together (0:
    /// unlimited).
    pub rate_stanzas_per_second_per_ip: u32,
    /// Subscription requests one account may send per minute; more are bounced with
    /// `policy-violation` (0: unlimited).
    pub subscriptions_per_minute: usize,
    /// Days after its creation during which an account gets no messages and no subscription
    /// requests from JIDs outside its roster (they are dropped): spam reaches new accounts first
    /// (0: off). Accounts made before this setting existed count as old.
    pub stranger_days: u64,
    /// Whether administrators are exempt from the rate limits above.
    pub admins_exempt: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_bytes: 256 * 1024,
            max_stanza_bytes_unauthenticated: 16 * 1024,
            max_depth: 32,
            max_attributes: 64,
            max_sessions_per_user: 16,
            max_offline_messages: 500,
            rate_bytes_per_second: 0,
            auth_timeout_seconds: 60,
            ping_interval_seconds: 300,
            ping_timeout_seconds: 60,
            max_roster_items: 1000,
            resume_timeout_seconds: 300,
            max_connections_per_ip: 100,
            auth_ban_failures: 10,
            auth_ban_seconds: 600,
            auth_account_failures: 20,
            rate_stanzas_per_second: 0,
            subscriptions_per_minute: 30,
            rate_bytes_per_second_per_ip: 0,
            rate_stanzas_per_second_per_ip: 0,
            stranger_days: 0,
            admins_exempt: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// In-band registration of new accounts (XEP-0077) open to anyone.
    pub allow: bool,
    /// Registration with an invitation token (XEP-0445, made by `rookery invite create`), also
    /// when `allow` is off: `allow = false` with this on is invite-only registration.
    pub invites: bool,
    pub min_password_length: usize,
    /// Accounts one address may register (openly, not by invitation) per hour (0: no limit).
    pub max_per_ip_per_hour: usize,
    /// Usernames nobody may register (compared after normalisation, and by look-alikes).
    pub reserved_usernames: Vec<String>,
    /// Refuse usernames that look like an existing account's or a reserved one (Unicode
    /// confusables, UTS #39 skeletons: `раураl` with Cyrillic letters for `paypal`).
    pub refuse_confusable: bool,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            allow: false,
            invites: true,
            min_password_length: 6,
            max_per_ip_per_hour: 5,
            reserved_usernames: [
                "admin",
                "administrator",
                "root",
                "postmaster",
                "hostmaster",
                "webmaster",
                "abuse",
                "security",
                "support",
                "noc",
                "info",
                "system",
                "xmpp",
                "rookery",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            refuse_confusable: true,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModulesConfig {
    /// Modules switched off by name (`version`, `vcard`, `private`, `last`, `time`, `ping`, `register`, `offline`, `push`).
    pub disabled: Vec<String>,
    pub version: VersionOptions,
    pub disco: DiscoOptions,
    pub muc: MucOptions,
    pub mam: MamOptions,
    pub upload: UploadOptions,
    pub proxy65: Proxy65Options,
    pub extdisco: ExtdiscoOptions,
    pub pubsub: PubSubOptions,
    pub push: PushOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushOptions {
    /// Put the last message's body in notifications (XEP-0357 §9: off by default, since it
    /// passes through the app server and the platform's push service).
    pub include_body: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubSubOptions {
    /// The pubsub service (XEP-0060) lives at `<subdomain>.<host>` for every host.
    pub subdomain: String,
    /// Service name in discovery.
    pub name: String,
    /// Who may create nodes on the service: `anyone`, `local` (accounts of this server) or
    /// `admins`. PEP nodes are always their account's.
    pub node_creation: String,
    /// Items a new service node keeps (PEP nodes keep 1 unless configured).
    pub default_max_items: usize,
    /// The most items any node may keep (what `max` means).
    pub max_items: usize,
    /// Service items and notifications carry their publisher's JID; otherwise each node's
    /// `pubsub#itemreply` decides (as it always does for PEP).
    pub expose_publisher: bool,
    /// Largest item payload accepted, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for PubSubOptions {
    fn default() -> Self {
        PubSubOptions {
            subdomain: "pubsub".into(),
            name: "Publish-Subscribe".into(),
            node_creation: "local".into(),
            default_max_items: 20,
            max_items: 256,
            expose_publisher: true,
            max_payload_bytes: 128 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamOptions {
    /// Days archived messages are kept (0: forever).
    pub retention_days: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucOptions {
    /// The service lives at `<subdomain>.<host>` for every host.
    pub subdomain: String,
    /// Service name in discovery.
    pub name: String,
    /// Who may create rooms: `anyone`, `local` (accounts of this server) or `admins`.
    pub room_creation: String,
    /// New rooms stay locked until their owner configures them (XEP-0045 §10.1).
    pub lock_new_rooms: bool,
    pub persistent_by_default: bool,
    /// Messages of history kept per room and sent on join (at most).
    pub history_length: usize,
    pub max_occupants: usize,
    /// Groupchat messages per second one occupant may send on average, in bursts of five
    /// seconds' worth; faster ones bounce with `resource-constraint` (0: unlimited).
    pub occupant_messages_per_second: f64,
    /// Rooms one account may own at once; creating more is refused (0: no limit; admins are
    /// exempt).
    pub max_rooms_per_user: usize,
}

impl Default for MucOptions {
    fn default() -> Self {
        MucOptions {
            subdomain: "conference".into(),
            name: "Chatrooms".into(),
            room_creation: "local".into(),
            lock_new_rooms: true,
            persistent_by_default: false,
            history_length: 20,
            max_occupants: 200,
            occupant_messages_per_second: 10.0,
            max_rooms_per_user: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VersionOptions {
    /// Answer with the operating system too.
    pub show_os: bool,
    /// Product name to report.
    pub name: String,
}

impl Default for VersionOptions {
    fn default() -> Self {
        VersionOptions {
            show_os: false,
            name: "Rookery".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoOptions {
    /// Extra items listed in the server's disco#items (JID of a service).
    pub items: Vec<String>,
    /// Contact addresses (XEP-0157) in the server's disco#info, by kind (`abuse`, `admin`,
    /// `feedback`, `sales`, `security`, `status`, `support`): `mailto:` / `xmpp:` / `https:` URIs.
    pub contacts: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Prefix of environment overrides: `ROOKERY_LIMITS__MAX_STANZA_BYTES=1000` sets
/// `limits.max_stanza_bytes`; `__` separates levels, values are TOML (a bare word is a string).
pub const ENV_PREFIX: &str = "ROOKERY_";

const TOP_LEVEL_KEYS: &[&str] = &[
    "hosts",
    "data_dir",
    "storage",
    "admins",
    "listen",
    "tls",
    "limits",
    "registration",
    "http",
    "modules",
    "s2s",
    "components",
    "cluster",
    "log_format",
];

impl Config {
    /// Parses a config file's text, then applies environment overrides from `env`.
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // First pass on the text alone, so errors carry the file's line and column.
        toml::from_str::<Config>(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut overridden = false;
        for (k, v) in env {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            // Only variables naming a config section or key are overrides; others (ROOKERY_LOG,
            // ROOKERY_CONFIG, ROOKERY_WEB_ROOT, a test harness's own) are not ours to judge.
            if !TOP_LEVEL_KEYS.contains(&path[0].as_str()) {
                continue;
            }
            let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {v}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(v.clone()));
            set_path(&mut value, &path, parsed).map_err(|message| ConfigError::Env {
                var: k.clone(),
                message,
            })?;
            overridden = true;
        }
        let cfg: Config = if overridden {
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Env {
                    var: "ROOKERY_*".into(),
                    message: e.to_string(),
                })?
        } else {
            toml::from_str(text).expect("validated above")
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(ConfigError::Invalid(
                "`hosts` must list at least one domain".into(),
            ));
        }
        for h in &self.hosts {
            jid::BareJid::new(h).map_err(|e| {
                ConfigError::Invalid(format!("host `{h}` is not a valid domain: {e}"))
            })?;
        }
        for c in &self.tls.certificates {
            if !self.hosts.contains(&c.host) {
                return Err(ConfigError::Invalid(format!(
                    "certificate for `{}` which is not in `hosts`",
                    c.host
                )));
            }
        }
        Ok(())
    }

    pub fn is_local_host(&self, domain: &str) -> bool {
        self.hosts.iter().any(|h| h == domain)
    }

    pub fn storage_url(&self) -> String {
        self.storage.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("rookery.sqlite").display()
            )
        })
    }

    /// Where uploaded files' contents go (see `UploadOptions::store`).
    pub fn upload_contents(&self) -> UploadContents {
        let shared = self.cluster.redis.is_some()
            || self
                .storage
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        self.modules.upload.store.unwrap_or(if shared {
            UploadContents::Database
        } else {
            UploadContents::Files
        })
    }

    pub fn upload_dir(&self) -> PathBuf {
        self.modules
            .upload
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("upload"))
    }

    pub fn module_enabled(&self, name: &str) -> bool {
        !self.modules.disabled.iter().any(|d| d == name)
    }
}

fn set_path(table: &mut toml::Table, path: &[String], v: toml::Value) -> Result<(), String> {
    let (first, rest) = path.split_first().ok_or("empty key")?;
    if rest.is_empty() {
        table.insert(first.clone(), v);
        return Ok(());
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => set_path(t, rest, v),
        _ => Err(format!("`{first}` is not a table")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_a_url_or_a_table_with_one() {
        let flat: Config = toml::from_str("storage = \"postgres://db/x\"").unwrap();
        let table: Config = toml::from_str("[storage]\nurl = \"postgres://db/x\"").unwrap();
        assert_eq!(flat.storage.as_deref(), Some("postgres://db/x"));
        assert_eq!(table.storage, flat.storage);
        assert!(toml::from_str::<Config>("[storage]\nuri = \"x\"").is_err());
    }

    #[test]
    fn s2s_certificate_policy_per_domain() {
        let mut s2s = S2sConfig {
            secure_domains: vec!["bank.example".into()],
            insecure_domains: vec!["legacy.example".into()],
            ..S2sConfig::default()
        };
        assert!(s2s.requires_certificate("BANK.example"));
        assert!(!s2s.requires_certificate("other.example"));
        s2s.secure_auth = true;
        assert!(s2s.requires_certificate("other.example"));
        assert!(!s2s.requires_certificate("legacy.example"));
    }

    #[test]
    fn empty_config_is_the_default() {
        let c = Config::parse("", "x", []).unwrap();
        assert_eq!(c.hosts, vec!["localhost"]);
        assert!(c.tls.require_encryption);
        assert_eq!(c.limits.max_stanza_bytes, 262144);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse(
            "hosts = ['a']\n[limits]\nmax_stanza_byte = 3\n",
            "f.toml",
            [],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_stanza_byte"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let c = Config::parse(
            "[limits]\nmax_depth = 5\n",
            "f",
            [
                ("ROOKERY_LIMITS__MAX_DEPTH".to_string(), "7".to_string()),
                (
                    "ROOKERY_HOSTS".to_string(),
                    "['a.test', 'b.test']".to_string(),
                ),
                ("ROOKERY_DATA_DIR".to_string(), "/tmp/x".to_string()),
                ("OTHER".to_string(), "1".to_string()),
                ("ROOKERY_BIN".to_string(), "/x/rookery".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(c.limits.max_depth, 7);
        assert_eq!(c.hosts, vec!["a.test", "b.test"]);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let text = include_str!("../../../rookery.example.toml");
        let c = Config::parse(text, "rookery.example.toml", []).unwrap();
        let d = Config::default();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn bad_env_key_is_an_error() {
        let err =
            Config::parse("", "f", [("ROOKERY_LIMITS__NOPE".into(), "1".into())]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
