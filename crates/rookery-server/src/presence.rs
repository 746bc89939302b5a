//! Presence and subscriptions (RFC 6121 §3, §4): broadcast, probes, directed presence and the
//! subscription state machine, for contacts on this server.

use crate::modules::roster::push_item;
use crate::router::{self, classify, Dest};
use crate::session::SessionHandle;
use crate::Server;
use rookery_core::storage::{RosterItem, Subscription};
use rookery_core::{ns, BareJid, Element, Jid};

fn presence_type(el: &Element) -> &str {
    el.attr("type").unwrap_or("available")
}

/// A presence stanza the user's client sent.
pub async fn outbound(server: &Server, origin: &SessionHandle, mut el: Element, to: Option<Jid>) {
    let ptype = presence_type(&el).to_string();
    if ptype == "available" {
        let directed = to.as_ref().is_some_and(|t| t.to_bare() != origin.bare());
        for h in server
            .modules
            .stanza_hooks(crate::modules::Events::PRESENCE_OUTBOUND)
        {
            h.presence_outbound(server, origin, &mut el, directed).await;
        }
    }
    let Some(to) = to.filter(|t| {
        !(t.is_bare()
            && t.to_bare() == origin.bare()
            && ptype != "probe"
            && !is_subscription(&ptype))
    }) else {
        // No `to` (or our own bare JID): broadcast.
        match ptype.as_str() {
            "available" => broadcast_available(server, origin, el).await,
            "unavailable" => broadcast_unavailable(server, origin, Some(el)).await,
            _ => {}
        }
        return;
    };
    if is_subscription(&ptype) {
        // Subscribing or pre-approving adds a roster item: the roster size limit applies as it
        // does to a roster set. The error goes to the sending resource.
        if matches!(ptype.as_str(), "subscribe" | "subscribed")
            && roster_full(server, &origin.bare(), &to.to_bare()).await
        {
            tracing::info!(user = %origin.bare(), "subscription refused: roster is full");
            el.set_attr("from", origin.jid.to_string());
            let err = rookery_core::stanza::StanzaError::not_allowed().with_text("roster is full");
            router::bounce(server, &el, err);
            return;
        }
        // A flood of subscription requests is spam (limits.subscriptions_per_minute).
        let cap = server.config.limits.subscriptions_per_minute;
        if ptype == "subscribe"
            && cap > 0
            && !server.exempt(&origin.bare())
            && server.guards.subscriptions.hit(origin.bare().to_string()) > cap
        {
            tracing::info!(user = %origin.bare(), "subscription request refused: rate limit");
            el.set_attr("from", origin.jid.to_string());
            let err = rookery_core::stanza::StanzaError::policy_violation()
                .with_text("too many subscription requests; try again in a minute");
            router::bounce(server, &el, err);
            return;
        }
        // Subscription stanzas are stamped with the bare JID (RFC 6121 §3.1.2).
        el.set_attr("from", origin.bare().to_string());
        el.set_attr("to", to.to_bare().to_string());
        outbound_subscription(server, &origin.bare(), el, &ptype, to.to_bare()).await;
        return;
    }
    match ptype.as_str() {
        "probe" => {
            // Clients may probe; the answer follows the same rules as the server's probes.
            match classify(server, &to) {
                Dest::Bare(_) | Dest::Full(_) => answer_probe(server, &to.to_bare(), origin).await,
                Dest::Service(d) => router::to_service(server, &d, el).await,
                _ => {}
            }
        }
        "available" | "unavailable" | "error" => {
            // Directed presence (§4.6): remember who got it when they are not subscribed.
            let subscribed_from = match server
                .storage
                .roster_item(&origin.bare(), to.to_bare().as_str())
                .await
            {
                Ok(Some(i)) => i.subscription.has_from(),
                _ => false,
            };
            {
                let mut st = origin.state.lock().unwrap();
                if !subscribed_from {
                    if ptype == "available" {
                        st.directed.insert(to.to_string());
                    } else {
                        st.directed.remove(to.as_str());
                    }
                }
            }
            inbound(server, el, to).await;
        }
        _ => router::bounce(
            server,
            &el,
            rookery_core::stanza::StanzaError::bad_request(),
        ),
    }
}

fn is_subscription(t: &str) -> bool {
    matches!(
        t,
        "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"
    )
}

