//! Stranger filtering for new accounts (anti-spam, as `mod_block_strangers` and ejabberd's
//! `mod_block_strangers` do): while an account is younger than `limits.stranger_days`, messages
//! and subscription requests from JIDs outside its roster are dropped. This server's own
//! domains, services and administrators always get through.

use super::{Events, Module, Registry, StanzaHook, Verdict};
use crate::Server;
use async_trait::async_trait;
use dashmap::DashMap;
use rookery_core::{BareJid, Element, Jid};
use std::sync::Arc;

/// Key-value store of per-account facts: `created` (Unix seconds).
pub const STORE: &str = "account";

#[derive(Default)]
pub struct Strangers {
    /// When each account was made (None: before this was recorded, so old), read once.
    created: DashMap<BareJid, Option<i64>>,
}

impl Module for Strangers {
    fn name(&self) -> &'static str {
        "strangers"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.stanza_hook(self);
    }
}

impl Strangers {
    async fn created(&self, server: &Server, user: &BareJid) -> Option<i64> {
        if let Some(c) = self.created.get(user) {
            return *c;
        }
        let c = server
            .storage
            .kv_get(user, STORE, "created")
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok());
        // Bounded: an entry per account that got a stanza while the filter is on.
        if self.created.len() > 100_000 {
            self.created.clear();
        }
        self.created.insert(user.clone(), c);
        c
    }
}

/// Whether `el` is what the filter holds back: a message (not groupchat, not an error) or a
/// subscription request.
fn filtered_kind(el: &Element) -> bool {
    match el.name() {
        "message" => !matches!(el.attr("type"), Some("groupchat" | "error")),
        "presence" => el.attr("type") == Some("subscribe"),
        _ => false,
    }
}

#[async_trait]
impl StanzaHook for Strangers {
    fn events(&self) -> Events {
        Events::INBOUND
    }

    async fn inbound(&self, server: &Server, user: &BareJid, el: &Element) -> Verdict {
        let days = server.config.limits.stranger_days;
        if days == 0 || !filtered_kind(el) {
            return Verdict::Pass;
        }
        let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
            return Verdict::Pass;
        };
        let domain = from.domain().as_str();
        let ours = server.config.is_local_host(domain)
            && (from.node().is_none() || crate::admin::is_admin(server, &from.to_bare()))
            || server.modules.services.contains_key(domain);
        if ours || from.to_bare() == *user {
            return Verdict::Pass;
        }
        let Some(created) = self.created(server, user).await else {
            return Verdict::Pass;
        };
        if chrono::Utc::now().timestamp() - created >= days as i64 * 86_400 {
            return Verdict::Pass;
        }
        let known = matches!(
            server
                .storage
                .roster_item(user, from.to_bare().as_str())
                .await,
            Ok(Some(_))
        );
        if known {
            return Verdict::Pass;
        }
        tracing::debug!(%user, %from, "stanza from a stranger to a new account dropped");
        Verdict::Drop
    }
}
