//! XEP-0077 In-Band Registration: new accounts (open, or by invitation: XEP-0445, `invites`),
//! throttled per address, refusing reserved and look-alike usernames; password change; account
//! removal.

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

/// The registration form or a new account, on a stream that has not authenticated; `invite` is
/// the storage key of an invitation the stream presented (XEP-0445).
pub async fn handle_unauthenticated(
    server: &Server,
    host: &str,
    iq: &Element,
    peer: std::net::IpAddr,
    invite: Option<&str>,
) -> Element {
    let result = async {
        let rules = &server.config.registration;
        let invited = invite.is_some() && rules.invites;
        if !rules.allow && !invited {
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
                let node = jid.node().map(|n| n.to_string()).unwrap_or_default();
                let cap = rules.max_per_ip_per_hour;
                if !invited && cap > 0 && server.guards.registrations.count(&peer) >= cap {
                    tracing::info!(%peer, "registration refused: too many from this address");
                    return Err(StanzaError::policy_violation()
                        .with_text("too many registrations from your address; try again later"));
                }
                let invitation = match invite.filter(|_| invited) {
                    Some(k) => super::invites::check_key(server, host, k).await,
                    None => None,
                };
                if let Some(named) = invitation.as_ref().and_then(|i| i.username.as_deref()) {
                    if named != node {
                        return Err(StanzaError::not_allowed()
                            .with_text("this invitation is for another username"));
                    }
                } else if !username_free(server, host, &node).await {
                    // Reserved, or too like another: answered as if taken.
                    return Err(StanzaError::conflict().with_text("that username is not available"));
                }
                accounts::create(server, &jid, &pass)
                    .await
                    .map_err(account_error)?;
                match invite.filter(|_| invitation.is_some()) {
                    Some(k) => super::invites::consume(server, host, k).await,
                    None => {
                        server.guards.registrations.hit(peer);
                    }
                }
                tracing::info!(%jid, invited = invitation.is_some(), "account registered in-band");
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

/// Whether `node` may be registered on `host`: not reserved (by configuration or by an
/// invitation naming it), and, with `registration.refuse_confusable`, not looking like a reserved
/// name or an existing account (same UTS #39 skeleton).
async fn username_free(server: &Server, host: &str, node: &str) -> bool {
    let rules = &server.config.registration;
    let mut taken: Vec<String> = rules
        .reserved_usernames
        .iter()
        .map(|r| r.to_lowercase())
        .collect();
    taken.extend(super::invites::reserved(server, host).await);
    if taken.iter().any(|t| t == node) {
        return false;
    }
    if !rules.refuse_confusable {
        return true;
    }
    let mine = crate::lookalike::skeleton(node);
    if taken.iter().any(|t| crate::lookalike::skeleton(t) == mine) {
        return false;
    }
    matches!(
        crate::lookalike::existing(server.storage.as_ref(), host, node).await,
        Ok(None)
    )
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
