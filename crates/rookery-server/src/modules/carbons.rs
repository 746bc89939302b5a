//! XEP-0280 Message Carbons: copies of a user's 1:1 messages to their other enabled resources.

use super::{
    Events, IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, StanzaHook,
};
use crate::session::SessionHandle;
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::{ns, BareJid, Element};
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";

pub struct Carbons;

impl Module for Carbons {
    fn name(&self) -> &'static str {
        "carbons"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "enable", On::Both, self.clone());
        reg.iq(NS, "disable", On::Both, self.clone());
        reg.server_feature(NS);
        reg.stanza_hook(self);
    }
}

#[async_trait]
impl IqHandler for Carbons {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if req.kind != IqType::Set
            || !(req.is_self() || matches!(req.target, super::Target::Server(_)))
        {
            return Err(StanzaError::bad_request());
        }
        let Some(session) = &req.session else {
            return Err(StanzaError::not_allowed());
        };
        let on = req.payload().name() == "enable";
        session.update(server.sessions.as_ref(), |st| st.carbons = on);
        Ok(IqReply::Empty)
    }
}

/// XEP-0280 §6: chat messages, and normal ones with a body; not private, not hinted otherwise.
fn eligible(el: &Element) -> bool {
    let t = el.attr("type").unwrap_or("normal");
    let kind_ok = t == "chat" || (t == "normal" && el.has_child("body", ns::CLIENT));
    kind_ok
        && !el.has_child("private", NS)
        && !el.has_child("no-copy", "urn:xmpp:hints")
        && !el.has_child("received", NS)
        && !el.has_child("sent", NS)
}

fn wrap(kind: &str, user: &BareJid, to: &SessionHandle, original: &Element) -> Element {
    let mut inner = original.clone();
    inner.set_ns(ns::CLIENT);
    Element::new("message", ns::CLIENT)
        .with_attr("from", user.to_string())
        .with_attr("to", to.jid.to_string())
        .with_attr("type", original.attr("type").unwrap_or("normal"))
        .with_child(
            Element::new(kind, NS).with_child(Element::new("forwarded", FORWARD).with_child(inner)),
        )
}

fn copy_to(
    server: &Server,
    user: &BareJid,
    kind: &str,
    el: &Element,
    skip: impl Fn(&SessionHandle) -> bool,
) {
    for s in server.sessions.resources(user) {
        if skip(&s) || !s.state.lock().unwrap().carbons {
            continue;
        }
        crate::router::send_to_session(server, &s, wrap(kind, user, &s, el));
    }
}

#[async_trait]
impl StanzaHook for Carbons {
    fn events(&self) -> Events {
        Events::MESSAGE_SENT | Events::MESSAGE_DELIVERED
    }

    async fn message_sent(&self, server: &Server, origin: &SessionHandle, el: &Element) {
        if eligible(el) && server.sessions.count(origin.bare_jid()) > 1 {
            copy_to(server, origin.bare_jid(), "sent", el, |s| s.id == origin.id);
        }
    }

    async fn message_delivered(
        &self,
        server: &Server,
        user: &BareJid,
        el: &Element,
        sessions: &[SessionHandle],
    ) {
        // Most accounts have one session, the one that got it: nothing to copy.
        if eligible(el) && server.sessions.count(user) > sessions.len() {
            copy_to(server, user, "received", el, |s| {
                sessions.iter().any(|d| d.id == s.id)
            });
        }
    }
}
