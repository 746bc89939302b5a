//! The c2s stream state machine (RFC 6120 §4–§7): stream headers, STARTTLS, SASL, resource
//! binding, then the session loop. Transport-independent.

use super::{limits, sasl, sm, ReadError, Transport};
use crate::session::{Outbound, SessionHandle};
use crate::{presence, router, Server};
use rand::Rng;
use rookery_core::stanza::{self, StanzaError};
use rookery_core::{ns, BareJid, Element, FullJid, Jid};
use rookery_xml::{StreamEvent, StreamHeader};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// XEP-0352 Client State Indication.
const CSI: &str = "urn:xmpp:csi:0";

/// Stanzas a client marked inactive can do without until something important arrives: presence
/// broadcasts and messages that only carry chat states (XEP-0352 §5).
fn can_wait(el: &Element) -> bool {
    match el.name() {
        "presence" => !matches!(
            el.attr("type"),
            Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "error")
        ),
        "message" => {
            el.attr("type") != Some("error")
                && !el.has_child("body", ns::CLIENT)
                && !el.has_child("subject", ns::CLIENT)
                && el.children().all(|c| {
                    c.ns() == "http://jabber.org/protocol/chatstates" || c.ns() == "urn:xmpp:delay"
                })
        }
        _ => false,
    }
}

/// Inbox size per session; beyond it senders get an error instead of piling up memory.
const INBOX: usize = 1024;

/// Why the stream ends, as an RFC 6120 §4.9.3 condition, or quietly.
#[derive(Debug)]
pub enum End {
    Error(&'static str, Option<String>),
    /// The client closed the stream; answer with our close.
    Closed,
    /// The connection is gone; nothing can be sent.
    Lost,
}

impl From<ReadError> for End {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Xml(e) => {
                tracing::info!(
                    condition = e.condition(),
                    text = e.text(),
                    "stream limit or XML error"
                );
                End::Error(e.condition(), Some(e.text().to_string()))
            }
            ReadError::Io(_) | ReadError::Eof => End::Lost,
        }
    }
}

fn stream_error(condition: &str, text: Option<&str>) -> Element {
    let mut e =
        Element::new("error", ns::STREAM).with_child(Element::new(condition, ns::STREAMS_ERR));
    if let Some(t) = text {
        e.push_child(
            Element::new("text", ns::STREAMS_ERR)
                .with_attr("xml:lang", "en")
                .with_text(t),
        );
    }
    e
}

/// Per-connection negotiation state.
struct Conn {
    server: Arc<Server>,
    t: Box<dyn Transport>,
    host: String,
    header_sent: bool,
    queue: VecDeque<StreamEvent>,
    /// The stream's `xml:lang`, given to stanzas that carry none (RFC 6120 §4.7.4).
    lang: Option<String>,
    /// The invitation this stream presented (XEP-0445), by its storage key.
    invite: Option<String>,
}

impl Conn {
    async fn next(&mut self) -> Result<StreamEvent, End> {
        if let Some(ev) = self.queue.pop_front() {
            return Ok(ev);
        }
        let mut evs = Vec::new();
        self.t.read_events(&mut evs).await?;
        self.queue.extend(evs);
        Ok(self
            .queue
            .pop_front()
            .expect("read_events yields at least one event"))
    }

    /// Waits for a (re)opened stream and answers with our header and `features`.
    async fn open(&mut self, features: impl FnOnce(&Self) -> Element) -> Result<(), End> {
        let header = match self.next().await? {
            StreamEvent::Header(h) => h,
            StreamEvent::Close => return Err(End::Closed),
            StreamEvent::Stanza(_) => return Err(End::Error("not-well-formed", None)),
        };
        self.accept_header(&header).await?;
        let f = features(self);
        self.t.send(&[f]).await.map_err(|_| End::Lost)
    }

    async fn accept_header(&mut self, h: &StreamHeader) -> Result<(), End> {
        let id = format!("{:016x}", rand::thread_rng().gen::<u64>());
        let requested = h.attr("to").map(|t| t.to_ascii_lowercase());
        let host = match &requested {
            Some(t) if self.server.config.is_local_host(t) => t.clone(),
            Some(_) => {
                let default = self.server.config.hosts[0].clone();
                self.t
                    .open_stream(&default, &id, None)
                    .await
                    .map_err(|_| End::Lost)?;
                self.header_sent = true;
                return Err(End::Error("host-unknown", None));
            }
            None => self.server.config.hosts[0].clone(),
        };
        self.host = host;
        self.lang = h.attr("xml:lang").map(str::to_string);
        let from = h
            .attr("from")
            .and_then(|f| Jid::new(f).ok())
            .map(|j| j.to_string());
        self.t
            .open_stream(&self.host, &id, from.as_deref())
            .await
            .map_err(|_| End::Lost)?;
        self.header_sent = true;
        if let Some(v) = h.attr("version") {
            if !v.starts_with("1.") {
                return Err(End::Error("unsupported-version", None));
            }
        }
        Ok(())
    }

