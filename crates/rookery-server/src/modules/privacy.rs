//! XEP-0016 Privacy Lists: named lists of allow/deny rules by JID, roster group or subscription,
//! for messages, IQs and presence in and out; a default list per account and an active list per
//! session. The XEP-0191 blocklist lives in the same store: it is the set of jid+deny items of
//! the default list (XEP-0191 §6), so either protocol sees the other's changes.

use super::{
    Events, IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, SessionHook,
    StanzaHook, Verdict,
};
use crate::session::SessionHandle;
use crate::Server;
use async_trait::async_trait;
use dashmap::DashMap;
use rookery_core::stanza::StanzaError;
use rookery_core::{ns, BareJid, Element, Jid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NS: &str = "jabber:iq:privacy";
const STORE: &str = "privacy";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Rule {
    allow: bool,
    order: u32,
    /// "jid", "group", "subscription", or None for the fall-through rule.
    kind: Option<String>,
    value: String,
    message: bool,
    iq: bool,
    presence_in: bool,
    presence_out: bool,
}

impl Rule {
    /// A blocking-command item: deny everything from/to one JID.
    fn is_block(&self) -> bool {
        !self.allow
            && self.kind.as_deref() == Some("jid")
            && !(self.message || self.iq || self.presence_in || self.presence_out)
    }

    fn block(jid: &str) -> Rule {
        Rule {
            allow: false,
            order: 0,
            kind: Some("jid".into()),
            value: jid.to_string(),
            ..Rule::default()
        }
    }

    fn covers(&self, what: Kind) -> bool {
        let all = !(self.message || self.iq || self.presence_in || self.presence_out);
        all || match what {
            Kind::Message => self.message,
            Kind::Iq => self.iq,
            Kind::PresenceIn => self.presence_in,
            Kind::PresenceOut => self.presence_out,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Iq,
    PresenceIn,
    PresenceOut,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Lists {
    default: Option<String>,
    lists: BTreeMap<String, Vec<Rule>>,
}

/// The list the blocking command creates when the user has no default list.
const BLOCKLIST_NAME: &str = "blocklist";
/// Where blocklists were kept before they moved into the privacy store; read once and merged.
const LEGACY_BLOCKLIST: &str = "blocklist";

impl Lists {
    /// The blocklist: JIDs of the default list's block items, in list order.
    pub fn blocked(&self) -> impl Iterator<Item = &str> {
        self.default
            .as_ref()
            .and_then(|d| self.lists.get(d))
            .into_iter()
            .flatten()
            .filter(|r| r.is_block())
            .map(|r| r.value.as_str())
    }

    /// Adds block items for `jids` at the front of the default list (created when missing), as
    /// XEP-0191 §6 recommends; returns the list's name.
    fn block(&mut self, jids: &[String]) -> String {
        let name = self
            .default
            .get_or_insert_with(|| BLOCKLIST_NAME.to_string())
            .clone();
        let rules = self.lists.entry(name.clone()).or_default();
        let new: Vec<Rule> = jids
            .iter()
            .filter(|j| !rules.iter().any(|r| r.is_block() && &r.value == *j))
            .map(|j| Rule::block(j))
            .collect();
        let old = std::mem::take(rules);
        *rules = new.into_iter().chain(old).collect();
        for (i, r) in rules.iter_mut().enumerate() {
            r.order = i as u32;
        }
        name
    }

    /// Removes block items for `jids` (all of them when `None`) from the default list; a list
    /// left empty goes, with the default. Returns the JIDs unblocked and the list's name.
    fn unblock(&mut self, jids: Option<&[String]>) -> (Vec<String>, Option<String>) {
        let Some(name) = self.default.clone() else {
            return (vec![], None);
        };
        let Some(rules) = self.lists.get_mut(&name) else {
            return (vec![], None);
        };
        let mut removed = vec![];
        rules.retain(|r| {
            let gone = r.is_block() && jids.is_none_or(|j| j.contains(&r.value));
            if gone {
                removed.push(r.value.clone());
            }
            !gone
        });
        if rules.is_empty() {
            self.lists.remove(&name);
            self.default = None;
        }
        (removed, Some(name))
    }
}

const CACHE_TOPIC: &str = "privacy";

impl super::UserCache for Store {
    fn topic(&self) -> &'static str {
        CACHE_TOPIC
    }

    fn forget(&self, user: &BareJid) {
        Store::forget(self, user);
    }

    fn holds(&self, user: &BareJid) -> bool {
        self.cache.contains_key(user)
    }
}

/// Every user's privacy lists, cached while they are online; shared by the privacy and blocking
/// modules.
#[derive(Default)]
pub struct Store {
    /// Looked up up to three times per message routed (blocking both ways, privacy inbound).
    cache: DashMap<BareJid, Arc<Lists>, foldhash::fast::RandomState>,
    empty: Arc<Lists>,
    epoch: super::CacheEpoch,
}

impl Store {
    /// `f` of `user`'s lists: asked of the cache in place when they are cached (the routing
    /// path's question, without a reference count taken and given back per message), else of
    /// the lists loaded.
    pub async fn with_lists<R>(
        &self,
        server: &Server,
        user: &BareJid,
        f: impl FnOnce(&Lists) -> R,
    ) -> R {
        if let Some(l) = self.cache.get(user) {
            return f(&l);
        }
        f(&*self.lists(server, user).await)
    }

    pub async fn lists(&self, server: &Server, user: &BareJid) -> Arc<Lists> {
        if let Some(l) = self.cache.get(user) {
            return l.clone();
        }
        let at = self.epoch.now();
        let stored = server.storage.kv_get(user, STORE, "").await.ok().flatten();
        let mut l: Lists = stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let legacy = server
            .storage
            .kv_get(user, LEGACY_BLOCKLIST, "")
            .await
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok());
        if let Some(jids) = legacy {
            l.block(&jids);
            if self.save(server, user, l.clone()).await.is_ok() {
                let _ = server
                    .storage
                    .kv_set(user, LEGACY_BLOCKLIST, "", None)
                    .await;
            }
        }
        // Most users have no lists: they share one empty copy (a cache entry per online user).
        let l = if l.default.is_none() && l.lists.is_empty() {
            self.empty.clone()
        } else {
            Arc::new(l)
        };
        // Invalidated meanwhile: this copy may predate the change, so it is not kept.
        if self.epoch.now() == at {
            self.cache.insert(user.clone(), l.clone());
        }
        l
    }

    pub async fn save(&self, server: &Server, user: &BareJid, l: Lists) -> Result<(), StanzaError> {
        let json = serde_json::to_string(&l).expect("lists serialise");
        let empty = l.lists.is_empty() && l.default.is_none();
        server
            .storage
            .kv_set(user, STORE, "", (!empty).then_some(json.as_str()))
            .await
            .map_err(|_| StanzaError::internal_server_error())?;
        self.cache.insert(user.clone(), Arc::new(l));
        server.changed_user_data(CACHE_TOPIC, user);
        Ok(())
    }

    pub fn forget(&self, user: &BareJid) {
        self.epoch.bump();
        self.cache.remove(user);
    }

    pub async fn blocks(&self, server: &Server, user: &BareJid, other: &Jid) -> bool {
        let l = self.lists(server, user).await;
        let hit = l.blocked().any(|i| super::blocking::matches(i, other));
        hit
    }

    /// Blocks `jids`; returns the name of the privacy list that changed.
    pub async fn block(
        &self,
        server: &Server,
        user: &BareJid,
        jids: &[String],
    ) -> Result<String, StanzaError> {
        let mut l = (*self.lists(server, user).await).clone();
        let name = l.block(jids);
        self.save(server, user, l).await?;
        Ok(name)
    }

    /// Unblocks `jids` (everyone when `None`); returns who was unblocked and the list changed.
    pub async fn unblock(
        &self,
        server: &Server,
        user: &BareJid,
        jids: Option<&[String]>,
    ) -> Result<(Vec<String>, Option<String>), StanzaError> {
        let mut l = (*self.lists(server, user).await).clone();
        let r = l.unblock(jids);
        self.save(server, user, l).await?;
        Ok(r)
    }
}

pub struct Privacy {
    store: Arc<Store>,
    /// Active list per session id.
    active: DashMap<u64, String>,
}

impl Privacy {
    pub fn new(store: Arc<Store>) -> Privacy {
        Privacy {
            store,
            active: DashMap::new(),
        }
    }
}

impl Module for Privacy {
    fn name(&self) -> &'static str {
        "privacy"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.caches.push(self.store.clone());
        reg.iq(NS, "query", On::Account, self.clone());
        reg.server_feature(NS);
        reg.stanza_hook(self.clone());
        reg.hook(self);
    }
}

fn parse_rule(item: &Element) -> Result<Rule, StanzaError> {
    let bad = || StanzaError::bad_request();
    let allow = match item.attr("action") {
        Some("allow") => true,
        Some("deny") => false,
        _ => return Err(bad()),
    };
    let order = item
        .attr("order")
        .and_then(|o| o.parse().ok())
        .ok_or_else(bad)?;
    let kind = item.attr("type").map(str::to_string);
    let value = item.attr("value").unwrap_or_default().to_string();
    match kind.as_deref() {
        None => {}
        Some("jid") => {
            Jid::new(&value).map_err(|_| bad())?;
        }
        Some("group") => {}
        Some("subscription") if ["none", "to", "from", "both"].contains(&value.as_str()) => {}
        _ => return Err(bad()),
    }
    Ok(Rule {
        allow,
        order,
        value,
        kind,
        message: item.has_child("message", NS),
        iq: item.has_child("iq", NS),
        presence_in: item.has_child("presence-in", NS),
        presence_out: item.has_child("presence-out", NS),
    })
}

fn rule_element(r: &Rule) -> Element {
    let mut e = Element::new("item", NS)
        .with_attr("action", if r.allow { "allow" } else { "deny" })
        .with_attr("order", r.order.to_string())
        .with_opt_attr("type", r.kind.clone());
    if r.kind.is_some() {
        e.set_attr("value", r.value.clone());
    }
    for (on, name) in [
        (r.message, "message"),
        (r.iq, "iq"),
        (r.presence_in, "presence-in"),
        (r.presence_out, "presence-out"),
    ] {
        if on {
            e.push_child(Element::new(name, NS));
        }
    }
    e
}

impl Privacy {
    async fn lists(&self, server: &Server, user: &BareJid) -> Arc<Lists> {
        self.store.lists(server, user).await
    }

    /// Saves `l`; returns the blocklist before and after, for the blocking command's pushes.
    async fn save(
        &self,
        server: &Server,
        user: &BareJid,
        l: Lists,
    ) -> Result<(Vec<String>, Vec<String>), StanzaError> {
        let before: Vec<String> = self
            .lists(server, user)
            .await
            .blocked()
            .map(str::to_string)
            .collect();
        let after: Vec<String> = l.blocked().map(str::to_string).collect();
        self.store.save(server, user, l).await?;
        Ok((before, after))
    }

    /// Whether `user`'s applicable list lets `what` from/to `other` through.
    async fn allowed(
        &self,
        server: &Server,
        user: &BareJid,
        session: Option<u64>,
        other: &Jid,
        what: Kind,
    ) -> bool {
        let lists = self.lists(server, user).await;
        if lists.lists.is_empty() {
            return true;
        }
        let name = session
            .and_then(|id| self.active.get(&id).map(|n| n.clone()))
            .or_else(|| lists.default.clone());
        let Some(rules) = name.and_then(|n| lists.lists.get(&n).cloned()) else {
            return true;
        };
        let mut item = None;
        for r in rules.iter().filter(|r| r.covers(what)) {
            let hit = match r.kind.as_deref() {
                None => true,
                Some("jid") => super::blocking::matches(&r.value, other),
                Some(k) => {
                    if item.is_none() {
                        item = Some(
                            server
                                .storage
                                .roster_item(user, other.to_bare().as_str())
                                .await
                                .ok()
                                .flatten(),
                        );
                    }
                    let it = item.as_ref().unwrap();
                    match k {
                        "group" => it.as_ref().is_some_and(|i| i.groups.contains(&r.value)),
                        _ => {
                            it.as_ref()
                                .map(|i| i.subscription.as_str())
                                .unwrap_or("none")
                                == r.value
                        }
                    }
                }
            };
            if hit {
                return r.allow;
            }
        }
        true
    }
}

/// Tells every resource that list `name` changed (§2.6).
pub fn push(server: &Server, user: &BareJid, name: &str) {
    for s in server.sessions.resources(user) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("privacy{}", server.next_id()))
            .with_attr("to", s.jid.to_string())
            .with_child(
                Element::new("query", NS)
                    .with_child(Element::new("list", NS).with_attr("name", name)),
            );
        crate::router::send_to_session(server, &s, iq);
    }
}

