//! XEP-0163 Personal Eventing Protocol: a pubsub service on every account's bare JID, with
//! notifications to the account's own resources and to contacts with a presence subscription
//! whose entity capabilities (XEP-0115) ask for `<node>+notify`, and the last published items
//! sent when such a resource appears.

use super::caps::{self, Claim, Interests};
use super::engine::{Broadcast, Outcome, Policy, PubSub, Requester};
use super::node::{self, AccessModel, NodeConfig, Relation, SendLast, NS, OWNER};
use super::protocol::Op;
use crate::modules::{
    DiscoProvider, Events, IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry,
    SessionHook, StanzaHook, Target,
};
use crate::session::SessionHandle;
use crate::Server;
use async_trait::async_trait;
use dashmap::DashMap;
use rookery_core::config::PubSubOptions;
use rookery_core::stanza::StanzaError;
use rookery_core::storage::RosterItem;
use rookery_core::{ns, BareJid, Element, FullJid, Jid};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Observers of PEP changes (avatar and bookmark synchronisation).
#[async_trait]
pub trait PepObserver: Send + Sync {
    /// `owner`'s node changed as `b` describes.
    async fn changed(&self, server: &Server, pep: &Pep, owner: &BareJid, b: &Broadcast);
}

/// What a PEP node is unless configured otherwise (XEP-0163 §7.1.1: one item, presence access,
/// last item on subscription and presence).
pub fn node_defaults() -> NodeConfig {
    NodeConfig {
        max_items: Some(1),
        access_model: AccessModel::Presence,
        send_last_published_item: SendLast::OnSubAndPresence,
        ..NodeConfig::default()
    }
}

/// The filter other cluster nodes name when a PEP notification may interest one of this
/// node's sessions (`DeliveryFilter`).
const DELIVERY_FILTER: &str = "pep-notify";

impl super::super::DeliveryFilter for Pep {
    fn wants(&self, to: &FullJid, node: &str) -> bool {
        self.caps.interests_of(to).is_some_and(|i| i.contains(node))
    }
}

/// Other cluster nodes drop their copy of a PEP service changed here (`UserCache`).
const CACHE_TOPIC: &str = "pep";

impl super::super::UserCache for Pep {
    fn topic(&self) -> &'static str {
        CACHE_TOPIC
    }

    fn forget(&self, user: &BareJid) {
        self.epoch.bump();
        self.services.remove(user);
    }

    fn holds(&self, user: &BareJid) -> bool {
        self.services.contains_key(user)
    }
}

pub struct Pep {
    options: super::super::Live<PubSubOptions>,
    services: DashMap<BareJid, Arc<Mutex<PubSub>>>,
    pub caps: caps::Registry,
    /// Resources on other servers whose available presence reached each account: they hear of
    /// its PEP as local contacts do.
    remote: DashMap<BareJid, HashSet<FullJid>>,
    observers: std::sync::OnceLock<Vec<Arc<dyn PepObserver>>>,
    epoch: super::super::CacheEpoch,
}

#[async_trait]
impl super::super::Reload for Pep {
    async fn reload(&self, config: &rookery_core::config::Config) -> Vec<&'static str> {
        self.options.set(config.modules.pubsub.clone());
        // Accounts' services in memory take the new limits too.
        let services: Vec<(BareJid, Arc<Mutex<PubSub>>)> = self
            .services
            .iter()
            .map(|s| (s.key().clone(), s.value().clone()))
            .collect();
        for (owner, service) in services {
            service.lock().await.policy = self.policy(&owner);
        }
        Vec::new()
    }
}

impl Pep {
    pub fn new(options: PubSubOptions) -> Pep {
        Pep {
            options: super::super::Live::new(options),
            services: DashMap::new(),
            caps: caps::Registry::default(),
            remote: DashMap::new(),
            observers: std::sync::OnceLock::new(),
            epoch: Default::default(),
        }
    }

