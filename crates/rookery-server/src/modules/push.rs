//! XEP-0357 Push Notifications: clients enable and disable app servers (`urn:xmpp:push:0`), and
//! the server publishes a summary to the app server's node when a message reaches a user who
//! cannot see it now.
//!
//! Registrations are per account, kept in the key-value store (`push`/`registrations`, a JSON
//! list) and cached; each remembers the resource that enabled it, since a registration stands for
//! one device. Three hook points decide when to notify, and nothing else on the routing path
//! changes:
//!
//! * `StanzaHook::message_offline`: no session got the message and it went to offline storage;
//!   every registration of the account is notified.
//! * `StanzaHook::message_delivered`: the message was queued for sessions; those whose
//!   connection dropped and which wait to be resumed (XEP-0198 hibernation, the flag the session
//!   loop in `c2s/stream.rs` sets) or whose client said it is inactive (XEP-0352) notify the
//!   registrations their resource enabled. The flags are checked before any registration is
//!   looked up, so ordinary deliveries cost a lock of each session's state and no more.
//! * `SessionHook::on_hibernating`: when a connection drops, messages already sent on it but not
//!   acknowledged may never have reached the device; they notify as if they had just arrived.
//!
//! The notification goes from the account's bare JID, so the app server's answer comes back
//! through `StanzaHook::iq_response`. An error that says the registration is no good (§8:
//! item-not-found, not-authorized, forbidden and the like) removes it; transient ones, and the
//! ones our own routing produces, do not. Bodies are left out unless `modules.push.include_body`
//! (§9): they would pass through the app server and the platform's push service.

use super::{
    CacheEpoch, Events, IqHandler, IqRequest, IqResult, IqType, Module, On, Registry, SessionHook,
    StanzaHook, UserCache,
};
use crate::session::SessionHandle;
use crate::Server;
use async_trait::async_trait;
use dashmap::DashMap;
use rookery_core::config::PushOptions;
use rookery_core::stanza::{ErrorType, StanzaError};
use rookery_core::{ns, BareJid, Element, Jid};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NS: &str = "urn:xmpp:push:0";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const DATA: &str = "jabber:x:data";
const STORE: &str = "push";
const KEY: &str = "registrations";
const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// Errors from an app server that mean the registration will never work again.
const PERMANENT: &[&str] = &[
    "item-not-found",
    "not-authorized",
    "forbidden",
    "registration-required",
    "not-allowed",
    "bad-request",
    "not-acceptable",
];
/// How long an unanswered notification is remembered.
const PENDING_FOR: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registration {
    /// The app server.
    pub jid: String,
    pub node: String,
    /// The publish-options form the client gave, as XML (its secret, for one).
    #[serde(default)]
    pub form: Option<String>,
    /// The resource that enabled it: the device it stands for.
    #[serde(default)]
    pub resource: Option<String>,
}

struct Pending {
    user: BareJid,
    jid: String,
    node: String,
    sent: Instant,
}

pub struct Push {
    options: super::Live<PushOptions>,
    cache: DashMap<BareJid, Arc<Vec<Registration>>>,
    epoch: CacheEpoch,
    /// Messages notified since the account last came online (`message-count`).
    counts: DashMap<BareJid, u64>,
    pending: DashMap<String, Pending>,
    next: AtomicU64,
}

impl Push {
    pub fn new(options: PushOptions) -> Push {
        Push {
            options: super::Live::new(options),
            cache: DashMap::new(),
            epoch: CacheEpoch::default(),
            counts: DashMap::new(),
            pending: DashMap::new(),
            next: AtomicU64::new(1),
        }
    }

    pub async fn registrations(&self, server: &Server, user: &BareJid) -> Arc<Vec<Registration>> {
        if let Some(r) = self.cache.get(user) {
            return r.clone();
        }
        let at = self.epoch.now();
        let loaded = match server.storage.kv_get(user, STORE, KEY).await {
            Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_else(|e| {
                tracing::error!(%user, %e, "unreadable push registrations ignored");
                Vec::new()
            }),
            Ok(None) => Vec::new(),
            Err(e) => {
                // Not cached: the next message tries again.
                tracing::error!(%user, %e, "reading push registrations failed");
                return Arc::default();
            }
        };
        let loaded = Arc::new(loaded);
        if self.epoch.now() == at {
            self.cache.insert(user.clone(), loaded.clone());
        }
        loaded
    }

