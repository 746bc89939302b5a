//! RFC 6120 server-to-server federation: peers prove their domains with certificates (SASL
//! EXTERNAL, XEP-0178) or dialback (XEP-0220, keys per XEP-0185) as the `s2s_secure` policy
//! allows. Stanzas for other domains go out over one stream per remote domain, which carries
//! every local domain (dialback multiplexing) and, with peers offering XEP-0288, the peer's
//! stanzas back; they are queued while it is set up and bounced when it cannot be. Incoming
//! streams accept stanzas only for the domain pairs proven on them.

pub(crate) mod certs;
pub(crate) mod connect;
mod incoming;
mod outgoing;

use crate::Server;
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use rookery_core::stanza::StanzaError;
use rookery_core::{ns, Element, Jid};
use sha2::Sha256;
use std::sync::Arc;
use tokio::sync::mpsc;

pub use incoming::accept_loop;

pub const SERVER_NS: &str = "jabber:server";
pub const DIALBACK_NS: &str = "jabber:server:dialback";
const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
const STREAM_NS: &str = "http://etherx.jabber.org/streams";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    SaslExternal,
    Dialback,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::SaslExternal => "sasl-external",
            Auth::Dialback => "dialback",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One live, authenticated server stream, for operators and tests.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    pub direction: Direction,
    pub local: String,
    pub remote: String,
    pub auth: Auth,
    pub bidi: bool,
}

/// Server streams, routes to them and the dialback secret.
pub struct Manager {
    /// Where stanzas from a local domain to a remote domain go: an outgoing stream's queue, or
    /// an incoming bidirectional stream's. Several pairs may share one stream.
    out: DashMap<(String, String), mpsc::Sender<Element>>,
    /// Outgoing streams per remote domain that more local domains may join by dialback.
    mux: DashMap<String, mpsc::Sender<Element>>,
    /// (local, remote) pairs a remote refused to add to a shared stream: they get their own.
    no_mux: dashmap::DashSet<(String, String)>,
    /// Live authenticated streams by connection id.
    streams: DashMap<u64, StreamInfo>,
    secret: String,
    /// Static routes: `s2s.routes` from the config, plus any set while running.
    routes: DashMap<String, String>,
    pub(crate) certs: certs::Certs,
}

impl Manager {
    pub fn new(
        config: &rookery_core::config::Config,
        tls: &crate::tls::Tls,
    ) -> anyhow::Result<Manager> {
        let secret = config.s2s.dialback_secret.clone().unwrap_or_else(|| {
            // Kept in the data dir so keys stay valid across restarts and between the nodes
            // sharing it.
            let path = config.data_dir.join("dialback.secret");
            match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
                _ => {
                    let s = format!("{:x}{:x}", rand::random::<u128>(), rand::random::<u128>());
                    if let Err(e) = std::fs::write(&path, &s) {
                        tracing::warn!(%e, "cannot keep the dialback secret; it changes on restart");
                    }
                    s
                }
            }
        });
        Ok(Manager {
            out: DashMap::new(),
            mux: DashMap::new(),
            no_mux: Default::default(),
            streams: DashMap::new(),
            secret,
            routes: config
                .s2s
                .routes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            certs: certs::Certs::new(config, tls)?,
        })
    }

    /// The live authenticated server streams.
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.streams.iter().map(|e| e.value().clone()).collect()
    }

    /// Drops the routes to `remote` whose stream has ended.
    fn forget(&self, remote: &str) {
        self.out.retain(|(_, r), tx| r != remote || !tx.is_closed());
        self.mux.remove_if(remote, |_, tx| tx.is_closed());
    }

    /// Sends stanzas from `local` to `remote` over an incoming bidirectional stream, unless
    /// another stream already carries that pair.
    fn offer_route(&self, local: &str, remote: &str, tx: &mpsc::Sender<Element>) {
        let mut e = self
            .out
            .entry((local.to_string(), remote.to_string()))
            .or_insert_with(|| tx.clone());
        if e.is_closed() {
            *e = tx.clone();
        }
    }

    /// Where to connect for `domain` instead of asking DNS (`host:port`).
    pub fn route_for(&self, domain: &str) -> Option<String> {
        self.routes.get(domain).map(|r| r.clone())
    }

    /// Adds or replaces a static route while running (tests on ephemeral ports, operators).
    pub fn set_route(&self, domain: &str, addr: &str) {
        self.routes.insert(domain.to_string(), addr.to_string());
    }

    pub fn dialback_key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        dialback_key(&self.secret, receiving, originating, stream_id)
    }
}

