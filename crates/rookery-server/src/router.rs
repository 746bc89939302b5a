//! Stanza routing (RFC 6120 §10, RFC 6121 §8): classifies the destination, then hands the stanza
//! to a module, a local session, the offline store, or bounces it with the right error.

use crate::modules::{Events, IqReply, IqRequest, IqType, Target};
use crate::session::{DeliveryError, SessionHandle};
use crate::{presence, Server};
use rookery_core::stanza::{self, Kind, StanzaError};
use rookery_core::{ns, BareJid, Element, FullJid, Jid};
use std::time::Instant;

/// Where a JID points from this server's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Server(String),
    Bare(BareJid),
    Full(FullJid),
    /// A service domain (MUC...).
    Service(String),
    Remote(String),
}

pub fn classify(server: &Server, jid: &Jid) -> Dest {
    let domain = jid.domain().as_str();
    if !server.config.is_local_host(domain) {
        if server.modules.services.contains_key(domain) {
            return Dest::Service(domain.to_string());
        }
        return Dest::Remote(domain.to_string());
    }
    if jid.node().is_none() {
        return Dest::Server(domain.to_string());
    }
    match jid.clone().try_into_full() {
        Ok(full) => Dest::Full(full),
        Err(bare) => Dest::Bare(bare),
    }
}

/// Routes a stanza a local client sent; `from` is already stamped with its full JID. `arrived`:
/// when its bytes were read, for the routing latency metric.
pub async fn route_from_client(
    server: &Server,
    origin: &SessionHandle,
    el: Element,
    arrived: Instant,
) {
    let to = match el.attr("to") {
        None => None,
        Some(t) => match Jid::new(t) {
            Ok(j) => Some(j),
            Err(_) => {
                bounce(server, &el, StanzaError::jid_malformed());
                return;
            }
        },
    };
    if to.is_some() && !admit_outbound(server, origin.bare_jid(), &el).await {
        return;
    }
    match stanza::kind(&el) {
        Some(Kind::Presence) => presence::outbound(server, origin, el, to).await,
        Some(Kind::Iq) => {
            let to = to.unwrap_or_else(|| Jid::from(origin.bare()));
            route_iq(server, Some(origin), el, to).await
        }
        Some(Kind::Message) => {
            let to = to.unwrap_or_else(|| Jid::from(origin.bare()));
            // Observers see the message before it is routed: routing takes it, and a copy of
            // every message for them cost more than a routing step.
            for h in server.modules.stanza_hooks(Events::MESSAGE_SENT) {
                h.message_sent(server, origin, &el).await;
            }
            if let Some(queued) = route_message(server, el, to).await {
                server
                    .metrics
                    .routing
                    .observe(queued.saturating_duration_since(arrived));
            }
        }
        None => {}
    }
}

/// Runs the outbound filters for a stanza local `user` sends; false when it must not go on.
pub async fn admit_outbound(server: &Server, user: &BareJid, el: &Element) -> bool {
    admit(server, user, el, true).await
}

/// Runs the inbound filters for a stanza about to reach local `user`.
pub async fn admit_inbound(server: &Server, user: &BareJid, el: &Element) -> bool {
    admit(server, user, el, false).await
}

async fn admit(server: &Server, user: &BareJid, el: &Element, outbound: bool) -> bool {
    let event = if outbound {
        Events::OUTBOUND
    } else {
        Events::INBOUND
    };
    for h in server.modules.stanza_hooks(event) {
        let verdict = if outbound {
            h.outbound(server, user, el).await
        } else {
            h.inbound(server, user, el).await
        };
        match verdict {
            crate::modules::Verdict::Pass => {}
            crate::modules::Verdict::Drop => return false,
            crate::modules::Verdict::Bounce(e) => {
                bounce(server, el, e);
                return false;
            }
        }
    }
    true
}

/// Lets modules annotate (and archive) a message on its way to a local user, once.
async fn annotate_inbound(server: &Server, user: &BareJid, el: &mut Element) {
    for h in server.modules.stanza_hooks(Events::MESSAGE_INBOUND) {
        h.message_inbound(server, user, el).await;
    }
}

async fn delivered(server: &Server, user: &BareJid, el: &Element, sessions: &[SessionHandle]) {
    for h in server.modules.stanza_hooks(Events::MESSAGE_DELIVERED) {
        h.message_delivered(server, user, el, sessions).await;
    }
}