    async fn finish(&mut self, end: End) {
        match end {
            End::Lost => {}
            End::Closed => {
                let _ = self.t.close_stream().await;
            }
            End::Error(cond, text) => {
                if !self.header_sent {
                    let id = format!("{:016x}", rand::thread_rng().gen::<u64>());
                    let host = self.server.config.hosts[0].clone();
                    let _ = self.t.open_stream(&host, &id, None).await;
                }
                tracing::debug!(cond, ?text, "closing stream with an error");
                let _ = self.t.send(&[stream_error(cond, text.as_deref())]).await;
                let _ = self.t.close_stream().await;
            }
        }
    }
}

/// Drives one client connection from the first byte to the last, in a span naming its peer
/// (and its JID once bound), so every log line of the connection says whose it is.
pub async fn run(server: Arc<Server>, t: Box<dyn Transport>) {
    use tracing::Instrument;
    let span = tracing::info_span!("c2s", peer = %t.peer_ip(), jid = tracing::field::Empty);
    run_in_span(server, t).instrument(span).await
}

async fn run_in_span(server: Arc<Server>, t: Box<dyn Transport>) {
    let mut conn = Conn {
        server: server.clone(),
        t,
        host: String::new(),
        header_sent: false,
        queue: VecDeque::new(),
        lang: None,
        invite: None,
    };
    // Each rare step runs boxed, built in a statement of its own: an unboxed future (or one
    // moved out of a local) would still take room in this future, which every session holds.
    let negotiating = Box::pin(negotiate_in_time(&mut conn));
    let negotiated = negotiating.await;
    match negotiated {
        Ok(Negotiated::Bound(jid, rx, handle)) => {
            tracing::Span::current().record("jid", tracing::field::display(&jid));
            let serving = Box::pin(session(conn, jid, rx, handle, None));
            serving.await
        }
        Ok(Negotiated::Migrated(jid, rx, handle, sm)) => {
            tracing::Span::current().record("jid", tracing::field::display(&jid));
            let serving = Box::pin(session(conn, jid, rx, handle, Some(sm)));
            serving.await
        }
        Ok(Negotiated::Resume(tx, h)) => {
            let handing = Box::pin(hand_over(conn, tx, h));
            handing.await
        }
        Err(end) => {
            let finishing = Box::pin(conn.finish(end));
            finishing.await
        }
    }
}

/// `negotiate` within `limits.auth_timeout_seconds`, or until shutdown.
async fn negotiate_in_time(conn: &mut Conn) -> Result<Negotiated, End> {
    let server = conn.server.clone();
    let auth_timeout = Duration::from_secs(server.config.limits.auth_timeout_seconds);
    tokio::select! {
        r = tokio::time::timeout(auth_timeout, negotiate(conn)) => match r {
            Ok(r) => r,
            Err(_) => Err(End::Error("connection-timeout", Some("authentication took too long".into()))),
        },
        _ = server.shutdown.cancelled() => Err(End::Error("system-shutdown", None)),
    }
}

/// Hands a connection that resumed (XEP-0198) to the hibernating session.
async fn hand_over(mut conn: Conn, tx: mpsc::Sender<sm::Takeover>, h: u32) {
    // The hibernating session answers <resumed/>.
    let r = sm::Resumption {
        transport: conn.t,
        queue: std::mem::take(&mut conn.queue),
        lang: conn.lang.take(),
        h,
    };
    if let Err(mpsc::error::SendError(t)) = tx.send(sm::Takeover::Here(r)).await {
        // It expired in the meantime.
        let sm::Takeover::Here(r) = t else {
            unreachable!("sent Here")
        };
        let mut t = r.transport;
        let failed = Element::new("failed", sm::NS)
            .with_child(Element::new("item-not-found", ns::STANZAS_ERR));
        let _ = t.send(&[failed]).await;
        let _ = t.close_stream().await;
    }
}

/// How negotiation ended.
enum Negotiated {
    Bound(FullJid, crate::inbox::Receiver<Outbound>, SessionHandle),
    /// XEP-0198 resumption of an existing session.
    Resume(mpsc::Sender<sm::Takeover>, u32),
    /// Resumption of a session another node of the cluster handed over; `<resumed/>` is sent.
    Migrated(
        FullJid,
        crate::inbox::Receiver<Outbound>,
        SessionHandle,
        (sm::State, mpsc::Receiver<sm::Takeover>),
    ),
}