/// Presence arriving for a local JID (from a local user or, later, another server).
pub fn inbound<'a>(
    server: &'a Server,
    el: Element,
    to: Jid,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    // Boxed: subscription handling answers with presence, which comes back through here.
    Box::pin(inbound_inner(server, el, to))
}

async fn inbound_inner(server: &Server, el: Element, to: Jid) {
    let ptype = presence_type(&el).to_string();
    match classify(server, &to) {
        Dest::Service(d) => {
            router::to_service(server, &d, el).await;
            return;
        }
        Dest::Remote(d) => {
            crate::s2s::route(&server.arc(), &d, el);
            return;
        }
        _ => {}
    }
    let (target, full) = match classify(server, &to) {
        Dest::Bare(b) => (b, false),
        Dest::Full(f) => (f.to_bare(), !is_subscription(&ptype)),
        _ => return,
    };
    // Blocking and similar filters, on both ends when the sender is local too.
    let sender = el
        .attr("from")
        .and_then(|f| Jid::new(f).ok())
        .map(|j| j.to_bare());
    if let Some(from) = &sender {
        if server.config.is_local_host(from.domain().as_str())
            && from.node().is_some()
            && !router::admit_outbound(server, from, &el).await
        {
            return;
        }
    }
    if !router::admit_inbound(server, &target, &el).await {
        return;
    }
    if full {
        // Full-JID presence goes only to that session; if it is gone, nothing happens (§4.6).
        router::deliver_to_full(server, el);
        return;
    }
    if is_subscription(&ptype) {
        let Some(from) = el
            .attr("from")
            .and_then(|f| Jid::new(f).ok())
            .map(|j| j.to_bare())
        else {
            return;
        };
        inbound_subscription(server, &target, el, &ptype, from).await;
        return;
    }
    if ptype == "probe" {
        // From another server (local probes are answered directly): its user may see our
        // user's presence when subscribed (RFC 6121 §4.3.2).
        if let Some(from) = sender.filter(|f| !server.config.is_local_host(f.domain().as_str())) {
            let subscribed = matches!(
                server.storage.roster_item(&target, from.as_str()).await,
                Ok(Some(RosterItem { subscription, .. })) if subscription.has_from()
            );
            if subscribed {
                let online = server
                    .sessions
                    .resources(&target)
                    .iter()
                    .any(|s| s.is_available());
                if online {
                    send_current_presence(server, &target, &from, true).await;
                } else {
                    let p = Element::new("presence", ns::CLIENT)
                        .with_attr("type", "unavailable")
                        .with_attr("from", target.to_string());
                    send_to_contact(server, from.as_str(), &p).await;
                }
            }
        }
        return;
    }
    if ptype == "available" || ptype == "unavailable" {
        for h in server
            .modules
            .stanza_hooks(crate::modules::Events::PRESENCE_INBOUND)
        {
            h.presence_inbound(server, &target, &el).await;
        }
    }
    for s in server.sessions.resources(&target) {
        if s.is_available() {
            router::send_to_session(server, &s, el.clone());
        }
    }
}

/// Initial or updated available presence from a session.
async fn broadcast_available(server: &Server, origin: &SessionHandle, mut el: Element) {
    el.remove_attr("to");
    let priority = el
        .child_text("priority", ns::CLIENT)
        .and_then(|p| p.trim().parse::<i8>().ok())
        .unwrap_or(0);
    let initial = origin.update(server.sessions.as_ref(), |st| {
        let initial = !st.available;
        st.available = true;
        st.priority = priority;
        st.last = Some(el.clone());
        st.last_at = Some(chrono::Utc::now());
        initial
    });
    let user = origin.bare();
    let (_, roster) = server.storage.roster(&user).await.unwrap_or_default();
    // To the user's own resources, including this one, then to subscribers (§4.2.2, §4.4.2),
    // the order Prosody uses: a contact's PEP may ask this client about its capabilities.
    for s in server.sessions.resources(&user) {
        if s.is_available() {
            let mut copy = el.clone();
            copy.set_attr("to", s.jid.to_string());
            router::send_to_session(server, &s, copy);
        }
    }
    for item in roster.iter().filter(|i| i.subscription.has_from()) {
        send_to_contact(server, &item.jid, &el).await;
    }
    if !initial {
        return;
    }
    // Probes: the presence of everyone we are subscribed to, and of our other resources.
    for item in roster.iter().filter(|i| i.subscription.has_to()) {
        if let Ok(contact) = BareJid::new(&item.jid) {
            if server.config.is_local_host(contact.domain().as_str()) {
                answer_probe(server, &contact, origin).await;
            } else {
                // A contact elsewhere: its server answers (RFC 6121 §4.3.1).
                let probe = Element::new("presence", ns::CLIENT)
                    .with_attr("type", "probe")
                    .with_attr("from", user.to_string())
                    .with_attr("to", contact.to_string());
                crate::s2s::route(&server.arc(), contact.domain().as_str(), probe);
            }
        }
    }
    for s in server.sessions.resources(&user) {
        if s.id != origin.id {
            if let Some(mut p) = s.stamped_presence() {
                p.set_attr("to", origin.jid.to_string());
                let _ = origin.deliver(p);
            }
        }
    }
    // Subscription requests that waited for the user (§3.1.3).
    if let Ok(pending) = server.storage.pending_in(&user).await {
        for (_, xml) in pending {
            if let Ok(mut p) = Element::parse(&xml) {
                p.set_attr("to", user.to_string());
                let _ = origin.deliver(p);
            }
        }
    }
    router::flush_offline(server, origin).await;
    for h in server.modules.hooks.iter() {
        h.on_available(server, origin).await;
    }
}

