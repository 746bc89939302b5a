//! The session registry seam: where each bound resource lives (RFC 6120 §7) and its presence state.
//! `LocalRegistry` serves one node; a cluster implementation answers the same questions.

use dashmap::DashMap;
use rookery_core::{BareJid, Element, FullJid};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a session task is asked to do by the rest of the server.
#[derive(Debug)]
pub enum Outbound {
    /// Boxed: an inbox allocates its slots in blocks of 32, per session, idle or not.
    Stanza(Box<Element>),
    /// Close the stream with this stream error condition (`conflict`, `system-shutdown`...).
    Close {
        condition: &'static str,
        text: Option<String>,
    },
}

/// Presence bookkeeping of one session (RFC 6121 §4).
#[derive(Debug, Default)]
pub struct PresenceState {
    /// Sent initial presence and not yet unavailable.
    pub available: bool,
    pub priority: i8,
    /// Last broadcast presence, stamped with the session's full JID.
    pub last: Option<Element>,
    /// When `last` was sent, for the XEP-0203 stamp on later copies.
    pub last_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Message carbons enabled (XEP-0280).
    pub carbons: bool,
    /// Asked for the blocklist, so receives its pushes (XEP-0191 §3.3).
    pub blocklist_interested: bool,
    /// Requested the roster, so receives roster pushes (RFC 6121 §2.1.6).
    pub interested: bool,
    /// JIDs that received directed presence and must get unavailable at the end (§4.6).
    pub directed: HashSet<String>,
    /// The stream management id the session may be resumed with (XEP-0198).
    pub resumable: Option<String>,
    /// The connection dropped and the session waits to be resumed (XEP-0198): what reaches it
    /// is held, unseen by the client (push notifications, XEP-0357).
    pub hibernating: bool,
    /// The client said it is inactive (XEP-0352).
    pub inactive: bool,
}

/// A session as the rest of the server sees it. Cloned on every lookup, so it is one shared
/// allocation; its bare JID is kept beside the full one because routing asks for it per stanza.
#[derive(Clone, Debug)]
pub struct SessionHandle(Arc<Handle>);

#[derive(Debug)]
pub struct Handle {
    pub id: u64,
    pub jid: FullJid,
    bare: BareJid,
    sink: Sink,
    /// For a session on another node: a copy of its state, kept by the cluster directory.
    pub state: Arc<Mutex<PresenceState>>,
}

impl std::ops::Deref for SessionHandle {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.0
    }
}

/// Where a session's stanzas go: its task on this node, or another node of the cluster.
#[derive(Clone, Debug)]
enum Sink {
    Local(crate::inbox::Sender<Outbound>),
    Remote(crate::cluster::RemoteSink),
}

#[derive(Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// The session's inbox is full: it is not reading fast enough.
    Full,
    Gone,
}

impl SessionHandle {
    pub fn new(id: u64, jid: FullJid, tx: crate::inbox::Sender<Outbound>) -> Self {
        SessionHandle(Arc::new(Handle {
            id,
            bare: jid.to_bare(),
            jid,
            sink: Sink::Local(tx),
            state: Arc::default(),
        }))
    }

    /// A session of another node, as the cluster directory knows it.
    pub fn remote(
        id: u64,
        jid: FullJid,
        sink: crate::cluster::RemoteSink,
        state: PresenceState,
    ) -> Self {
        SessionHandle(Arc::new(Handle {
            id,
            bare: jid.to_bare(),
            jid,
            sink: Sink::Remote(sink),
            state: Arc::new(Mutex::new(state)),
        }))
    }

    /// The node serving this session, when it is not this one.
    pub fn node(&self) -> Option<&str> {
        match &self.sink {
            Sink::Local(_) => None,
            Sink::Remote(r) => Some(r.node()),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.sink, Sink::Local(_))
    }

    pub fn remote_sink(&self) -> Option<&crate::cluster::RemoteSink> {
        match &self.sink {
            Sink::Local(_) => None,
            Sink::Remote(r) => Some(r),
        }
    }

    pub fn bare(&self) -> BareJid {
        self.bare.clone()
    }

    pub fn bare_jid(&self) -> &BareJid {
        &self.bare
    }

