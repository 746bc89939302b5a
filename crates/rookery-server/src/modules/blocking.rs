//! XEP-0191 Blocking Command: a per-user blocklist, enforced both ways on the routing path.

use super::{
    IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, SessionHook, StanzaHook,
    Verdict,
};
use crate::Server;
use async_trait::async_trait;
use dashmap::DashMap;
use rookery_core::stanza::StanzaError;
use rookery_core::{ns, BareJid, Element, Jid};
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:blocking";
const ERRORS: &str = "urn:xmpp:blocking:errors";
const STORE: &str = "blocklist";

/// Blocklists are read on every routed stanza, so they are cached per user after the first read.
#[derive(Default)]
pub struct Blocking {
    cache: DashMap<BareJid, Arc<Vec<String>>>,
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
    async fn list(&self, server: &Server, user: &BareJid) -> Arc<Vec<String>> {
        if let Some(l) = self.cache.get(user) {
            return l.clone();
        }
        let stored = server.storage.kv_get(user, STORE, "").await.ok().flatten();
        let list: Vec<String> = stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let list = Arc::new(list);
        self.cache.insert(user.clone(), list.clone());
        list
    }

    async fn save(
        &self,
        server: &Server,
        user: &BareJid,
        list: Vec<String>,
    ) -> Result<(), StanzaError> {
        let json = serde_json::to_string(&list).expect("strings serialise");
        server
            .storage
            .kv_set(
                user,
                STORE,
                "",
                if list.is_empty() { None } else { Some(&json) },
            )
            .await
            .map_err(|_| StanzaError::internal_server_error())?;
        self.cache.insert(user.clone(), Arc::new(list));
        Ok(())
    }

    async fn blocks(&self, server: &Server, user: &BareJid, other: &Jid) -> bool {
        let list = self.list(server, user).await;
        !list.is_empty() && list.iter().any(|i| matches(i, other))
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
                    s.state.lock().unwrap().blocklist_interested = true;
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
                let mut list = (*self.list(server, &user).await).clone();
                for j in &new {
                    if !list.contains(j) {
                        list.push(j.clone());
                    }
                }
                self.save(server, &user, list).await?;
                crate::router::deliver_to_full(server, crate::router::result_for(&req.stanza));
                push(server, &user, payload);
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
                let old = (*self.list(server, &user).await).clone();
                let (removed, kept): (Vec<String>, Vec<String>) = if gone.is_empty() {
                    (old, Vec::new())
                } else {
                    old.into_iter().partition(|j| gone.contains(j))
                };
                self.save(server, &user, kept).await?;
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
    async fn outbound(&self, server: &Server, user: &BareJid, el: &Element) -> Verdict {
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
            self.cache.remove(&session.bare());
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