#[async_trait]
impl IqHandler for Privacy {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden());
        }
        let user = req.from.to_bare();
        let q = req.payload().clone();
        let children: Vec<&Element> = q.children().collect();
        let lists = self.lists(server, &user).await;
        match req.kind {
            IqType::Get => {
                if children.is_empty() {
                    let mut res = Element::new("query", NS);
                    let active = req
                        .session
                        .as_ref()
                        .and_then(|s| self.active.get(&s.id).map(|n| n.clone()));
                    res.push_child(Element::new("active", NS).with_opt_attr("name", active));
                    res.push_child(
                        Element::new("default", NS).with_opt_attr("name", lists.default.clone()),
                    );
                    for name in lists.lists.keys() {
                        res.push_child(Element::new("list", NS).with_attr("name", name.clone()));
                    }
                    return Ok(IqReply::Payload(res));
                }
                if children.len() != 1 || children[0].name() != "list" {
                    return Err(StanzaError::bad_request());
                }
                let name = children[0].attr("name").unwrap_or_default();
                let rules = lists
                    .lists
                    .get(name)
                    .ok_or_else(StanzaError::item_not_found)?;
                Ok(IqReply::Payload(
                    Element::new("query", NS).with_child(
                        Element::new("list", NS)
                            .with_attr("name", name)
                            .with_children(rules.iter().map(rule_element)),
                    ),
                ))
            }
            IqType::Set => {
                if children.len() != 1 {
                    return Err(StanzaError::bad_request());
                }
                let c = children[0];
                let name = c.attr("name").map(str::to_string);
                match c.name() {
                    "active" => {
                        let Some(s) = &req.session else {
                            return Err(StanzaError::bad_request());
                        };
                        match name {
                            Some(n) if lists.lists.contains_key(&n) => {
                                self.active.insert(s.id, n);
                            }
                            Some(_) => return Err(StanzaError::item_not_found()),
                            None => {
                                self.active.remove(&s.id);
                            }
                        }
                        Ok(IqReply::Empty)
                    }
                    "default" => {
                        if name.as_ref().is_some_and(|n| !lists.lists.contains_key(n)) {
                            return Err(StanzaError::item_not_found());
                        }
                        let mut l = (*lists).clone();
                        l.default = name;
                        let (before, after) = self.save(server, &user, l).await?;
                        crate::router::deliver_to_full(
                            server,
                            crate::router::result_for(&req.stanza),
                        );
                        super::blocking::push_changes(server, &user, &before, &after);
                        Ok(IqReply::Sent)
                    }
                    "list" => {
                        let name = name.ok_or_else(StanzaError::bad_request)?;
                        let mut rules = c
                            .children()
                            .filter(|i| i.is("item", NS))
                            .map(parse_rule)
                            .collect::<Result<Vec<_>, _>>()?;
                        rules.sort_by_key(|r| r.order);
                        let mut l = (*lists).clone();
                        if rules.is_empty() {
                            // An empty list element removes the list (§2.8), unless it is the default.
                            if l.default.as_deref() == Some(name.as_str()) {
                                return Err(StanzaError::conflict());
                            }
                            if l.lists.remove(&name).is_none() {
                                return Err(StanzaError::item_not_found());
                            }
                        } else {
                            l.lists.insert(name.clone(), rules);
                        }
                        let (before, after) = self.save(server, &user, l).await?;
                        crate::router::deliver_to_full(
                            server,
                            crate::router::result_for(&req.stanza),
                        );
                        push(server, &user, &name);
                        super::blocking::push_changes(server, &user, &before, &after);
                        Ok(IqReply::Sent)
                    }
                    _ => Err(StanzaError::bad_request()),
                }
            }
        }
    }
}

