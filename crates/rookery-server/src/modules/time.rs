//! XEP-0202 Entity Time.

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:time";

pub struct Time;

impl Module for Time {
    fn name(&self) -> &'static str {
        "time"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "time", On::Server, self);
        reg.server_feature(NS);
    }
}

#[async_trait]
impl IqHandler for Time {
    async fn handle_iq(&self, _server: &Server, req: IqRequest) -> IqResult {
        if req.kind != IqType::Get {
            return Err(StanzaError::bad_request());
        }
        let now = chrono::Utc::now();
        Ok(IqReply::Payload(
            Element::new("time", NS)
                .with_child(Element::new("tzo", NS).with_text("+00:00"))
                .with_child(
                    Element::new("utc", NS)
                        .with_text(now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
                ),
        ))
    }
}
