//! XEP-0049 Private XML Storage: one fragment per (element, namespace), only for its owner.

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use std::sync::Arc;

pub const NS: &str = "jabber:iq:private";
const STORE: &str = "private";
const MAX_BYTES: usize = 64 * 1024;

pub struct Private;

impl Module for Private {
    fn name(&self) -> &'static str {
        "private"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "query", On::Account, self);
        reg.server_feature(NS);
    }
}

fn key(el: &Element) -> String {
    format!("{{{}}}{}", el.ns(), el.name())
}

#[async_trait]
impl IqHandler for Private {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden());
        }
        let user = req.from.to_bare();
        let children: Vec<&Element> = req.payload().children().collect();
        if children.is_empty() {
            return Err(StanzaError::bad_request().with_text("name the fragment"));
        }
        // jabber:iq:private itself and jabber:client are reserved (§3).
        if children
            .iter()
            .any(|c| c.ns() == NS || c.ns() == "jabber:client")
        {
            return Err(StanzaError::not_acceptable());
        }
        let fail = |_| StanzaError::internal_server_error();
        match req.kind {
            IqType::Get => {
                if children.len() != 1 {
                    return Err(StanzaError::bad_request().with_text("one fragment per get"));
                }
                let c = children[0];
                let stored = server
                    .storage
                    .kv_get(&user, STORE, &key(c))
                    .await
                    .map_err(fail)?;
                let frag = stored
                    .and_then(|x| Element::parse(&x).ok())
                    .unwrap_or_else(|| Element::new(c.name(), c.ns()));
                Ok(IqReply::Payload(Element::new("query", NS).with_child(frag)))
            }
            IqType::Set => {
                for c in &children {
                    let xml = c.to_xml();
                    if xml.len() > MAX_BYTES {
                        return Err(StanzaError::not_acceptable().with_text("fragment too large"));
                    }
                }
                for c in &children {
                    server
                        .storage
                        .kv_set(&user, STORE, &key(c), Some(&c.to_xml()))
                        .await
                        .map_err(fail)?;
                }
                for c in children {
                    for h in &server.modules.hooks {
                        h.on_user_data(server, &user, STORE, c).await;
                    }
                }
                Ok(IqReply::Empty)
            }
        }
    }
}
