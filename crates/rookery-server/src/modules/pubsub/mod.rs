//! XEP-0060 Publish-Subscribe service at `pubsub.<host>`: routes requests to the engine, keeps
//! nodes in storage, delivers notifications, answers discovery. The rules live in `engine`; PEP
//! (XEP-0163) reuses them per account in `pep`.

pub mod avatar;
pub mod bookmarks;
pub mod caps;
pub mod engine;
pub mod node;
pub mod pep;
pub mod protocol;

use super::{Module, Registry, Service};
use crate::Server;
use async_trait::async_trait;
use engine::{Change, Notice, Outcome, Policy, PubSub, Requester};
use node::{Relation, NS, OWNER};
use protocol::{Authorization, Op};
use rookery_core::config::PubSubOptions;
use rookery_core::stanza::{self, StanzaError};
use rookery_core::{ns, BareJid, Element, Jid};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

pub const INFO: &str = "http://jabber.org/protocol/disco#info";
pub const ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// pubsub#… features both the service and PEP support (XEP-0060 §10).
pub const FEATURES: &[&str] = &[
    "access-authorize",
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "config-node",
    "config-node-max",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "instant-nodes",
    "item-ids",
    "last-published",
    "manage-subscriptions",
    "member-affiliation",
    "modify-affiliations",
    "outcast-affiliation",
    "persistent-items",
    "publish",
    "publish-only-affiliation",
    "publish-options",
    "publisher-affiliation",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
    "subscription-notifications",
    "subscription-options",
    "rsm",
];

pub fn feature(var: &str) -> Element {
    Element::new("feature", INFO).with_attr("var", var)
}

/// Loads a whole service from storage.
pub async fn load(server: &Server, service: &str, policy: Policy) -> PubSub {
    match server.storage.pubsub_load(service).await {
        Ok(nodes) => PubSub::restore(policy, nodes),
        Err(e) => {
            tracing::error!(%e, service, "loading pubsub nodes failed");
            PubSub::new(policy)
        }
    }
}

/// Writes what an operation changed. Called with the service locked, so writes keep their order.
pub async fn persist(server: &Server, service: &str, changes: &[Change]) {
    let st = &server.storage;
    for c in changes {
        let r = match c {
            Change::Config(n, cfg) => {
                let json = serde_json::to_string(cfg).expect("config serialises");
                st.pubsub_put_node(service, n, &json).await
            }
            Change::Deleted(n) => st.pubsub_delete_node(service, n).await,
            Change::Affiliation(n, jid, a) => {
                st.pubsub_set_affiliation(service, n, jid, a.map(|a| a.as_str()))
                    .await
            }
            Change::Subscription(n, jid, s) => {
                let stored = s.as_ref().map(|s| engine::stored_subscription(jid, s));
                st.pubsub_set_subscription(service, n, jid, stored.as_ref())
                    .await
            }
            Change::Item(n, item, keep) => {
                st.pubsub_put_item(service, n, &engine::stored_item(item), *keep)
                    .await
            }
            Change::Retracted(n, ids) => st.pubsub_delete_items(service, n, ids).await,
            Change::Purged(n) => st.pubsub_purge(service, n).await,
        };
        if let Err(e) = r {
            tracing::error!(%e, service, "saving pubsub change failed");
        }
    }
}