    fn policy(&self, owner: &BareJid) -> Policy {
        Policy {
            jid: owner.to_string(),
            defaults: node_defaults(),
            max_items: self.options.get().max_items,
            auto_create: true,
            expose_publisher: None,
            max_payload_bytes: self.options.get().max_payload_bytes,
            max_nodes: 1_000,
        }
    }

    /// `owner`'s PEP service, loaded from storage on first use.
    pub async fn service(&self, server: &Server, owner: &BareJid) -> Arc<Mutex<PubSub>> {
        if let Some(s) = self.services.get(owner) {
            return s.clone();
        }
        let loaded = self
            .epoch
            .load(|| super::load(server, owner.as_str(), self.policy(owner)))
            .await;
        self.services
            .entry(owner.clone())
            .or_insert_with(|| Arc::new(Mutex::new(loaded)))
            .clone()
    }

    /// A remote resource sent `user` unavailable presence.
    fn remote_gone(&self, user: &BareJid, who: &FullJid) {
        if let Some(mut set) = self.remote.get_mut(user) {
            set.remove(who);
        }
        self.remote.remove_if(user, |_, set| set.is_empty());
        if !self.remote.iter().any(|e| e.value().contains(who)) {
            self.caps.forget(who);
        }
    }

    /// Forgets `owner`'s PEP service while the account is offline and nobody uses it: it is
    /// in storage (only the last item of a node that does not persist items is lost).
    fn release(&self, server: &Server, owner: &BareJid) {
        let online = server
            .sessions
            .resources(owner)
            .iter()
            .any(|s| s.is_available());
        if !online {
            self.services
                .remove_if(owner, |_, svc| Arc::strong_count(svc) == 1);
        }
    }

    /// How `owner`'s PEP sees `who`.
    async fn requester(&self, server: &Server, owner: &BareJid, who: &Jid) -> Requester {
        let bare = who.to_bare();
        let is_owner = &bare == owner;
        let relation = if is_owner {
            Relation {
                subscribed: true,
                groups: vec![],
            }
        } else {
            super::relation(server, &[owner.to_string()], &bare).await
        };
        Requester {
            jid: who.to_string(),
            admin: is_owner,
            may_create: is_owner,
            relation,
        }
    }

    /// Runs an operation on `owner`'s PEP as the owner, persisting and notifying, without
    /// telling the observers: how the avatar and bookmark synchronisation write.
    pub async fn run(
        &self,
        server: &Server,
        owner: &BareJid,
        op: Op,
    ) -> Result<Option<Element>, StanzaError> {
        let who = Jid::from(owner.clone());
        let req = self.requester(server, owner, &who).await;
        let svc = self.service(server, owner).await;
        let out = {
            let mut s = svc.lock().await;
            let out = s.handle(op, &req, chrono::Utc::now().timestamp_micros());
            super::persist(server, owner.as_str(), &out.changes).await;
            if !out.changes.is_empty() {
                server.changed_user_data(CACHE_TOPIC, owner);
            }
            out
        };
        self.deliver(server, owner, &out).await;
        super::send_notices(server, owner.as_str(), out.later).await;
        out.reply
    }

    /// Publishes `payload` as item `id` of `owner`'s `node`, creating the node with `options`
    /// when it does not exist (an existing node keeps its configuration).
    pub async fn publish(
        &self,
        server: &Server,
        owner: &BareJid,
        node: &str,
        id: &str,
        payload: Element,
        options: &[(&str, &str)],
    ) -> Result<(), StanzaError> {
        let exists = self.has_node(server, owner, node).await;
        let op = Op::Publish {
            node: node.to_string(),
            item: Some(super::protocol::NewItem {
                id: Some(id.to_string()),
                payload: vec![payload],
            }),
            options: (!exists).then(|| publish_options(options)),
        };
        self.run(server, owner, op).await.map(|_| ())
    }

    pub async fn retract(&self, server: &Server, owner: &BareJid, node: &str, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let op = Op::Retract {
            node: node.to_string(),
            ids,
            notify: None,
        };
        if let Err(e) = self.run(server, owner, op).await {
            tracing::debug!(?e, node, "sync retract failed");
        }
    }