    /// Queues a stanza without waiting: a slow reader must not stall its senders.
    pub fn deliver(&self, el: Element) -> Result<(), DeliveryError> {
        match &self.sink {
            Sink::Local(tx) => tx
                .try_send(Outbound::Stanza(Box::new(el)))
                .map_err(|e| match e {
                    crate::inbox::SendError::Full => DeliveryError::Full,
                    crate::inbox::SendError::Closed => DeliveryError::Gone,
                }),
            Sink::Remote(r) => r.deliver(&self.jid, self.id, el),
        }
    }

    /// Queues a stanza, waiting for room in the inbox: for senders other than the session's own
    /// task (which would wait on itself).
    pub async fn deliver_waiting(&self, el: Element) -> Result<(), DeliveryError> {
        match &self.sink {
            Sink::Local(tx) => tx
                .send(Outbound::Stanza(Box::new(el)))
                .await
                .map_err(|_| DeliveryError::Gone),
            Sink::Remote(r) => r.deliver(&self.jid, self.id, el),
        }
    }

    /// Asks the session to end; waits for inbox room since this must not be lost.
    pub async fn close(&self, condition: &'static str, text: Option<String>) {
        match &self.sink {
            Sink::Local(tx) => {
                let _ = tx.send(Outbound::Close { condition, text }).await;
            }
            Sink::Remote(r) => r.close(&self.jid, self.id, condition, text),
        }
    }

    /// Changes the session's presence state and tells the registry, so other cluster nodes see
    /// the change (every write to `state` of a local session goes through here).
    pub fn update<R>(
        &self,
        registry: &dyn SessionRegistry,
        f: impl FnOnce(&mut PresenceState) -> R,
    ) -> R {
        let r = f(&mut self.state.lock().unwrap());
        registry.changed(self);
        r
    }

    pub fn is_available(&self) -> bool {
        self.state.lock().unwrap().available
    }

    pub fn priority(&self) -> i8 {
        self.state.lock().unwrap().priority
    }

    /// The last broadcast presence with a XEP-0203 stamp of when it was sent: what a probe or a
    /// new subscriber gets.
    pub fn stamped_presence(&self) -> Option<Element> {
        let st = self.state.lock().unwrap();
        let mut p = st.last.clone()?;
        if let Some(at) = st.last_at {
            if !p.has_child("delay", "urn:xmpp:delay") {
                let stamp = at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
                p.push_child(rookery_core::stanza::delay(
                    self.jid.domain().as_str(),
                    &stamp,
                ));
            }
        }
        Some(p)
    }
}

/// Where sessions live. Implementations must be cheap to query on every routed stanza.
pub trait SessionRegistry: Send + Sync {
    /// Adds a session; returns the one it replaces (same full JID), which must then be closed.
    fn insert(&self, handle: SessionHandle) -> Option<SessionHandle>;
    /// Removes a session if it is still the one with this id.
    fn remove(&self, jid: &FullJid, id: u64) -> bool;
    fn get(&self, jid: &FullJid) -> Option<SessionHandle>;
    /// A session of this node only.
    fn get_local(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.get(jid)
    }
    fn resources(&self, user: &BareJid) -> Vec<SessionHandle>;
    /// How many sessions `user` has (routing asks per message, most often to hear "one").
    fn count(&self, user: &BareJid) -> usize {
        self.resources(user).len()
    }
    fn all(&self) -> Vec<SessionHandle>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A local session's presence state changed (availability, priority, carbons, roster or
    /// blocklist interest): a cluster tells the other nodes.
    fn changed(&self, _handle: &SessionHandle) {}
    /// Sessions served by this node only (shutdown, per-node counts).
    fn local(&self) -> Vec<SessionHandle> {
        self.all()
    }
}

/// In-process registry, sharded by bare JID so routing takes no global lock. Keyed by the bare
/// JID's text, so a full JID finds its entry without building its bare JID.
#[derive(Default)]
pub struct LocalRegistry {
    by_bare: DashMap<Box<str>, Vec<SessionHandle>, foldhash::fast::RandomState>,
    count: AtomicUsize,
}

/// The bare part of a full JID's text (a node or domain never holds a `/`).
fn bare_of(jid: &FullJid) -> &str {
    let s = jid.as_str();
    s.split_once('/').map_or(s, |(bare, _)| bare)
}