fn stamp(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The notification message for `n`, from the service `from`.
pub fn message(from: &str, n: &Notice) -> Element {
    let mut m = Element::new("message", ns::CLIENT)
        .with_attr("from", from)
        .with_attr("to", n.to.clone())
        .with_attr("type", n.kind.as_str())
        .with_attr("id", format!("{:016x}", rand::random::<u64>()))
        .with_child(n.payload.clone());
    if let Some(t) = n.delay {
        m.push_child(stanza::delay(from, &stamp(t)));
    }
    m
}

/// Sends notifications, honouring subscribers' pubsub#show-values for local sessions.
pub async fn send_notices(server: &Server, from: &str, notices: Vec<Notice>) {
    for n in notices {
        let m = message(from, &n);
        if n.show.is_empty() {
            crate::router::deliver(server, m).await;
            continue;
        }
        let Ok(to) = Jid::new(&n.to) else { continue };
        for s in server.sessions.resources(&to.to_bare()) {
            if (to.is_bare() || s.jid.as_str() == to.as_str()) && s.is_available() {
                let show = s
                    .state
                    .lock()
                    .unwrap()
                    .last
                    .as_ref()
                    .and_then(|p| p.child_text("show", ns::CLIENT))
                    .unwrap_or_else(|| "online".into());
                if n.show.contains(&show) {
                    let mut copy = m.clone();
                    copy.set_attr("to", s.jid.to_string());
                    crate::router::send_to_session(server, &s, copy);
                }
            }
        }
    }
}

/// `requester`'s standing with `owners` (local accounts), from their rosters.
pub async fn relation(server: &Server, owners: &[String], requester: &BareJid) -> Relation {
    let mut rel = Relation::default();
    for o in owners {
        let Ok(owner) = BareJid::new(o) else { continue };
        if &owner == requester {
            rel.subscribed = true;
            continue;
        }
        if let Ok(Some(item)) = server.storage.roster_item(&owner, requester.as_str()).await {
            rel.subscribed |= item.subscription.has_from();
            rel.groups.extend(item.groups);
        }
    }
    rel
}

fn reply(el: &Element, payload: Option<Element>) -> Element {
    let mut r = stanza::iq_result(el);
    if let Some(p) = payload {
        r.push_child(p);
    }
    r
}

pub struct PubSubModule {
    pub options: super::Live<PubSubOptions>,
    /// Domain → its service.
    services: HashMap<String, Arc<Mutex<PubSub>>>,
    /// In a cluster: the services this node was home to at the last membership change.
    home_here: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl PubSubModule {
    pub fn new(hosts: &[String], options: PubSubOptions) -> PubSubModule {
        let services = hosts
            .iter()
            .map(|h| {
                let domain = format!("{}.{}", options.subdomain, h);
                let policy = service_policy(&domain, &options);
                (domain, Arc::new(Mutex::new(PubSub::new(policy))))
            })
            .collect();
        PubSubModule {
            options: super::Live::new(options),
            services,
            home_here: Default::default(),
        }
    }

    fn requester(&self, server: &Server, from: &Jid) -> Requester {
        let bare = from.to_bare();
        let admin = server.config.admins.iter().any(|a| a == bare.as_str());
        let local = server.config.is_local_host(bare.domain().as_str()) && bare.node().is_some();
        let may_create = match self.options.get().node_creation.as_str() {
            "anyone" => true,
            "admins" => admin,
            _ => local || admin,
        };
        Requester {
            jid: from.to_string(),
            admin,
            may_create,
            relation: Relation::default(),
        }
    }
}

impl Module for PubSubModule {
    fn name(&self) -> &'static str {
        "pubsub"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        for d in self.services.keys() {
            reg.service(d, self.clone());
        }
        reg.reload(self.clone());
        reg.hook(self);
    }
}

/// The rules of a pubsub domain's service from the options.
fn service_policy(domain: &str, options: &PubSubOptions) -> Policy {
    Policy {
        jid: domain.to_string(),
        defaults: node::NodeConfig {
            max_items: Some(options.default_max_items.clamp(1, options.max_items)),
            ..node::NodeConfig::default()
        },
        max_items: options.max_items,
        auto_create: false,
        expose_publisher: options.expose_publisher.then_some(true),
        max_payload_bytes: options.max_payload_bytes,
        max_nodes: 100_000,
    }
}

#[async_trait]
impl super::Reload for PubSubModule {
    async fn reload(&self, config: &rookery_core::config::Config) -> Vec<&'static str> {
        let mut new = config.modules.pubsub.clone();
        let mut restart = Vec::new();
        let old = self.options.get();
        if new.subdomain != old.subdomain {
            restart.push("modules.pubsub.subdomain");
            new.subdomain = old.subdomain.clone();
        }
        // New defaults and limits apply to nodes made and items published from now on.
        for (domain, service) in &self.services {
            service.lock().await.policy = service_policy(domain, &new);
        }
        self.options.set(new);
        restart
    }
}

#[async_trait]
impl super::SessionHook for PubSubModule {
    async fn on_user_deleted(&self, server: &Server, user: &BareJid) {
        for (domain, svc) in &self.services {
            let mut s = svc.lock().await;
            let changes = s.remove_entity(user.as_str());
            persist(server, domain, &changes).await;
        }
    }
}

#[async_trait]
impl Service for PubSubModule {
    fn home_key(&self, el: &Element) -> Option<String> {
        Some(Jid::new(el.attr("to")?).ok()?.domain().to_string())
    }

    async fn rehome(&self, server: &Server) {
        let Some(cluster) = &server.cluster else {
            return;
        };
        for (domain, svc) in &self.services {
            let home = cluster.is_home(domain);
            let was = {
                let mut h = self.home_here.lock().unwrap();
                if home {
                    !h.insert(domain.clone())
                } else {
                    h.remove(domain);
                    false
                }
            };
            // Newly home: another node served it meanwhile, so what is here may be stale.
            if home && !was {
                let mut s = svc.lock().await;
                let policy = s.policy.clone();
                *s = load(server, domain, policy).await;
            }
        }
    }

    async fn start(&self, server: &Server) {
        for (domain, svc) in &self.services {
            let mut s = svc.lock().await;
            let policy = s.policy.clone();
            *s = load(server, domain, policy).await;
        }
    }