/// Everything before the session: TLS, SASL, bind. Returns the bound full JID.
async fn negotiate(conn: &mut Conn) -> Result<Negotiated, End> {
    let server = conn.server.clone();
    // Pre-authentication streams.
    let user: BareJid = 'auth: loop {
        conn.open(|c| pre_auth_features(&c.server, &*c.t)).await?;
        loop {
            let el = match conn.next().await? {
                StreamEvent::Stanza(el) => el,
                StreamEvent::Close => return Err(End::Closed),
                StreamEvent::Header(_) => return Err(End::Error("not-well-formed", None)),
            };
            if el.is("starttls", ns::TLS) {
                if conn.t.is_secure() {
                    return Err(End::Error(
                        "policy-violation",
                        Some("TLS is already on".into()),
                    ));
                }
                conn.t
                    .send(&[Element::new("proceed", ns::TLS)])
                    .await
                    .map_err(|_| End::Lost)?;
                match conn.t.starttls().await {
                    Some(Ok(())) => {}
                    Some(Err(_)) => return Err(End::Lost),
                    None => return Err(End::Error("unsupported-feature", None)),
                }
                conn.queue.clear();
                conn.t.restart(limits(&server, false));
                continue 'auth;
            }
            if el.is("auth", ns::SASL) {
                if server.config.tls.require_encryption && !conn.t.is_secure() {
                    let f = Element::new("failure", ns::SASL)
                        .with_child(Element::new("encryption-required", ns::SASL));
                    conn.t.send(&[f]).await.map_err(|_| End::Lost)?;
                    continue;
                }
                let host = conn.host.clone();
                match sasl::authenticate(&server, &mut *conn.t, &host, &el).await {
                    sasl::Outcome::Success(u) => {
                        conn.queue.clear();
                        conn.t.restart(limits(&server, true));
                        break 'auth u;
                    }
                    sasl::Outcome::Failed => continue,
                    sasl::Outcome::Broken(e) => return Err(e.into()),
                }
            }
            if el.is("iq", ns::CLIENT) && el.has_child("preauth", crate::modules::invites::NS_PARS)
            {
                let token = el
                    .get_child("preauth", crate::modules::invites::NS_PARS)
                    .and_then(|p| p.attr("token"))
                    .unwrap_or_default();
                let found = if server.config.registration.invites && conn.t.is_secure() {
                    crate::modules::invites::check(&server, &conn.host, token).await
                } else {
                    None
                };
                let reply = match found {
                    Some((key, _)) => {
                        conn.invite = Some(key);
                        stanza::iq_result(&el)
                    }
                    None => stanza::error_reply(
                        &el,
                        &StanzaError::item_not_found()
                            .with_text("The provided token is invalid or expired"),
                    ),
                };
                conn.t.send(&[reply]).await.map_err(|_| End::Lost)?;
                continue;
            }
            if el.is("iq", ns::CLIENT) && el.has_child("query", crate::modules::register::NS) {
                if server.config.tls.require_encryption && !conn.t.is_secure() {
                    let reply = stanza::error_reply(
                        &el,
                        &StanzaError::not_authorized().with_text("use TLS first"),
                    );
                    conn.t.send(&[reply]).await.map_err(|_| End::Lost)?;
                    continue;
                }
                let host = conn.host.clone();
                let reply = crate::modules::register::handle_unauthenticated(
                    &server,
                    &host,
                    &el,
                    conn.t.peer_ip(),
                    conn.invite.as_deref(),
                )
                .await;
                conn.t.send(&[reply]).await.map_err(|_| End::Lost)?;
                continue;
            }
            return Err(unexpected(&el, "not-authorized"));
        }
    };
    // Authenticated stream: bind a resource.
    conn.open(|c| post_auth_features(&c.server)).await?;
    loop {
        let el = match conn.next().await? {
            StreamEvent::Stanza(el) => el,
            StreamEvent::Close => return Err(End::Closed),
            StreamEvent::Header(_) => return Err(End::Error("not-well-formed", None)),
        };
        if el.is("iq", ns::CLIENT) && el.attr("type") == Some("set") {
            if let Some(bind) = el.get_child("bind", ns::BIND) {
                match bind_resource(&server, &user, bind) {
                    Ok(full) => {
                        let (tx, rx) = crate::inbox::channel(INBOX);
                        let handle = SessionHandle::new(server.next_id(), full.clone(), tx);
                        if let Some(old) = server.sessions.insert(handle.clone()) {
                            old.close("conflict", Some("replaced by a new session".into()))
                                .await;
                        }
                        let reply = stanza::iq_result(&el).with_child(
                            Element::new("bind", ns::BIND).with_child(
                                Element::new("jid", ns::BIND).with_text(full.to_string()),
                            ),
                        );
                        conn.t.send(&[reply]).await.map_err(|_| End::Lost)?;
                        return Ok(Negotiated::Bound(full, rx, handle));
                    }
                    Err(e) => {
                        conn.t
                            .send(&[stanza::error_reply(&el, &e)])
                            .await
                            .map_err(|_| End::Lost)?;
                        continue;
                    }
                }
            }
        }
        if el.is("resume", sm::NS) {
            let h = el.attr("h").and_then(|h| h.parse::<u32>().ok());
            let previd = el.attr("previd").unwrap_or_default();
            let found = server.sm.find(previd, &user);
            if found.is_none() && h.is_some() {
                if let Some(n) = resume_elsewhere(conn, &user, previd, h.unwrap_or(0)).await? {
                    return Ok(n);
                }
            }
            match (found, h) {
                (Some(tx), Some(h)) => return Ok(Negotiated::Resume(tx, h)),
                _ => {
                    let failed = Element::new("failed", sm::NS)
                        .with_child(Element::new("item-not-found", ns::STANZAS_ERR));
                    conn.t.send(&[failed]).await.map_err(|_| End::Lost)?;
                    continue;
                }
            }
        }
        if el.is("enable", sm::NS) {
            let failed = Element::new("failed", sm::NS)
                .with_child(Element::new("unexpected-request", ns::STANZAS_ERR));
            conn.t.send(&[failed]).await.map_err(|_| End::Lost)?;
            continue;
        }
        if el.is("iq", ns::CLIENT) && el.attr("type").is_some_and(|t| t == "get" || t == "set") {
            let reply = stanza::error_reply(
                &el,
                &StanzaError::not_authorized().with_text("bind a resource first"),
            );
            conn.t.send(&[reply]).await.map_err(|_| End::Lost)?;
            continue;
        }
        return Err(unexpected(&el, "not-authorized"));
    }
}

