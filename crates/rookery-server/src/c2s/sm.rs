//! XEP-0198 Stream Management: stanza counters, acks, and resumption of a dropped session.

use super::Transport;
use dashmap::DashMap;
use rookery_core::{ns, BareJid, Element};
use rookery_xml::StreamEvent;
use std::collections::VecDeque;
use tokio::sync::mpsc;

pub const NS: &str = "urn:xmpp:sm:3";

/// A new connection taking over a hibernating session.
pub struct Resumption {
    pub transport: Box<dyn Transport>,
    /// Events the new connection had already read past `<resume/>`.
    pub queue: VecDeque<StreamEvent>,
    pub lang: Option<String>,
    /// The client's count of stanzas it received.
    pub h: u32,
}

/// What a hibernating session is asked to do.
pub enum Takeover {
    /// A connection to this node resumes it.
    Here(Resumption),
    /// A connection to another node of the cluster resumes it: the session hands over its
    /// state and ends here without a word to anyone.
    Elsewhere(tokio::sync::oneshot::Sender<Migrated>),
}

/// A session's stream management state, moving to another node.
pub struct Migrated {
    pub h_in: u32,
    pub acked: u32,
    /// Sent and not acknowledged, then what arrived while the client was away.
    pub unacked: Vec<Element>,
}

/// Resumable sessions by stream id.
#[derive(Default)]
pub struct Registry {
    map: DashMap<String, (BareJid, mpsc::Sender<Takeover>)>,
}

impl Registry {
    pub fn insert(&self, id: String, user: BareJid, tx: mpsc::Sender<Takeover>) {
        self.map.insert(id, (user, tx));
    }

    pub fn remove(&self, id: &str) {
        self.map.remove(id);
    }

    /// The session `id` if it belongs to `user`.
    pub fn find(&self, id: &str, user: &BareJid) -> Option<mpsc::Sender<Takeover>> {
        self.map
            .get(id)
            .filter(|e| &e.0 == user)
            .map(|e| e.1.clone())
    }
}

fn counts(el: &Element) -> bool {
    el.ns() == ns::CLIENT && matches!(el.name(), "message" | "presence" | "iq")
}

/// The client acknowledged stanzas that were never sent.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyAcked;

/// Per-session counters (XEP-0198 §4).
#[derive(Default)]
pub struct State {
    pub enabled: bool,
    /// Set when resumption was granted.
    pub id: Option<String>,
    /// Stanzas received from the client.
    pub h_in: u32,
    /// Last count the client acknowledged.
    acked: u32,
    /// Sent and not yet acknowledged, oldest first.
    pub unacked: VecDeque<Element>,
    requested: bool,
}

impl State {
    /// The state a session had on another node, resumed here under the same id.
    pub fn migrated(id: String, m: Migrated) -> State {
        State {
            enabled: true,
            id: Some(id),
            h_in: m.h_in,
            acked: m.acked,
            unacked: m.unacked.into(),
            requested: false,
        }
    }

    /// What moves to another node: counters and every stanza the client may not have.
    pub fn migrate(&mut self, held: Vec<Element>) -> Migrated {
        let mut unacked: Vec<Element> = self.unacked.drain(..).collect();
        unacked.extend(held.into_iter().filter(counts));
        Migrated {
            h_in: self.h_in,
            acked: self.acked,
            unacked,
        }
    }

    pub fn received(&mut self, el: &Element) {
        if self.enabled && counts(el) {
            self.h_in = self.h_in.wrapping_add(1);
        }
    }

    /// Records stanzas about to be sent; true when an ack should be requested with them.
    pub fn sending(&mut self, els: &[Element]) -> bool {
        if !self.enabled {
            return false;
        }
        for el in els.iter().filter(|e| counts(e)) {
            self.unacked.push_back(el.clone());
        }
        if !self.requested && !self.unacked.is_empty() {
            self.requested = true;
            return true;
        }
        false
    }

    /// Applies the client's `h`; an `h` beyond what was sent is a protocol violation.
    pub fn ack(&mut self, h: u32) -> Result<(), TooManyAcked> {
        let n = h.wrapping_sub(self.acked) as usize;
        if n > self.unacked.len() {
            return Err(TooManyAcked);
        }
        self.unacked.drain(..n);
        self.acked = h;
        self.requested = false;
        Ok(())
    }

    pub fn ack_element(&self) -> Element {
        Element::new("a", NS).with_attr("h", self.h_in.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Element {
        Element::new("message", ns::CLIENT)
    }

    #[test]
    fn counts_and_acks() {
        let mut s = State {
            enabled: true,
            ..State::default()
        };
        assert!(s.sending(&[msg(), msg(), Element::new("r", NS)]));
        assert!(!s.sending(&[msg()]), "one request at a time");
        assert_eq!(s.unacked.len(), 3);
        s.ack(2).unwrap();
        assert_eq!(s.unacked.len(), 1);
        assert!(s.ack(5).is_err());
        s.ack(3).unwrap();
        assert!(s.unacked.is_empty());
        s.received(&msg());
        s.received(&Element::new("a", NS));
        assert_eq!(s.h_in, 1);
    }

    #[test]
    fn counters_wrap() {
        let mut s = State {
            enabled: true,
            acked: u32::MAX,
            ..State::default()
        };
        s.sending(&[msg(), msg()]);
        s.ack(1).unwrap();
        assert!(s.unacked.is_empty());
    }
}
