//! XEP-0054 vcard-temp: each account's vCard, readable by anyone, writable by its owner.

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, Target};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use std::sync::Arc;

pub const NS: &str = "vcard-temp";
const STORE: &str = "vcard";
/// Largest vCard kept (photos make them big, but not unbounded).
const MAX_BYTES: usize = 128 * 1024;

pub struct VCard;

impl Module for VCard {
    fn name(&self) -> &'static str {
        "vcard"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "vCard", On::Both, self);
        reg.server_feature(NS);
        reg.account_feature(NS);
    }
}

#[async_trait]
impl IqHandler for VCard {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        let user = match &req.target {
            Target::Account(u) => u.clone(),
            Target::Server(_) => {
                return match req.kind {
                    IqType::Get => Ok(IqReply::Payload(Element::new("vCard", NS))),
                    IqType::Set => Err(StanzaError::not_allowed()),
                }
            }
        };
        match req.kind {
            IqType::Get => {
                let stored = server
                    .storage
                    .kv_get(&user, STORE, "")
                    .await
                    .map_err(|_| StanzaError::internal_server_error())?;
                Ok(IqReply::Payload(
                    stored
                        .and_then(|x| Element::parse(&x).ok())
                        .unwrap_or_else(|| Element::new("vCard", NS)),
                ))
            }
            IqType::Set => {
                if !req.is_self() {
                    return Err(StanzaError::forbidden());
                }
                let xml = req.payload().to_xml();
                if xml.len() > MAX_BYTES {
                    return Err(StanzaError::not_acceptable().with_text("vCard too large"));
                }
                server
                    .storage
                    .kv_set(&user, STORE, "", Some(&xml))
                    .await
                    .map_err(|_| StanzaError::internal_server_error())?;
                for h in &server.modules.hooks {
                    h.on_user_data(server, &user, STORE, req.payload()).await;
                }
                Ok(IqReply::Empty)
            }
        }
    }
}
