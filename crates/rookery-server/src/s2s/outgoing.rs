//! The initiating side of a server stream: open it (connect.rs), authenticate with SASL
//! EXTERNAL (XEP-0178) or dialback (XEP-0220 §2.1) as policy allows, then carry stanzas until
//! the connection idles out. One stream serves every local domain: each one after the first is
//! added by dialback on the same stream (multiplexing, XEP-0220 §4). With a peer offering
//! XEP-0288 the stream carries its stanzas back too. Also the receiving side's verification
//! request to an authoritative server (§2.3).

use super::connect::{self, Opened, Stream};
use super::{from_wire, to_wire, Auth, Direction, DIALBACK_NS};
use crate::Server;
use base64::Engine;
use rookery_core::stanza::StanzaError;
use rookery_core::{ns, Element, Jid};
use rookery_xml::StreamEvent;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIDI_NS: &str = "urn:xmpp:bidi";
pub const BIDI_FEATURE: &str = "urn:xmpp:features:bidi";

/// What one outgoing stream knows about the local domains it speaks for.
struct Domains {
    /// Proven to the remote: their stanzas go out at once.
    authed: HashSet<String>,
    /// Dialback sent, verdict awaited: their stanzas wait, until the deadline.
    pending: HashMap<String, (Vec<Element>, Instant)>,
}

pub async fn run(
    server: &Arc<Server>,
    local: &str,
    remote: &str,
    tx: mpsc::Sender<Element>,
    mut rx: mpsc::Receiver<Element>,
) {
    let conn_id = server.next_id();
    match authenticate(server, local, remote).await {
        Ok((stream, id, auth, bidi, muxable)) => {
            let _conn = server.metrics.connection(crate::metrics::Transport::S2sOut);
            tracing::info!(%local, %remote, ?auth, bidi, "s2s connection established");
            server.s2s.streams.insert(
                conn_id,
                super::StreamInfo {
                    direction: Direction::Out,
                    local: local.to_string(),
                    remote: remote.to_string(),
                    auth,
                    bidi,
                },
            );
            if muxable {
                server.s2s.mux.insert(remote.to_string(), tx.clone());
            }
            drop(tx);
            let mut domains = Domains {
                authed: HashSet::from([local.to_string()]),
                pending: HashMap::new(),
            };
            let c = Carrier {
                server,
                remote,
                id,
                bidi,
                muxable,
            };
            c.carry(stream, &mut domains, &mut rx).await;
            server.s2s.streams.remove(&conn_id);
            // Stanzas of domains still waiting for a verdict had nowhere to go.
            for (_, (els, _)) in domains.pending.drain() {
                for el in els {
                    crate::router::bounce(server, &el, StanzaError::remote_server_timeout());
                }
            }
        }
        Err((e, condition)) => {
            drop(tx);
            tracing::info!(%local, %remote, error = %e, "s2s connection failed");
            rx.close();
            while let Ok(el) = rx.try_recv() {
                crate::router::bounce(server, &el, condition.clone().with_text(e.clone()));
            }
            return;
        }
    }
    // Anything still queued bounces: the stream is gone.
    rx.close();
    while let Ok(el) = rx.try_recv() {
        crate::router::bounce(server, &el, StanzaError::remote_server_timeout());
    }
}

type Failure = (String, StanzaError);