    pub async fn has_node(&self, server: &Server, owner: &BareJid, node: &str) -> bool {
        let svc = self.service(server, owner).await;
        let s = svc.lock().await;
        s.nodes.contains_key(node)
    }

    /// The items of `owner`'s `node`, oldest first (empty when there is no such node).
    pub async fn items(
        &self,
        server: &Server,
        owner: &BareJid,
        node: &str,
    ) -> Vec<super::node::Item> {
        let svc = self.service(server, owner).await;
        let s = svc.lock().await;
        s.nodes
            .get(node)
            .map(|n| n.items.clone())
            .unwrap_or_default()
    }

    /// Sends what an operation caused (before its reply): subscribers' notifications, then the
    /// implicit ones to resources whose capabilities ask for them.
    async fn deliver(&self, server: &Server, owner: &BareJid, out: &Outcome) {
        super::send_notices(server, owner.as_str(), out.notices.clone()).await;
        if out.broadcasts.is_empty() {
            return;
        }
        let (_, roster) = server.storage.roster(owner).await.unwrap_or_default();
        let audience = self.audience(server, owner, &roster);
        for b in &out.broadcasts {
            for (to, session, rel) in &audience {
                let bare = to.to_bare();
                let is_owner = &bare == owner;
                let known = self.caps.interests_of(to);
                let wants = known.as_ref().is_some_and(|i| i.contains(&b.node));
                // A session on another cluster node whose capabilities only that node knows:
                // it decides.
                let ask_its_node =
                    known.is_none() && session.as_ref().and_then(|s| s.remote_sink()).is_some();
                let told = b
                    .notified
                    .iter()
                    .any(|j| j == to.as_str() || j == bare.as_str());
                if !(wants || ask_its_node)
                    || told
                    || b.access.check(bare.as_str(), is_owner, rel).is_err()
                {
                    continue;
                }
                let n = super::engine::Notice {
                    to: to.to_string(),
                    payload: b.event.clone(),
                    kind: b.kind,
                    delay: None,
                    show: vec![],
                };
                let m = super::message(owner.as_str(), &n);
                match session {
                    Some(s) if ask_its_node => {
                        if let Some(r) = s.remote_sink() {
                            r.deliver_if(&s.jid, s.id, m, DELIVERY_FILTER, &b.node);
                        }
                    }
                    Some(s) => {
                        crate::router::send_to_session(server, s, m);
                    }
                    None => crate::router::deliver(server, m).await,
                }
            }
        }
    }

    /// Available resources that may hear of `owner`'s PEP: its own, those of local contacts
    /// subscribed to its presence, and those of remote contacts that sent it presence; with
    /// their session when local, and their standing.
    fn audience(
        &self,
        server: &Server,
        owner: &BareJid,
        roster: &[RosterItem],
    ) -> Vec<(FullJid, Option<SessionHandle>, Relation)> {
        let mut out: Vec<(FullJid, Option<SessionHandle>, Relation)> = server
            .sessions
            .resources(owner)
            .into_iter()
            .filter(|s| s.is_available())
            .map(|s| (s.jid.clone(), Some(s), Relation::default()))
            .collect();
        let remote = self
            .remote
            .get(owner)
            .map(|r| r.clone())
            .unwrap_or_default();
        for item in roster.iter().filter(|i| i.subscription.has_from()) {
            let Ok(contact) = BareJid::new(&item.jid) else {
                continue;
            };
            let rel = Relation {
                subscribed: true,
                groups: item.groups.clone(),
            };
            if server.config.is_local_host(contact.domain().as_str()) {
                for s in server.sessions.resources(&contact) {
                    if s.is_available() {
                        out.push((s.jid.clone(), Some(s), rel.clone()));
                    }
                }
            } else {
                for r in remote.iter().filter(|r| r.to_bare() == contact) {
                    out.push((r.clone(), None, rel.clone()));
                }
            }
        }
        out
    }

