//! Server administration (the operations of XEP-0133), shared by ad-hoc commands (XEP-0050),
//! Jabber-RPC (XEP-0009) and the `rookery` CLI's admin socket, so all three behave alike.

use crate::accounts::{self, AccountError};
use crate::Server;
use rookery_core::{ns, BareJid, Element};
use serde::{Deserialize, Serialize};

/// Where the message of the day of a host is kept (key-value store, under the host's JID).
const MOTD: &str = "motd";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Motd {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("{0} is not a host this server serves")]
    UnknownHost(String),
    #[error("storage: {0}")]
    Storage(#[from] rookery_core::storage::StorageError),
}

fn host_jid(server: &Server, host: &str) -> Result<BareJid, AdminError> {
    if !server.config.is_local_host(host) {
        return Err(AdminError::UnknownHost(host.to_string()));
    }
    BareJid::new(host).map_err(|_| AdminError::UnknownHost(host.to_string()))
}

pub async fn add_user(server: &Server, jid: &str, password: &str) -> Result<BareJid, AdminError> {
    let user = accounts::parse_user(&server.config, jid)?;
    accounts::create(server, &user, password).await?;
    tracing::info!(%user, "account created by an administrator");
    Ok(user)
}

pub async fn delete_user(server: &Server, jid: &str) -> Result<BareJid, AdminError> {
    let user = accounts::parse_user(&server.config, jid)?;
    accounts::delete(server, &user).await?;
    tracing::info!(%user, "account deleted by an administrator");
    Ok(user)
}

pub async fn set_disabled(
    server: &Server,
    jid: &str,
    disabled: bool,
) -> Result<BareJid, AdminError> {
    let user = accounts::parse_user(&server.config, jid)?;
    accounts::set_disabled(server, &user, disabled).await?;
    tracing::info!(%user, disabled, "account state changed by an administrator");
    Ok(user)
}

pub async fn change_password(
    server: &Server,
    jid: &str,
    password: &str,
) -> Result<BareJid, AdminError> {
    let user = accounts::parse_user(&server.config, jid)?;
    accounts::set_password(server, &user, password).await?;
    Ok(user)
}

/// Registered accounts of `host`.
pub async fn registered_users(server: &Server, host: &str) -> Result<Vec<String>, AdminError> {
    host_jid(server, host)?;
    Ok(server.storage.list_accounts(host).await?)
}

/// Online sessions (full JIDs), of one host or all, sorted.
pub fn online_sessions(server: &Server, host: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = server
        .sessions
        .all()
        .into_iter()
        .filter(|s| host.is_none_or(|h| s.jid.domain().as_str() == h))
        .map(|s| s.jid.to_string())
        .collect();
    v.sort();
    v
}

/// Accounts with at least one session, of one host or all, sorted.
pub fn online_users(server: &Server, host: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = server
        .sessions
        .all()
        .into_iter()
        .filter(|s| host.is_none_or(|h| s.jid.domain().as_str() == h))
        .map(|s| s.bare().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Ends every session of the account, or only the one named by a full JID; returns how many.
pub async fn end_sessions(server: &Server, jid: &str) -> Result<usize, AdminError> {
    let parsed =
        rookery_core::Jid::new(jid).map_err(|e| AccountError::InvalidJid(format!("{jid}: {e}")))?;
    let user = accounts::parse_user(&server.config, parsed.to_bare().as_str())?;
    let mut n = 0;
    for s in server.sessions.resources(&user) {
        if parsed.resource().is_none() || s.jid.as_str() == parsed.as_str() {
            s.close(
                "policy-violation",
                Some("session ended by an administrator".into()),
            )
            .await;
            n += 1;
        }
    }
    Ok(n)
}

/// A message from the host to every online session of it (XEP-0133 §4.23); returns how many.
pub fn announce(
    server: &Server,
    host: &str,
    subject: Option<&str>,
    body: &str,
) -> Result<usize, AdminError> {
    host_jid(server, host)?;
    let mut n = 0;
    for s in server.sessions.all() {
        if s.jid.domain().as_str() != host {
            continue;
        }
        let m = notice(host, &s.jid.to_string(), subject, body);
        if crate::router::send_to_session(server, &s, m) {
            n += 1;
        }
    }
    tracing::info!(host, sessions = n, "announcement sent");
    Ok(n)
}

fn notice(host: &str, to: &str, subject: Option<&str>, body: &str) -> Element {
    let mut m = Element::new("message", ns::CLIENT)
        .with_attr("from", host)
        .with_attr("to", to)
        .with_attr("type", "headline");
    if let Some(s) = subject.filter(|s| !s.is_empty()) {
        m.push_child(Element::new("subject", ns::CLIENT).with_text(s));
    }
    m.with_child(Element::new("body", ns::CLIENT).with_text(body))
}

pub async fn motd(server: &Server, host: &str) -> Result<Option<Motd>, AdminError> {
    let h = host_jid(server, host)?;
    let raw = server.storage.kv_get(&h, MOTD, "").await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

/// Sets (or with `None` deletes) the message of the day, which sessions get when they sign in.
pub async fn set_motd(server: &Server, host: &str, motd: Option<&Motd>) -> Result<(), AdminError> {
    let h = host_jid(server, host)?;
    let json = motd.map(|m| serde_json::to_string(m).expect("motd serialises"));
    server.storage.kv_set(&h, MOTD, "", json.as_deref()).await?;
    Ok(())
}

/// Sends the message of the day to a session that just signed in.
pub async fn send_motd(server: &Server, session: &crate::session::SessionHandle) {
    let host = session.jid.domain().to_string();
    if let Ok(Some(m)) = motd(server, &host).await {
        let el = notice(&host, session.jid.as_str(), Some(&m.subject), &m.body);
        crate::router::send_to_session(server, session, el);
    }
}

/// Counters for monitoring.
pub struct Stats {
    pub online_sessions: usize,
    pub online_users: usize,
    pub uptime_seconds: u64,
}

pub fn stats(server: &Server) -> Stats {
    Stats {
        online_sessions: server.sessions.len(),
        online_users: online_users(server, None).len(),
        uptime_seconds: server.started.elapsed().as_secs(),
    }
}

/// Whether `jid` (a bare JID) is an administrator by the configuration.
pub fn is_admin(server: &Server, jid: &BareJid) -> bool {
    server.config.admins.iter().any(|a| a == jid.as_str())
}
