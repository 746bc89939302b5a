//! XEP-0445 Pre-Authenticated In-Band Registration with invitation tokens (XEP-0401 style):
//! administrators make tokens (`rookery invite create`, the admin API); a client presents one on
//! an unauthenticated stream (`<preauth xmlns='urn:xmpp:pars:0'/>`) and may then register where
//! open registration is off. Only a token's SHA-256 is stored, under its host.

use crate::admin::AdminError;
use crate::Server;
use rookery_core::BareJid;
use serde::{Deserialize, Serialize};

pub const NS_PARS: &str = "urn:xmpp:pars:0";
/// The stream feature saying invitations are accepted.
pub const FEATURE: &str = "urn:xmpp:ibr-token:0";
const STORE: &str = "invites";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Unix seconds after which it is void.
    pub expires: u64,
    /// Registrations it still allows.
    pub uses: u32,
    /// The only username it may register, if it names one (reserved until it expires).
    pub username: Option<String>,
}

/// A new invitation: the token (shown once) and the URI to hand out.
#[derive(Clone, Debug, Serialize)]
pub struct Created {
    pub token: String,
    pub uri: String,
    pub expires: u64,
    pub uses: u32,
}

fn host_jid(server: &Server, host: &str) -> Result<BareJid, AdminError> {
    if !server.config.is_local_host(host) {
        return Err(AdminError::UnknownHost(host.to_string()));
    }
    BareJid::new(host).map_err(|_| AdminError::UnknownHost(host.to_string()))
}

/// Makes an invitation to register on `host`, good for `uses` registrations within `days`.
pub async fn create(
    server: &Server,
    host: &str,
    uses: u32,
    days: u64,
    username: Option<&str>,
) -> Result<Created, AdminError> {
    let h = host_jid(server, host)?;
    let username = match username.filter(|u| !u.is_empty()) {
        Some(u) => Some(
            crate::accounts::parse_user(&server.config, &format!("{u}@{host}"))?
                .node()
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ),
        None => None,
    };
    let token = crate::secrets::new_token();
    let invite = Invite {
        expires: crate::unix_now() + days.max(1) * 86_400,
        uses: uses.max(1),
        username,
    };
    let json = serde_json::to_string(&invite).expect("invite serialises");
    server
        .storage
        .kv_set(&h, STORE, &crate::secrets::hash_hex(&token), Some(&json))
        .await?;
    let uri = match &invite.username {
        Some(u) => format!("xmpp:{u}@{host}?register;preauth={token}"),
        None => format!("xmpp:{host}?register;preauth={token}"),
    };
    tracing::info!(host, uses = invite.uses, "invitation created");
    Ok(Created {
        token,
        uri,
        expires: invite.expires,
        uses: invite.uses,
    })
}

/// The invitation `token` stands for on `host` if it is good now, with its storage key.
pub async fn check(server: &Server, host: &str, token: &str) -> Option<(String, Invite)> {
    let h = host_jid(server, host).ok()?;
    let k = crate::secrets::hash_hex(token);
    let raw = server.storage.kv_get(&h, STORE, &k).await.ok()??;
    let invite: Invite = serde_json::from_str(&raw).ok()?;
    (invite.expires > crate::unix_now() && invite.uses > 0).then_some((k, invite))
}

/// The invitation stored under `key` (from [`check`]) if it is still good.
pub async fn check_key(server: &Server, host: &str, key: &str) -> Option<Invite> {
    let h = host_jid(server, host).ok()?;
    let raw = server.storage.kv_get(&h, STORE, key).await.ok()??;
    let invite: Invite = serde_json::from_str(&raw).ok()?;
    (invite.uses > 0).then_some(invite)
}

/// Spends one use of the invitation stored under `key` (after a registration succeeded).
pub async fn consume(server: &Server, host: &str, key: &str) {
    let Ok(h) = host_jid(server, host) else {
        return;
    };
    let current = server
        .storage
        .kv_get(&h, STORE, key)
        .await
        .ok()
        .flatten()
        .and_then(|raw| serde_json::from_str::<Invite>(&raw).ok());
    let Some(mut invite) = current else {
        return;
    };
    invite.uses = invite.uses.saturating_sub(1);
    let value =
        (invite.uses > 0).then(|| serde_json::to_string(&invite).expect("invite serialises"));
    if let Err(e) = server
        .storage
        .kv_set(&h, STORE, key, value.as_deref())
        .await
    {
        tracing::error!(%e, "spending an invitation failed");
    }
}

/// Usernames reserved by unexpired invitations of `host`.
pub async fn reserved(server: &Server, host: &str) -> Vec<String> {
    let Ok(h) = host_jid(server, host) else {
        return Vec::new();
    };
    let now = crate::unix_now();
    match server.storage.kv_all(STORE).await {
        Ok(all) => all
            .into_iter()
            .filter(|(owner, _, _)| owner == h.as_str())
            .filter_map(|(_, _, v)| serde_json::from_str::<Invite>(&v).ok())
            .filter(|i| i.expires > now)
            .filter_map(|i| i.username)
            .collect(),
        Err(_) => Vec::new(),
    }
}
