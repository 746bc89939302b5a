//! XEP-0092 Software Version, with the operating system hidden unless configured.

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry};
use crate::Server;
use async_trait::async_trait;
use rookery_core::config::VersionOptions;
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use std::sync::Arc;

pub const NS: &str = "jabber:iq:version";

pub struct Version {
    pub options: super::Live<VersionOptions>,
}

impl Module for Version {
    fn name(&self) -> &'static str {
        "version"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "query", On::Server, self.clone());
        reg.server_feature(NS);
        reg.reload(self);
    }
}

#[async_trait]
impl super::Reload for Version {
    async fn reload(&self, config: &rookery_core::config::Config) -> Vec<&'static str> {
        self.options.set(config.modules.version.clone());
        Vec::new()
    }
}

#[async_trait]
impl IqHandler for Version {
    async fn handle_iq(&self, _server: &Server, req: IqRequest) -> IqResult {
        if req.kind != IqType::Get {
            return Err(StanzaError::bad_request());
        }
        let options = self.options.get();
        let mut q = Element::new("query", NS)
            .with_child(Element::new("name", NS).with_text(options.name.clone()))
            .with_child(Element::new("version", NS).with_text(env!("CARGO_PKG_VERSION")));
        if options.show_os {
            q.push_child(Element::new("os", NS).with_text(std::env::consts::OS));
        }
        Ok(IqReply::Payload(q))
    }
}