fn kind_of(el: &Element, inbound: bool) -> Option<Kind> {
    match el.name() {
        "message" => Some(Kind::Message),
        "iq" => Some(Kind::Iq),
        // Subscription and probe presence are not filtered (XEP-0016 §2.11, §2.12).
        "presence" if matches!(el.attr("type"), None | Some("unavailable")) => Some(if inbound {
            Kind::PresenceIn
        } else {
            Kind::PresenceOut
        }),
        _ => None,
    }
}

#[async_trait]
impl StanzaHook for Privacy {
    fn events(&self) -> Events {
        Events::OUTBOUND | Events::INBOUND
    }

    async fn outbound(&self, server: &Server, user: &BareJid, el: &Element) -> Verdict {
        // Only presence-out is filtered on the way out (§2.12); the rest is the sender's choice.
        if kind_of(el, false) != Some(Kind::PresenceOut) {
            return Verdict::Pass;
        }
        if self.lists(server, user).await.lists.is_empty() {
            return Verdict::Pass;
        }
        let Some(to) = el.attr("to").and_then(|t| Jid::new(t).ok()) else {
            return Verdict::Pass;
        };
        let session = el
            .attr("from")
            .and_then(|f| rookery_core::FullJid::new(f).ok())
            .and_then(|f| server.sessions.get(&f))
            .map(|s| s.id);
        if self
            .allowed(server, user, session, &to, Kind::PresenceOut)
            .await
        {
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    }

    async fn inbound(&self, server: &Server, user: &BareJid, el: &Element) -> Verdict {
        let Some(kind) = kind_of(el, true) else {
            return Verdict::Pass;
        };
        // Most users have no lists: skip parsing addresses for them.
        if self
            .store
            .with_lists(server, user, |l| l.lists.is_empty())
            .await
        {
            return Verdict::Pass;
        }
        let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
            return Verdict::Pass;
        };
        let session = el
            .attr("to")
            .and_then(|t| rookery_core::FullJid::new(t).ok())
            .and_then(|f| server.sessions.get(&f))
            .map(|s| s.id);
        if self.allowed(server, user, session, &from, kind).await {
            return Verdict::Pass;
        }
        match kind {
            Kind::Message | Kind::Iq => Verdict::Bounce(StanzaError::service_unavailable()),
            _ => Verdict::Drop,
        }
    }
}