/// Opens the stream and proves `local` to the remote. Returns the stream, the remote's stream
/// id, how it was authenticated, whether it is bidirectional, and whether more local domains
/// may be added to it by dialback.
async fn authenticate(
    server: &Server,
    local: &str,
    remote: &str,
) -> Result<(Stream, String, Auth, bool, bool), Failure> {
    let not_found = |e: String| (e, StanzaError::remote_server_not_found());
    let Opened {
        stream: mut s,
        id,
        mut features,
        certificate,
    } = connect::open(server, local, remote)
        .await
        .map_err(not_found)?;
    if let Err(why) = &certificate {
        if server.config.s2s.requires_certificate(remote) {
            s.error("policy-violation", Some("a valid certificate is required"))
                .await;
            return Err(not_found(format!("{remote}'s certificate: {why}")));
        }
    }
    let send = |e: std::io::Error| not_found(e.to_string());
    let bidi = features.has_child("bidi", BIDI_FEATURE);
    if bidi {
        s.send(&Element::new("bidi", BIDI_NS)).await.map_err(send)?;
    }
    let wait = Duration::from_secs(server.config.s2s.connect_timeout_seconds.max(1) * 3);
    let timed_out = || {
        (
            format!("{remote} did not answer in time"),
            StanzaError::remote_server_timeout(),
        )
    };
    let offers_external = features
        .get_child("mechanisms", SASL_NS)
        .is_some_and(|m| m.children().any(|c| c.text().trim() == "EXTERNAL"));
    if offers_external {
        let authzid = base64::engine::general_purpose::STANDARD.encode(local);
        let auth = Element::new("auth", SASL_NS)
            .with_attr("mechanism", "EXTERNAL")
            .with_text(authzid);
        s.send(&auth).await.map_err(send)?;
        let answer = tokio::time::timeout(wait, next_stanza(&mut s))
            .await
            .map_err(|_| timed_out())?
            .map_err(not_found)?;
        if answer.is("success", SASL_NS) {
            features = tokio::time::timeout(wait, connect::restart(&mut s, local, remote))
                .await
                .map_err(|_| timed_out())?
                .map_err(not_found)?;
            // Dialback on top of SASL only where the peer says it handles dialback errors.
            let muxable = features
                .get_child("dialback", super::DIALBACK_FEATURE)
                .is_some_and(|d| d.has_child("errors", super::DIALBACK_FEATURE));
            return Ok((s, id, Auth::SaslExternal, bidi, muxable));
        }
        tracing::info!(%local, %remote, answer = %answer, "SASL EXTERNAL refused; trying dialback");
    }
    let key = server.s2s.dialback_key(remote, local, &id);
    let result = Element::new("result", DIALBACK_NS)
        .with_attr("from", local)
        .with_attr("to", remote)
        .with_text(key);
    s.send(&result).await.map_err(send)?;
    let verdict = tokio::time::timeout(wait, async {
        loop {
            match next_stanza(&mut s).await {
                Ok(el)
                    if el.is("result", DIALBACK_NS)
                        && el.attr("from") == Some(remote)
                        && el.attr("to") == Some(local) =>
                {
                    return el.attr("type").map(str::to_string);
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    })
    .await
    .map_err(|_| timed_out())?;
    match verdict.as_deref() {
        Some("valid") => Ok((s, id, Auth::Dialback, bidi, true)),
        other => Err(not_found(format!(
            "dialback refused ({})",
            other.unwrap_or("closed")
        ))),
    }
}

async fn next_stanza(s: &mut Stream) -> Result<Element, String> {
    match s.next().await? {
        StreamEvent::Stanza(el) if el.is("error", super::STREAM_NS) => Err(format!(
            "stream error {}",
            el.children()
                .next()
                .map(|c| c.name().to_string())
                .unwrap_or_default()
        )),
        StreamEvent::Stanza(el) => Ok(el),
        _ => Err("stream closed".into()),
    }
}

fn from_domain(el: &Element) -> Option<String> {
    el.attr("from")
        .and_then(|f| Jid::new(f).ok())
        .map(|j| j.domain().to_string())
}

struct Carrier<'a> {
    server: &'a Arc<Server>,
    remote: &'a str,
    /// The remote's stream id, for dialback keys of further local domains.
    id: String,
    bidi: bool,
    muxable: bool,
}

impl Carrier<'_> {
    async fn carry(&self, mut s: Stream, domains: &mut Domains, rx: &mut mpsc::Receiver<Element>) {
        let server = self.server;
        let idle = Duration::from_secs(server.config.s2s.idle_timeout_seconds.max(1));
        let verdict_wait =
            Duration::from_secs(server.config.s2s.connect_timeout_seconds.max(1) * 3);
        loop {
            let deadline = domains.pending.values().map(|(_, d)| *d).min();
            tokio::select! {
                el = rx.recv() => {
                    let Some(el) = el else { break };
                    if !self.outbound(&mut s, domains, el, verdict_wait).await {
                        break;
                    }
                }
                ev = s.next() => match ev {
                    Ok(StreamEvent::Stanza(e)) if e.name() == "error" && e.ns() == super::STREAM_NS => {
                        tracing::info!(remote = %self.remote, error = %e, "s2s stream error from remote");
                        break;
                    }
                    Ok(StreamEvent::Stanza(e)) => {
                        if !self.inbound(&mut s, domains, e).await {
                            break;
                        }
                    }
                    _ => break,
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let now = Instant::now();
                    let late: Vec<String> = domains
                        .pending
                        .iter()
                        .filter(|(_, (_, d))| *d <= now)
                        .map(|(l, _)| l.clone())
                        .collect();
                    for local in late {
                        self.refused(domains, &local, false);
                    }
                }
                _ = tokio::time::sleep(idle) => {
                    let _ = s.send_raw("</stream:stream>").await;
                    break;
                }
                _ = server.shutdown.cancelled() => {
                    s.error("system-shutdown", None).await;
                    break;
                }
            }
        }
        server.s2s.forget(self.remote);
    }

    /// Sends a stanza of ours, proving its domain first when the stream does not carry it yet.
    /// False when the stream is broken.
    async fn outbound(
        &self,
        s: &mut Stream,
        domains: &mut Domains,
        el: Element,
        verdict_wait: Duration,
    ) -> bool {
        let Some(local) = from_domain(&el) else {
            return true;
        };
        if domains.authed.contains(&local) {
            if s.send(&to_wire(el.clone())).await.is_err() {
                crate::router::bounce(self.server, &el, StanzaError::remote_server_timeout());
                return false;
            }
            return true;
        }
        if let Some((waiting, _)) = domains.pending.get_mut(&local) {
            waiting.push(el);
            return true;
        }
        if !self.muxable {
            // Routing only hands us other domains when we are muxable; be safe anyway.
            self.server
                .s2s
                .no_mux
                .insert((local.clone(), self.remote.into()));
            super::route(self.server, self.remote, el);
            return true;
        }
        let key = self.server.s2s.dialback_key(self.remote, &local, &self.id);
        let result = Element::new("result", DIALBACK_NS)
            .with_attr("from", local.clone())
            .with_attr("to", self.remote)
            .with_text(key);
        domains
            .pending
            .insert(local, (vec![el], Instant::now() + verdict_wait));
        s.send(&result).await.is_ok()
    }

    /// A stanza from the remote on our stream: dialback verdicts, and on a bidirectional
    /// stream its own stanzas. False when the stream must end.
    async fn inbound(&self, s: &mut Stream, domains: &mut Domains, el: Element) -> bool {
        let server = self.server;
        if el.is("result", DIALBACK_NS) {
            let local = el.attr("to").unwrap_or_default().to_string();
            match el.attr("type") {
                Some("valid") if el.attr("from") == Some(self.remote) => {
                    if let Some((waiting, _)) = domains.pending.remove(&local) {
                        domains.authed.insert(local.clone());
                        tracing::info!(%local, remote = %self.remote, "s2s domain added to the stream");
                        for el in waiting {
                            if s.send(&to_wire(el.clone())).await.is_err() {
                                crate::router::bounce(
                                    server,
                                    &el,
                                    StanzaError::remote_server_timeout(),
                                );
                                return false;
                            }
                        }
                    }
                }
                Some(_) => self.refused(domains, &local, true),
                None => {
                    // The peer piggybacking its own domains on our stream (XEP-0288): we verify
                    // dialback only on streams we accepted.
                    let e = Element::new("result", DIALBACK_NS)
                        .with_attr("from", local)
                        .with_attr("to", el.attr("from").unwrap_or_default())
                        .with_attr("type", "error")
                        .with_child(
                            Element::new("error", DIALBACK_NS)
                                .with_attr("type", "cancel")
                                .with_child(Element::new(
                                    "feature-not-implemented",
                                    ns::STANZAS_ERR,
                                )),
                        );
                    return s.send(&e).await.is_ok();
                }
            }
            return true;
        }
        if !self.bidi {
            // A one-way stream: the peer has nothing to send but errors and verdicts.
            return true;
        }
        if !matches!(el.name(), "message" | "presence" | "iq") || el.ns() != super::SERVER_NS {
            s.error("unsupported-stanza-type", None).await;
            return false;
        }
        // XEP-0288 §2.2: the peer may send as the domain it proved (SASL: the stream's `to`),
        // or as the inverse of a dialback pair; in both cases only to domains proven here.
        let from_ok = from_domain(&el).as_deref() == Some(self.remote);
        let to_ok = el
            .attr("to")
            .and_then(|t| Jid::new(t).ok())
            .is_some_and(|t| domains.authed.contains(t.domain().as_str()));
        if !from_ok || !to_ok {
            s.error("invalid-from", Some("not a domain pair of this stream"))
                .await;
            return false;
        }
        crate::router::deliver(server, from_wire(el)).await;
        true
    }

    /// The remote would not take `local` on this stream: its waiting stanzas go over a stream
    /// of its own, or bounce when the remote refused the domain itself.
    fn refused(&self, domains: &mut Domains, local: &str, answered: bool) {
        let Some((waiting, _)) = domains.pending.remove(local) else {
            return;
        };
        tracing::info!(%local, remote = %self.remote, answered, "s2s domain not added to the stream");
        let m = &self.server.s2s;
        m.no_mux
            .insert((local.to_string(), self.remote.to_string()));
        m.out.remove(&(local.to_string(), self.remote.to_string()));
        for el in waiting {
            super::route(self.server, self.remote, el);
        }
    }
}

/// As the receiving server: asks `originating`'s authoritative server whether `key` is the one
/// it generated for our stream `id` (XEP-0220 §2.3).
pub async fn verify(
    server: &Server,
    receiving: &str,
    originating: &str,
    id: &str,
    key: &str,
) -> bool {
    let work = async {
        let Opened { stream: mut s, .. } = connect::open(server, receiving, originating).await?;
        let req = Element::new("verify", DIALBACK_NS)
            .with_attr("from", receiving)
            .with_attr("to", originating)
            .with_attr("id", id)
            .with_text(key);
        s.send(&req).await.map_err(|e| e.to_string())?;
        loop {
            let el = next_stanza(&mut s).await?;
            if el.is("verify", DIALBACK_NS) && el.attr("id") == Some(id) {
                let _ = s.send_raw("</stream:stream>").await;
                return Ok::<bool, String>(el.attr("type") == Some("valid"));
            }
        }
    };
    let timeout = Duration::from_secs(server.config.s2s.connect_timeout_seconds.max(1) * 3);
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(e)) => {
            tracing::info!(%originating, error = %e, "dialback verification failed");
            false
        }
        Err(_) => false,
    }
}