    async fn observe(&self, server: &Server, owner: &BareJid, broadcasts: &[Broadcast]) {
        let Some(observers) = self.observers.get() else {
            return;
        };
        for b in broadcasts {
            for o in observers {
                o.changed(server, self, owner, b).await;
            }
        }
    }

    /// `owner`'s PEP learned that resource `who` wants `interests`: sends the last items of the
    /// nodes it did not want before (XEP-0163 §4.3.2).
    async fn interested(
        &self,
        server: &Server,
        owner: &BareJid,
        who: &FullJid,
        interests: &Interests,
    ) {
        let new = self.caps.newly_interested(who, owner, interests);
        if new.is_empty() {
            return;
        }
        let req = self.requester(server, owner, &Jid::from(who.clone())).await;
        let svc = self.service(server, owner).await;
        let notices: Vec<_> = {
            let s = svc.lock().await;
            new.iter()
                .filter(|n| {
                    s.nodes
                        .get(*n)
                        .is_some_and(|node| s.may_access(node, &req).is_ok())
                })
                .filter_map(|n| s.last_item_notice(n, who.as_str(), true))
                .collect()
        };
        drop(svc);
        self.release(server, owner);
        super::send_notices(server, owner.as_str(), notices).await;
    }

    /// Accounts (other than the resource's own) whose PEP hears of a resource only through this
    /// server, because it sends them no presence: contacts it is subscribed to one way.
    async fn one_way_contacts(&self, server: &Server, user: &BareJid) -> Vec<BareJid> {
        let (_, roster) = server.storage.roster(user).await.unwrap_or_default();
        roster
            .iter()
            .filter(|i| i.subscription.has_to() && !i.subscription.has_from())
            .filter_map(|i| BareJid::new(&i.jid).ok())
            .filter(|j| server.config.is_local_host(j.domain().as_str()))
            .collect()
    }

    async fn subscribed_to(server: &Server, owner: &BareJid, contact: &BareJid) -> bool {
        matches!(
            server.storage.roster_item(owner, contact.as_str()).await,
            Ok(Some(i)) if i.subscription.has_from()
        )
    }

    /// Asks `who` what its capabilities mean, on behalf of `asker` (XEP-0115 §6.2). The id is
    /// fixed and answers are matched by their node, as deployed servers do.
    async fn query_caps(server: &Server, asker: &BareJid, who: &FullJid, claim: &Claim) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "disco")
            .with_attr("from", asker.to_string())
            .with_attr("to", who.to_string())
            .with_child(Element::new("query", super::INFO).with_attr("node", claim.query_node()));
        crate::router::deliver(server, iq).await;
    }

    /// A resource of `user`'s with known interests: its own PEP and those of one-way contacts
    /// may owe it last items.
    async fn resource_interested(&self, server: &Server, who: &FullJid, interests: &Interests) {
        let user = who.to_bare();
        self.interested(server, &user, who, interests).await;
        for contact in self.one_way_contacts(server, &user).await {
            if Self::subscribed_to(server, &contact, &user).await {
                self.interested(server, &contact, who, interests).await;
            }
        }
    }
}

impl Module for Pep {
    fn name(&self) -> &'static str {
        "pep"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.delivery_filters.insert(DELIVERY_FILTER, self.clone());
        reg.caches.push(self.clone());
        reg.reload(self.clone());
        let _ = self.observers.set(vec![
            Arc::new(super::avatar::Avatars) as Arc<dyn PepObserver>,
            Arc::new(super::bookmarks::Bookmarks),
        ]);
        reg.iq(NS, "pubsub", On::Account, self.clone());
        reg.iq(OWNER, "pubsub", On::Account, self.clone());
        reg.account_identity("pubsub", "pep");
        reg.account_feature(NS);
        for f in super::FEATURES.iter().chain(&[
            "auto-create",
            "auto-subscribe",
            "filtered-notifications",
            "presence-notifications",
        ]) {
            reg.account_feature(&format!("{NS}#{f}"));
        }
        reg.account_feature(super::bookmarks::COMPAT);
        reg.account_feature(super::bookmarks::COMPAT_PEP);
        reg.stanza_hook(self.clone());
        reg.hook(self.clone());
        reg.disco(self);
    }
}