fn unexpected(el: &Element, default: &'static str) -> End {
    let stanza_name = matches!(el.name(), "message" | "presence" | "iq");
    if stanza_name && el.ns() != ns::CLIENT {
        return End::Error("invalid-namespace", None);
    }
    if !stanza_name {
        return End::Error("unsupported-stanza-type", None);
    }
    End::Error(default, None)
}

fn pre_auth_features(server: &Server, t: &dyn Transport) -> Element {
    let mut f = Element::new("features", ns::STREAM);
    if !t.is_secure() {
        let mut st = Element::new("starttls", ns::TLS);
        if server.config.tls.require_encryption {
            st.push_child(Element::new("required", ns::TLS));
        }
        f.push_child(st);
    }
    if t.is_secure() || !server.config.tls.require_encryption {
        f.push_child(
            Element::new("mechanisms", ns::SASL).with_children(
                sasl::mechanisms(server, t)
                    .into_iter()
                    .map(|m| Element::new("mechanism", ns::SASL).with_text(m)),
            ),
        );
        if let Some(cb) = sasl::channel_binding_feature(t) {
            f.push_child(cb);
        }
        if server.config.registration.invites {
            f.push_child(Element::new("register", crate::modules::invites::FEATURE));
        }
        if server.config.registration.allow {
            f.push_child(Element::new("register", crate::modules::register::FEATURE));
        }
    }
    f
}

fn post_auth_features(server: &Server) -> Element {
    Element::new("features", ns::STREAM)
        .with_child(Element::new("bind", ns::BIND))
        .with_child(Element::new("sm", sm::NS))
        .with_child(Element::new("csi", CSI))
        .with_child(
            Element::new("session", ns::SESSION).with_child(Element::new("optional", ns::SESSION)),
        )
        .with_children(server.modules.stream_features.iter().cloned())
}

fn bind_resource(server: &Server, user: &BareJid, bind: &Element) -> Result<FullJid, StanzaError> {
    let requested = bind
        .child_text("resource", ns::BIND)
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let full = match requested {
        Some(r) => user
            .with_resource_str(&r)
            .map_err(|_| StanzaError::bad_request().with_text("invalid resource"))?,
        None => {
            let r: String = rand::thread_rng()
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(10)
                .map(char::from)
                .collect();
            user.with_resource_str(&format!("rookery-{r}"))
                .expect("alphanumeric resource is valid")
        }
    };
    let existing = server.sessions.resources(user);
    if !existing.iter().any(|s| s.jid == full)
        && existing.len() >= server.config.limits.max_sessions_per_user
    {
        return Err(StanzaError::resource_constraint().with_text("too many sessions"));
    }
    Ok(full)
}