    async fn handle(&self, server: &Server, el: Element) {
        let Some(to) = el.attr("to").and_then(|t| Jid::new(t).ok()) else {
            return;
        };
        let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
            return;
        };
        let domain = to.domain().to_string();
        let Some(svc) = self.services.get(&domain) else {
            return;
        };
        if to.node().is_some() || to.resource().is_some() {
            crate::router::bounce(server, &el, StanzaError::service_unavailable());
            return;
        }
        match (el.name(), el.attr("type")) {
            ("iq", Some("get" | "set")) => {}
            ("message", t) if t != Some("error") => {
                // An owner's answer to a subscription authorization request (§8.6).
                if let Some(a) = Authorization::parse(&el) {
                    let req = self.requester(server, &from);
                    let mut s = svc.lock().await;
                    match s.authorize(&a, &req) {
                        Ok(out) => self.finish(server, &domain, &el, out, false).await,
                        Err(e) => crate::router::bounce(server, &el, e),
                    }
                } else {
                    crate::router::bounce(server, &el, StanzaError::service_unavailable());
                }
                return;
            }
            _ => return,
        }
        let Some(payload) = el.children().next().cloned() else {
            return;
        };
        let set = el.attr("type") == Some("set");
        let mut req = self.requester(server, &from);
        let mut s = svc.lock().await;
        let answer = match (payload.ns(), payload.name()) {
            (INFO, "query") if !set => self.disco_info(&s, &payload, &req),
            (ITEMS, "query") if !set => self.disco_items(&s, &payload, &req, &domain),
            ("urn:xmpp:ping", "ping") if !set => Ok(None),
            (NS | OWNER, "pubsub") => {
                let op = match Op::parse(&payload, set) {
                    Ok(op) => op,
                    Err(e) => {
                        drop(s);
                        crate::router::bounce(server, &el, e);
                        return;
                    }
                };
                // Presence and roster access models need the owners' rosters.
                if let Some(n) = op.node().and_then(|n| s.nodes.get(n)) {
                    if matches!(
                        n.config.access_model,
                        node::AccessModel::Presence | node::AccessModel::Roster
                    ) {
                        req.relation = relation(server, &n.owners(), &from.to_bare()).await;
                    }
                }
                let out = s.handle(op, &req, chrono::Utc::now().timestamp_micros());
                self.finish(server, &domain, &el, out, true).await;
                return;
            }
            _ => Err(StanzaError::service_unavailable()),
        };
        drop(s);
        match answer {
            Ok(p) => crate::router::deliver(server, reply(&el, p)).await,
            Err(e) => crate::router::bounce(server, &el, e),
        }
    }
}

impl PubSubModule {
    /// Persists, notifies, replies (when `el` is an IQ), in the order clients expect.
    async fn finish(&self, server: &Server, domain: &str, el: &Element, out: Outcome, iq: bool) {
        persist(server, domain, &out.changes).await;
        send_notices(server, domain, out.notices).await;
        if iq {
            match out.reply {
                Ok(p) => crate::router::deliver(server, reply(el, p)).await,
                Err(e) => crate::router::bounce(server, el, e),
            }
        }
        send_notices(server, domain, out.later).await;
    }

    fn disco_info(
        &self,
        s: &PubSub,
        q: &Element,
        req: &Requester,
    ) -> Result<Option<Element>, StanzaError> {
        let mut out = Element::new("query", INFO).with_opt_attr("node", q.attr("node"));
        match q.attr("node") {
            None => {
                out.push_child(
                    Element::new("identity", INFO)
                        .with_attr("category", "pubsub")
                        .with_attr("type", "service")
                        .with_attr("name", self.options.get().name.clone()),
                );
                for f in [INFO, ITEMS, NS, "urn:xmpp:ping"] {
                    out.push_child(feature(f));
                }
                for f in FEATURES {
                    out.push_child(feature(&format!("{NS}#{f}")));
                }
            }
            Some(n) => {
                let node = s.nodes.get(n).ok_or_else(StanzaError::item_not_found)?;
                s.may_access(node, req)
                    .map_err(|_| StanzaError::item_not_found())?;
                out.push_child(
                    Element::new("identity", INFO)
                        .with_attr("category", "pubsub")
                        .with_attr("type", "leaf"),
                );
                out.push_child(feature(NS));
                out.push_child(node.meta_data());
            }
        }
        Ok(Some(out))
    }

    fn disco_items(
        &self,
        s: &PubSub,
        q: &Element,
        req: &Requester,
        domain: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let mut out = Element::new("query", ITEMS).with_opt_attr("node", q.attr("node"));
        match q.attr("node") {
            None => {
                for (name, title) in s.visible_nodes(req) {
                    out.push_child(
                        Element::new("item", ITEMS)
                            .with_attr("jid", domain)
                            .with_attr("node", name)
                            .with_opt_attr("name", (!title.is_empty()).then_some(title)),
                    );
                }
            }
            Some(n) => {
                let node = s.nodes.get(n).ok_or_else(StanzaError::item_not_found)?;
                s.may_access(node, req)?;
                for i in &node.items {
                    out.push_child(
                        Element::new("item", ITEMS)
                            .with_attr("jid", domain)
                            .with_attr("name", i.id.clone()),
                    );
                }
            }
        }
        Ok(Some(out))
    }
}
