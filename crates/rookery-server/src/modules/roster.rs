//! Roster management (RFC 6121 §2) with versioning (XEP-0237) and pre-approval (§3.4).

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::storage::{RosterItem, Subscription};
use rookery_core::{ns, BareJid, Element};
use std::collections::HashSet;
use std::sync::Arc;

pub const NS: &str = "jabber:iq:roster";

pub struct Roster;

impl Module for Roster {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "query", On::Account, self.clone());
        reg.stream_features
            .push(Element::new("ver", "urn:xmpp:features:rosterver"));
        reg.stream_features
            .push(Element::new("sub", "urn:xmpp:features:pre-approval"));
    }
}

pub fn item_element(item: &RosterItem) -> Element {
    let mut el = Element::new("item", NS)
        .with_attr("jid", item.jid.clone())
        .with_opt_attr("name", item.name.clone())
        .with_attr("subscription", item.subscription.as_str());
    if item.ask {
        el.set_attr("ask", "subscribe");
    }
    if item.approved {
        el.set_attr("approved", "true");
    }
    for g in &item.groups {
        el.push_child(Element::new("group", NS).with_text(g.clone()));
    }
    el
}

/// Sends a roster push (§2.1.6) to every resource of `user` that asked for the roster.
pub fn push_item(server: &Server, user: &BareJid, item: &RosterItem, ver: u64) {
    for s in server.sessions.resources(user) {
        if !s.state.lock().unwrap().interested {
            continue;
        }
        let push = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push{}", server.next_id()))
            .with_attr("to", s.jid.to_string())
            .with_child(
                Element::new("query", NS)
                    .with_attr("ver", ver.to_string())
                    .with_child(item_element(item)),
            );
        crate::router::send_to_session(server, &s, push);
    }
}

#[async_trait]
impl IqHandler for Roster {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden());
        }
        let user = req.from.to_bare();
        let storage_err = |_| StanzaError::internal_server_error();
        match req.kind {
            IqType::Get => {
                if let Some(s) = &req.session {
                    s.update(server.sessions.as_ref(), |st| st.interested = true);
                }
                let (ver, items) = server.storage.roster(&user).await.map_err(storage_err)?;
                let ver_s = ver.to_string();
                if req.payload().attr("ver") == Some(ver_s.as_str()) {
                    // Unchanged since the client's copy: pushes will follow (XEP-0237 §4.2).
                    return Ok(IqReply::Empty);
                }
                Ok(IqReply::Payload(
                    Element::new("query", NS)
                        .with_attr("ver", ver_s)
                        .with_children(items.iter().map(item_element)),
                ))
            }
            IqType::Set => {
                let items: Vec<&Element> = req.payload().children().collect();
                if items.len() != 1 || !items[0].is("item", NS) {
                    return Err(StanzaError::bad_request()
                        .with_text("a roster set carries exactly one item"));
                }
                let el = items[0];
                let contact = el
                    .attr("jid")
                    .and_then(|j| BareJid::new(j).ok())
                    .ok_or_else(|| {
                        StanzaError::bad_request().with_text("invalid or missing jid")
                    })?;
                let existing = server
                    .storage
                    .roster_item(&user, contact.as_str())
                    .await
                    .map_err(storage_err)?;
                if el.attr("subscription") == Some("remove") {
                    let Some(item) = existing else {
                        return Err(StanzaError::item_not_found());
                    };
                    crate::presence::cancel_subscriptions(server, &user, &item).await;
                    if let Some(ver) = server
                        .storage
                        .remove_roster_item(&user, contact.as_str())
                        .await
                        .map_err(storage_err)?
                    {
                        let gone = RosterItem {
                            subscription: Subscription::Remove,
                            ..item
                        };
                        crate::router::deliver_to_full(
                            server,
                            crate::router::result_for(&req.stanza),
                        );
                        push_item(server, &user, &gone, ver);
                        return Ok(IqReply::Sent);
                    }
                    return Ok(IqReply::Empty);
                }
                let mut groups = Vec::new();
                let mut seen = HashSet::new();
                for g in el.children().filter(|c| c.is("group", NS)) {
                    let name = g.text();
                    if name.is_empty() {
                        return Err(StanzaError::not_acceptable().with_text("empty group name"));
                    }
                    if !seen.insert(name.clone()) {
                        return Err(StanzaError::bad_request().with_text("duplicate group"));
                    }
                    groups.push(name);
                }
                if existing.is_none() {
                    let (_, all) = server.storage.roster(&user).await.map_err(storage_err)?;
                    if all.len() >= server.config.limits.max_roster_items {
                        return Err(StanzaError::not_allowed().with_text("roster is full"));
                    }
                }
                let mut item = existing.unwrap_or_else(|| RosterItem {
                    jid: contact.to_string(),
                    ..Default::default()
                });
                item.name = el
                    .attr("name")
                    .filter(|n| !n.is_empty())
                    .map(str::to_string);
                item.groups = groups;
                let ver = server
                    .storage
                    .put_roster_item(&user, &item)
                    .await
                    .map_err(storage_err)?;
                // The result goes before the push, as clients (and Prosody) expect.
                crate::router::deliver_to_full(server, crate::router::result_for(&req.stanza));
                push_item(server, &user, &item, ver);
                Ok(IqReply::Sent)
            }
        }
    }
}