/// Sends `el` (stamped from a full JID of ours) to every available resource of a local contact.
async fn send_to_contact(server: &Server, contact: &str, el: &Element) {
    let Ok(jid) = Jid::new(contact) else { return };
    let mut copy = el.clone();
    copy.set_attr("to", contact);
    inbound(server, copy, jid).await;
}

/// Answers a probe from `origin` about `contact`: the contact's current presence, if `origin`'s
/// user may see it.
async fn answer_probe(server: &Server, contact: &BareJid, origin: &SessionHandle) {
    let user = origin.bare();
    let allowed = &user == contact
        || matches!(
            server.storage.roster_item(contact, user.as_str()).await,
            Ok(Some(RosterItem { subscription, .. })) if subscription.has_from()
        );
    if !allowed {
        return;
    }
    for s in server.sessions.resources(contact) {
        if let Some(mut p) = s.stamped_presence() {
            p.set_attr("to", origin.jid.to_string());
            let _ = origin.deliver(p);
        }
    }
}

/// Unavailable presence, sent by the client or on its behalf when the session ends.
pub async fn broadcast_unavailable(server: &Server, origin: &SessionHandle, el: Option<Element>) {
    let (was_available, directed) = origin.update(server.sessions.as_ref(), |st| {
        let was = st.available;
        st.available = false;
        st.last = None;
        (was, std::mem::take(&mut st.directed))
    });
    let mut el =
        el.unwrap_or_else(|| Element::new("presence", ns::CLIENT).with_attr("type", "unavailable"));
    el.set_attr("from", origin.jid.to_string());
    el.remove_attr("to");
    for d in directed {
        send_to_contact(server, &d, &el).await;
    }
    if !was_available {
        return;
    }
    let status = el.child_text("status", ns::CLIENT);
    for h in server.modules.hooks.iter() {
        h.on_unavailable(server, origin, status.clone()).await;
    }
    let user = origin.bare();
    let (_, roster) = server.storage.roster(&user).await.unwrap_or_default();
    for item in roster.iter().filter(|i| i.subscription.has_from()) {
        send_to_contact(server, &item.jid, &el).await;
    }
    for s in server.sessions.resources(&user) {
        if s.is_available() || s.id == origin.id {
            let mut copy = el.clone();
            copy.set_attr("to", s.jid.to_string());
            router::send_to_session(server, &s, copy);
        }
    }
}

/// Sends the current presence of each available resource of `user` to `contact` (after a new
/// subscription is approved), or unavailable from each (after one is cancelled).
pub async fn send_current_presence(
    server: &Server,
    user: &BareJid,
    contact: &BareJid,
    available: bool,
) {
    for s in server.sessions.resources(user) {
        let p = if available {
            s.stamped_presence()
        } else if s.is_available() {
            Some(
                Element::new("presence", ns::CLIENT)
                    .with_attr("type", "unavailable")
                    .with_attr("from", s.jid.to_string()),
            )
        } else {
            None
        };
        if let Some(p) = p {
            send_to_contact(server, contact.as_str(), &p).await;
        }
    }
}

async fn item_or_new(server: &Server, user: &BareJid, contact: &BareJid) -> (RosterItem, bool) {
    match server.storage.roster_item(user, contact.as_str()).await {
        Ok(Some(i)) => (i, true),
        _ => (
            RosterItem {
                jid: contact.to_string(),
                ..Default::default()
            },
            false,
        ),
    }
}