/// Delivers a stanza the server itself produced (roster pushes, subscription handling, probes),
/// or one routed on behalf of a user, to its `to`.
pub async fn deliver(server: &Server, el: Element) {
    let Some(to) = el.attr("to").and_then(|t| Jid::new(t).ok()) else {
        return;
    };
    match stanza::kind(&el) {
        Some(Kind::Message) => {
            route_message(server, el, to).await;
        }
        Some(Kind::Iq) => route_iq(server, None, el, to).await,
        Some(Kind::Presence) => presence::inbound(server, el, to).await,
        None => {}
    }
}

/// Sends an error for `orig` back to its sender, unless it must not be answered (§8.3.1).
pub fn bounce(server: &Server, orig: &Element, err: StanzaError) {
    if !stanza::can_bounce(orig) {
        return;
    }
    let reply = stanza::error_reply(orig, &err);
    deliver_to_full(server, reply);
}

/// Puts a stanza on the session its `to` names, if that session exists. Errors for a full inbox
/// are returned to the original sender.
pub fn deliver_to_full(server: &Server, el: Element) -> bool {
    let Some(to) = el.attr("to").and_then(|t| Jid::new(t).ok()) else {
        return false;
    };
    // Answers to other servers' users (and to components, which may use bare JIDs) leave
    // through federation.
    let domain = to.domain().as_str();
    if !server.config.is_local_host(domain) && !server.modules.services.contains_key(domain) {
        let domain = domain.to_string();
        crate::s2s::route(&server.arc(), &domain, el);
        return true;
    }
    let Ok(full) = to.try_into_full() else {
        return false;
    };
    match server.sessions.get(&full) {
        Some(s) => send_to_session(server, &s, el),
        None => false,
    }
}

pub fn send_to_session(server: &Server, s: &SessionHandle, el: Element) -> bool {
    match s.deliver(el) {
        Ok(()) => true,
        Err(DeliveryError::Full) => {
            tracing::warn!(to = %s.jid, "session inbox full, stanza bounced");
            false
        }
        Err(DeliveryError::Gone) => {
            let _ = server;
            false
        }
    }
}

async fn route_iq(server: &Server, origin: Option<&SessionHandle>, el: Element, to: Jid) {
    let kind = match el.attr("type") {
        Some("get") => IqType::Get,
        Some("set") => IqType::Set,
        Some("result") | Some("error") => {
            // Answers to the server (pings, roster push acks) end here; others go on.
            match classify(server, &to) {
                Dest::Full(_) => {
                    deliver_to_full(server, el);
                }
                Dest::Service(d) => to_service(server, &d, el).await,
                Dest::Bare(user) => {
                    for h in server.modules.stanza_hooks(Events::IQ_RESPONSE) {
                        if h.iq_response(server, &user, &el).await {
                            break;
                        }
                    }
                }
                // A client answering another server's entity (a disco#info query from a remote
                // PEP service, say).
                Dest::Remote(d) => crate::s2s::route(&server.arc(), &d, el),
                _ => {}
            }
            return;
        }
        _ => {
            bounce(
                server,
                &el,
                StanzaError::bad_request().with_text("missing or unknown iq type"),
            );
            return;
        }
    };
    if el.children().count() != 1 {
        bounce(
            server,
            &el,
            StanzaError::bad_request().with_text("an iq get or set carries exactly one payload"),
        );
        return;
    }
    let target = match classify(server, &to) {
        Dest::Server(d) => Target::Server(d),
        Dest::Bare(b) => {
            let is_self = origin.map(|o| o.bare() == b).unwrap_or(false);
            if !is_self && !account_exists(server, &b).await {
                bounce(server, &el, StanzaError::service_unavailable());
                return;
            }
            if !is_self && !admit_inbound(server, &b, &el).await {
                return;
            }
            Target::Account(b)
        }
        Dest::Full(f) => {
            if !admit_inbound(server, &f.to_bare(), &el).await {
                return;
            }
            match server.sessions.get(&f) {
                Some(s) => {
                    if !send_to_session(server, &s, el.clone()) {
                        bounce(server, &el, StanzaError::resource_constraint());
                    }
                }
                None => bounce(server, &el, StanzaError::service_unavailable()),
            }
            return;
        }
        Dest::Remote(d) => {
            crate::s2s::route(&server.arc(), &d, el);
            return;
        }
        Dest::Service(d) => {
            to_service(server, &d, el).await;
            return;
        }
    };
    let payload = el.children().next().expect("checked above");
    let Some(handler) = server.modules.find_iq(payload, &target) else {
        bounce(server, &el, StanzaError::service_unavailable());
        return;
    };
    let from = match el.attr("from").and_then(|f| Jid::new(f).ok()) {
        Some(f) => f,
        None => return,
    };
    let req = IqRequest {
        stanza: el.clone(),
        kind,
        from,
        target,
        session: origin.cloned(),
    };
    match handler.handle_iq(server, req).await {
        Ok(IqReply::Sent) => {}
        Ok(payload) => {
            let mut reply = result_for(&el);
            if let IqReply::Payload(p) = payload {
                reply.push_child(p);
            }
            deliver_to_full(server, reply);
        }
        Err(e) => bounce(server, &el, e),
    }
}

