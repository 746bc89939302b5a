//! In-memory storage for tests and throwaway servers; same contracts as the SQL backends.

use async_trait::async_trait;
use rookery_core::storage::*;
use rookery_core::BareJid;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

#[path = "memory_pubsub.rs"]
mod pubsub;
#[path = "memory_upload.rs"]
mod upload;

#[derive(Default)]
pub struct MemoryStorage {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    accounts: BTreeMap<String, Credentials>,
    rosters: HashMap<String, (u64, BTreeMap<String, RosterItem>)>,
    pending: HashMap<String, BTreeMap<String, String>>,
    offline: HashMap<String, Vec<String>>,
    kv: HashMap<(String, String, String), String>,
    archive: HashMap<String, Vec<Archived>>,
    pubsub: pubsub::Nodes,
    uploads: upload::Uploads,
}

#[async_trait]
impl AccountStore for MemoryStorage {
    async fn create_account(&self, user: &BareJid, c: &Credentials) -> StorageResult<bool> {
        let mut g = self.inner.lock().unwrap();
        if g.accounts.contains_key(user.as_str()) {
            return Ok(false);
        }
        g.accounts.insert(user.to_string(), c.clone());
        Ok(true)
    }
    async fn credentials(&self, user: &BareJid) -> StorageResult<Option<Credentials>> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .accounts
            .get(user.as_str())
            .cloned())
    }
    async fn set_credentials(&self, user: &BareJid, c: &Credentials) -> StorageResult<bool> {
        let mut g = self.inner.lock().unwrap();
        match g.accounts.get_mut(user.as_str()) {
            Some(slot) => {
                *slot = c.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }
    async fn delete_account(&self, user: &BareJid) -> StorageResult<bool> {
        let mut g = self.inner.lock().unwrap();
        let u = user.as_str();
        g.rosters.remove(u);
        g.pending.remove(u);
        g.offline.remove(u);
        g.kv.retain(|(owner, _, _), _| owner != u);
        g.archive.remove(u);
        g.pubsub.retain(|(service, _), _| service != u);
        Ok(g.accounts.remove(u).is_some())
    }
    async fn list_accounts(&self, host: &str) -> StorageResult<Vec<String>> {
        let g = self.inner.lock().unwrap();
        Ok(g.accounts
            .keys()
            .filter(|j| j.rsplit_once('@').map(|(_, h)| h) == Some(host))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl RosterStore for MemoryStorage {
    async fn roster(&self, user: &BareJid) -> StorageResult<(u64, Vec<RosterItem>)> {
        let g = self.inner.lock().unwrap();
        Ok(g.rosters
            .get(user.as_str())
            .map(|(v, items)| (*v, items.values().cloned().collect()))
            .unwrap_or((0, Vec::new())))
    }
    async fn roster_item(
        &self,
        user: &BareJid,
        contact: &str,
    ) -> StorageResult<Option<RosterItem>> {
        let g = self.inner.lock().unwrap();
        Ok(g.rosters
            .get(user.as_str())
            .and_then(|(_, i)| i.get(contact).cloned()))
    }
    async fn put_roster_item(&self, user: &BareJid, item: &RosterItem) -> StorageResult<u64> {
        let mut g = self.inner.lock().unwrap();
        let r = g.rosters.entry(user.to_string()).or_default();
        r.0 += 1;
        r.1.insert(item.jid.clone(), item.clone());
        Ok(r.0)
    }
    async fn remove_roster_item(
        &self,
        user: &BareJid,
        contact: &str,
    ) -> StorageResult<Option<u64>> {
        let mut g = self.inner.lock().unwrap();
        let Some(r) = g.rosters.get_mut(user.as_str()) else {
            return Ok(None);
        };
        if r.1.remove(contact).is_none() {
            return Ok(None);
        }
        r.0 += 1;
        Ok(Some(r.0))
    }
    async fn put_pending_in(
        &self,
        user: &BareJid,
        contact: &str,
        stanza: &str,
    ) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        g.pending
            .entry(user.to_string())
            .or_default()
            .insert(contact.to_string(), stanza.to_string());
        Ok(())
    }
    async fn remove_pending_in(&self, user: &BareJid, contact: &str) -> StorageResult<bool> {
        let mut g = self.inner.lock().unwrap();
        Ok(g.pending
            .get_mut(user.as_str())
            .map(|p| p.remove(contact).is_some())
            .unwrap_or(false))
    }
    async fn pending_in(&self, user: &BareJid) -> StorageResult<Vec<(String, String)>> {
        let g = self.inner.lock().unwrap();
        Ok(g.pending
            .get(user.as_str())
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }
}

#[async_trait]
impl OfflineStore for MemoryStorage {
    async fn push_offline(&self, user: &BareJid, stanza: &str, cap: usize) -> StorageResult<bool> {
        let mut g = self.inner.lock().unwrap();
        let q = g.offline.entry(user.to_string()).or_default();
        if q.len() >= cap {
            return Ok(false);
        }
        q.push(stanza.to_string());
        Ok(true)
    }
    async fn take_offline(&self, user: &BareJid) -> StorageResult<Vec<String>> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .offline
            .remove(user.as_str())
            .unwrap_or_default())
    }
    async fn count_offline(&self, user: &BareJid) -> StorageResult<usize> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .offline
            .get(user.as_str())
            .map_or(0, |q| q.len()))
    }
}

