//! XEP-0030 Service Discovery for the server and for accounts.

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, Target};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use std::sync::Arc;

pub const INFO: &str = "http://jabber.org/protocol/disco#info";
pub const ITEMS: &str = "http://jabber.org/protocol/disco#items";

pub struct Disco;

impl Module for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(INFO, "query", On::Both, self.clone());
        reg.iq(ITEMS, "query", On::Both, self);
    }
}

/// XEP-0157: where to report abuse, reach the admins, security contacts... as a XEP-0128
/// form of type `result` with FORM_TYPE `http://jabber.org/network/serverinfo`.
fn contact_addresses(
    contacts: &std::collections::BTreeMap<String, Vec<String>>,
) -> Option<Element> {
    if contacts.values().all(|v| v.is_empty()) {
        return None;
    }
    let mut fields = vec![crate::forms::Field::new(
        "FORM_TYPE",
        "hidden",
        "",
        vec!["http://jabber.org/network/serverinfo".into()],
    )];
    for (kind, uris) in contacts.iter().filter(|(_, v)| !v.is_empty()) {
        fields.push(crate::forms::Field::new(
            &format!("{kind}-addresses"),
            "list-multi",
            "",
            uris.clone(),
        ));
    }
    Some(crate::forms::Form::new("result", None, fields).to_element())
}

fn feature(var: &str) -> Element {
    Element::new("feature", INFO).with_attr("var", var)
}

#[async_trait]
impl IqHandler for Disco {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if req.kind != IqType::Get {
            return Err(StanzaError::bad_request());
        }
        let payload = req.payload();
        let node = payload.attr("node").map(str::to_string);
        if let Some(h) = node
            .as_deref()
            .and_then(|n| server.modules.disco_nodes.get(n))
        {
            return h.handle_iq(server, req).await;
        }
        if payload.ns() == ITEMS {
            let mut q = Element::new("query", ITEMS).with_opt_attr("node", node.clone());
            if let (Target::Server(domain), None) = (&req.target, &node) {
                let suffix = format!(".{domain}");
                let mut services: Vec<&String> = server
                    .modules
                    .services
                    .keys()
                    .filter(|d| d.ends_with(&suffix))
                    .collect();
                services.sort();
                for d in services {
                    q.push_child(Element::new("item", ITEMS).with_attr("jid", d.clone()));
                }
                for i in &server.config.modules.disco.items {
                    q.push_child(Element::new("item", ITEMS).with_attr("jid", i.clone()));
                }
            }
            if let Target::Account(user) = &req.target {
                let mut found = node.is_none();
                for p in &server.modules.disco {
                    if let Some(items) = p.items(server, user, node.as_deref(), &req.from).await {
                        found = true;
                        for i in items {
                            q.push_child(i);
                        }
                    }
                }
                if !found {
                    return Err(StanzaError::item_not_found());
                }
            }
            return Ok(IqReply::Payload(q));
        }
        if let (Some(n), Target::Account(user)) = (&node, &req.target) {
            for p in &server.modules.disco {
                if let Some(info) = p.info(server, user, n, &req.from).await {
                    let q = Element::new("query", INFO)
                        .with_attr("node", n.clone())
                        .with_children(info?);
                    return Ok(IqReply::Payload(q));
                }
            }
        }
        if node.is_some() {
            return Err(StanzaError::item_not_found());
        }
        let mut q = Element::new("query", INFO);
        let mut features: Vec<String> = vec![INFO.into(), ITEMS.into()];
        match &req.target {
            Target::Server(_) => {
                q.push_child(
                    Element::new("identity", INFO)
                        .with_attr("category", "server")
                        .with_attr("type", "im")
                        .with_attr("name", server.config.modules.version.name.clone()),
                );
                features.extend(server.modules.server_features.iter().cloned());
                if let Some(form) = contact_addresses(&server.config.modules.disco.contacts) {
                    q.push_child(form);
                }
            }
            Target::Account(user) => {
                // Only the owner and those who see its presence learn about an account (§3.2).
                let visible = req.is_self()
                    || matches!(
                        server.storage.roster_item(user, req.from.to_bare().as_str()).await,
                        Ok(Some(i)) if i.subscription.has_from()
                    );
                if !visible {
                    return Err(StanzaError::service_unavailable());
                }
                q.push_child(
                    Element::new("identity", INFO)
                        .with_attr("category", "account")
                        .with_attr("type", "registered"),
                );
                for (category, kind) in &server.modules.account_identities {
                    q.push_child(
                        Element::new("identity", INFO)
                            .with_attr("category", category.clone())
                            .with_attr("type", kind.clone()),
                    );
                }
                features.extend(server.modules.account_features.iter().cloned());
            }
        }
        features.sort();
        features.dedup();
        for f in features {
            q.push_child(feature(&f));
        }
        Ok(IqReply::Payload(q))
    }
}
