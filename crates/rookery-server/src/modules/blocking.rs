//! XEP-0191 Blocking Command: a per-user blocklist, enforced both ways on the routing path. The
//! list is kept as the block items of the XEP-0016 default privacy list (§6; see `privacy`).

use super::privacy::Store;
use super::{
    Events, IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, SessionHook,
    StanzaHook, Verdict,
};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::{ns, BareJid, Element, Jid};
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:blocking";
const ERRORS: &str = "urn:xmpp:blocking:errors";

/// Blocklists are read on every routed stanza, so the shared privacy store caches them per user.
pub struct Blocking {
    store: Arc<Store>,
}

impl Blocking {
    pub fn new(store: Arc<Store>) -> Blocking {
        Blocking { store }
    }
}

impl Module for Blocking {
    fn name(&self) -> &'static str {
        "blocking"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "blocklist", On::Account, self.clone());
        reg.iq(NS, "block", On::Account, self.clone());
        reg.iq(NS, "unblock", On::Account, self.clone());
        reg.server_feature(NS);
        reg.server_feature(super::reporting::NS);
        reg.account_feature(NS);
        reg.stanza_hook(self.clone());
        reg.hook(self);
    }
}

/// XEP-0016 §2.1 JID matching: full, bare, domain/resource or domain items.
pub fn matches(item: &str, jid: &Jid) -> bool {
    let Ok(item) = Jid::new(item) else {
        return false;
    };
    if item.domain() != jid.domain() {
        return false;
    }
    match (item.node(), item.resource()) {
        (Some(n), Some(r)) => jid.node() == Some(n) && jid.resource() == Some(r),
        (Some(n), None) => jid.node() == Some(n),
        (None, Some(r)) => jid.node().is_none() && jid.resource() == Some(r),
        (None, None) => true,
    }
}

impl Blocking {
    async fn list(&self, server: &Server, user: &BareJid) -> Vec<String> {
        let l = self.store.lists(server, user).await;
        l.blocked().map(str::to_string).collect()
    }

    async fn nobody_blocked(&self, server: &Server, user: &BareJid) -> bool {
        self.store
            .with_lists(server, user, |l| l.blocked().next().is_none())
            .await
    }

    async fn blocks(&self, server: &Server, user: &BareJid, other: &Jid) -> bool {
        self.store.blocks(server, user, other).await
    }
}

/// Block and unblock pushes for a blocklist changed through privacy lists (XEP-0191 §6 item 2).
pub fn push_changes(server: &Server, user: &BareJid, before: &[String], after: &[String]) {
    let item = |j: &String| Element::new("item", NS).with_attr("jid", j.clone());
    let added: Vec<Element> = after
        .iter()
        .filter(|j| !before.contains(j))
        .map(item)
        .collect();
    let removed: Vec<Element> = before
        .iter()
        .filter(|j| !after.contains(j))
        .map(item)
        .collect();
    if !added.is_empty() {
        push(server, user, Element::new("block", NS).with_children(added));
    }
    if !removed.is_empty() {
        push(
            server,
            user,
            Element::new("unblock", NS).with_children(removed),
        );
    }
}

fn items(payload: &Element) -> Result<Vec<String>, StanzaError> {
    payload
        .children()
        .filter(|c| c.is("item", NS))
        .map(|i| {
            i.attr("jid")
                .and_then(|j| Jid::new(j).ok())
                .map(|j| j.to_string())
                .ok_or_else(|| {
                    StanzaError::jid_malformed().with_type(rookery_core::stanza::ErrorType::Modify)
                })
        })
        .collect()
}

fn push(server: &Server, user: &BareJid, payload: Element) {
    for s in server.sessions.resources(user) {
        if !s.state.lock().unwrap().blocklist_interested {
            continue;
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("block{}", server.next_id()))
            .with_attr("to", s.jid.to_string())
            .with_child(payload.clone());
        crate::router::send_to_session(server, &s, iq);
    }
}