#[async_trait]
impl KeyValueStore for MemoryStorage {
    async fn kv_get(
        &self,
        user: &BareJid,
        store: &str,
        key: &str,
    ) -> StorageResult<Option<String>> {
        let g = self.inner.lock().unwrap();
        Ok(g.kv
            .get(&(user.to_string(), store.to_string(), key.to_string()))
            .cloned())
    }
    async fn kv_set(
        &self,
        user: &BareJid,
        store: &str,
        key: &str,
        value: Option<&str>,
    ) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        let k = (user.to_string(), store.to_string(), key.to_string());
        match value {
            Some(v) => {
                g.kv.insert(k, v.to_string());
            }
            None => {
                g.kv.remove(&k);
            }
        }
        Ok(())
    }

    async fn kv_all(&self, store: &str) -> StorageResult<Vec<(String, String, String)>> {
        let g = self.inner.lock().unwrap();
        let mut all: Vec<(String, String, String)> =
            g.kv.iter()
                .filter(|((_, s, _), _)| s == store)
                .map(|((u, _, k), v)| (u.clone(), k.clone(), v.clone()))
                .collect();
        all.sort();
        Ok(all)
    }
}

#[async_trait]
impl ArchiveStore for MemoryStorage {
    async fn archive_append(&self, batch: &[(String, Archived)]) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        for (owner, m) in batch {
            let a = g.archive.entry(owner.clone()).or_default();
            if !a.iter().any(|x| x.id == m.id) {
                a.push(m.clone());
            }
        }
        Ok(())
    }

    async fn archive_query(&self, owner: &str, q: &ArchiveQuery) -> StorageResult<ArchivePage> {
        let g = self.inner.lock().unwrap();
        let all: &[Archived] = g.archive.get(owner).map(|v| v.as_slice()).unwrap_or(&[]);
        let pos = |id: &String| {
            all.iter()
                .position(|m| &m.id == id)
                .ok_or_else(|| StorageError("item-not-found".into()))
        };
        let after = q.after.as_ref().map(pos).transpose()?;
        let before = q.before.as_ref().map(pos).transpose()?;
        let matching: Vec<(usize, &Archived)> = all
            .iter()
            .enumerate()
            .filter(|(_, m)| q.with.as_ref().is_none_or(|w| &m.with == w))
            .filter(|(_, m)| q.start.is_none_or(|s| m.timestamp >= s))
            .filter(|(_, m)| q.end.is_none_or(|e| m.timestamp <= e))
            .filter(|(_, m)| q.ids.is_empty() || q.ids.contains(&m.id))
            .collect();
        let count = matching.len();
        let mut window: Vec<&Archived> = matching
            .into_iter()
            .filter(|(i, _)| after.is_none_or(|a| *i > a) && before.is_none_or(|b| *i < b))
            .map(|(_, m)| m)
            .collect();
        let backwards = before.is_some() || (q.from_end && after.is_none());
        let complete = window.len() <= q.max;
        if backwards {
            let skip = window.len().saturating_sub(q.max);
            window.drain(..skip);
        } else {
            window.truncate(q.max);
        }
        Ok(ArchivePage {
            items: window.into_iter().cloned().collect(),
            complete,
            count,
        })
    }

    async fn archive_expire(&self, before: i64) -> StorageResult<u64> {
        let mut g = self.inner.lock().unwrap();
        let mut n = 0;
        for a in g.archive.values_mut() {
            let len = a.len();
            a.retain(|m| m.timestamp >= before);
            n += (len - a.len()) as u64;
        }
        Ok(n)
    }

    async fn archive_clear(&self, owner: &str) -> StorageResult<()> {
        self.inner.lock().unwrap().archive.remove(owner);
        Ok(())
    }
}

