//! Account management shared by the admin CLI and in-band registration (XEP-0077).

use crate::scram;
use crate::Server;
use rookery_core::BareJid;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("invalid JID: {0}")]
    InvalidJid(String),
    #[error("{0} is not a host this server serves")]
    UnknownHost(String),
    #[error("the account exists already")]
    Exists,
    #[error("no such account")]
    NotFound,
    #[error("the password is too short")]
    WeakPassword,
    #[error(transparent)]
    Storage(#[from] rookery_core::storage::StorageError),
}

/// Normalises a user JID (nodeprep, nameprep) and checks it is local with a localpart.
pub fn parse_user(
    config: &rookery_core::config::Config,
    jid: &str,
) -> Result<BareJid, AccountError> {
    let bare = BareJid::new(jid).map_err(|e| AccountError::InvalidJid(format!("{jid}: {e}")))?;
    if bare.node().is_none() {
        return Err(AccountError::InvalidJid(format!("{jid}: no localpart")));
    }
    if !config.is_local_host(bare.domain().as_str()) {
        return Err(AccountError::UnknownHost(bare.domain().to_string()));
    }
    Ok(bare)
}

pub async fn create(server: &Server, user: &BareJid, password: &str) -> Result<(), AccountError> {
    if password.chars().count() < server.config.registration.min_password_length.max(1) {
        return Err(AccountError::WeakPassword);
    }
    let creds = scram::derive_credentials(password);
    if server.storage.create_account(user, &creds).await? {
        // How old an account is decides stranger filtering (`modules::strangers`).
        let now = chrono::Utc::now().timestamp().to_string();
        server
            .storage
            .kv_set(
                user,
                crate::modules::strangers::STORE,
                "created",
                Some(&now),
            )
            .await?;
        crate::lookalike::add(server.storage.as_ref(), user).await?;
        Ok(())
    } else {
        Err(AccountError::Exists)
    }
}

pub async fn set_password(
    server: &Server,
    user: &BareJid,
    password: &str,
) -> Result<(), AccountError> {
    if password.chars().count() < server.config.registration.min_password_length.max(1) {
        return Err(AccountError::WeakPassword);
    }
    let creds = scram::derive_credentials(password);
    if server.storage.set_credentials(user, &creds).await? {
        Ok(())
    } else {
        Err(AccountError::NotFound)
    }
}

/// Deletes the account, ends its sessions and lets modules clean up.
pub async fn delete(server: &Server, user: &BareJid) -> Result<(), AccountError> {
    // Contacts learn the subscription is gone, as when the user removes each item (RFC 6121 §2.5).
    let (_, items) = server.storage.roster(user).await?;
    for item in items {
        crate::presence::cancel_subscriptions(server, user, &item).await;
    }
    if !server.storage.delete_account(user).await? {
        return Err(AccountError::NotFound);
    }
    crate::lookalike::remove(server.storage.as_ref(), user).await?;
    for h in server.modules.hooks.iter() {
        h.on_user_deleted(server, user).await;
    }
    for s in server.sessions.resources(user) {
        s.close("not-authorized", Some("account deleted".into()))
            .await;
    }
    Ok(())
}

/// Where the disabled flag lives (key-value store, per account).
const DISABLED: &str = "account";

/// Whether an administrator disabled the account (XEP-0133 §4.3).
pub async fn is_disabled(server: &Server, user: &BareJid) -> bool {
    matches!(
        server.storage.kv_get(user, DISABLED, "disabled").await,
        Ok(Some(_))
    )
}

/// Disables or re-enables an account; disabling ends its sessions.
pub async fn set_disabled(
    server: &Server,
    user: &BareJid,
    disabled: bool,
) -> Result<(), AccountError> {
    if server.storage.credentials(user).await?.is_none() {
        return Err(AccountError::NotFound);
    }
    let now = chrono::Utc::now().to_rfc3339();
    server
        .storage
        .kv_set(user, DISABLED, "disabled", disabled.then_some(now.as_str()))
        .await?;
    if disabled {
        for s in server.sessions.resources(user) {
            s.close("not-authorized", Some("account disabled".into()))
                .await;
        }
    }
    Ok(())
}