/// Hands a stanza to the service that owns domain `d`; in a cluster, to the node that is home
/// to the room or service it addresses.
pub async fn to_service(server: &Server, d: &str, el: Element) {
    let Some(svc) = server.modules.services.get(d).cloned() else {
        return;
    };
    if let Some(cluster) = &server.cluster {
        if let Some(key) = svc.home_key(&el) {
            let home = cluster.home(&key);
            if *home != *cluster.node {
                if !cluster.route_to(&home, &el) {
                    bounce(server, &el, StanzaError::resource_constraint());
                }
                return;
            }
        }
    }
    svc.handle(server, el).await;
}

/// Hands a stanza to a service here, without asking which node is home (another node did).
pub async fn to_service_here(server: &Server, d: &str, el: Element) {
    if let Some(svc) = server.modules.services.get(d).cloned() {
        svc.handle(server, el).await;
    }
}

/// The empty result for an IQ a local client sent (no `from` when it addressed no one).
pub fn result_for(iq: &Element) -> Element {
    let mut reply = stanza::iq_result(iq);
    if iq.attr("to").is_none() {
        reply.remove_attr("from");
    }
    reply
}

pub async fn account_exists(server: &Server, user: &BareJid) -> bool {
    if !server.sessions.resources(user).is_empty() {
        return true;
    }
    matches!(server.storage.credentials(user).await, Ok(Some(_)))
}

/// Returns when the message was queued for a local session, if it was.
async fn route_message(server: &Server, el: Element, to: Jid) -> Option<Instant> {
    match classify(server, &to) {
        Dest::Server(_) => {
            // Nothing on the server consumes messages yet; say so rather than drop silently.
            if el.attr("type") != Some("error") && el.attr("type") != Some("groupchat") {
                bounce(server, &el, StanzaError::service_unavailable());
            }
        }
        Dest::Remote(d) => crate::s2s::route(&server.arc(), &d, el),
        Dest::Service(d) => to_service(server, &d, el).await,
        Dest::Full(full) => match server.sessions.get(&full) {
            Some(s) => {
                let user = s.bare_jid();
                if !admit_inbound(server, user, &el).await {
                    return None;
                }
                let mut el = el;
                annotate_inbound(server, user, &mut el).await;
                if send_to_session(server, &s, el.clone()) {
                    let queued = Instant::now();
                    delivered(server, user, &el, std::slice::from_ref(&s)).await;
                    return Some(queued);
                }
                bounce(server, &el, StanzaError::resource_constraint());
            }
            // RFC 6121 §8.5.3.2.1
            None => match el.attr("type").unwrap_or("normal") {
                "normal" | "chat" => return message_to_bare(server, el, full.to_bare()).await,
                "groupchat" => bounce(server, &el, StanzaError::service_unavailable()),
                _ => {}
            },
        },
        Dest::Bare(bare) => return message_to_bare(server, el, bare).await,
    }
    None
}

