//! The replica of other nodes' sessions each node keeps, and the session registry that joins
//! it to this node's own sessions.

use super::{Cluster, RemoteSink};
use crate::session::{LocalRegistry, SessionHandle, SessionRegistry};
use rookery_core::{BareJid, FullJid};
use std::sync::Arc;

/// Other nodes' sessions, kept as this node keeps its own.
#[derive(Default)]
pub struct Directory {
    sessions: LocalRegistry,
}

impl Directory {
    pub fn up(&self, sink: RemoteSink, jid: &str, rec: super::wire::Record) {
        let Ok(jid) = FullJid::new(jid) else { return };
        match self.sessions.get(&jid) {
            // A state change of a session already known: in place.
            Some(h) if h.id == rec.id && h.node() == Some(sink.node()) => {
                *h.state.lock().unwrap() = rec.state();
            }
            _ => {
                self.sessions
                    .insert(SessionHandle::remote(rec.id, jid, sink, rec.state()));
            }
        }
    }

    pub fn down(&self, jid: &str, id: u64) {
        if let Ok(jid) = FullJid::new(jid) {
            self.sessions.remove(&jid, id);
        }
    }

    pub fn node_down(&self, node: &str) {
        self.sessions.retain(|h| h.node() != Some(node));
    }

    fn get(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.sessions.get(jid)
    }

    fn resources(&self, user: &BareJid) -> Vec<SessionHandle> {
        self.sessions.resources(user)
    }

    fn all(&self) -> Vec<SessionHandle> {
        self.sessions.all()
    }

    pub fn count_on(&self, node: &str) -> usize {
        self.all().iter().filter(|h| h.node() == Some(node)).count()
    }

    fn len(&self) -> usize {
        self.sessions.len()
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