/// Whether adding `contact` would take `user`'s roster over `limits.max_roster_items`.
async fn roster_full(server: &Server, user: &BareJid, contact: &BareJid) -> bool {
    match server.storage.roster(user).await {
        Ok((_, items)) => {
            items.len() >= server.config.limits.max_roster_items
                && !items.iter().any(|i| i.jid == contact.as_str())
        }
        Err(_) => false,
    }
}

async fn save(server: &Server, user: &BareJid, item: &RosterItem) {
    match server.storage.put_roster_item(user, item).await {
        Ok(ver) => push_item(server, user, item, ver),
        Err(e) => tracing::error!(%e, "roster update failed"),
    }
}

/// RFC 6121 §3, the user's side: a subscription stanza the user sent.
async fn outbound_subscription(
    server: &Server,
    user: &BareJid,
    el: Element,
    ptype: &str,
    contact: BareJid,
) {
    let (mut item, exists) = item_or_new(server, user, &contact).await;
    let before = item.clone();
    let mut forward = true;
    match ptype {
        "subscribe" => {
            if !item.subscription.has_to() {
                item.ask = true;
            }
        }
        "unsubscribe" => {
            item.subscription = Subscription::from_flags(false, item.subscription.has_from());
            item.ask = false;
        }
        "subscribed" => {
            let had_pending = server
                .storage
                .remove_pending_in(user, contact.as_str())
                .await
                .unwrap_or(false);
            if had_pending && !item.subscription.has_from() {
                item.subscription = Subscription::from_flags(item.subscription.has_to(), true);
                item.approved = false;
            } else if !item.subscription.has_from() {
                // Pre-approval (§3.4): remembered, not sent.
                item.approved = true;
                forward = false;
            } else {
                forward = false;
            }
        }
        "unsubscribed" => {
            let had_pending = server
                .storage
                .remove_pending_in(user, contact.as_str())
                .await
                .unwrap_or(false);
            let had_from = item.subscription.has_from();
            item.subscription = Subscription::from_flags(item.subscription.has_to(), false);
            item.approved = false;
            forward = had_pending || had_from;
            if had_from {
                send_current_presence(server, user, &contact, false).await;
            }
        }
        _ => return,
    }
    if item != before
        && (exists || item.ask || item.approved || item.subscription != Subscription::None)
    {
        save(server, user, &item).await;
    }
    if ptype == "subscribed" && forward {
        deliver_subscription(server, el, &contact).await;
        send_current_presence(server, user, &contact, true).await;
        // Now mutual: probe the contact, so the user sees its presence too (Prosody #1121).
        if item.subscription.has_to() {
            for c in server.sessions.resources(&contact) {
                if let Some(p) = c.stamped_presence() {
                    send_to_contact(server, user.as_str(), &p).await;
                }
            }
        }
        return;
    }
    if forward {
        deliver_subscription(server, el, &contact).await;
    }
}

async fn deliver_subscription(server: &Server, el: Element, contact: &BareJid) {
    match classify(server, &Jid::from(contact.clone())) {
        Dest::Bare(_) => inbound(server, el, Jid::from(contact.clone())).await,
        Dest::Remote(d) => crate::s2s::route(&server.arc(), &d, el),
        _ => {}
    }
}