/// RFC 6121 §8.5.2: a message to a local bare JID. Returns when it was queued for a session.
async fn message_to_bare(server: &Server, el: Element, user: BareJid) -> Option<Instant> {
    // RFC 6121 §5.2.2: an unknown type is handled as "normal".
    let mtype = match el.attr("type") {
        Some("chat") => "chat",
        Some("groupchat") => "groupchat",
        Some("headline") => "headline",
        Some("error") => "error",
        _ => "normal",
    };
    if mtype == "groupchat" {
        bounce(server, &el, StanzaError::service_unavailable());
        return None;
    }
    if !admit_inbound(server, &user, &el).await {
        return None;
    }
    let mut el = el;
    let sessions: Vec<SessionHandle> = server
        .sessions
        .resources(&user)
        .into_iter()
        .filter(|s| s.is_available() && s.priority() >= 0)
        .collect();
    if !sessions.is_empty() {
        annotate_inbound(server, &user, &mut el).await;
        let targets: Vec<&SessionHandle> = if mtype == "headline" {
            sessions.iter().collect()
        } else {
            let top = sessions.iter().map(|s| s.priority()).max().unwrap_or(0);
            sessions.iter().filter(|s| s.priority() == top).collect()
        };
        let mut got = Vec::new();
        for s in targets {
            if send_to_session(server, s, el.clone()) {
                got.push(s.clone());
            }
        }
        if !got.is_empty() {
            let queued = Instant::now();
            delivered(server, &user, &el, &got).await;
            return Some(queued);
        }
    }
    if mtype == "error" || mtype == "headline" {
        return None;
    }
    if !account_exists(server, &user).await {
        bounce(server, &el, StanzaError::service_unavailable());
        return None;
    }
    if !el.has_child("stanza-id", crate::modules::mam::SID) {
        annotate_inbound(server, &user, &mut el).await;
    }
    store_offline(server, el, &user).await;
    None
}

/// XEP-0160: keep a message for later with a XEP-0203 delay stamp.
async fn store_offline(server: &Server, mut el: Element, user: &BareJid) {
    if !server.config.module_enabled("offline") {
        bounce(server, &el, StanzaError::service_unavailable());
        return;
    }
    // Only messages with content are worth keeping (chat states and receipts alone are not).
    let worth = el.has_child("body", ns::CLIENT)
        || el.has_child("subject", ns::CLIENT)
        || el.children().any(|c| {
            c.ns() == "jabber:x:conference" || c.ns() == "http://jabber.org/protocol/muc#user"
        });
    if !worth || el.has_child("no-store", "urn:xmpp:hints") {
        return;
    }
    let stamp = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    el.push_child(stanza::delay(user.domain().as_str(), &stamp).with_text("Offline Storage"));
    let xml = el.to_xml();
    let started = Instant::now();
    let pushed = server
        .storage
        .push_offline(user, &xml, server.config.limits.max_offline_messages)
        .await;
    server
        .metrics
        .storage(crate::metrics::StorageOp::OfflinePush, started);
    match pushed {
        Ok(true) => {
            for h in server.modules.stanza_hooks(Events::MESSAGE_OFFLINE) {
                h.message_offline(server, user, &el).await;
            }
        }
        Ok(false) => bounce(
            server,
            &el,
            StanzaError::service_unavailable().with_text("the recipient's offline queue is full"),
        ),
        Err(e) => {
            tracing::error!(%e, "offline storage failed");
            bounce(server, &el, StanzaError::internal_server_error());
        }
    }
}

/// Delivers queued offline messages to a session that just became available.
pub async fn flush_offline(server: &Server, session: &SessionHandle) {
    let user = session.bare();
    let started = Instant::now();
    let taken = server.storage.take_offline(&user).await;
    server
        .metrics
        .storage(crate::metrics::StorageOp::OfflineTake, started);
    let stored = match taken {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%e, "reading offline messages failed");
            return;
        }
    };
    let mut stored = stored.into_iter();
    let parse = |xml: &str| match Element::parse(xml) {
        Ok(mut el) => {
            el.set_ns(ns::CLIENT);
            Some(el)
        }
        Err(e) => {
            tracing::error!(%e, "unreadable offline message dropped");
            None
        }
    };
    // What fits in the inbox goes now, ahead of anything the session does next.
    let mut overflow = None;
    for xml in stored.by_ref() {
        let Some(el) = parse(&xml) else { continue };
        match session.deliver(el) {
            Ok(()) => {}
            Err(crate::session::DeliveryError::Full) => {
                overflow = Some(xml);
                break;
            }
            Err(_) => {
                // Not lost: back into the queue for the next session.
                let _ = server.storage.push_offline(&user, &xml, usize::MAX).await;
            }
        }
    }
    let Some(first) = overflow else { return };
    // More than the inbox holds: a task of its own feeds the rest in as the session writes them
    // out (this runs in the session's task, which must not wait on itself).
    let server = server.arc();
    let session = session.clone();
    let rest: Vec<String> = std::iter::once(first).chain(stored).collect();
    tokio::spawn(async move {
        for xml in rest {
            let Some(el) = parse(&xml) else { continue };
            if session.deliver_waiting(el).await.is_err() {
                let _ = server.storage.push_offline(&user, &xml, usize::MAX).await;
            }
        }
    });
}