/// Owners whose list is not empty (a taken queue or cleared archive may leave an empty one).
fn non_empty_keys<V>(map: &HashMap<String, Vec<V>>) -> Vec<String> {
    let mut keys: Vec<String> = map
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys
}

#[async_trait]
impl ExportStore for MemoryStorage {
    async fn all_accounts(&self) -> StorageResult<Vec<String>> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .accounts
            .keys()
            .cloned()
            .collect())
    }

    async fn roster_owners(&self) -> StorageResult<Vec<String>> {
        let g = self.inner.lock().unwrap();
        let with_pending = g.pending.iter().filter(|(_, p)| !p.is_empty());
        let owners: BTreeSet<String> = g
            .rosters
            .keys()
            .chain(with_pending.map(|(u, _)| u))
            .cloned()
            .collect();
        Ok(owners.into_iter().collect())
    }

    async fn restore_roster(
        &self,
        user: &BareJid,
        version: u64,
        items: &[RosterItem],
    ) -> StorageResult<()> {
        let items = items.iter().map(|i| (i.jid.clone(), i.clone())).collect();
        let mut g = self.inner.lock().unwrap();
        g.rosters.insert(user.to_string(), (version, items));
        Ok(())
    }

    async fn offline_owners(&self) -> StorageResult<Vec<String>> {
        Ok(non_empty_keys(&self.inner.lock().unwrap().offline))
    }

    async fn peek_offline(&self, user: &BareJid) -> StorageResult<Vec<String>> {
        let g = self.inner.lock().unwrap();
        Ok(g.offline.get(user.as_str()).cloned().unwrap_or_default())
    }

    async fn kv_stores(&self) -> StorageResult<Vec<String>> {
        let g = self.inner.lock().unwrap();
        let stores: BTreeSet<String> = g.kv.keys().map(|(_, s, _)| s.clone()).collect();
        Ok(stores.into_iter().collect())
    }

    async fn archive_owners(&self) -> StorageResult<Vec<String>> {
        Ok(non_empty_keys(&self.inner.lock().unwrap().archive))
    }

    async fn pubsub_services(&self) -> StorageResult<Vec<String>> {
        let g = self.inner.lock().unwrap();
        let services: BTreeSet<String> = g.pubsub.keys().map(|(s, _)| s.clone()).collect();
        Ok(services.into_iter().collect())
    }

    async fn all_uploads(&self) -> StorageResult<Vec<Upload>> {
        Ok(self.inner.lock().unwrap().uploads.stored())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conforms() {
        crate::storage::conformance::run(&super::MemoryStorage::default()).await;
    }
}
