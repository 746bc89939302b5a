//! XEP-0077 In-Band Registration: new accounts (when allowed), password change, account removal.

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry};
use crate::accounts::{self, AccountError};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::{self, StanzaError};
use rookery_core::{BareJid, Element};
use std::sync::Arc;

pub const NS: &str = "jabber:iq:register";
pub const FEATURE: &str = "http://jabber.org/features/iq-register";

pub struct Register;

impl Module for Register {
    fn name(&self) -> &'static str {
        "register"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "query", On::Both, self);
        reg.server_feature(NS);
    }
}

fn fields(q: &Element) -> (Option<String>, Option<String>) {
    (q.child_text("username", NS), q.child_text("password", NS))
}

fn account_error(e: AccountError) -> StanzaError {
    match e {
        AccountError::Exists => StanzaError::conflict(),
        AccountError::WeakPassword => StanzaError::not_acceptable().with_text("password too short"),
        AccountError::InvalidJid(_) | AccountError::UnknownHost(_) => {
            StanzaError::jid_malformed().with_type(rookery_core::stanza::ErrorType::Modify)
        }
        AccountError::NotFound => StanzaError::item_not_found(),
        AccountError::Storage(_) => StanzaError::internal_server_error(),
    }
}

/// The registration form or a new account, on a stream that has not authenticated.
pub async fn handle_unauthenticated(server: &Server, host: &str, iq: &Element) -> Element {
    let result = async {
        if !server.config.registration.allow {
            return Err(StanzaError::not_allowed().with_text("registration is disabled"));
        }
        let q = iq
            .get_child("query", NS)
            .ok_or_else(StanzaError::service_unavailable)?;
        match iq.attr("type") {
            Some("get") => Ok(Some(
                Element::new("query", NS)
                    .with_child(
                        Element::new("instructions", NS)
                            .with_text("Choose a username and password for use with this service."),
                    )
                    .with_child(Element::new("username", NS))
                    .with_child(Element::new("password", NS)),
            )),
            Some("set") => {
                let (Some(user), Some(pass)) = fields(q) else {
                    return Err(
                        StanzaError::not_acceptable().with_text("username and password required")
                    );
                };
                let jid = accounts::parse_user(&server.config, &format!("{user}@{host}"))
                    .map_err(account_error)?;
                accounts::create(server, &jid, &pass)
                    .await
                    .map_err(account_error)?;
                tracing::info!(%jid, "account registered in-band");
                Ok(None)
            }
            _ => Err(StanzaError::bad_request()),
        }
    }
    .await;
    match result {
        Ok(p) => {
            let mut r = stanza::iq_result(iq);
            if let Some(p) = p {
                r.push_child(p);
            }
            r
        }
        Err(e) => stanza::error_reply(iq, &e),
    }
}

#[async_trait]
impl IqHandler for Register {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if matches!(req.target, super::Target::Account(_)) && !req.is_self() {
            return Err(StanzaError::service_unavailable());
        }
        let user: BareJid = req.from.to_bare();
        let q = req.payload();
        match req.kind {
            IqType::Get => Ok(IqReply::Payload(
                Element::new("query", NS)
                    .with_child(Element::new("registered", NS))
                    .with_child(
                        Element::new("username", NS)
                            .with_text(user.node().map(|n| n.to_string()).unwrap_or_default()),
                    )
                    .with_child(Element::new("password", NS)),
            )),
            IqType::Set => {
                if q.has_child("remove", NS) {
                    // Answer before the sessions are closed so the client sees the result.
                    let reply = stanza::iq_result(&req.stanza);
                    crate::router::deliver_to_full(server, reply);
                    accounts::delete(server, &user)
                        .await
                        .map_err(account_error)?;
                    return Ok(IqReply::Sent);
                }
                let (name, pass) = fields(q);
                let (Some(name), Some(pass)) = (name, pass) else {
                    return Err(StanzaError::bad_request());
                };
                if user.node().map(|n| n.as_str()) != Some(name.as_str()) {
                    return Err(StanzaError::not_allowed().with_text("that is not your account"));
                }
                accounts::set_password(server, &user, &pass)
                    .await
                    .map_err(account_error)?;
                Ok(IqReply::Empty)
            }
        }
    }
}