/// RFC 6121 §3, the contact's side: a subscription stanza for local user `user` from `from`.
async fn inbound_subscription(
    server: &Server,
    user: &BareJid,
    el: Element,
    ptype: &str,
    from: BareJid,
) {
    if !router::account_exists(server, user).await {
        if ptype == "subscribe" {
            // §3.1.3: no such user: answer unsubscribed on its behalf.
            let reply = Element::new("presence", ns::CLIENT)
                .with_attr("type", "unsubscribed")
                .with_attr("from", user.to_string())
                .with_attr("to", from.to_string());
            router::deliver(server, reply).await;
        }
        return;
    }
    let (mut item, exists) = item_or_new(server, user, &from).await;
    let before = item.clone();
    let deliver = match ptype {
        "subscribe" => {
            if item.subscription.has_from() {
                auto_reply(server, user, &from, "subscribed").await;
                send_presence_or_unavailable(server, user, &from).await;
                false
            } else if item.approved {
                item.subscription = Subscription::from_flags(item.subscription.has_to(), true);
                item.approved = false;
                save(server, user, &item).await;
                auto_reply(server, user, &from, "subscribed").await;
                send_current_presence(server, user, &from, true).await;
                return;
            } else {
                // Acknowledge receipt with unavailable presence, as Prosody does: the requester
                // learns nothing it may not see.
                auto_reply(server, user, &from, "unavailable").await;
                // Keep the whole request until the user answers (§3.1.3); a repeated request
                // replaces it without being delivered twice.
                let pending = server.storage.pending_in(user).await.unwrap_or_default();
                let already = pending.iter().any(|(c, _)| c == from.as_str());
                if !already && pending.len() >= server.config.limits.max_roster_items {
                    // Requests from ever new addresses (a remote domain can make up any
                    // number) must not grow storage without bound.
                    tracing::info!(%user, %from, "subscription request dropped: too many pending");
                    return;
                }
                let mut stored = el.clone();
                stored.remove_attr("to");
                let _ = server
                    .storage
                    .put_pending_in(user, from.as_str(), &stored.to_xml())
                    .await;
                !already
            }
        }
        "subscribed" if item.ask && !item.subscription.has_to() => {
            item.subscription = Subscription::from_flags(true, item.subscription.has_from());
            item.ask = false;
            true
        }
        "unsubscribe" => {
            let had_pending = server
                .storage
                .remove_pending_in(user, from.as_str())
                .await
                .unwrap_or(false);
            let had_from = item.subscription.has_from();
            item.subscription = Subscription::from_flags(item.subscription.has_to(), false);
            item.approved = false;
            had_from || had_pending
        }
        "unsubscribed" => {
            let changed = item.ask || item.subscription.has_to();
            item.subscription = Subscription::from_flags(false, item.subscription.has_from());
            item.ask = false;
            changed
        }
        _ => false,
    };
    if deliver {
        // Requests go to available resources (§3.1.3); answers to the interested ones, those
        // that hold a roster (§3.1.6, §3.2.3, §3.3.3).
        for s in server.sessions.resources(user) {
            let wanted = if ptype == "subscribe" {
                s.is_available()
            } else {
                s.state.lock().unwrap().interested
            };
            if wanted {
                router::send_to_session(server, &s, el.clone());
            }
        }
        if ptype == "unsubscribed" {
            // The contact's resources are no longer visible (§3.2.3).
            for s in server.sessions.resources(&from) {
                if s.is_available() {
                    let p = Element::new("presence", ns::CLIENT)
                        .with_attr("type", "unavailable")
                        .with_attr("from", s.jid.to_string());
                    send_to_contact(server, user.as_str(), &p).await;
                }
            }
        }
    }
    // The push follows the delivered stanza, the order clients (and Prosody) use.
    if exists && item != before {
        save(server, user, &item).await;
    }
}

/// Current presence of `user`'s resources to `to`, or one unavailable from the bare JID.
async fn send_presence_or_unavailable(server: &Server, user: &BareJid, to: &BareJid) {
    if server
        .sessions
        .resources(user)
        .iter()
        .any(|s| s.is_available())
    {
        send_current_presence(server, user, to, true).await;
    } else {
        auto_reply(server, user, to, "unavailable").await;
    }
}

async fn auto_reply(server: &Server, user: &BareJid, to: &BareJid, ptype: &str) {
    let reply = Element::new("presence", ns::CLIENT)
        .with_attr("type", ptype)
        .with_attr("from", user.to_string())
        .with_attr("to", to.to_string());
    if ptype == "unavailable" {
        send_to_contact(server, to.as_str(), &reply).await;
    } else {
        deliver_subscription(server, reply, to).await;
    }
}

/// When a roster item is removed (§2.5.2) or the account deleted: cancel both directions.
pub async fn cancel_subscriptions(server: &Server, user: &BareJid, item: &RosterItem) {
    let Ok(contact) = BareJid::new(&item.jid) else {
        return;
    };
    let _ = server.storage.remove_pending_in(user, &item.jid).await;
    if item.subscription.has_to() || item.ask {
        let p = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unsubscribe")
            .with_attr("from", user.to_string())
            .with_attr("to", contact.to_string());
        deliver_subscription(server, p, &contact).await;
    }
    if item.subscription.has_from() {
        send_current_presence(server, user, &contact, false).await;
        let p = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unsubscribed")
            .with_attr("from", user.to_string())
            .with_attr("to", contact.to_string());
        deliver_subscription(server, p, &contact).await;
    }
}