/// XEP-0198 resumption of a session another cluster node holds: that node hands over the
/// session's counters and unacknowledged stanzas, and it continues here under the same id.
/// `None` when no node has it (the caller answers `<failed/>`).
async fn resume_elsewhere(
    conn: &mut Conn,
    user: &BareJid,
    previd: &str,
    h: u32,
) -> Result<Option<Negotiated>, End> {
    let server = conn.server.clone();
    let Some(cluster) = &server.cluster else {
        return Ok(None);
    };
    let Some(old) =
        server.sessions.resources(user).into_iter().find(|s| {
            !s.is_local() && s.state.lock().unwrap().resumable.as_deref() == Some(previd)
        })
    else {
        return Ok(None);
    };
    let node = old.node().unwrap_or_default().to_string();
    let Some(m) = cluster.migrate(&node, previd, user).await else {
        return Ok(None);
    };
    let (tx, rx) = crate::inbox::channel(INBOX);
    let handle = SessionHandle::new(server.next_id(), old.jid.clone(), tx);
    {
        let was = old.state.lock().unwrap();
        let mut st = handle.state.lock().unwrap();
        st.available = was.available;
        st.priority = was.priority;
        st.last = was.last.clone();
        st.last_at = was.last_at;
        st.carbons = was.carbons;
        st.interested = was.interested;
        st.blocklist_interested = was.blocklist_interested;
        st.resumable = Some(previd.to_string());
    }
    if let Some(prev) = server.sessions.insert(handle.clone()) {
        prev.close("conflict", Some("replaced by a new session".into()))
            .await;
    }
    let mut sm = sm::State::migrated(previd.to_string(), m);
    if sm.ack(h).is_err() {
        sm.unacked.clear();
    }
    let (ttx, trx) = mpsc::channel(1);
    server.sm.insert(previd.to_string(), user.clone(), ttx);
    let mut replay = vec![Element::new("resumed", sm::NS)
        .with_attr("previd", previd)
        .with_attr("h", sm.h_in.to_string())];
    replay.extend(sm.unacked.iter().cloned());
    conn.t.send(&replay).await.map_err(|_| End::Lost)?;
    tracing::debug!(jid = %old.jid, from = %node, "session resumed from another node");
    Ok(Some(Negotiated::Migrated(
        old.jid.clone(),
        rx,
        handle,
        (sm, trx),
    )))
}

/// The bound session: client stanzas in, routed stanzas out, keepalive pings, stream management.
async fn session(
    mut conn: Conn,
    jid: FullJid,
    mut rx: crate::inbox::Receiver<Outbound>,
    handle: SessionHandle,
    migrated: Option<(sm::State, mpsc::Receiver<sm::Takeover>)>,
) {
    let server = conn.server.clone();
    tracing::debug!(%jid, "session started");
    let (mut sm, mut resume_rx) = match migrated {
        Some((sm, rx)) => (sm, Some(rx)),
        None => (sm::State::default(), None),
    };
    // Routed here while the connection was down and resumption was possible.
    let mut held: Vec<Element> = Vec::new();
    let end = loop {
        let end = run_connection(
            &mut conn,
            &jid,
            &handle,
            &mut rx,
            &mut sm,
            &mut resume_rx,
            &mut held,
        )
        .await;
        if !matches!(end, End::Lost) || sm.id.is_none() {
            break end;
        }
        handle.update(server.sessions.as_ref(), |st| st.hibernating = true);
        for h in &server.modules.hooks {
            h.on_hibernating(&server, &handle, &sm.unacked).await;
        }
        // XEP-0198 §5: keep the session for a while; a new connection may take it over.
        let timeout = Duration::from_secs(server.config.limits.resume_timeout_seconds);
        let deadline = Instant::now() + timeout;
        let resumed = loop {
            let Some(rrx) = resume_rx.as_mut() else {
                break None;
            };
            tokio::select! {
                r = rrx.recv() => break r,
                out = rx.recv() => match out {
                    Some(Outbound::Stanza(el)) => held.push(*el),
                    Some(Outbound::Close { .. }) | None => break None,
                },
                _ = tokio::time::sleep_until(deadline) => break None,
                _ = server.shutdown.cancelled() => break None,
            }
        };
        let r = match resumed {
            None => break End::Lost,
            Some(sm::Takeover::Here(r)) => r,
            Some(sm::Takeover::Elsewhere(reply)) => {
                // The client came back on another node: everything goes there, and this
                // session ends without telling anyone it left (it did not).
                rx.close();
                while let Ok(out) = rx.try_recv() {
                    if let Outbound::Stanza(el) = out {
                        held.push(*el);
                    }
                }
                if let Some(id) = &sm.id {
                    server.sm.remove(id);
                }
                server.sessions.remove(&jid, handle.id);
                let _ = reply.send(sm.migrate(std::mem::take(&mut held)));
                tracing::debug!(%jid, "session handed over to another node");
                return;
            }
        };
        if sm.ack(r.h).is_err() {
            sm.unacked.clear();
        }
        handle.update(server.sessions.as_ref(), |st| st.hibernating = false);
        conn.t = r.transport;
        conn.queue = r.queue;
        conn.lang = r.lang.or(conn.lang.take());
        let mut replay = vec![Element::new("resumed", sm::NS)
            .with_attr("previd", sm.id.clone().unwrap_or_default())
            .with_attr("h", sm.h_in.to_string())];
        replay.extend(sm.unacked.iter().cloned());
        if conn.t.send(&replay).await.is_err() {
            continue;
        }
        tracing::debug!(%jid, "session resumed");
    };
    if let Some(id) = &sm.id {
        server.sm.remove(id);
    }
    server.sessions.remove(&jid, handle.id);
    // Boxed, like every rare step here: the session future's size is held by every idle session.
    let leaving = Box::pin(presence::broadcast_unavailable(&server, &handle, None));
    leaving.await;
    let finishing = Box::pin(conn.finish(end));
    finishing.await;
    // Messages that reached this session but not (provably) the client are routed again: other
    // resources or offline storage get them, so a closing session loses nothing.
    rx.close();
    let mut leftovers: Vec<Element> = sm.unacked.drain(..).collect();
    leftovers.append(&mut held);
    while let Ok(out) = rx.try_recv() {
        if let Outbound::Stanza(el) = out {
            leftovers.push(*el);
        }
    }
    for el in leftovers {
        if el.name() == "message" && el.attr("type") != Some("error") {
            let mut el = el;
            // Undeliverable to this resource now: aim at the account instead.
            el.set_attr("to", jid.to_bare().to_string());
            let routing = Box::pin(router::deliver(&server, el));
            routing.await;
        }
    }
    tracing::debug!(%jid, "session ended");
}

