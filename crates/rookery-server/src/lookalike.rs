//! Look-alike account names (UTS #39 skeletons): an index per host, so a registration is checked
//! against every existing account with one lookup instead of a scan of all of them.
//!
//! The index lives in the key-value store, owned by the host's JID: skeleton → username. Hosts
//! whose accounts predate it are indexed on first use.

use rookery_core::storage::{Storage, StorageResult};
use rookery_core::BareJid;

const STORE: &str = "skeletons";
/// Set once a host's existing accounts are in the index (no username has an empty skeleton).
const INDEXED: &str = "";

/// The UTS #39 skeleton: names with the same one look alike.
pub fn skeleton(s: &str) -> String {
    unicode_security::skeleton(s).collect()
}

fn host_owner(user: &BareJid) -> Option<BareJid> {
    BareJid::new(user.domain().as_str()).ok()
}

/// Records a new account.
pub async fn add(s: &dyn Storage, user: &BareJid) -> StorageResult<()> {
    let (Some(node), Some(host)) = (user.node(), host_owner(user)) else {
        return Ok(());
    };
    s.kv_set(&host, STORE, &skeleton(node.as_str()), Some(node.as_str()))
        .await
}

/// Forgets a deleted account (unless its skeleton now points at another name).
pub async fn remove(s: &dyn Storage, user: &BareJid) -> StorageResult<()> {
    let (Some(node), Some(host)) = (user.node(), host_owner(user)) else {
        return Ok(());
    };
    let key = skeleton(node.as_str());
    if s.kv_get(&host, STORE, &key).await?.as_deref() == Some(node.as_str()) {
        s.kv_set(&host, STORE, &key, None).await?;
    }
    Ok(())
}

/// An existing account of `host`, other than `node` itself, whose name looks like `node`.
pub async fn existing(s: &dyn Storage, host: &str, node: &str) -> StorageResult<Option<String>> {
    let Ok(owner) = BareJid::new(host) else {
        return Ok(None);
    };
    if s.kv_get(&owner, STORE, INDEXED).await?.is_none() {
        for jid in s.list_accounts(host).await? {
            if let Ok(user) = BareJid::new(&jid) {
                add(s, &user).await?;
            }
        }
        s.kv_set(&owner, STORE, INDEXED, Some("1")).await?;
    }
    let found = s.kv_get(&owner, STORE, &skeleton(node)).await?;
    Ok(found.filter(|other| other != node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use rookery_core::storage::AccountStore;

    #[tokio::test]
    async fn finds_look_alikes_of_accounts_old_and_new() {
        let s = MemoryStorage::default();
        let creds = crate::scram::derive_with_salt("pw", vec![7; 16], 64);
        // Created before the index existed.
        let old = BareJid::new("paypal@example.org").unwrap();
        assert!(s.create_account(&old, &creds).await.unwrap());
        assert_eq!(
            existing(&s, "example.org", "paypa1")
                .await
                .unwrap()
                .as_deref(),
            Some("paypal")
        );
        assert_eq!(existing(&s, "example.org", "paypal").await.unwrap(), None);
        assert_eq!(existing(&s, "example.org", "alice").await.unwrap(), None);

        let new = BareJid::new("alice@example.org").unwrap();
        assert!(s.create_account(&new, &creds).await.unwrap());
        add(&s, &new).await.unwrap();
        assert_eq!(
            existing(&s, "example.org", "a1ice")
                .await
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        // Per host.
        assert_eq!(existing(&s, "example.net", "a1ice").await.unwrap(), None);

        remove(&s, &new).await.unwrap();
        assert_eq!(existing(&s, "example.org", "a1ice").await.unwrap(), None);
    }
}
