//! The receiving and authoritative sides of server streams: STARTTLS or direct TLS (XEP-0368),
//! SASL EXTERNAL for peers whose certificate names their domain (XEP-0178), dialback results
//! verified against the originating domain's servers or by the peer's certificate, as the
//! `s2s_secure` policy allows, verification requests answered, bidirectional streams
//! (XEP-0288), and stanzas accepted only for the domain pairs proven on the stream.

use super::connect::Stream;
use super::outgoing::{BIDI_FEATURE, BIDI_NS, SASL_NS};
use super::{
    from_wire, is_local_domain, outgoing, to_wire, Auth, Direction, StreamInfo, DIALBACK_FEATURE,
    DIALBACK_NS, STREAM_NS,
};
use crate::Server;
use base64::Engine;
use rookery_core::{ns, Element, Jid};
use rookery_xml::StreamEvent;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

/// Accepts server streams; with `direct_tls` each starts with a TLS handshake (XEP-0368).
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    loop {
        let (conn, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "s2s accept failed");
                    continue;
                }
            },
            _ = server.shutdown.cancelled() => return,
        };
        let _ = conn.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let _conn = server.metrics.connection(crate::metrics::Transport::S2sIn);
            let mut s = Stream::new(Box::new(conn), crate::c2s::limits(&server, false));
            s.limit_rate(server.config.s2s.rate_bytes_per_second);
            let r = async {
                if direct_tls {
                    let handshake = Duration::from_secs(server.config.limits.auth_timeout_seconds);
                    tokio::time::timeout(handshake, s.accept_tls(&server.s2s.certs.direct))
                        .await
                        .map_err(|_| "TLS handshake timed out".to_string())??;
                }
                Incoming::new(&server).serve(s).await
            };
            if let Err(e) = r.await {
                tracing::info!(%peer, error = %e, "incoming s2s stream ended");
            }
        });
    }
}

struct Incoming<'a> {
    server: &'a Arc<Server>,
    id: String,
    /// The domains of the peer's latest stream header.
    from: String,
    to: String,
    /// Domain pairs (remote, local) proven on this stream.
    proven: HashSet<(String, String)>,
    /// Set when the peer asked for a bidirectional stream: our stanzas for it come here.
    bidi: Option<(mpsc::Sender<Element>, mpsc::Receiver<Element>)>,
    conn_id: u64,
}

impl<'a> Incoming<'a> {
    fn new(server: &'a Arc<Server>) -> Self {
        Incoming {
            server,
            id: format!("{:x}", rand::random::<u128>()),
            from: String::new(),
            to: String::new(),
            proven: HashSet::new(),
            bidi: None,
            conn_id: server.next_id(),
        }
    }

    async fn serve(mut self, mut s: Stream) -> Result<(), String> {
        let r = self.run(&mut s).await;
        let server = self.server;
        server.s2s.streams.remove(&self.conn_id);
        if let Some((tx, mut rx)) = self.bidi.take() {
            drop(tx);
            rx.close();
            let remotes: HashSet<&String> = self.proven.iter().map(|(r, _)| r).collect();
            for r in remotes {
                server.s2s.forget(r);
            }
            // Ours that did not make it out go by another stream.
            while let Ok(el) = rx.try_recv() {
                let to = el
                    .attr("to")
                    .and_then(|t| Jid::new(t).ok())
                    .map(|j| j.domain().to_string())
                    .unwrap_or_default();
                super::route(server, &to, el);
            }
        }
        r
    }