#[async_trait]
impl IqHandler for Blocking {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden());
        }
        let user = req.from.to_bare();
        let payload = req.payload().clone();
        match (req.kind, payload.name()) {
            (IqType::Get, "blocklist") => {
                if let Some(s) = &req.session {
                    s.update(server.sessions.as_ref(), |st| {
                        st.blocklist_interested = true
                    });
                }
                let list = self.list(server, &user).await;
                Ok(IqReply::Payload(
                    Element::new("blocklist", NS).with_children(
                        list.iter()
                            .map(|j| Element::new("item", NS).with_attr("jid", j.clone())),
                    ),
                ))
            }
            (IqType::Set, "block") => {
                let new = items(&payload)?;
                if new.is_empty() {
                    return Err(StanzaError::bad_request());
                }
                let list = self.store.block(server, &user, &new).await?;
                crate::router::deliver_to_full(server, crate::router::result_for(&req.stanza));
                // XEP-0377: reports ride on the block items.
                for item in payload.children().filter(|c| c.is("item", NS)) {
                    let report = item.get_child("report", super::reporting::NS);
                    let jid = item.attr("jid").and_then(|j| Jid::new(j).ok());
                    if let (Some(report), Some(jid)) = (report, jid) {
                        super::reporting::forward(server, &user, &jid, report).await;
                    }
                }
                push(server, &user, payload);
                super::privacy::push(server, &user, &list);
                // Blocked contacts stop seeing us (§3.3).
                for j in new {
                    if let Ok(jid) = Jid::new(&j) {
                        for s in server.sessions.resources(&user) {
                            if s.is_available() {
                                // Straight to the contact: our own filter now drops presence to it.
                                let p = Element::new("presence", ns::CLIENT)
                                    .with_attr("type", "unavailable")
                                    .with_attr("from", s.jid.to_string())
                                    .with_attr("to", jid.to_string());
                                for c in server.sessions.resources(&jid.to_bare()) {
                                    if c.is_available()
                                        && (jid.is_bare() || c.jid.as_str() == jid.as_str())
                                    {
                                        crate::router::send_to_session(server, &c, p.clone());
                                    }
                                }
                            }
                        }
                    }
                }
                Ok(IqReply::Sent)
            }
            (IqType::Set, "unblock") => {
                let gone = items(&payload)?;
                let which = (!gone.is_empty()).then_some(gone.as_slice());
                let (removed, list) = self.store.unblock(server, &user, which).await?;
                // Unblocked subscribers see our presence again.
                for j in &removed {
                    if let Ok(contact) = BareJid::new(j) {
                        let subscribed = matches!(
                            server.storage.roster_item(&user, contact.as_str()).await,
                            Ok(Some(i)) if i.subscription.has_from()
                        );
                        if subscribed {
                            crate::presence::send_current_presence(server, &user, &contact, true)
                                .await;
                        }
                    }
                }
                crate::router::deliver_to_full(server, crate::router::result_for(&req.stanza));
                push(server, &user, payload);
                if let Some(list) = list.filter(|_| !removed.is_empty()) {
                    super::privacy::push(server, &user, &list);
                }
                Ok(IqReply::Sent)
            }
            _ => Err(StanzaError::bad_request()),
        }
    }
}

fn sender(el: &Element) -> Option<Jid> {
    el.attr("from").and_then(|f| Jid::new(f).ok())
}

#[async_trait]
impl StanzaHook for Blocking {
    fn events(&self) -> Events {
        Events::OUTBOUND | Events::INBOUND
    }

    async fn outbound(&self, server: &Server, user: &BareJid, el: &Element) -> Verdict {
        // Most users block nobody: skip parsing addresses for them.
        if self.nobody_blocked(server, user).await {
            return Verdict::Pass;
        }
        let Some(to) = el.attr("to").and_then(|t| Jid::new(t).ok()) else {
            return Verdict::Pass;
        };
        if !self.blocks(server, user, &to).await {
            return Verdict::Pass;
        }
        if el.name() == "presence" {
            return Verdict::Drop;
        }
        let mut e = StanzaError::not_acceptable()
            .with_type(rookery_core::stanza::ErrorType::Cancel)
            .with_text("You have blocked this JID");
        e.extra = Some(Box::new(Element::new("blocked", ERRORS)));
        Verdict::Bounce(e)
    }

    async fn inbound(&self, server: &Server, user: &BareJid, el: &Element) -> Verdict {
        if self.nobody_blocked(server, user).await {
            return Verdict::Pass;
        }
        let Some(from) = sender(el) else {
            return Verdict::Pass;
        };
        if !self.blocks(server, user, &from).await {
            return Verdict::Pass;
        }
        match el.name() {
            "presence" => Verdict::Drop,
            _ => Verdict::Bounce(StanzaError::service_unavailable()),
        }
    }
}

/// The cache is filled when a session becomes available, so the routing path rarely waits on
/// storage, and emptied when the user's last session goes.
#[async_trait]
impl SessionHook for Blocking {
    async fn on_available(&self, server: &Server, session: &crate::session::SessionHandle) {
        self.list(server, &session.bare()).await;
    }

    async fn on_unavailable(
        &self,
        server: &Server,
        session: &crate::session::SessionHandle,
        _status: Option<String>,
    ) {
        if super::is_last_available(server, session) {
            self.store.forget(&session.bare());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_matching_follows_xep_0016() {
        let j = |s: &str| Jid::new(s).unwrap();
        assert!(matches("a@h", &j("a@h/r")));
        assert!(matches("a@h", &j("a@h")));
        assert!(!matches("a@h/r", &j("a@h/s")));
        assert!(matches("h", &j("x@h/r")));
        assert!(!matches("h", &j("x@other")));
        assert!(matches("h/r", &j("h/r")));
        assert!(!matches("h/r", &j("x@h/r")));
    }
}