/// XEP-0185: HMAC-SHA256(hex(SHA256(secret)), receiving + ' ' + originating + ' ' + id).
fn dialback_key(secret: &str, receiving: &str, originating: &str, stream_id: &str) -> String {
    let key = crate::secrets::hash_hex(secret);
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{receiving} {originating} {stream_id}").as_bytes());
    crate::secrets::hex(&mac.finalize().into_bytes())
}

/// Whether `domain` is served here (a host or a service such as `conference.<host>`).
pub fn is_local_domain(server: &Server, domain: &str) -> bool {
    server.config.is_local_host(domain) || server.modules.services.contains_key(domain)
}

/// Routes a stanza for a domain that is not ours: a connected component, or another server.
pub fn route(server: &Arc<Server>, domain: &str, el: Element) {
    if server.components.is_connected(domain) {
        if !server.components.send(domain, el.clone()) {
            crate::router::bounce(server, &el, StanzaError::resource_constraint());
        }
        return;
    }
    if crate::component::is_configured(server, domain) {
        crate::router::bounce(
            server,
            &el,
            StanzaError::service_unavailable().with_text("the component is not connected"),
        );
        return;
    }
    if !server.config.s2s.enabled {
        crate::router::bounce(server, &el, StanzaError::remote_server_not_found());
        return;
    }
    let Some(local) = el
        .attr("from")
        .and_then(|f| Jid::new(f).ok())
        .map(|f| f.domain().to_string())
        .filter(|d| is_local_domain(server, d))
    else {
        tracing::debug!(stanza = %el, "s2s: not from a local domain; dropped");
        return;
    };
    tracing::debug!(%local, remote = %domain, stanza = %el, "s2s out");
    let key = (local, domain.to_string());
    let m = &server.s2s;
    let mut existing = m.out.get(&key).map(|tx| tx.clone());
    if existing.as_ref().is_none_or(|tx| tx.is_closed()) && !m.no_mux.contains(&key) {
        // Join the stream already open to that domain (it proves our domain by dialback).
        if let Some(tx) = m.mux.get(domain).map(|tx| tx.clone()) {
            if !tx.is_closed() {
                m.out.insert(key.clone(), tx.clone());
                existing = Some(tx);
            }
        }
    }
    let el = match existing {
        None => el,
        Some(tx) => match tx.try_send(el) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(el)) => {
                crate::router::bounce(server, &el, StanzaError::resource_constraint());
                return;
            }
            // The connection ended: start a new one.
            Err(mpsc::error::TrySendError::Closed(el)) => el,
        },
    };
    let (tx, rx) = mpsc::channel(server.config.s2s.max_queue.max(1));
    let _ = tx.try_send(el);
    m.out.insert(key.clone(), tx.clone());
    let server = server.clone();
    tokio::spawn(async move {
        outgoing::run(&server, &key.0, &key.1, tx, rx).await;
        server.s2s.forget(&key.1);
    });
}

/// Rewrites the stanza namespace (and its children in it) between the client and server
/// streams, so `<body/>` stays a body on the other side.
pub fn renamespace(el: &mut Element, from: &str, to: &str) {
    if el.ns() == from {
        el.set_ns(to);
    }
    if el
        .children()
        .any(|c| c.ns() == from || c.children().next().is_some())
    {
        for c in el.children_mut() {
            renamespace(c, from, to);
        }
    }
}

fn to_wire(mut el: Element) -> Element {
    renamespace(&mut el, ns::CLIENT, SERVER_NS);
    el
}

fn from_wire(mut el: Element) -> Element {
    renamespace(&mut el, SERVER_NS, ns::CLIENT);
    el
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialback_keys_follow_xep_0185() {
        // XEP-0220 §2.1.1 example.
        assert_eq!(
            dialback_key(
                "s3cr3tf0rd14lb4ck",
                "montague.example",
                "capulet.example",
                "D60000229F"
            ),
            "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
        );
    }

    #[test]
    fn namespaces_are_rewritten_for_the_wire() {
        let el = Element::parse(
            "<message xmlns='jabber:client' to='a@b'><body>hi</body>\
             <x xmlns='urn:x'><y/></x></message>",
        )
        .unwrap();
        let wire = to_wire(el.clone());
        assert_eq!(wire.ns(), SERVER_NS);
        assert!(wire.has_child("body", SERVER_NS));
        assert!(wire
            .get_child("x", "urn:x")
            .unwrap()
            .has_child("y", "urn:x"));
        assert_eq!(from_wire(wire), el);
    }
}