#[async_trait]
impl SessionHook for Privacy {
    async fn on_available(&self, server: &Server, session: &SessionHandle) {
        self.lists(server, &session.bare()).await;
    }

    async fn on_unavailable(
        &self,
        server: &Server,
        session: &SessionHandle,
        _status: Option<String>,
    ) {
        self.active.remove(&session.id);
        if super::is_last_available(server, session) {
            self.store.forget(&session.bare());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow_all(order: u32) -> Rule {
        Rule {
            allow: true,
            order,
            ..Rule::default()
        }
    }

    #[test]
    fn blocks_go_first_in_the_default_list_and_unblock_leaves_other_rules() {
        let mut l = Lists::default();
        assert_eq!(l.block(&["a@x".into()]), BLOCKLIST_NAME);
        assert_eq!(l.default.as_deref(), Some(BLOCKLIST_NAME));
        // A user's own rule in the default list stays after the blocks.
        l.lists.get_mut(BLOCKLIST_NAME).unwrap().push(allow_all(7));
        l.block(&["b@x".into(), "a@x".into()]);
        let rules = &l.lists[BLOCKLIST_NAME];
        let view: Vec<(bool, &str, u32)> = rules
            .iter()
            .map(|r| (r.is_block(), r.value.as_str(), r.order))
            .collect();
        assert_eq!(view, [(true, "b@x", 0), (true, "a@x", 1), (false, "", 2)]);
        assert_eq!(l.blocked().collect::<Vec<_>>(), ["b@x", "a@x"]);
        // A deny rule limited to messages is not a block.
        l.lists.get_mut(BLOCKLIST_NAME).unwrap()[0].message = true;
        assert_eq!(l.blocked().collect::<Vec<_>>(), ["a@x"]);
        let (gone, name) = l.unblock(None);
        assert_eq!(gone, ["a@x"]);
        assert_eq!(name.as_deref(), Some(BLOCKLIST_NAME));
        assert_eq!(l.lists[BLOCKLIST_NAME].len(), 2);
        // Unblocking what made up the whole list removes it and the default.
        let mut l = Lists::default();
        l.block(&["c@x".into()]);
        l.unblock(Some(&["c@x".to_string()]));
        assert!(l.lists.is_empty() && l.default.is_none());
    }
}