    async fn save(
        &self,
        server: &Server,
        user: &BareJid,
        regs: Vec<Registration>,
    ) -> Result<(), StanzaError> {
        let json = (!regs.is_empty())
            .then(|| serde_json::to_string(&regs).expect("registrations serialise"));
        server
            .storage
            .kv_set(user, STORE, KEY, json.as_deref())
            .await
            .map_err(|e| {
                tracing::error!(%user, %e, "storing push registrations failed");
                StanzaError::internal_server_error()
            })?;
        self.epoch.bump();
        self.cache.insert(user.clone(), Arc::new(regs));
        server.changed_user_data(STORE, user);
        Ok(())
    }

    /// Changes the registrations with `change`, saving when it says something changed.
    async fn update(
        &self,
        server: &Server,
        user: &BareJid,
        change: impl FnOnce(&mut Vec<Registration>) -> bool,
    ) -> Result<(), StanzaError> {
        let mut regs = (*self.registrations(server, user).await).clone();
        if change(&mut regs) {
            self.save(server, user, regs).await?;
        }
        Ok(())
    }

    /// Publishes a notification about `el` to each registration `which` accepts.
    async fn notify(
        &self,
        server: &Server,
        user: &BareJid,
        el: &Element,
        which: impl Fn(&Registration) -> bool,
    ) {
        let regs = self.registrations(server, user).await;
        let targets: Vec<&Registration> = regs.iter().filter(|r| which(r)).collect();
        if targets.is_empty() {
            return;
        }
        let count = {
            let mut c = self.counts.entry(user.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let summary = self.summary(el, count);
        let now = Instant::now();
        self.pending
            .retain(|_, p| now.duration_since(p.sent) < PENDING_FOR);
        for r in targets {
            let id = format!("push-{}", self.next.fetch_add(1, Ordering::Relaxed));
            let iq = publish(user, r, &id, summary.clone());
            self.pending.insert(
                id,
                Pending {
                    user: user.clone(),
                    jid: r.jid.clone(),
                    node: r.node.clone(),
                    sent: now,
                },
            );
            crate::router::deliver(server, iq).await;
        }
    }

    /// The `urn:xmpp:push:summary` form (XEP-0357 §7).
    fn summary(&self, el: &Element, count: u64) -> Element {
        let field = |var: &str, value: &str| {
            Element::new("field", DATA)
                .with_attr("var", var)
                .with_child(Element::new("value", DATA).with_text(value))
        };
        let mut x = Element::new("x", DATA)
            .with_attr("type", "submit")
            .with_child(field("FORM_TYPE", "urn:xmpp:push:summary").with_attr("type", "hidden"))
            .with_child(field("message-count", &count.to_string()));
        if let Some(from) = el.attr("from") {
            x.push_child(field("last-message-sender", from));
        }
        if self.options.get().include_body {
            if let Some(body) = el.child_text("body", ns::CLIENT) {
                x.push_child(field("last-message-body", &body));
            }
        }
        x
    }
}

/// The publish to the app server's node, from the account.
fn publish(user: &BareJid, r: &Registration, id: &str, summary: Element) -> Element {
    let item = Element::new("item", PUBSUB)
        .with_child(Element::new("notification", NS).with_child(summary));
    let mut pubsub = Element::new("pubsub", PUBSUB).with_child(
        Element::new("publish", PUBSUB)
            .with_attr("node", r.node.clone())
            .with_child(item),
    );
    if let Some(form) = r.form.as_deref().and_then(|f| Element::parse(f).ok()) {
        pubsub.push_child(Element::new("publish-options", PUBSUB).with_child(form));
    }
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_attr("from", user.to_string())
        .with_attr("to", r.jid.clone())
        .with_child(pubsub)
}

/// Whether a message is worth waking a device for (XEP-0357 §5, and what Conversations relies
/// on): content, encrypted content, a call, an invitation. Chat states and receipts are not.
pub fn worth_pushing(el: &Element) -> bool {
    if el.name() != "message" || el.attr("type") == Some("error") {
        return false;
    }
    el.has_child("body", ns::CLIENT)
        || el.children().any(|c| {
            matches!(
                (c.ns(), c.name()),
                ("eu.siacs.conversations.axolotl", "encrypted")
                    | ("urn:xmpp:omemo:2", "encrypted")
                    | ("urn:xmpp:jingle-message:0", "propose")
                    | ("jabber:x:conference", "x")
            ) || (c.ns() == "http://jabber.org/protocol/muc#user" && c.has_child("invite", c.ns()))
        })
}

impl Module for Push {
    fn name(&self) -> &'static str {
        "push"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "enable", On::Account, self.clone());
        reg.iq(NS, "disable", On::Account, self.clone());
        reg.account_feature(NS);
        reg.hook(self.clone());
        reg.stanza_hook(self.clone());
        reg.reload(self.clone());
        reg.caches.push(self);
    }
}