#[async_trait]
impl IqHandler for Pep {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        let Target::Account(owner) = &req.target else {
            return Err(StanzaError::service_unavailable());
        };
        let op = Op::parse(req.payload(), req.kind == IqType::Set)?;
        let who = self.requester(server, owner, &req.from).await;
        let svc = self.service(server, owner).await;
        let out = {
            let mut s = svc.lock().await;
            let out = s.handle(op, &who, chrono::Utc::now().timestamp_micros());
            super::persist(server, owner.as_str(), &out.changes).await;
            if !out.changes.is_empty() {
                server.changed_user_data(CACHE_TOPIC, owner);
            }
            out
        };
        drop(svc);
        // Notifications first, then the answer, then the last item for a new subscriber.
        self.deliver(server, owner, &out).await;
        let result = match out.reply.clone() {
            Ok(payload) => {
                let mut reply = crate::router::result_for(&req.stanza);
                if let Some(p) = payload {
                    reply.push_child(p);
                }
                crate::router::deliver_to_full(server, reply);
                super::send_notices(server, owner.as_str(), out.later).await;
                self.observe(server, owner, &out.broadcasts).await;
                Ok(IqReply::Sent)
            }
            Err(e) => Err(e),
        };
        self.release(server, owner);
        result
    }
}

#[async_trait]
impl StanzaHook for Pep {
    fn events(&self) -> Events {
        Events::PRESENCE_OUTBOUND | Events::PRESENCE_INBOUND | Events::IQ_RESPONSE
    }

    async fn presence_outbound(
        &self,
        server: &Server,
        origin: &SessionHandle,
        el: &mut Element,
        directed: bool,
    ) {
        super::avatar::annotate(server, self, origin, el).await;
        if directed {
            return;
        }
        let claim = Claim::from_presence(el);
        let changed = self.caps.claim(&origin.jid, claim.clone());
        let Some(claim) = claim else { return };
        match self.caps.interests_of(&origin.jid) {
            Some(i) => self.resource_interested(server, &origin.jid, &i).await,
            None if changed => Self::query_caps(server, &origin.bare(), &origin.jid, &claim).await,
            None => {}
        }
    }

    async fn presence_inbound(&self, server: &Server, user: &BareJid, el: &Element) {
        let Some(from) = el
            .attr("from")
            .and_then(|f| FullJid::new(f).ok())
            .filter(|f| &f.to_bare() != user)
        else {
            return;
        };
        let local = server.config.is_local_host(from.domain().as_str());
        if el.attr("type") == Some("unavailable") {
            // Local resources are forgotten when their session says so.
            if !local {
                self.remote_gone(user, &from);
            }
            return;
        }
        if !Self::subscribed_to(server, user, &from.to_bare()).await {
            return;
        }
        let claim = Claim::from_presence(el);
        if !local {
            // This server learns a remote resource's capabilities only from its presence.
            self.remote
                .entry(user.clone())
                .or_default()
                .insert(from.clone());
            self.caps.claim(&from, claim.clone());
        }
        let Some(claim) = claim else {
            return;
        };
        let known = match self.caps.claim_of(&from) {
            Some(c) if c == claim => self.caps.interests_of(&from),
            _ => None,
        };
        match known {
            Some(i) => self.interested(server, user, &from, &i).await,
            // Known to the server as a whole, or not: ask on this account's behalf too, as the
            // account's own PEP would across servers.
            None => Self::query_caps(server, user, &from, &claim).await,
        }
    }

