//! XEP-0199 XMPP Ping: the server and accounts answer pings.

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:ping";

pub struct Ping;

impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "ping", On::Both, self);
        reg.server_feature(NS);
    }
}

#[async_trait]
impl IqHandler for Ping {
    async fn handle_iq(&self, _server: &Server, req: IqRequest) -> IqResult {
        match req.kind {
            IqType::Get => Ok(IqReply::Empty),
            IqType::Set => Err(StanzaError::bad_request()),
        }
    }
}