/// After this long without input a connection frees its parser's buffers ([`Transport::compact`]):
/// most sessions are idle most of the time.
const QUIET: Duration = Duration::from_secs(2);

/// Serves one connection of a session until it ends.
#[allow(clippy::too_many_arguments)]
async fn run_connection(
    conn: &mut Conn,
    jid: &FullJid,
    handle: &SessionHandle,
    rx: &mut crate::inbox::Receiver<Outbound>,
    sm: &mut sm::State,
    resume_rx: &mut Option<mpsc::Receiver<sm::Takeover>>,
    held: &mut Vec<Element>,
) -> End {
    let server = conn.server.clone();
    let ping_every = Duration::from_secs(server.config.limits.ping_interval_seconds.max(1));
    let ping_timeout = Duration::from_secs(server.config.limits.ping_timeout_seconds.max(1));
    // One timer serves the quiet point (see QUIET) and the ping deadline. Input moves both
    // later without touching the timer: when it fires early it is set again from `last_input`,
    // so a busy connection does not re-arm a timer per read.
    let mut last_input = Instant::now();
    let mut compacted = false;
    let mut ping_pending: Option<(String, Instant)> = None;
    let timer = tokio::time::sleep_until(last_input + QUIET.min(ping_every));
    tokio::pin!(timer);
    let shutdown = server.shutdown.cancelled();
    tokio::pin!(shutdown);
    // Client State Indication: while inactive, unimportant stanzas wait here.
    let mut inactive = false;
    handle.update(server.sessions.as_ref(), |st| st.inactive = false);
    let mut waiting: Vec<Element> = Vec::new();
    // limits.rate_stanzas_per_second: a sender beyond it waits before its next stanza is taken.
    let exempt = server.exempt(&jid.to_bare());
    let mut stanza_rate = if exempt {
        None
    } else {
        crate::rate::ByteRate::new(server.config.limits.rate_stanzas_per_second.into())
    };
    // limits.rate_stanzas_per_second_per_ip: shared by the connections from this address.
    let ip_stanza_rate = if exempt {
        None
    } else {
        server.c2s_per_ip.shared_rates(conn.t.peer_ip()).1
    };
    // When the bytes of what is in `conn.queue` were read: routing latency counts from there.
    let mut arrived = std::time::Instant::now();
    if !held.is_empty() {
        let mut batch = std::mem::take(held);
        server.metrics.stanzas_out(&batch);
        if sm.sending(&batch) {
            batch.push(Element::new("r", sm::NS));
        }
        if conn.t.send(&batch).await.is_err() {
            return End::Lost;
        }
    }
    loop {
        if let Some(ev) = conn.queue.pop_front() {
            match ev {
                StreamEvent::Stanza(el) if el.ns() == CSI => {
                    match el.name() {
                        "inactive" => {
                            inactive = true;
                            handle.update(server.sessions.as_ref(), |st| st.inactive = true);
                        }
                        "active" => {
                            inactive = false;
                            handle.update(server.sessions.as_ref(), |st| st.inactive = false);
                            if !waiting.is_empty() {
                                let mut batch = std::mem::take(&mut waiting);
                                server.metrics.stanzas_out(&batch);
                                if sm.sending(&batch) {
                                    batch.push(Element::new("r", sm::NS));
                                }
                                if conn.t.send(&batch).await.is_err() {
                                    return End::Lost;
                                }
                            }
                        }
                        _ => return End::Error("unsupported-stanza-type", None),
                    }
                    continue;
                }
                StreamEvent::Stanza(el) if el.ns() == sm::NS => {
                    let managing = Box::pin(stream_management(conn, jid, sm, resume_rx, &el));
                    if let Some(e) = managing.await {
                        return e;
                    }
                    continue;
                }
                StreamEvent::Stanza(el) => {
                    if let Some(r) = stanza_rate.as_mut() {
                        r.charge(1);
                    }
                    let shared = ip_stanza_rate
                        .as_ref()
                        .map_or(Duration::ZERO, |s| s.charge(1));
                    crate::rate::pay(stanza_rate.as_mut(), shared).await;
                    sm.received(&el);
                    let handling = Box::pin(handle_client_stanza(
                        &server,
                        handle,
                        el,
                        &mut ping_pending,
                        conn.lang.as_deref(),
                        arrived,
                    ));
                    if let Some(e) = handling.await {
                        return e;
                    }
                    continue;
                }
                StreamEvent::Close => return End::Closed,
                StreamEvent::Header(_) => return End::Error("not-well-formed", None),
            }
        }
        if conn.queue.capacity() != 0 {
            conn.queue = VecDeque::new();
        }
        tokio::select! {
            biased;
            out = rx.recv() => match out {
                Some(Outbound::Stanza(el)) => {
                    // Batch what is already queued into one write.
                    let mut batch = vec![*el];
                    let mut close = None;
                    while batch.len() < 64 {
                        match rx.try_recv() {
                            Ok(Outbound::Stanza(e)) => batch.push(*e),
                            Ok(Outbound::Close { condition, text }) => { close = Some((condition, text)); break; }
                            Err(_) => break,
                        }
                    }
                    if inactive && close.is_none() {
                        if batch.iter().all(can_wait) && waiting.len() < 1000 {
                            waiting.append(&mut batch);
                            waiting = latest_presence_only(std::mem::take(&mut waiting));
                            continue;
                        }
                        // Something important: what waited goes first, in order, with only the
                        // latest presence of each sender.
                        waiting.append(&mut batch);
                        batch = latest_presence_only(std::mem::take(&mut waiting));
                    }
                    server.metrics.stanzas_out(&batch);
                    if sm.sending(&batch) {
                        batch.push(Element::new("r", sm::NS));
                    }
                    if conn.t.send(&batch).await.is_err() {
                        return End::Lost;
                    }
                    if let Some((c, t)) = close {
                        return End::Error(c, t);
                    }
                }
                Some(Outbound::Close { condition, text }) => return End::Error(condition, text),
                None => return End::Lost,
            },
            r = conn.t.read_events_vec() => match r {
                Ok(evs) => {
                    arrived = std::time::Instant::now();
                    last_input = Instant::from_std(arrived);
                    if compacted {
                        compacted = false;
                        timer.as_mut().reset(last_input + QUIET.min(ping_every));
                    }
                    // The queue is empty here: take the vector's buffer (given back to the
                    // allocator before the next wait, rather than kept while the session idles).
                    conn.queue = VecDeque::from(evs);
                    ping_pending = None;
                }
                Err(e) => return e.into(),
            },
            _ = &mut timer => {
                let now = Instant::now();
                if !compacted && now >= last_input + QUIET {
                    conn.t.compact();
                    compacted = true;
                }
                // An unanswered ping times out; otherwise the next is due after quiet input.
                let ping_due = |pending: &Option<(String, Instant)>| match pending {
                    Some((_, sent)) => *sent + ping_timeout,
                    None => last_input + ping_every,
                };
                if now >= ping_due(&ping_pending) {
                    if ping_pending.is_some() {
                        return End::Error("connection-timeout", Some("no answer to ping".into()));
                    }
                    let id = format!("ping{}", server.next_id());
                    let ping = Element::new("iq", ns::CLIENT)
                        .with_attr("type", "get")
                        .with_attr("id", id.clone())
                        .with_attr("from", jid.domain().to_string())
                        .with_attr("to", jid.to_string())
                        .with_child(Element::new("ping", "urn:xmpp:ping"));
                    if conn.t.send(&[ping]).await.is_err() {
                        return End::Lost;
                    }
                    ping_pending = Some((id, now));
                }
                let ping_due = ping_due(&ping_pending);
                let next = if compacted { ping_due } else { ping_due.min(last_input + QUIET) };
                timer.as_mut().reset(next);
            },
            _ = &mut shutdown => {
                // Flush what was already routed here before saying goodbye.
                let mut batch = Vec::new();
                while let Ok(Outbound::Stanza(e)) = rx.try_recv() {
                    batch.push(*e);
                }
                let _ = conn.t.send(&batch).await;
                return End::Error("system-shutdown", None);
            },
        }
    }
}