    async fn iq_response(&self, server: &Server, user: &BareJid, el: &Element) -> bool {
        let Some(from) = el.attr("from").and_then(|f| FullJid::new(f).ok()) else {
            return false;
        };
        let query = el
            .get_child("query", super::INFO)
            .filter(|q| q.attr("node").is_some_and(|n| n.contains('#')));
        if el.attr("id") != Some("disco") || (el.attr("type") == Some("result") && query.is_none())
        {
            return false;
        }
        let Some(query) = query.filter(|_| el.attr("type") == Some("result")) else {
            return true;
        };
        let Some(interests) = self.caps.answer(&from, query) else {
            return true;
        };
        if &from.to_bare() == user {
            self.resource_interested(server, &from, &interests).await;
        } else if Self::subscribed_to(server, user, &from.to_bare()).await {
            self.interested(server, user, &from, &interests).await;
        }
        true
    }
}

#[async_trait]
impl SessionHook for Pep {
    async fn on_unavailable(
        &self,
        server: &Server,
        session: &SessionHandle,
        _status: Option<String>,
    ) {
        self.caps.forget(&session.jid);
        self.release(server, &session.bare());
    }

    async fn on_user_deleted(&self, server: &Server, user: &BareJid) {
        self.services.remove(user);
        if let Err(e) = server.storage.pubsub_delete_service(user.as_str()).await {
            tracing::error!(%e, "deleting PEP nodes failed");
        }
    }

    async fn on_user_data(&self, server: &Server, user: &BareJid, store: &str, el: &Element) {
        match store {
            "vcard" => super::avatar::vcard_stored(server, self, user, el).await,
            "private" => super::bookmarks::private_stored(server, self, user, el).await,
            _ => {}
        }
    }
}

#[async_trait]
impl DiscoProvider for Pep {
    async fn items(
        &self,
        server: &Server,
        user: &BareJid,
        node: Option<&str>,
        from: &Jid,
    ) -> Option<Vec<Element>> {
        let req = self.requester(server, user, from).await;
        let svc = self.service(server, user).await;
        let item = |n: Option<String>, name: Option<String>| {
            Element::new("item", super::ITEMS)
                .with_attr("jid", user.to_string())
                .with_opt_attr("node", n)
                .with_opt_attr("name", name)
        };
        let found = {
            let s = svc.lock().await;
            match node {
                None => Some(
                    s.visible_nodes(&req)
                        .into_iter()
                        .map(|(n, title)| item(Some(n), (!title.is_empty()).then_some(title)))
                        .collect(),
                ),
                Some(n) => s.nodes.get(n).map(|node| {
                    if s.may_access(node, &req).is_err() {
                        return vec![];
                    }
                    node.items
                        .iter()
                        .map(|i| item(None, Some(i.id.clone())))
                        .collect()
                }),
            }
        };
        drop(svc);
        self.release(server, user);
        found
    }

    async fn info(
        &self,
        server: &Server,
        user: &BareJid,
        node: &str,
        from: &Jid,
    ) -> Option<Result<Vec<Element>, StanzaError>> {
        let req = self.requester(server, user, from).await;
        let svc = self.service(server, user).await;
        let found = {
            let s = svc.lock().await;
            s.nodes.get(node).map(|n| {
                if s.may_access(n, &req).is_err() {
                    return Err(StanzaError::item_not_found());
                }
                Ok(vec![
                    Element::new("identity", super::INFO)
                        .with_attr("category", "pubsub")
                        .with_attr("type", "leaf"),
                    super::feature(NS),
                    n.meta_data(),
                ])
            })
        };
        drop(svc);
        self.release(server, user);
        found
    }
}

/// Node options the synchronisation code uses when it creates nodes.
pub fn publish_options(pairs: &[(&str, &str)]) -> super::protocol::Values {
    let mut v = super::protocol::Values::new();
    v.insert(
        "FORM_TYPE".to_string(),
        vec![node::PUBLISH_OPTIONS.to_string()],
    );
    for (k, val) in pairs {
        v.insert(k.to_string(), vec![val.to_string()]);
    }
    v
}