    async fn run(&mut self, s: &mut Stream) -> Result<(), String> {
        let server = self.server;
        self.open(s).await?;
        let idle = Duration::from_secs(server.config.s2s.idle_timeout_seconds.max(1));
        loop {
            let ev = tokio::select! {
                ev = s.next() => ev,
                Some(el) = async {
                    match &mut self.bidi {
                        Some((_, rx)) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    s.send(&to_wire(el)).await.map_err(|e| e.to_string())?;
                    continue;
                }
                _ = tokio::time::sleep(idle) => {
                    let _ = s.send_raw("</stream:stream>").await;
                    return Ok(());
                }
                _ = server.shutdown.cancelled() => {
                    s.error("system-shutdown", None).await;
                    return Ok(());
                }
            };
            let el = match ev {
                Ok(StreamEvent::Stanza(el)) => el,
                Ok(StreamEvent::Close) => {
                    let _ = s.send_raw("</stream:stream>").await;
                    return Ok(());
                }
                Ok(StreamEvent::Header(_)) => {
                    s.error("not-well-formed", None).await;
                    return Err("unexpected stream header".into());
                }
                Err(condition) => {
                    s.error(&condition, None).await;
                    return Err(condition);
                }
            };
            if el.is("starttls", TLS_NS) && !s.secure {
                s.send(&Element::new("proceed", TLS_NS))
                    .await
                    .map_err(|e| e.to_string())?;
                s.accept_tls(&server.s2s.certs.starttls).await?;
                self.open(s).await?;
                continue;
            }
            if el.is("bidi", BIDI_NS) {
                if self.bidi.is_none() {
                    self.bidi = Some(mpsc::channel(server.config.s2s.max_queue.max(1)));
                }
                continue;
            }
            if el.is("auth", SASL_NS) {
                self.sasl(s, &el).await?;
                continue;
            }
            if el.ns() == DIALBACK_NS {
                self.dialback(s, &el).await?;
                continue;
            }
            if !matches!(el.name(), "message" | "presence" | "iq") || el.ns() != super::SERVER_NS {
                s.error("unsupported-stanza-type", None).await;
                return Err(format!("unexpected <{}/>", el.name()));
            }
            let domain = |a: &str| {
                el.attr(a)
                    .and_then(|j| Jid::new(j).ok())
                    .map(|j| j.domain().to_string())
            };
            let (Some(from), Some(to)) = (domain("from"), domain("to")) else {
                s.error("improper-addressing", None).await;
                return Err("stanza without from or to".into());
            };
            if !is_local_domain(server, &to) {
                s.error("host-unknown", Some("not a domain served here"))
                    .await;
                return Err(format!("stanza for {to}"));
            }
            if !self.proven.contains(&(from.clone(), to.clone())) {
                // A domain the stream has not proven: the whole stream is suspect (RFC 6120
                // §4.9.3.9).
                s.error(
                    "invalid-from",
                    Some("that domain is not authenticated on this stream"),
                )
                .await;
                return Err(format!(
                    "unauthenticated from {from} (stream for {})",
                    self.to
                ));
            }
            tracing::debug!(stanza = %el, "s2s in");
            crate::router::deliver(server, from_wire(el)).await;
        }
    }

    /// Reads the peer's header and answers with ours and the features.
    async fn open(&mut self, s: &mut Stream) -> Result<(), String> {
        let server = self.server;
        let header = match s.next().await {
            Ok(StreamEvent::Header(h)) => h,
            // RFC 6120 §4.9.1.2: an error before the peer's header still gets ours first.
            Err(condition) => {
                let host = self.server.config.hosts[0].clone();
                let _ = s.header(&host, "", Some(&self.id)).await;
                s.error(&condition, None).await;
                return Err(condition);
            }
            Ok(_) => return Err("no stream header".into()),
        };
        self.to = header.attr("to").unwrap_or_default().to_string();
        self.from = header.attr("from").unwrap_or_default().to_string();
        s.header(&self.to, &self.from, Some(&self.id))
            .await
            .map_err(|e| e.to_string())?;
        if !is_local_domain(server, &self.to) {
            s.error("host-unknown", None).await;
            return Err(format!("stream for unknown domain {:?}", self.to));
        }
        let mut features = Element::new("features", STREAM_NS);
        let authenticated = self.proven.contains(&(self.from.clone(), self.to.clone()));
        if !s.secure {
            features.push_child(
                Element::new("starttls", TLS_NS).with_child(Element::new("required", TLS_NS)),
            );
        } else if !authenticated && self.certificate_names(s, &self.from) {
            features.push_child(
                Element::new("mechanisms", SASL_NS)
                    .with_child(Element::new("mechanism", SASL_NS).with_text("EXTERNAL")),
            );
        }
        if s.secure {
            // Offered after SASL too: more domains may join the stream by dialback.
            features.push_child(
                Element::new("dialback", DIALBACK_FEATURE)
                    .with_child(Element::new("errors", DIALBACK_FEATURE)),
            );
        }
        if !authenticated {
            features.push_child(Element::new("bidi", BIDI_FEATURE));
        }
        s.send(&features).await.map_err(|e| e.to_string())
    }

    /// Whether the peer's certificate is valid for `domain` (RFC 6125).
    fn certificate_names(&self, s: &Stream, domain: &str) -> bool {
        !domain.is_empty()
            && !s.peer_certs.is_empty()
            && match self.server.s2s.certs.verify(&s.peer_certs, domain) {
                Ok(()) => true,
                Err(why) => {
                    tracing::debug!(%domain, %why, "peer certificate does not prove the domain");
                    false
                }
            }
    }

    fn proved(&mut self, s: &mut Stream, remote: &str, local: &str, auth: Auth) {
        let server = self.server;
        self.proven.insert((remote.to_string(), local.to_string()));
        s.authenticated(server.config.limits.max_stanza_bytes);
        server.s2s.streams.insert(
            self.conn_id,
            StreamInfo {
                direction: Direction::In,
                local: local.to_string(),
                remote: remote.to_string(),
                auth,
                bidi: self.bidi.is_some(),
            },
        );
        if let Some((tx, _)) = &self.bidi {
            server.s2s.offer_route(local, remote, tx);
        }
        tracing::info!(%remote, %local, ?auth, "s2s domain proven on an incoming stream");
    }

    /// SASL EXTERNAL (XEP-0178): the stream's `from` proven by the certificate.
    async fn sasl(&mut self, s: &mut Stream, el: &Element) -> Result<(), String> {
        let failure = |condition: &str| {
            Element::new("failure", SASL_NS).with_child(Element::new(condition, SASL_NS))
        };
        if !s.secure || el.attr("mechanism") != Some("EXTERNAL") {
            return s
                .send(&failure("invalid-mechanism"))
                .await
                .map_err(|e| e.to_string());
        }
        // The authorization identity, when given, must be the stream's `from` (RFC 6120 §6.4.6).
        let authzid = el.text();
        let authzid = authzid.trim();
        let authzid_ok = authzid.is_empty()
            || authzid == "="
            || base64::engine::general_purpose::STANDARD
                .decode(authzid)
                .is_ok_and(|d| d == self.from.as_bytes());
        if !authzid_ok {
            return s
                .send(&failure("invalid-authzid"))
                .await
                .map_err(|e| e.to_string());
        }
        let (from, to) = (self.from.clone(), self.to.clone());
        if Jid::new(&from).is_err()
            || is_local_domain(self.server, &from)
            || !self.certificate_names(s, &from)
        {
            return s
                .send(&failure("not-authorized"))
                .await
                .map_err(|e| e.to_string());
        }
        s.send(&Element::new("success", SASL_NS))
            .await
            .map_err(|e| e.to_string())?;
        self.proved(s, &from, &to, Auth::SaslExternal);
        s.restart();
        self.open(s).await
    }

    async fn dialback(&mut self, s: &mut Stream, el: &Element) -> Result<(), String> {
        let server = self.server;
        let from = el.attr("from").unwrap_or_default().to_string();
        let to = el.attr("to").unwrap_or_default().to_string();
        let key = el.text().trim().to_string();
        let answer = |name: &str, kind: &str| {
            Element::new(name, DIALBACK_NS)
                .with_attr("from", to.clone())
                .with_attr("to", from.clone())
                .with_attr("type", kind)
        };
        let error = |condition: &str| {
            answer("result", "error").with_child(
                Element::new("error", DIALBACK_NS)
                    .with_attr("type", "cancel")
                    .with_child(Element::new(condition, ns::STANZAS_ERR)),
            )
        };
        if !s.secure {
            s.error("policy-violation", Some("STARTTLS first")).await;
            return Err("dialback before TLS".into());
        }
        match el.name() {
            "result" if el.attr("type").is_none() => {
                if !is_local_domain(server, &to) {
                    return s
                        .send(&error("item-not-found"))
                        .await
                        .map_err(|e| e.to_string());
                }
                if Jid::new(&from).is_err() || is_local_domain(server, &from) {
                    return s
                        .send(&answer("result", "invalid"))
                        .await
                        .map_err(|e| e.to_string());
                }
                // A certificate naming the domain proves it outright (as XEP-0344 allows);
                // without one, policy decides whether the callback may.
                let valid = if self.certificate_names(s, &from) {
                    true
                } else if server.config.s2s.requires_certificate(&from) {
                    tracing::info!(remote = %from, "s2s peer without a valid certificate refused");
                    return s
                        .send(&error("policy-violation"))
                        .await
                        .map_err(|e| e.to_string());
                } else {
                    outgoing::verify(server, &to, &from, &self.id, &key).await
                };
                if valid {
                    self.proved(s, &from, &to, Auth::Dialback);
                } else {
                    tracing::info!(remote = %from, local = %to, "s2s dialback key refused");
                }
                s.send(&answer("result", if valid { "valid" } else { "invalid" }))
                    .await
                    .map_err(|e| e.to_string())
            }
            "verify" => {
                // We are the authoritative server: is this the key we made for that stream?
                let vid = el.attr("id").unwrap_or_default();
                let expected = server.s2s.dialback_key(&from, &to, vid);
                let valid = is_local_domain(server, &to) && !key.is_empty() && key == expected;
                let reply =
                    answer("verify", if valid { "valid" } else { "invalid" }).with_attr("id", vid);
                s.send(&reply).await.map_err(|e| e.to_string())
            }
            _ => Ok(()),
        }
    }
}
