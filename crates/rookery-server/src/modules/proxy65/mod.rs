//! XEP-0065 SOCKS5 Bytestreams proxy at `proxy.<host>`: tells local users its network address,
//! runs the SOCKS5 listener (`socks5`), and activates a stream when its requester asks, which
//! pairs the two connections whose DST.ADDR is SHA1(SID + requester JID + target JID).

pub mod socks5;

use super::{Module, ModuleListener, Registry, Service};
use crate::Server;
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rookery_core::config::Proxy65Options;
use rookery_core::stanza::{self, StanzaError};
use rookery_core::{Element, Jid};
use sha1::{Digest, Sha1};
use socks5::{ActivateError, Hub, Limits};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;

pub const NS: &str = "http://jabber.org/protocol/bytestreams";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";

pub struct Proxy65 {
    /// Service domains this module answers for.
    domains: Vec<String>,
    options: Arc<super::Live<Proxy65Options>>,
    hub: Arc<Hub>,
    /// The SOCKS5 listener's address once bound.
    bound: OnceLock<SocketAddr>,
}

impl Proxy65 {
    pub fn new(hosts: &[String], options: Proxy65Options) -> Proxy65 {
        Proxy65 {
            domains: hosts
                .iter()
                .map(|h| format!("{}.{}", options.subdomain, h))
                .collect(),
            options: Arc::new(super::Live::new(options)),
            hub: Arc::default(),
            bound: OnceLock::new(),
        }
    }
}

fn limits(options: &Proxy65Options) -> Limits {
    Limits {
        max_bytes: options.max_transfer_bytes,
        idle: Duration::from_secs(options.idle_timeout_seconds.max(1)),
    }
}

impl Module for Proxy65 {
    fn name(&self) -> &'static str {
        "proxy65"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        for d in &self.domains {
            reg.service(d, self.clone());
        }
        reg.reload(self.clone());
        reg.listener(self);
    }
}

#[async_trait]
impl super::Reload for Proxy65 {
    async fn reload(&self, config: &rookery_core::config::Config) -> Vec<&'static str> {
        let mut new = config.modules.proxy65.clone();
        let old = self.options.get();
        let mut restart = Vec::new();
        if new.subdomain != old.subdomain {
            restart.push("modules.proxy65.subdomain");
            new.subdomain = old.subdomain.clone();
        }
        if new.listen != old.listen {
            restart.push("modules.proxy65.listen");
            new.listen = old.listen.clone();
        }
        self.options.set(new);
        restart
    }
}

