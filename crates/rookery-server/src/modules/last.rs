//! XEP-0012 Last Activity: server uptime, and when a contact was last online.

use super::{
    IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, SessionHook, Target,
};
use crate::session::SessionHandle;
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use std::sync::Arc;

pub const NS: &str = "jabber:iq:last";
const STORE: &str = "last_activity";

pub struct Last;

impl Module for Last {
    fn name(&self) -> &'static str {
        "last"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "query", On::Both, self.clone());
        reg.server_feature(NS);
        reg.hook(self);
    }
}

#[async_trait]
impl SessionHook for Last {
    async fn on_unavailable(
        &self,
        server: &Server,
        session: &SessionHandle,
        status: Option<String>,
    ) {
        let user = session.bare();
        if server
            .sessions
            .resources(&user)
            .iter()
            .any(|s| s.id != session.id && s.is_available())
        {
            return;
        }
        let value = serde_json::json!({
            "t": chrono::Utc::now().timestamp(),
            "status": status,
        })
        .to_string();
        let _ = server.storage.kv_set(&user, STORE, "", Some(&value)).await;
    }
}

#[async_trait]
impl IqHandler for Last {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if req.kind != IqType::Get {
            return Err(StanzaError::bad_request());
        }
        let user = match &req.target {
            Target::Server(_) => {
                let up = server.started.elapsed().as_secs();
                return Ok(IqReply::Payload(
                    Element::new("query", NS).with_attr("seconds", up.to_string()),
                ));
            }
            Target::Account(u) => u.clone(),
        };
        // Only those allowed to see the user's presence may ask (XEP-0012 §4).
        if !req.is_self() {
            let allowed = matches!(
                server.storage.roster_item(&user, req.from.to_bare().as_str()).await,
                Ok(Some(i)) if i.subscription.has_from()
            );
            if !allowed {
                return Err(StanzaError::forbidden());
            }
        }
        if server
            .sessions
            .resources(&user)
            .iter()
            .any(|s| s.is_available())
        {
            return Ok(IqReply::Payload(
                Element::new("query", NS).with_attr("seconds", "0"),
            ));
        }
        let stored = server
            .storage
            .kv_get(&user, STORE, "")
            .await
            .map_err(|_| StanzaError::internal_server_error())?;
        let Some(v) = stored.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        else {
            return Err(StanzaError::service_unavailable());
        };
        let t = v["t"].as_i64().unwrap_or(0);
        let secs = (chrono::Utc::now().timestamp() - t).max(0);
        let mut q = Element::new("query", NS).with_attr("seconds", secs.to_string());
        if let Some(s) = v["status"].as_str() {
            q.append_text(s);
        }
        Ok(IqReply::Payload(q))
    }
}