#[async_trait]
impl super::Reload for Push {
    async fn reload(&self, config: &rookery_core::config::Config) -> Vec<&'static str> {
        self.options.set(config.modules.push.clone());
        Vec::new()
    }
}

#[async_trait]
impl IqHandler for Push {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden());
        }
        if req.kind != IqType::Set {
            return Err(StanzaError::bad_request());
        }
        let user = req.from.to_bare();
        let p = req.payload();
        let jid = p
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .ok_or_else(|| {
                StanzaError::bad_request().with_text("a push service 'jid' is required")
            })?
            .to_string();
        let node = p.attr("node").map(str::to_string);
        if p.name() == "disable" {
            self.update(server, &user, |regs| {
                let before = regs.len();
                regs.retain(|r| r.jid != jid || node.as_ref().is_some_and(|n| *n != r.node));
                regs.len() != before
            })
            .await?;
            return Ok(super::IqReply::Empty);
        }
        let node =
            node.ok_or_else(|| StanzaError::bad_request().with_text("a 'node' is required"))?;
        let form = match p.get_child("x", DATA) {
            None => None,
            Some(x) => {
                if crate::forms::form_type(x).as_deref() != Some(PUBLISH_OPTIONS) {
                    return Err(StanzaError::bad_request()
                        .with_text("publish options need the pubsub#publish-options FORM_TYPE"));
                }
                Some(x.to_xml())
            }
        };
        let reg = Registration {
            jid,
            node,
            form,
            resource: req.from.resource().map(|r| r.to_string()),
        };
        self.update(server, &user, |regs| {
            regs.retain(|r| r.jid != reg.jid || r.node != reg.node);
            regs.push(reg);
            true
        })
        .await?;
        Ok(super::IqReply::Empty)
    }
}

fn for_resource(resources: &[String]) -> impl Fn(&Registration) -> bool + '_ {
    move |r| match &r.resource {
        Some(res) => resources.contains(res),
        None => true,
    }
}

#[async_trait]
impl StanzaHook for Push {
    fn events(&self) -> Events {
        Events::MESSAGE_OFFLINE | Events::MESSAGE_DELIVERED | Events::IQ_RESPONSE
    }

    async fn message_offline(&self, server: &Server, user: &BareJid, el: &Element) {
        if worth_pushing(el) {
            self.notify(server, user, el, |_| true).await;
        }
    }

    async fn message_delivered(
        &self,
        server: &Server,
        user: &BareJid,
        el: &Element,
        sessions: &[SessionHandle],
    ) {
        let away: Vec<String> = sessions
            .iter()
            .filter(|s| {
                let st = s.state.lock().unwrap();
                st.hibernating || st.inactive
            })
            .map(|s| s.jid.resource().to_string())
            .collect();
        if away.is_empty() || !worth_pushing(el) {
            return;
        }
        self.notify(server, user, el, for_resource(&away)).await;
    }