#[async_trait]
impl ModuleListener for Proxy65 {
    async fn bind(&self, server: Arc<Server>) -> anyhow::Result<BoxFuture<'static, ()>> {
        let a = self.options.get().listen.clone();
        let l = TcpListener::bind(&a)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {a} (modules.proxy65.listen): {e}"))?;
        let local = l.local_addr()?;
        let _ = self.bound.set(local);
        tracing::info!(addr = %local, "SOCKS5 proxy listening");
        let hub = self.hub.clone();
        let options = self.options.clone();
        let shutdown = server.shutdown.clone();
        Ok(async move {
            loop {
                let sock = tokio::select! {
                    r = l.accept() => match r {
                        Ok((s, _)) => s,
                        Err(_) => {
                            // Out of descriptors, most likely: let some close first.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = shutdown.cancelled() => return,
                };
                // Limits as configured now: a reload applies to the next transfer.
                tokio::spawn(hub.clone().accept(sock, limits(&options.get())));
            }
        }
        .boxed())
    }
}

/// DST.ADDR of a stream (XEP-0065 §5.3.2): hex SHA1 of SID, requester and target JIDs.
pub fn stream_hash(sid: &str, requester: &str, target: &str) -> String {
    let mut h = Sha1::new();
    h.update(sid.as_bytes());
    h.update(requester.as_bytes());
    h.update(target.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Proxy65 {
    fn disco_info(&self) -> Element {
        let mut q = Element::new("query", INFO).with_child(
            Element::new("identity", INFO)
                .with_attr("category", "proxy")
                .with_attr("type", "bytestreams")
                .with_attr("name", self.options.get().name.clone()),
        );
        for f in [INFO, ITEMS, NS] {
            q.push_child(Element::new("feature", INFO).with_attr("var", f));
        }
        q
    }

    /// The address clients connect to (XEP-0065 §6.3.1).
    fn streamhost(&self, service: &str, host: &str) -> Result<Element, StanzaError> {
        let bound = self
            .bound
            .get()
            .ok_or_else(|| StanzaError::not_allowed().with_text("the proxy is not listening"))?;
        let options = self.options.get();
        let name = match (&options.host, bound.ip()) {
            (Some(h), _) => h.clone(),
            (None, ip) if ip.is_unspecified() => host.to_string(),
            (None, ip) => ip.to_string(),
        };
        let port = options.port.unwrap_or(bound.port());
        Ok(Element::new("query", NS).with_child(
            Element::new("streamhost", NS)
                .with_attr("jid", service)
                .with_attr("host", name)
                .with_attr("port", port.to_string()),
        ))
    }

    /// The requester (`from`) asks to start stream `sid` with the target the query names.
    fn activate(&self, server: &Server, from: &Jid, q: &Element) -> Result<(), StanzaError> {
        let sid = q
            .attr("sid")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StanzaError::bad_request().with_text("no sid"))?;
        let target = q
            .get_child("activate", NS)
            .map(|a| a.text())
            .ok_or_else(|| StanzaError::bad_request().with_text("no activate"))?;
        let target = Jid::new(target.trim()).map_err(|_| StanzaError::jid_malformed())?;
        let hash = stream_hash(sid, &from.to_string(), &target.to_string());
        // The hash binds the stream to its requester: anyone else computes another one.
        self.hub
            .activate(&hash, limits(&self.options.get()), server.shutdown.clone())
            .map_err(|e| match e {
                ActivateError::Unknown => {
                    StanzaError::item_not_found().with_text("no such stream from you")
                }
                ActivateError::Alone => {
                    StanzaError::not_allowed().with_text("both parties must be connected")
                }
            })
    }

    /// The answer's payload, if any.
    fn iq(
        &self,
        server: &Server,
        el: &Element,
        service: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let payload = el.children().next().ok_or_else(StanzaError::bad_request)?;
        let get = el.attr("type") == Some("get");
        match (payload.ns(), payload.name(), get) {
            (INFO, "query", true) if payload.attr("node").is_none() => {
                return Ok(Some(self.disco_info()))
            }
            (ITEMS, "query", true) => return Ok(Some(Element::new("query", ITEMS))),
            ("urn:xmpp:ping", "ping", true) => return Ok(None),
            (NS, "query", _) => {}
            _ => return Err(StanzaError::service_unavailable()),
        }
        // The proxy serves this server's users.
        let from = el
            .attr("from")
            .and_then(|f| Jid::new(f).ok())
            .filter(|f| f.node().is_some() && server.config.is_local_host(f.domain()))
            .ok_or_else(|| {
                StanzaError::forbidden().with_text("only users of this server may use the proxy")
            })?;
        if get {
            let host = service
                .strip_prefix(&format!("{}.", self.options.get().subdomain))
                .unwrap_or(service);
            self.streamhost(service, host).map(Some)
        } else {
            self.activate(server, &from, payload).map(|()| None)
        }
    }
}

#[async_trait]
impl Service for Proxy65 {
    async fn handle(&self, server: &Server, el: Element) {
        let Some(domain) = super::service_request(server, &el) else {
            return;
        };
        match self.iq(server, &el, &domain) {
            Ok(None) => crate::router::deliver(server, stanza::iq_result(&el)).await,
            Ok(Some(p)) => crate::router::deliver(server, stanza::iq_result_with(&el, p)).await,
            Err(e) => crate::router::bounce(server, &el, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_xep_0065_example() {
        // XEP-0065 §5.3.2's example values, hashed by Python's hashlib.
        assert_eq!(
            stream_hash(
                "vxf9n471bn46",
                "requester@example.com/foo",
                "target@example.org/bar"
            ),
            "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff"
        );
    }
}