/// `<enable/>`, `<r/>` and `<a/>` on a bound stream (XEP-0198).
async fn stream_management(
    conn: &mut Conn,
    jid: &FullJid,
    sm: &mut sm::State,
    resume_rx: &mut Option<mpsc::Receiver<sm::Takeover>>,
    el: &Element,
) -> Option<End> {
    let server = conn.server.clone();
    let reply = match el.name() {
        "enable" if sm.enabled => Element::new("failed", sm::NS)
            .with_child(Element::new("unexpected-request", ns::STANZAS_ERR)),
        "enable" => {
            sm.enabled = true;
            let mut enabled = Element::new("enabled", sm::NS);
            if matches!(el.attr("resume"), Some("true" | "1")) {
                let id: String = rand::thread_rng()
                    .sample_iter(&rand::distributions::Alphanumeric)
                    .take(20)
                    .map(char::from)
                    .collect();
                let (tx, rx) = mpsc::channel(1);
                server.sm.insert(id.clone(), jid.to_bare(), tx);
                *resume_rx = Some(rx);
                sm.id = Some(id.clone());
                // Other nodes find the session by this id when the client resumes there.
                if let Some(h) = server.sessions.get_local(jid) {
                    h.update(server.sessions.as_ref(), |st| {
                        st.resumable = Some(id.clone())
                    });
                }
                enabled.set_attr("id", id);
                enabled.set_attr("resume", "true");
                enabled.set_attr(
                    "max",
                    server.config.limits.resume_timeout_seconds.to_string(),
                );
            }
            enabled
        }
        "r" if sm.enabled => {
            // What <a/> acknowledges must survive a crash: messages are in the offline store
            // already (written before the next stanza is read); archive writes are batched, so
            // wait for the batch holding this session's.
            server.archive.flush(&server.storage).await;
            sm.ack_element()
        }
        "a" if sm.enabled => {
            let ok = el
                .attr("h")
                .and_then(|h| h.parse::<u32>().ok())
                .map(|h| sm.ack(h));
            return match ok {
                Some(Ok(())) => None,
                _ => Some(End::Error(
                    "undefined-condition",
                    Some("acknowledged more stanzas than were sent".into()),
                )),
            };
        }
        _ => return Some(End::Error("unsupported-stanza-type", None)),
    };
    if conn.t.send(&[reply]).await.is_err() {
        return Some(End::Lost);
    }
    None
}

