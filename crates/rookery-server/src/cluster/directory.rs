//! The replica of other nodes' sessions each node keeps, and the session registry that joins
//! it to this node's own sessions.

use super::{Cluster, RemoteSink};
use crate::session::{LocalRegistry, SessionHandle, SessionRegistry};
use dashmap::DashMap;
use rookery_core::{BareJid, FullJid};
use std::sync::Arc;

/// Other nodes' sessions by bare JID.
#[derive(Default)]
pub struct Directory {
    by_bare: DashMap<BareJid, Vec<SessionHandle>>,
}

impl Directory {
    pub fn up(&self, sink: RemoteSink, jid: &str, rec: super::wire::Record) {
        let Ok(jid) = FullJid::new(jid) else { return };
        let mut list = self.by_bare.entry(jid.to_bare()).or_default();
        match list.iter_mut().find(|h| h.jid == jid) {
            Some(h) if h.id == rec.id && h.node() == Some(sink.node()) => {
                *h.state.lock().unwrap() = rec.state();
            }
            Some(h) => *h = SessionHandle::remote(rec.id, jid, sink, rec.state()),
            None => list.push(SessionHandle::remote(rec.id, jid, sink, rec.state())),
        }
    }

    pub fn down(&self, jid: &str, id: u64) {
        let Ok(jid) = FullJid::new(jid) else { return };
        self.by_bare.remove_if_mut(&jid.to_bare(), |_, list| {
            list.retain(|h| !(h.jid == jid && h.id == id));
            list.is_empty()
        });
    }

    pub fn node_down(&self, node: &str) {
        self.by_bare.retain(|_, list| {
            list.retain(|h| h.node() != Some(node));
            !list.is_empty()
        });
    }

    fn get(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.by_bare
            .get(&jid.to_bare())
            .and_then(|l| l.iter().find(|h| &h.jid == jid).cloned())
    }

    fn resources(&self, user: &BareJid) -> Vec<SessionHandle> {
        self.by_bare
            .get(user)
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    fn all(&self) -> Vec<SessionHandle> {
        self.by_bare
            .iter()
            .flat_map(|e| e.value().clone())
            .collect()
    }

    pub fn count_on(&self, node: &str) -> usize {
        self.by_bare
            .iter()
            .map(|e| e.value().iter().filter(|h| h.node() == Some(node)).count())
            .sum()
    }

    fn len(&self) -> usize {
        self.by_bare.iter().map(|e| e.value().len()).sum()
    }
}

/// Sessions of the whole cluster: this node's own (as `LocalRegistry`) and the directory's.
pub struct ClusterRegistry {
    local: LocalRegistry,
    cluster: Arc<Cluster>,
}

impl ClusterRegistry {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        ClusterRegistry {
            local: LocalRegistry::default(),
            cluster,
        }
    }
}

impl SessionRegistry for ClusterRegistry {
    fn insert(&self, handle: SessionHandle) -> Option<SessionHandle> {
        // The same full JID bound on another node: that session gives way, as locally.
        if let Some((other, sink)) = self
            .cluster
            .directory
            .get(&handle.jid)
            .and_then(|o| o.remote_sink().cloned().map(|s| (o, s)))
        {
            sink.close(&other.jid, other.id, "conflict", None);
        }
        self.cluster.session_up(&handle);
        self.local.insert(handle)
    }

    fn remove(&self, jid: &FullJid, id: u64) -> bool {
        let removed = self.local.remove(jid, id);
        if removed {
            self.cluster.session_down(jid, id);
        }
        removed
    }

    fn get(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.local
            .get(jid)
            .or_else(|| self.cluster.directory.get(jid))
    }

    fn get_local(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.local.get(jid)
    }

    fn resources(&self, user: &BareJid) -> Vec<SessionHandle> {
        let mut v = self.local.resources(user);
        v.extend(self.cluster.directory.resources(user));
        v
    }

    fn all(&self) -> Vec<SessionHandle> {
        let mut v = self.local.all();
        v.extend(self.cluster.directory.all());
        v
    }

    fn len(&self) -> usize {
        self.local.len() + self.cluster.directory.len()
    }

    fn changed(&self, handle: &SessionHandle) {
        // Only a session still registered here: one that just ended must not come back.
        if self
            .local
            .get(&handle.jid)
            .is_some_and(|h| h.id == handle.id)
        {
            self.cluster.session_up(handle);
        }
    }

    fn local(&self) -> Vec<SessionHandle> {
        self.local.all()
    }
}