impl SessionRegistry for LocalRegistry {
    fn insert(&self, handle: SessionHandle) -> Option<SessionHandle> {
        let mut entry = self.by_bare.entry(handle.bare.as_str().into()).or_default();
        let list = entry.value_mut();
        if let Some(pos) = list.iter().position(|h| h.jid == handle.jid) {
            return Some(std::mem::replace(&mut list[pos], handle));
        }
        list.push(handle);
        self.count.fetch_add(1, Ordering::Relaxed);
        None
    }

    fn remove(&self, jid: &FullJid, id: u64) -> bool {
        let mut removed = false;
        self.by_bare.remove_if_mut(bare_of(jid), |_, list| {
            if let Some(pos) = list.iter().position(|h| h.id == id) {
                list.remove(pos);
                removed = true;
            }
            list.is_empty()
        });
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    fn get(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.by_bare
            .get(bare_of(jid))
            .and_then(|l| l.iter().find(|h| &h.jid == jid).cloned())
    }

    fn resources(&self, user: &BareJid) -> Vec<SessionHandle> {
        self.by_bare
            .get(user.as_str())
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    fn count(&self, user: &BareJid) -> usize {
        self.by_bare.get(user.as_str()).map_or(0, |l| l.len())
    }

    fn all(&self) -> Vec<SessionHandle> {
        self.by_bare
            .iter()
            .flat_map(|e| e.value().clone())
            .collect()
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl LocalRegistry {
    /// Keeps only the sessions `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(&SessionHandle) -> bool) {
        let mut removed = 0;
        self.by_bare.retain(|_, list| {
            let before = list.len();
            list.retain(&mut keep);
            removed += before - list.len();
            !list.is_empty()
        });
        self.count.fetch_sub(removed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(id: u64, jid: &str) -> (SessionHandle, crate::inbox::Receiver<Outbound>) {
        let (tx, rx) = crate::inbox::channel(2);
        (SessionHandle::new(id, FullJid::new(jid).unwrap(), tx), rx)
    }

    #[test]
    fn insert_replace_remove() {
        let reg = LocalRegistry::default();
        let (a, _ra) = handle(1, "u@h/a");
        let (b, _rb) = handle(2, "u@h/b");
        assert!(reg.insert(a).is_none());
        assert!(reg.insert(b).is_none());
        assert_eq!(reg.len(), 2);
        let (a2, _ra2) = handle(3, "u@h/a");
        assert_eq!(reg.insert(a2).unwrap().id, 1);
        assert_eq!(reg.len(), 2);
        // The replaced session's late removal must not evict its successor.
        assert!(!reg.remove(&FullJid::new("u@h/a").unwrap(), 1));
        assert_eq!(reg.get(&FullJid::new("u@h/a").unwrap()).unwrap().id, 3);
        assert!(reg.remove(&FullJid::new("u@h/a").unwrap(), 3));
        assert!(reg.remove(&FullJid::new("u@h/b").unwrap(), 2));
        assert!(reg.is_empty());
        assert!(reg.resources(&BareJid::new("u@h").unwrap()).is_empty());
    }

    #[test]
    fn full_jids_find_their_bare_entry_whatever_the_resource_holds() {
        let reg = LocalRegistry::default();
        let (a, _ra) = handle(1, "u@h/a/b@c");
        let (b, _rb) = handle(2, "u@h/x");
        let (other, _ro) = handle(3, "v@h/a/b@c");
        reg.insert(a);
        reg.insert(b);
        reg.insert(other);
        let user = BareJid::new("u@h").unwrap();
        assert_eq!(reg.count(&user), 2);
        assert_eq!(reg.count(&BareJid::new("w@h").unwrap()), 0);
        let found = reg.get(&FullJid::new("u@h/a/b@c").unwrap()).unwrap();
        assert_eq!((found.id, found.bare_jid()), (1, &user));
        assert!(reg.get(&FullJid::new("u@h/a").unwrap()).is_none());
        assert!(reg.remove(&FullJid::new("u@h/a/b@c").unwrap(), 1));
        assert_eq!(reg.count(&user), 1);
    }

    #[test]
    fn full_inbox_is_reported_not_awaited() {
        let (a, _rx) = handle(1, "u@h/a");
        let el = Element::new("message", "jabber:client");
        assert!(a.deliver(el.clone()).is_ok());
        assert!(a.deliver(el.clone()).is_ok());
        assert_eq!(a.deliver(el), Err(DeliveryError::Full));
    }
}
