//! XEP-0114 Jabber Component Protocol: external components (gateways, bots) connect to a local
//! listener, prove the shared secret of their domain, and then send and receive the stanzas of
//! that domain.

use crate::s2s::connect::Stream;
use crate::Server;
use dashmap::DashMap;
use rookery_core::stanza::StanzaError;
use rookery_core::{Element, Jid};
use rookery_xml::StreamEvent;
use sha1::{Digest, Sha1};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub const NS: &str = "jabber:component:accept";
const STREAM_NS: &str = "http://etherx.jabber.org/streams";
/// Stanzas waiting for a component that is not reading fast enough; beyond, they bounce.
const QUEUE: usize = 4096;

/// Connected components by domain.
#[derive(Default)]
pub struct Registry {
    routes: DashMap<String, (u64, mpsc::Sender<Element>)>,
}

impl Registry {
    pub fn is_connected(&self, domain: &str) -> bool {
        self.routes.contains_key(domain)
    }

    /// Hands a stanza to the component serving `domain`; false when none is connected (or it
    /// is not keeping up).
    pub fn send(&self, domain: &str, el: Element) -> bool {
        match self.routes.get(domain) {
            Some(r) => r.1.try_send(el).is_ok(),
            None => false,
        }
    }
}

pub fn is_configured(server: &Server, domain: &str) -> bool {
    server.config.components.iter().any(|c| c.domain == domain)
}

pub async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    loop {
        let (conn, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "component accept failed");
                    continue;
                }
            },
            _ = server.shutdown.cancelled() => return,
        };
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(&server, conn).await {
                tracing::info!(%peer, %e, "component connection ended");
            }
        });
    }
}

fn header(from: &str, id: &str) -> String {
    let mut h = String::from("<?xml version='1.0'?><stream:stream xmlns='");
    h.push_str(NS);
    h.push_str("' xmlns:stream='");
    h.push_str(STREAM_NS);
    h.push_str("' from='");
    rookery_xml::escape_attr(&mut h, from);
    h.push_str("' id='");
    h.push_str(id);
    h.push_str("'>");
    h
}

/// The handshake digest: hex(SHA-1(stream id + secret)) (XEP-0114 §3).
pub fn handshake_digest(id: &str, secret: &str) -> String {
    let d = Sha1::digest(format!("{id}{secret}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

async fn serve(server: &Arc<Server>, conn: TcpStream) -> Result<(), String> {
    let _conn = server
        .metrics
        .connection(crate::metrics::Transport::Component);
    // Before the handshake, the small pre-authentication stanza limit applies (as for c2s).
    let mut s = Stream::with_ns(Box::new(conn), crate::c2s::limits(server, false), NS);
    let id = format!("{:x}", rand::random::<u128>());
    let io = |e: std::io::Error| e.to_string();
    let domain = match s.next().await {
        Ok(StreamEvent::Header(h)) => h.attr("to").unwrap_or_default().to_string(),
        // RFC 6120 §4.9.1.2: an error before the peer's header still gets ours first.
        Err(condition) => {
            let _ = s.send_raw(&header("", &id)).await;
            s.error(&condition, None).await;
            return Err(condition);
        }
        Ok(_) => return Err("no stream header".into()),
    };
    s.send_raw(&header(&domain, &id)).await.map_err(io)?;
    let Some(cfg) = server.config.components.iter().find(|c| c.domain == domain) else {
        s.error("host-unknown", None).await;
        return Err(format!("unknown component domain {domain:?}"));
    };
    let proof = match s.next().await {
        Ok(StreamEvent::Stanza(el)) if el.is("handshake", NS) => el.text(),
        Err(condition) => {
            s.error(&condition, None).await;
            return Err(condition);
        }
        Ok(_) => {
            s.error("not-authorized", None).await;
            return Err("no handshake".into());
        }
    };
    let want = handshake_digest(&id, &cfg.secret);
    let ok = proof.trim().len() == want.len()
        && proof
            .trim()
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a.to_ascii_lowercase() ^ b))
            == 0;
    if !ok {
        s.error("not-authorized", None).await;
        return Err(format!("wrong secret for {domain}"));
    }
    let (tx, mut rx) = mpsc::channel::<Element>(QUEUE);
    let conn_id = server.next_id();
    // A reconnecting component replaces its old connection.
    server
        .components
        .routes
        .insert(domain.clone(), (conn_id, tx));
    s.send_raw("<handshake/>").await.map_err(io)?;
    s.authenticated(server.config.limits.max_stanza_bytes);
    tracing::info!(%domain, "component connected");
    let result = session(server, &domain, &mut s, &mut rx).await;
    server
        .components
        .routes
        .remove_if(&domain, |_, (id, _)| *id == conn_id);
    // What was routed to it meanwhile cannot be delivered.
    rx.close();
    while let Ok(el) = rx.try_recv() {
        crate::router::bounce(server, &el, StanzaError::service_unavailable());
    }
    tracing::info!(%domain, "component disconnected");
    result
}

async fn session(
    server: &Arc<Server>,
    domain: &str,
    s: &mut Stream,
    rx: &mut mpsc::Receiver<Element>,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    loop {
        tokio::select! {
            ev = s.next() => match ev {
                Ok(StreamEvent::Stanza(mut el)) => {
                    if !matches!(el.name(), "message" | "presence" | "iq") || el.ns() != NS {
                        s.error("unsupported-stanza-type", None).await;
                        return Err(format!("unexpected <{}/>", el.name()));
                    }
                    // Only its own domain's addresses may be claimed (RFC 6120 §4.9.3.9).
                    let from_ok = el
                        .attr("from")
                        .and_then(|f| Jid::new(f).ok())
                        .is_some_and(|f| f.domain().as_str() == domain);
                    if !from_ok {
                        s.error("invalid-from", None).await;
                        return Err("stanza with a foreign from".into());
                    }
                    crate::s2s::renamespace(&mut el, NS, rookery_core::ns::CLIENT);
                    if el.attr("to").is_none() {
                        crate::router::bounce(server, &el, StanzaError::bad_request().with_text("no 'to'"));
                        continue;
                    }
                    tracing::debug!(%domain, stanza = %el, "from component");
                    crate::router::deliver(server, el).await;
                }
                Ok(StreamEvent::Close) => {
                    let _ = s.send_raw("</stream:stream>").await;
                    return Ok(());
                }
                Ok(StreamEvent::Header(_)) => {
                    s.error("not-well-formed", None).await;
                    return Err("second stream header".into());
                }
                Err(condition) => {
                    s.error(&condition, None).await;
                    return Err(condition);
                }
            },
            el = rx.recv() => {
                let Some(mut el) = el else { return Ok(()) };
                tracing::debug!(%domain, stanza = %el, "to component");
                crate::s2s::renamespace(&mut el, rookery_core::ns::CLIENT, NS);
                s.send(&el).await.map_err(io)?;
            },
            _ = server.shutdown.cancelled() => {
                s.error("system-shutdown", None).await;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handshake_is_hex_sha1_of_id_and_secret() {
        assert_eq!(
            super::handshake_digest("3BF96D75", "secret"),
            "20631b4b87b2d6381daeb556438f05036e09ad66"
        );
    }
}
