//! Options of the file transfer modules: HTTP upload (XEP-0363), the SOCKS5 bytestreams proxy
//! (XEP-0065) and external services such as STUN/TURN (XEP-0215).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadOptions {
    /// The service lives at `<subdomain>.<host>` for every host.
    pub subdomain: String,
    /// Service name in discovery.
    pub name: String,
    /// Largest file accepted, in bytes (advertised in discovery).
    pub max_file_size: u64,
    /// Bytes a user may have stored at once (0: no limit).
    pub quota_bytes: u64,
    /// Bytes a user may upload in any 24 hours (0: no limit).
    pub daily_quota_bytes: u64,
    /// Content types accepted (`image/*` matches every image type); empty: any.
    pub allowed_types: Vec<String>,
    /// Seconds a slot's PUT URL stays valid.
    pub slot_lifetime_seconds: u64,
    /// Days an uploaded file is kept (0: forever).
    pub expire_after_days: u64,
    /// Base of the URLs handed out, when a reverse proxy serves them (e.g.
    /// `https://upload.example.org`); `/upload/...` is appended. Default: this server's first
    /// HTTPS listener, else its first HTTP listener.
    pub url_base: Option<String>,
    /// Where file contents go: `files` (under `path`) or `database` (the storage backend, so
    /// every node of a cluster serves every file). Default: `database` when storage is
    /// PostgreSQL or the server is a cluster node, else `files`.
    pub store: Option<UploadContents>,
    /// Directory of `files` (default: `<data_dir>/upload`); nodes of a cluster storing
    /// `files` must share it.
    pub path: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadContents {
    Files,
    Database,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            subdomain: "upload".into(),
            name: "HTTP File Upload".into(),
            max_file_size: 100 * 1024 * 1024,
            quota_bytes: 1024 * 1024 * 1024,
            daily_quota_bytes: 1024 * 1024 * 1024,
            allowed_types: Vec::new(),
            slot_lifetime_seconds: 300,
            expire_after_days: 30,
            url_base: None,
            store: None,
            path: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy65Options {
    /// The service lives at `<subdomain>.<host>` for every host.
    pub subdomain: String,
    /// Service name in discovery.
    pub name: String,
    /// Address the SOCKS5 listener binds to.
    pub listen: String,
    /// Host name or address clients connect to (default: the listener's address, or the XMPP
    /// domain when it listens on all addresses).
    pub host: Option<String>,
    /// Port clients connect to (default: the listener's port).
    pub port: Option<u16>,
    /// Bytes relayed per transfer, both directions together (0: no limit).
    pub max_transfer_bytes: u64,
    /// Seconds a transfer may go without data, or a connection wait for its activation.
    pub idle_timeout_seconds: u64,
}

impl Default for Proxy65Options {
    fn default() -> Self {
        Proxy65Options {
            subdomain: "proxy".into(),
            name: "SOCKS5 Bytestreams Service".into(),
            listen: "0.0.0.0:7777".into(),
            host: None,
            port: None,
            max_transfer_bytes: 4 * 1024 * 1024 * 1024,
            idle_timeout_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtdiscoOptions {
    /// Host of the services that name none (default: the XMPP domain asked).
    pub host: Option<String>,
    /// Port of the services that name none.
    pub port: Option<u16>,
    /// Shared secret of the services with `secret = true` (TURN REST API, as coturn's
    /// `static-auth-secret`).
    pub secret: Option<String>,
    /// Seconds TURN credentials stay valid.
    pub ttl_seconds: u64,
    pub services: Vec<ExternalService>,
}

impl Default for ExtdiscoOptions {
    fn default() -> Self {
        ExtdiscoOptions {
            host: None,
            port: None,
            secret: None,
            ttl_seconds: 86400,
            services: Vec::new(),
        }
    }
}

/// One external service (STUN, TURN, ...) listed to clients.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalService {
    /// `stun`, `turn`, `stuns`, `turns` or any other service type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `udp` or `tcp`.
    pub transport: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Fixed credentials.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Time-limited credentials from a shared secret: `true` for `[modules.extdisco].secret`,
    /// or the secret itself.
    pub secret: Option<ServiceSecret>,
    /// Seconds the credentials stay valid (default: `[modules.extdisco].ttl_seconds`).
    pub ttl_seconds: Option<u64>,
    /// Clients must ask for credentials before using the service.
    pub restricted: bool,
}

/// `secret = true` or `secret = "..."`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ServiceSecret {
    Shared(bool),
    Own(String),
}