    async fn iq_response(&self, server: &Server, user: &BareJid, el: &Element) -> bool {
        let Some(id) = el.attr("id").filter(|i| i.starts_with("push-")) else {
            return false;
        };
        let Some((_, p)) = self.pending.remove(id) else {
            return false;
        };
        if &p.user != user || el.attr("from") != Some(p.jid.as_str()) {
            // Not the answer to what we sent; put it back for the real one.
            self.pending.insert(id.to_string(), p);
            return false;
        }
        if el.attr("type") != Some("error") {
            return true;
        }
        let err = el.get_child("error", ns::CLIENT);
        let condition = err
            .and_then(|e| e.children().find(|c| c.ns() == ns::STANZAS_ERR))
            .map(|c| c.name().to_string())
            .unwrap_or_default();
        let kind = err.and_then(|e| e.attr("type")).unwrap_or("cancel");
        let permanent = PERMANENT.contains(&condition.as_str()) || kind == ErrorType::Auth.as_str();
        if permanent {
            tracing::info!(%user, jid = %p.jid, node = %p.node, %condition, "push registration removed after an error");
            let _ = self
                .update(server, user, |regs| {
                    let before = regs.len();
                    regs.retain(|r| r.jid != p.jid || r.node != p.node);
                    regs.len() != before
                })
                .await;
        }
        true
    }
}

#[async_trait]
impl SessionHook for Push {
    async fn on_available(&self, _server: &Server, session: &SessionHandle) {
        self.counts.remove(&session.bare());
    }

    async fn on_user_deleted(&self, server: &Server, user: &BareJid) {
        let _ = server.storage.kv_set(user, STORE, KEY, None).await;
        self.epoch.bump();
        self.cache.remove(user);
        self.counts.remove(user);
    }

    async fn on_hibernating(
        &self,
        server: &Server,
        session: &SessionHandle,
        unacked: &VecDeque<Element>,
    ) {
        if let Some(last) = unacked.iter().rev().find(|el| worth_pushing(el)) {
            let resource = [session.jid.resource().to_string()];
            self.notify(server, &session.bare(), last, for_resource(&resource))
                .await;
        }
    }
}

impl UserCache for Push {
    fn topic(&self) -> &'static str {
        STORE
    }

    fn forget(&self, user: &BareJid) {
        self.epoch.bump();
        self.cache.remove(user);
    }

    fn holds(&self, user: &BareJid) -> bool {
        self.cache.contains_key(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_worth_a_push() {
        let msg = |xml: &str| Element::parse(xml).unwrap();
        assert!(worth_pushing(&msg(
            "<message xmlns='jabber:client'><body>hi</body></message>"
        )));
        assert!(worth_pushing(&msg("<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>")));
        assert!(worth_pushing(&msg("<message xmlns='jabber:client'><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>")));
        assert!(!worth_pushing(&msg("<message xmlns='jabber:client'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")));
        assert!(!worth_pushing(&msg(
            "<message xmlns='jabber:client' type='error'><body>x</body></message>"
        )));
        assert!(!worth_pushing(&msg("<presence xmlns='jabber:client'/>")));
    }

    #[test]
    fn the_summary_leaves_the_body_out_unless_configured() {
        let m = Element::parse(
            "<message xmlns='jabber:client' from='bob@h/r'><body>secret</body></message>",
        )
        .unwrap();
        let quiet = Push::new(PushOptions::default()).summary(&m, 3);
        let v = crate::forms::values(&quiet);
        assert_eq!(v["FORM_TYPE"], ["urn:xmpp:push:summary"]);
        assert_eq!(v["message-count"], ["3"]);
        assert_eq!(v["last-message-sender"], ["bob@h/r"]);
        assert!(!v.contains_key("last-message-body"));
        let chatty = Push::new(PushOptions { include_body: true }).summary(&m, 1);
        assert_eq!(
            crate::forms::values(&chatty)["last-message-body"],
            ["secret"]
        );
    }
}