/// One stanza from the client; returns how the stream ends if it must.
async fn handle_client_stanza(
    server: &Server,
    handle: &SessionHandle,
    mut el: Element,
    ping_pending: &mut Option<(String, Instant)>,
    lang: Option<&str>,
    arrived: std::time::Instant,
) -> Option<End> {
    if stanza::kind(&el).is_none() || el.ns() != ns::CLIENT {
        return Some(unexpected(&el, "unsupported-stanza-type"));
    }
    server.metrics.stanza_in(&el);
    if let Some(from) = el.attr("from") {
        let ok = match Jid::new(from) {
            Ok(j) => j.as_str() == handle.jid.as_str() || j.as_str() == handle.bare().as_str(),
            Err(_) => false,
        };
        if !ok {
            return Some(End::Error("invalid-from", None));
        }
    }
    el.set_attr("from", handle.jid.to_string());
    if let (Some(l), None) = (lang, el.attr("xml:lang")) {
        el.set_attr("xml:lang", l);
    }
    if el.name() == "iq" {
        let t = el.attr("type");
        if (t == Some("result") || t == Some("error"))
            && ping_pending
                .as_ref()
                .is_some_and(|(id, _)| el.attr("id") == Some(id.as_str()))
        {
            *ping_pending = None;
            return None;
        }
        // The legacy session establishment (RFC 3921) is a no-op now.
        if t == Some("set") && el.has_child("session", ns::SESSION) {
            let reply = stanza::iq_result(&el);
            router::send_to_session(server, handle, reply);
            return None;
        }
    }
    router::route_from_client(server, handle, el, arrived).await;
    None
}

/// Drops every presence that a later presence from the same sender replaces (CSI, XEP-0352).
fn latest_presence_only(stanzas: Vec<Element>) -> Vec<Element> {
    let mut seen = std::collections::HashSet::new();
    let mut keep: Vec<Element> = stanzas
        .into_iter()
        .rev()
        .filter(|el| el.name() != "presence" || seen.insert(el.attr("from").map(str::to_string)))
        .collect();
    keep.reverse();
    keep
}
