//! XEP-0060 Publish-Subscribe: the rules of one pubsub service (a pubsub domain, or an account's
//! PEP), without I/O. Each operation returns an [`Outcome`]: the reply, the notifications to send
//! and the changes to persist; the adapters deliver and store them.

use super::node::*;
use super::protocol::{Op, Rsm, Values, RSM};
use crate::forms;
use rookery_core::stanza::StanzaError;
use rookery_core::storage::{StoredItem, StoredNode, StoredSubscription};
use rookery_core::Element;
use std::collections::BTreeMap;

/// How a service behaves, decided by its adapter and configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The service's address: notifications come from it.
    pub jid: String,
    /// Configuration of new nodes.
    pub defaults: NodeConfig,
    /// The most items a node may keep ("max").
    pub max_items: usize,
    /// Publishing to a missing node creates it (PEP, XEP-0163 §3).
    pub auto_create: bool,
    /// Some(_) decides whether items carry their publisher, over pubsub#itemreply.
    pub expose_publisher: Option<bool>,
    /// Largest item payload, in bytes of XML.
    pub max_payload_bytes: usize,
    /// Most nodes the service holds.
    pub max_nodes: usize,
}

/// Who is asking, as the adapter established it.
#[derive(Clone, Debug, Default)]
pub struct Requester {
    /// The sender's JID (full for a client).
    pub jid: String,
    /// Owner of every node (a service admin; the account itself on its PEP).
    pub admin: bool,
    /// May create nodes.
    pub may_create: bool,
    /// Standing with the node's owners (presence and roster access models).
    pub relation: Relation,
}

impl Requester {
    pub fn bare(&self) -> &str {
        bare_of(&self.jid)
    }
}

/// A notification: `<message from=service to=… type=…>{payload}</message>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub to: String,
    pub payload: Element,
    pub kind: NotificationType,
    /// When sending an old item (last published item): its time, for a XEP-0203 stamp.
    pub delay: Option<i64>,
    /// The subscriber wants notifications only in these presence states (empty: any).
    pub show: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Published(Item),
    Retracted(Vec<String>),
    Purged,
    Deleted,
    Configured,
}

/// A node event as a whole: what PEP sends to contacts whose capabilities ask for it (XEP-0163
/// §4.3), and what observers (avatars, bookmarks) react to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    pub node: String,
    pub event: Element,
    pub kind: NotificationType,
    pub access: Access,
    pub what: EventKind,
    /// JIDs the engine already notified as subscribers.
    pub notified: Vec<String>,
}

/// What to persist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Config(String, NodeConfig),
    Deleted(String),
    Affiliation(String, String, Option<Affiliation>),
    Subscription(String, String, Option<Subscription>),
    /// An item and how many the node keeps.
    Item(String, Item, usize),
    Retracted(String, Vec<String>),
    Purged(String),
}

#[derive(Debug)]
pub struct Outcome {
    pub reply: Result<Option<Element>, StanzaError>,
    /// Sent before the reply.
    pub notices: Vec<Notice>,
    /// Sent after the reply (the last item for a new subscriber).
    pub later: Vec<Notice>,
    pub broadcasts: Vec<Broadcast>,
    pub changes: Vec<Change>,
}

impl Outcome {
    fn reply(payload: Option<Element>) -> Outcome {
        Outcome {
            reply: Ok(payload),
            notices: vec![],
            later: vec![],
            broadcasts: vec![],
            changes: vec![],
        }
    }

    fn error(e: StanzaError) -> Outcome {
        Outcome {
            reply: Err(e),
            ..Outcome::reply(None)
        }
    }
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn pubsub(ns: &str, child: Element) -> Element {
    Element::new("pubsub", ns).with_child(child)
}

fn no_node() -> StanzaError {
    StanzaError::item_not_found()
}

pub struct PubSub {
    pub policy: Policy,
    pub nodes: BTreeMap<String, Node>,
}

impl PubSub {
    pub fn new(policy: Policy) -> PubSub {
        PubSub {
            policy,
            nodes: BTreeMap::new(),
        }
    }

    /// Rebuilds a service from storage; unreadable parts are skipped.
    pub fn restore(policy: Policy, stored: Vec<StoredNode>) -> PubSub {
        let mut s = PubSub::new(policy);
        for n in stored {
            let config = serde_json::from_str(&n.config).unwrap_or_default();
            let mut node = Node::new(&n.node, config);
            for (jid, a) in n.affiliations {
                if let Some(a) = Affiliation::parse(&a) {
                    node.affiliations.insert(jid, a);
                }
            }
            for sub in n.subscriptions {
                if let Some(state) = SubState::parse(&sub.state) {
                    node.subscriptions.insert(
                        sub.jid,
                        Subscription {
                            state,
                            subid: sub.subid,
                            options: serde_json::from_str(&sub.options).unwrap_or_default(),
                        },
                    );
                }
            }
            for i in n.items {
                node.items.push(Item {
                    id: i.id,
                    publisher: i.publisher,
                    timestamp: i.timestamp,
                    payload: (!i.payload.is_empty())
                        .then(|| Element::parse(&i.payload).ok())
                        .flatten(),
                });
            }
            s.nodes.insert(n.node, node);
        }
        s
    }

    fn affiliation(&self, node: &Node, req: &Requester) -> Affiliation {
        if req.admin {
            Affiliation::Owner
        } else {
            node.affiliation(req.bare())
        }
    }

    /// Whether `req` may see the node's items (§4.5, §6.5).
    pub fn may_access(&self, node: &Node, req: &Requester) -> Result<(), StanzaError> {
        if node.config.access_model == AccessModel::Authorize
            && node.subscribed(req.bare())
            && node.affiliation(req.bare()) != Affiliation::Outcast
        {
            return Ok(());
        }
        node.access().check(req.bare(), req.admin, &req.relation)
    }

    pub fn handle(&mut self, op: Op, req: &Requester, now: i64) -> Outcome {
        let result = match op {
            Op::Create { node, config } => self.create(node, config, req),
            Op::Subscribe { node, jid, options } => self.subscribe(&node, &jid, options, req),
            Op::Unsubscribe { node, jid } => self.unsubscribe(&node, &jid, req),
            Op::Options { node, jid, form } => self.options(&node, &jid, form, req),
            Op::Items {
                node,
                max_items,
                ids,
                rsm,
            } => self.items(&node, max_items, &ids, rsm, req),
            Op::Publish {
                node,
                item,
                options,
            } => self.publish(&node, item, options, req, now),
            Op::Retract { node, ids, notify } => self.retract(&node, &ids, notify, req),
            Op::MySubscriptions { node } => self.my_subscriptions(node.as_deref(), req),
            Op::MyAffiliations { node } => self.my_affiliations(node.as_deref(), req),
            Op::DefaultOptions => Ok(Outcome::reply(Some(pubsub(
                NS,
                Element::new("default", NS).with_child(SubOptions::default().form()),
            )))),
            Op::DefaultConfig => Ok(Outcome::reply(Some(pubsub(
                OWNER,
                Element::new("default", OWNER)
                    .with_child(self.policy.defaults.form(self.policy.max_items)),
            )))),
            Op::Configure { node, form } => self.configure(&node, form, req),
            Op::Delete { node, redirect } => self.delete(&node, redirect, req),
            Op::Purge { node } => self.purge(&node, req),
            Op::Subscriptions { node, set } => self.owner_subscriptions(&node, set, req),
            Op::Affiliations { node, set } => self.owner_affiliations(&node, set, req),
        };
        result.unwrap_or_else(Outcome::error)
    }

    fn owned(&self, name: &str, req: &Requester) -> Result<&Node, StanzaError> {
        let node = self.nodes.get(name).ok_or_else(no_node)?;
        if self.affiliation(node, req) != Affiliation::Owner {
            return Err(StanzaError::forbidden());
        }
        Ok(node)
    }

    fn create(
        &mut self,
        name: Option<String>,
        config: Option<Values>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        if !req.may_create {
            return Err(StanzaError::forbidden());
        }
        let instant = name.is_none();
        let name = name.unwrap_or_else(new_id);
        if self.nodes.contains_key(&name) {
            return Err(StanzaError::conflict());
        }
        self.room_for_a_node()?;
        let mut cfg = self.policy.defaults.clone();
        if let Some(v) = &config {
            if let Some(t) = v.get("FORM_TYPE").and_then(|t| t.first()) {
                if t != NODE_CONFIG {
                    return Err(StanzaError::bad_request().with_text("wrong FORM_TYPE"));
                }
            }
            // Leaf nodes only (§9 collection nodes are not supported).
            if v.get("pubsub#node_type")
                .is_some_and(|t| t.iter().any(|t| t == "collection"))
            {
                return Err(unsupported("collections"));
            }
            cfg.apply(v, self.policy.max_items)?;
        }
        let mut out = Outcome::reply(instant.then(|| {
            pubsub(
                NS,
                Element::new("create", NS).with_attr("node", name.clone()),
            )
        }));
        self.create_node(&name, cfg, req.bare(), &mut out);
        Ok(out)
    }

    fn room_for_a_node(&self) -> Result<(), StanzaError> {
        if self.nodes.len() >= self.policy.max_nodes {
            return Err(StanzaError::resource_constraint().with_text("Too many nodes"));
        }
        Ok(())
    }

    fn create_node(&mut self, name: &str, cfg: NodeConfig, owner: &str, out: &mut Outcome) {
        let mut node = Node::new(name, cfg.clone());
        node.affiliations
            .insert(owner.to_string(), Affiliation::Owner);
        self.nodes.insert(name.to_string(), node);
        out.changes.push(Change::Config(name.to_string(), cfg));
        out.changes.push(Change::Affiliation(
            name.to_string(),
            owner.to_string(),
            Some(Affiliation::Owner),
        ));
    }

    fn subscribe(
        &mut self,
        name: &str,
        jid: &str,
        options: Option<Values>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let node = self.nodes.get(name).ok_or_else(no_node)?;
        if bare_of(jid) != req.bare() && !req.admin {
            return Err(pubsub_error(StanzaError::bad_request(), "invalid-jid"));
        }
        let aff = self.affiliation(node, req);
        let mut state = SubState::Subscribed;
        if node.config.access_model == AccessModel::Authorize && !aff.whitelisted() {
            if matches!(aff, Affiliation::Outcast | Affiliation::PublishOnly) {
                return Err(StanzaError::forbidden());
            }
            if !node.subscribed(req.bare()) {
                state = SubState::Pending;
            }
        } else {
            self.may_access(node, req)?;
        }
        let mut opts = node
            .subscriptions
            .get(jid)
            .map(|s| s.options.clone())
            .unwrap_or_default();
        if let Some(v) = &options {
            opts.apply(v)?;
        }
        let sub = Subscription {
            state,
            subid: node
                .subscriptions
                .get(jid)
                .map(|s| s.subid.clone())
                .unwrap_or_else(new_id),
            options: opts,
        };
        let owners = node.owners();
        let node = self.nodes.get_mut(name).expect("checked");
        node.subscriptions.insert(jid.to_string(), sub.clone());
        let mut out = Outcome::reply(Some(pubsub(
            NS,
            Element::new("subscription", NS)
                .with_attr("node", name)
                .with_attr("jid", jid)
                .with_attr("subscription", state.as_str()),
        )));
        out.changes.push(Change::Subscription(
            name.to_string(),
            jid.to_string(),
            Some(sub),
        ));
        if state == SubState::Pending {
            // §8.6: ask the owners.
            for o in owners {
                out.notices.push(Notice {
                    to: o,
                    payload: authorization_form(name, jid),
                    kind: NotificationType::Normal,
                    delay: None,
                    show: vec![],
                });
            }
        } else if let Some(n) = self.last_item_notice(name, jid, false) {
            out.later.push(n);
        }
        Ok(out)
    }

    fn unsubscribe(
        &mut self,
        name: &str,
        jid: &str,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let node = self.nodes.get_mut(name).ok_or_else(no_node)?;
        if bare_of(jid) != req.bare()
            && !req.admin
            && node.affiliation(req.bare()) != Affiliation::Owner
        {
            return Err(StanzaError::forbidden());
        }
        if node.subscriptions.remove(jid).is_none() {
            return Err(pubsub_error(
                StanzaError::unexpected_request()
                    .with_type(rookery_core::stanza::ErrorType::Cancel),
                "not-subscribed",
            ));
        }
        let mut out = Outcome::reply(Some(pubsub(
            NS,
            Element::new("subscription", NS)
                .with_attr("node", name)
                .with_attr("jid", jid)
                .with_attr("subscription", "none"),
        )));
        out.changes.push(Change::Subscription(
            name.to_string(),
            jid.to_string(),
            None,
        ));
        Ok(out)
    }

    fn options(
        &mut self,
        name: &str,
        jid: &str,
        form: Option<Values>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let node = self.nodes.get_mut(name).ok_or_else(no_node)?;
        if bare_of(jid) != req.bare()
            && !req.admin
            && node.affiliation(req.bare()) != Affiliation::Owner
        {
            return Err(StanzaError::forbidden());
        }
        let sub = node.subscriptions.get_mut(jid).ok_or_else(|| {
            pubsub_error(
                StanzaError::unexpected_request()
                    .with_type(rookery_core::stanza::ErrorType::Modify),
                "not-subscribed",
            )
        })?;
        match form {
            None => Ok(Outcome::reply(Some(pubsub(
                NS,
                Element::new("options", NS)
                    .with_attr("node", name)
                    .with_attr("jid", jid)
                    .with_child(sub.options.form()),
            )))),
            Some(v) => {
                sub.options.apply(&v)?;
                let sub = sub.clone();
                let mut out = Outcome::reply(None);
                out.changes.push(Change::Subscription(
                    name.to_string(),
                    jid.to_string(),
                    Some(sub),
                ));
                Ok(out)
            }
        }
    }

    fn items(
        &self,
        name: &str,
        max_items: Option<usize>,
        ids: &[String],
        rsm: Option<Rsm>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let node = self.nodes.get(name).ok_or_else(no_node)?;
        self.may_access(node, req)?;
        let all: Vec<&Item> = node.items.iter().collect();
        let mut set = None;
        let chosen: Vec<&Item> = if !ids.is_empty() {
            // In the order asked for.
            ids.iter()
                .filter_map(|id| all.iter().find(|i| &i.id == id).copied())
                .collect()
        } else if let Some(r) = rsm {
            let (page, s) = page(&all, &r)?;
            set = Some(s);
            page
        } else {
            let n = max_items.unwrap_or(all.len()).min(all.len());
            all[all.len() - n..].to_vec()
        };
        let expose = self.policy.expose_publisher;
        let mut items = Element::new("items", NS).with_attr("node", name);
        for i in chosen {
            items.push_child(node.item_element(i, NS, true, expose));
        }
        let mut p = pubsub(NS, items);
        if let Some(s) = set {
            p.push_child(s);
        }
        Ok(Outcome::reply(Some(p)))
    }

    fn publish(
        &mut self,
        name: &str,
        item: Option<super::protocol::NewItem>,
        options: Option<Values>,
        req: &Requester,
        now: i64,
    ) -> Result<Outcome, StanzaError> {
        let mut out = Outcome::reply(None);
        if let Some(v) = &options {
            if let Some(t) = v.get("FORM_TYPE").and_then(|t| t.first()) {
                if t != PUBLISH_OPTIONS {
                    return Err(StanzaError::bad_request().with_text("wrong FORM_TYPE"));
                }
            }
        }
        match self.nodes.get(name) {
            Some(node) => {
                if let Some(v) = &options {
                    node.config.check_preconditions(v)?;
                }
            }
            None if self.policy.auto_create && req.may_create => {
                self.room_for_a_node()?;
                let mut cfg = self.policy.defaults.clone();
                if let Some(v) = &options {
                    let mut v = v.clone();
                    v.remove("FORM_TYPE");
                    cfg.apply(&v, self.policy.max_items).map_err(|_| {
                        pubsub_error(
                            StanzaError::conflict().with_text("Invalid publish-options"),
                            "precondition-not-met",
                        )
                    })?;
                }
                self.create_node(name, cfg, req.bare(), &mut out);
            }
            None => return Err(no_node()),
        }
        let limit = self.policy.max_items;
        let max_payload = self.policy.max_payload_bytes;
        let expose = self.policy.expose_publisher;
        let node = self.nodes.get(name).expect("exists or created");
        let aff = self.affiliation(node, req);
        let allowed = aff.publishes()
            || (aff != Affiliation::Outcast
                && match node.config.publish_model {
                    PublishModel::Open => true,
                    PublishModel::Subscribers => node.subscribed(req.bare()),
                    PublishModel::Publishers => false,
                });
        if !allowed {
            return Err(StanzaError::forbidden());
        }
        let needs_item = node.config.persist_items || node.config.deliver_payloads;
        let item = match item {
            None if needs_item => {
                return Err(pubsub_error(StanzaError::bad_request(), "item-required"))
            }
            None => None,
            Some(i) => {
                if i.payload.len() > 1 {
                    return Err(pubsub_error(StanzaError::bad_request(), "invalid-payload"));
                }
                if i.payload.is_empty() && needs_item {
                    return Err(pubsub_error(StanzaError::bad_request(), "payload-required"));
                }
                if let Some(p) = i.payload.first() {
                    if p.to_xml().len() > max_payload {
                        return Err(pubsub_error(
                            StanzaError::not_acceptable(),
                            "payload-too-big",
                        ));
                    }
                }
                Some(Item {
                    id: i.id.unwrap_or_else(new_id),
                    publisher: req.bare().to_string(),
                    timestamp: now,
                    payload: i.payload.into_iter().next(),
                })
            }
        };
        let node = self.nodes.get_mut(name).expect("exists");
        let mut published = Element::new("publish", NS).with_attr("node", name);
        let Some(item) = item else {
            // A notification-only node: nothing stored, an empty event.
            let event = Element::new("event", EVENT)
                .with_child(Element::new("items", EVENT).with_attr("node", name));
            broadcast(node, event, EventKind::Configured, &mut out);
            out.reply = Ok(Some(pubsub(NS, published)));
            return Ok(out);
        };
        published.push_child(Element::new("item", NS).with_attr("id", item.id.clone()));
        node.items.retain(|i| i.id != item.id);
        node.items.push(item.clone());
        let keep = node.keep(limit);
        let extra = node.items.len().saturating_sub(keep);
        node.items.drain(..extra);
        if node.config.persist_items {
            out.changes
                .push(Change::Item(name.to_string(), item.clone(), keep));
        }
        let event = Element::new("event", EVENT).with_child(
            Element::new("items", EVENT)
                .with_attr("node", name)
                .with_child(node.item_element(&item, EVENT, node.config.deliver_payloads, expose)),
        );
        broadcast(node, event, EventKind::Published(item), &mut out);
        out.reply = Ok(Some(pubsub(NS, published)));
        Ok(out)
    }

    fn retract(
        &mut self,
        name: &str,
        ids: &[String],
        notify: Option<bool>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let node = self.nodes.get(name).ok_or_else(no_node)?;
        if ids.is_empty() {
            return Err(pubsub_error(StanzaError::bad_request(), "item-required"));
        }
        let aff = self.affiliation(node, req);
        for id in ids {
            let item = node
                .items
                .iter()
                .find(|i| &i.id == id)
                .ok_or_else(StanzaError::item_not_found)?;
            let allowed = match aff {
                Affiliation::Owner | Affiliation::Publisher => true,
                Affiliation::PublishOnly => item.publisher == req.bare(),
                _ => false,
            };
            if !allowed {
                return Err(StanzaError::forbidden());
            }
        }
        let node = self.nodes.get_mut(name).expect("checked");
        node.items.retain(|i| !ids.contains(&i.id));
        let mut out = Outcome::reply(None);
        out.changes
            .push(Change::Retracted(name.to_string(), ids.to_vec()));
        if notify.unwrap_or(node.config.notify_retract) {
            let mut items = Element::new("items", EVENT).with_attr("node", name);
            for id in ids {
                items.push_child(Element::new("retract", EVENT).with_attr("id", id.clone()));
            }
            let event = Element::new("event", EVENT).with_child(items);
            broadcast(node, event, EventKind::Retracted(ids.to_vec()), &mut out);
        }
        Ok(out)
    }

    fn my_subscriptions(
        &self,
        only: Option<&str>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        if let Some(n) = only {
            self.nodes.get(n).ok_or_else(no_node)?;
        }
        let mut list = Element::new("subscriptions", NS).with_opt_attr("node", only);
        for (name, node) in &self.nodes {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            for (jid, s) in &node.subscriptions {
                if bare_of(jid) == req.bare() {
                    list.push_child(
                        Element::new("subscription", NS)
                            .with_attr("node", name.clone())
                            .with_attr("jid", jid.clone())
                            .with_attr("subscription", s.state.as_str())
                            .with_attr("subid", s.subid.clone()),
                    );
                }
            }
        }
        Ok(Outcome::reply(Some(pubsub(NS, list))))
    }

    fn my_affiliations(&self, only: Option<&str>, req: &Requester) -> Result<Outcome, StanzaError> {
        if let Some(n) = only {
            self.nodes.get(n).ok_or_else(no_node)?;
        }
        let mut list = Element::new("affiliations", NS).with_opt_attr("node", only);
        for (name, node) in &self.nodes {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let a = self.affiliation(node, req);
            if a != Affiliation::None {
                list.push_child(
                    Element::new("affiliation", NS)
                        .with_attr("node", name.clone())
                        .with_attr("affiliation", a.as_str()),
                );
            }
        }
        Ok(Outcome::reply(Some(pubsub(NS, list))))
    }

    fn configure(
        &mut self,
        name: &str,
        form: Option<Values>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let limit = self.policy.max_items;
        let node = self.owned(name, req)?;
        let Some(values) = form else {
            return Ok(Outcome::reply(Some(pubsub(
                OWNER,
                Element::new("configure", OWNER)
                    .with_attr("node", name)
                    .with_child(node.config.form(limit)),
            ))));
        };
        if values.is_empty() {
            // A cancelled form.
            return Ok(Outcome::reply(None));
        }
        if let Some(t) = values.get("FORM_TYPE").and_then(|t| t.first()) {
            if t != NODE_CONFIG {
                return Err(StanzaError::bad_request().with_text("wrong FORM_TYPE"));
            }
        }
        let mut cfg = node.config.clone();
        cfg.apply(&values, limit)?;
        let node = self.nodes.get_mut(name).expect("checked");
        let was_persistent = node.config.persist_items;
        node.config = cfg.clone();
        let mut out = Outcome::reply(None);
        out.changes.push(Change::Config(name.to_string(), cfg));
        let keep = node.keep(limit);
        let extra = node.items.len().saturating_sub(keep);
        let dropped: Vec<String> = node.items.drain(..extra).map(|i| i.id).collect();
        if was_persistent && !node.config.persist_items {
            out.changes.push(Change::Purged(name.to_string()));
        } else if !dropped.is_empty() {
            out.changes
                .push(Change::Retracted(name.to_string(), dropped));
        }
        if node.config.notify_config {
            let mut c = Element::new("configuration", EVENT).with_attr("node", name);
            if node.config.deliver_payloads {
                c.push_child(node.meta_data());
            }
            let event = Element::new("event", EVENT).with_child(c);
            broadcast(node, event, EventKind::Configured, &mut out);
        }
        Ok(out)
    }

    fn delete(
        &mut self,
        name: &str,
        redirect: Option<String>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        self.owned(name, req)?;
        let node = self.nodes.remove(name).expect("checked");
        let mut out = Outcome::reply(None);
        out.changes.push(Change::Deleted(name.to_string()));
        if node.config.notify_delete {
            let mut d = Element::new("delete", EVENT).with_attr("node", name);
            if let Some(uri) = redirect {
                d.push_child(Element::new("redirect", EVENT).with_attr("uri", uri));
            }
            let event = Element::new("event", EVENT).with_child(d);
            broadcast(&node, event, EventKind::Deleted, &mut out);
        }
        Ok(out)
    }

    fn purge(&mut self, name: &str, req: &Requester) -> Result<Outcome, StanzaError> {
        self.owned(name, req)?;
        let node = self.nodes.get_mut(name).expect("checked");
        node.items.clear();
        let mut out = Outcome::reply(None);
        out.changes.push(Change::Purged(name.to_string()));
        if node.config.notify_retract {
            let event = Element::new("event", EVENT)
                .with_child(Element::new("purge", EVENT).with_attr("node", name));
            broadcast(node, event, EventKind::Purged, &mut out);
        }
        Ok(out)
    }

    fn owner_subscriptions(
        &mut self,
        name: &str,
        set: Option<Vec<(String, String)>>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let node = self.owned(name, req)?;
        let Some(set) = set else {
            let mut list = Element::new("subscriptions", OWNER).with_attr("node", name);
            for (jid, s) in &node.subscriptions {
                list.push_child(
                    Element::new("subscription", OWNER)
                        .with_attr("jid", jid.clone())
                        .with_attr("subscription", s.state.as_str())
                        .with_attr("subid", s.subid.clone()),
                );
            }
            return Ok(Outcome::reply(Some(pubsub(OWNER, list))));
        };
        let mut parsed = Vec::new();
        for (jid, state) in set {
            let jid = rookery_core::Jid::new(&jid)
                .map_err(|_| StanzaError::jid_malformed())?
                .to_string();
            let state = match state.as_str() {
                "none" => None,
                s => Some(SubState::parse(s).ok_or_else(StanzaError::bad_request)?),
            };
            parsed.push((jid, state));
        }
        let mut out = Outcome::reply(None);
        for (jid, state) in parsed {
            self.set_subscription(name, &jid, state, &mut out);
        }
        Ok(out)
    }

    /// An owner's decision on a subscription; the subscriber hears of it (§8.8.2).
    fn set_subscription(
        &mut self,
        name: &str,
        jid: &str,
        state: Option<SubState>,
        out: &mut Outcome,
    ) {
        let node = self.nodes.get_mut(name).expect("checked by caller");
        let before = node.subscriptions.get(jid).map(|s| s.state);
        if before == state {
            return;
        }
        let sub = state.map(|state| {
            let mut s = node
                .subscriptions
                .get(jid)
                .cloned()
                .unwrap_or(Subscription {
                    state,
                    subid: new_id(),
                    options: SubOptions::default(),
                });
            s.state = state;
            s
        });
        match &sub {
            Some(s) => {
                node.subscriptions.insert(jid.to_string(), s.clone());
            }
            None => {
                node.subscriptions.remove(jid);
            }
        }
        out.changes
            .push(Change::Subscription(name.to_string(), jid.to_string(), sub));
        out.notices.push(Notice {
            to: jid.to_string(),
            payload: Element::new("event", EVENT).with_child(
                Element::new("subscription", EVENT)
                    .with_attr("node", name)
                    .with_attr("jid", jid)
                    .with_attr("subscription", state.map_or("none", |s| s.as_str())),
            ),
            kind: node.config.notification_type,
            delay: None,
            show: vec![],
        });
        if state == Some(SubState::Subscribed) {
            if let Some(n) = self.last_item_notice(name, jid, false) {
                out.later.push(n);
            }
        }
    }

    fn owner_affiliations(
        &mut self,
        name: &str,
        set: Option<Vec<(String, String)>>,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let node = self.owned(name, req)?;
        let Some(set) = set else {
            let mut list = Element::new("affiliations", OWNER).with_attr("node", name);
            for (jid, a) in &node.affiliations {
                list.push_child(
                    Element::new("affiliation", OWNER)
                        .with_attr("affiliation", a.as_str())
                        .with_attr("jid", jid.clone()),
                );
            }
            return Ok(Outcome::reply(Some(pubsub(OWNER, list))));
        };
        let mut parsed = Vec::new();
        for (jid, a) in set {
            let jid = rookery_core::Jid::new(&jid)
                .map_err(|_| StanzaError::jid_malformed())?
                .to_bare()
                .to_string();
            let a = Affiliation::parse(&a)
                .ok_or_else(|| StanzaError::bad_request().with_text("unknown affiliation"))?;
            parsed.push((jid, a));
        }
        let node = self.nodes.get_mut(name).expect("checked");
        let mut out = Outcome::reply(None);
        for (jid, a) in parsed {
            let new = (a != Affiliation::None).then_some(a);
            let old = node.affiliations.get(&jid).copied();
            if old == new {
                continue;
            }
            match new {
                Some(a) => node.affiliations.insert(jid.clone(), a),
                None => node.affiliations.remove(&jid),
            };
            out.changes
                .push(Change::Affiliation(name.to_string(), jid.clone(), new));
            if a == Affiliation::Outcast {
                // Outcasts lose their subscriptions (§8.9.2).
                let gone: Vec<String> = node
                    .subscriptions
                    .keys()
                    .filter(|j| bare_of(j) == jid)
                    .cloned()
                    .collect();
                for j in gone {
                    node.subscriptions.remove(&j);
                    out.changes
                        .push(Change::Subscription(name.to_string(), j, None));
                }
            }
        }
        Ok(out)
    }

    /// An owner answered a subscription authorization request (§8.6).
    pub fn authorize(
        &mut self,
        a: &super::protocol::Authorization,
        req: &Requester,
    ) -> Result<Outcome, StanzaError> {
        let node = self.owned(&a.node, req)?;
        if node.subscriptions.get(&a.jid).map(|s| s.state) != Some(SubState::Pending) {
            return Err(pubsub_error(
                StanzaError::unexpected_request(),
                "not-subscribed",
            ));
        }
        let mut out = Outcome::reply(None);
        let state = a.allow.then_some(SubState::Subscribed);
        self.set_subscription(&a.node, &a.jid, state, &mut out);
        Ok(out)
    }

    /// The last published item of `name` for `to`, when the node's send_last_published_item
    /// says so (`on_presence`: for a contact coming online, XEP-0163 §4.3.2).
    pub fn last_item_notice(&self, name: &str, to: &str, on_presence: bool) -> Option<Notice> {
        let node = self.nodes.get(name)?;
        let wanted = match node.config.send_last_published_item {
            SendLast::Never => false,
            SendLast::OnSub => !on_presence,
            SendLast::OnSubAndPresence => true,
        };
        if !wanted || !node.config.deliver_notifications {
            return None;
        }
        let item = node.last_item()?;
        Some(Notice {
            to: to.to_string(),
            payload: Element::new("event", EVENT).with_child(
                Element::new("items", EVENT)
                    .with_attr("node", name)
                    .with_child(node.item_element(
                        item,
                        EVENT,
                        node.config.deliver_payloads,
                        self.policy.expose_publisher,
                    )),
            ),
            kind: node.config.notification_type,
            delay: Some(item.timestamp),
            show: vec![],
        })
    }

    /// Nodes `req` may see, for disco#items: (node, title).
    pub fn visible_nodes(&self, req: &Requester) -> Vec<(String, String)> {
        self.nodes
            .values()
            .filter(|n| self.may_access(n, req).is_ok())
            .map(|n| (n.name.clone(), n.config.title.clone()))
            .collect()
    }

    /// Forgets an entity everywhere (its account was deleted).
    pub fn remove_entity(&mut self, bare: &str) -> Vec<Change> {
        let mut changes = Vec::new();
        for (name, node) in self.nodes.iter_mut() {
            if node.affiliations.remove(bare).is_some() {
                changes.push(Change::Affiliation(name.clone(), bare.to_string(), None));
            }
            let gone: Vec<String> = node
                .subscriptions
                .keys()
                .filter(|j| bare_of(j) == bare)
                .cloned()
                .collect();
            for j in gone {
                node.subscriptions.remove(&j);
                changes.push(Change::Subscription(name.clone(), j, None));
            }
        }
        changes
    }
}

/// Queues `event` for the node's subscribers and as a broadcast for the adapter.
fn broadcast(node: &Node, event: Element, what: EventKind, out: &mut Outcome) {
    if !node.config.deliver_notifications && !matches!(what, EventKind::Deleted) {
        return;
    }
    let mut notified = Vec::new();
    for (jid, s) in &node.subscriptions {
        if s.state != SubState::Subscribed || !s.options.deliver {
            continue;
        }
        // Subscribers who lost access since (a new outcast, a node made a whitelist) hear
        // nothing; the presence and roster models were checked when they subscribed.
        let aff = node.affiliation(bare_of(jid));
        if matches!(aff, Affiliation::Outcast | Affiliation::PublishOnly)
            || (node.config.access_model == AccessModel::Whitelist && !aff.whitelisted())
        {
            continue;
        }
        notified.push(jid.clone());
        out.notices.push(Notice {
            to: jid.clone(),
            payload: event.clone(),
            kind: node.config.notification_type,
            delay: None,
            show: s.options.show_values.clone(),
        });
    }
    out.broadcasts.push(Broadcast {
        node: node.name.clone(),
        event,
        kind: node.config.notification_type,
        access: node.access(),
        what,
        notified,
    });
}

/// The subscription authorization form sent to owners (§8.6).
fn authorization_form(node: &str, jid: &str) -> Element {
    forms::form(
        "form",
        Some("PubSub subscriber request"),
        &[
            forms::Field::hidden("FORM_TYPE", SUBSCRIBE_AUTHORIZATION),
            forms::Field::text("pubsub#node", "Node ID", node),
            forms::Field::new(
                "pubsub#subscriber_jid",
                "jid-single",
                "Subscriber Address",
                vec![jid.to_string()],
            ),
            forms::Field::boolean(
                "pubsub#allow",
                "Allow this JID to subscribe to this pubsub node?",
                false,
            ),
        ],
    )
}

/// XEP-0059 paging over a node's items (oldest first).
fn page<'a>(all: &[&'a Item], r: &Rsm) -> Result<(Vec<&'a Item>, Element), StanzaError> {
    let max = r.max.unwrap_or(all.len());
    let pos = |id: &str| {
        all.iter()
            .position(|i| i.id == id)
            .ok_or_else(StanzaError::item_not_found)
    };
    let (start, end) = if let Some(a) = &r.after {
        let s = pos(a)? + 1;
        (s, (s + max).min(all.len()))
    } else if let Some(b) = &r.before {
        let e = if b.is_empty() { all.len() } else { pos(b)? };
        (e.saturating_sub(max), e)
    } else {
        let s = r.index.unwrap_or(0).min(all.len());
        (s, (s + max).min(all.len()))
    };
    let items = all[start..end].to_vec();
    let mut set = Element::new("set", RSM);
    if let (Some(f), Some(l)) = (items.first(), items.last()) {
        set.push_child(
            Element::new("first", RSM)
                .with_attr("index", start.to_string())
                .with_text(f.id.clone()),
        );
        set.push_child(Element::new("last", RSM).with_text(l.id.clone()));
    }
    set.push_child(Element::new("count", RSM).with_text(all.len().to_string()));
    Ok((items, set))
}

/// Storage forms of the engine's types.
pub fn stored_subscription(jid: &str, s: &Subscription) -> StoredSubscription {
    StoredSubscription {
        jid: jid.to_string(),
        subid: s.subid.clone(),
        state: s.state.as_str().to_string(),
        options: serde_json::to_string(&s.options).expect("options serialise"),
    }
}

pub fn stored_item(i: &Item) -> StoredItem {
    StoredItem {
        id: i.id.clone(),
        publisher: i.publisher.clone(),
        timestamp: i.timestamp,
        payload: i.payload.as_ref().map(|p| p.to_xml()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::NewItem;
    use super::*;

    const SVC: &str = "pubsub.x";

    fn service() -> PubSub {
        PubSub::new(Policy {
            jid: SVC.into(),
            defaults: NodeConfig::default(),
            max_items: 256,
            auto_create: false,
            expose_publisher: Some(true),
            max_payload_bytes: 1000,
            max_nodes: 3,
        })
    }

    fn pep(owner: &str) -> PubSub {
        PubSub::new(Policy {
            jid: owner.into(),
            defaults: NodeConfig {
                max_items: Some(1),
                access_model: AccessModel::Presence,
                send_last_published_item: SendLast::OnSubAndPresence,
                ..NodeConfig::default()
            },
            max_items: 256,
            auto_create: true,
            expose_publisher: None,
            max_payload_bytes: 1000,
            max_nodes: 3,
        })
    }

    fn who(jid: &str) -> Requester {
        Requester {
            jid: jid.into(),
            admin: false,
            may_create: true,
            relation: Relation::default(),
        }
    }

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    fn payload(text: &str) -> Element {
        Element::new("entry", "urn:x").with_text(text)
    }

    fn publish(id: Option<&str>, text: &str) -> Op {
        Op::Publish {
            node: "n".into(),
            item: Some(NewItem {
                id: id.map(str::to_string),
                payload: vec![payload(text)],
            }),
            options: None,
        }
    }

    fn subscribe(jid: &str) -> Op {
        Op::Subscribe {
            node: "n".into(),
            jid: jid.into(),
            options: None,
        }
    }

    fn create(s: &mut PubSub, owner: &str, config: &[(&str, &str)]) {
        let out = s.handle(
            Op::Create {
                node: Some("n".into()),
                config: (!config.is_empty()).then(|| values(config)),
            },
            &who(owner),
            0,
        );
        out.reply.unwrap();
    }

    fn condition(out: &Outcome) -> (&'static str, Option<String>) {
        let e = out.reply.as_ref().unwrap_err();
        (e.condition, e.extra.as_ref().map(|x| x.name().to_string()))
    }

    fn item_ids(out: &Outcome) -> Vec<String> {
        let p = out.reply.as_ref().unwrap().as_ref().unwrap();
        p.get_child("items", NS)
            .unwrap()
            .children()
            .map(|i| i.attr("id").unwrap().to_string())
            .collect()
    }

    fn items(max: Option<usize>) -> Op {
        Op::Items {
            node: "n".into(),
            max_items: max,
            ids: vec![],
            rsm: None,
        }
    }

    #[test]
    fn node_lifecycle_with_notifications() {
        let mut s = service();
        create(&mut s, "owner@x", &[]);
        let again = s.handle(
            Op::Create {
                node: Some("n".into()),
                config: None,
            },
            &who("owner@x"),
            0,
        );
        assert_eq!(condition(&again).0, "conflict");
        let out = s.handle(subscribe("sub@x/r"), &who("sub@x/r"), 0);
        assert_eq!(
            out.reply
                .unwrap()
                .unwrap()
                .get_child("subscription", NS)
                .unwrap()
                .attr("subscription"),
            Some("subscribed")
        );
        // Publish: the subscriber hears of it, with the publisher (exposed on this service).
        let out = s.handle(publish(Some("i1"), "hello"), &who("owner@x/r"), 5);
        let reply = out.reply.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(
            reply
                .get_child("publish", NS)
                .unwrap()
                .get_child("item", NS)
                .unwrap()
                .attr("id"),
            Some("i1")
        );
        assert_eq!(out.notices.len(), 1);
        let n = &out.notices[0];
        assert_eq!(n.to, "sub@x/r");
        let item = n
            .payload
            .get_child("items", EVENT)
            .unwrap()
            .get_child("item", EVENT)
            .unwrap();
        assert_eq!(item.attr("publisher"), Some("owner@x"));
        assert_eq!(item.children().next().unwrap().text(), "hello");
        assert!(matches!(&out.changes[0], Change::Item(_, i, 20) if i.id == "i1"));
        // A server-generated id when none is given.
        let out = s.handle(publish(None, "second"), &who("owner@x"), 6);
        let id = out
            .reply
            .unwrap()
            .unwrap()
            .get_child("publish", NS)
            .unwrap()
            .get_child("item", NS)
            .unwrap()
            .attr("id")
            .unwrap()
            .to_string();
        assert!(!id.is_empty());
        // Retract notifies (notify_retract is on by default).
        let out = s.handle(
            Op::Retract {
                node: "n".into(),
                ids: vec!["i1".into()],
                notify: None,
            },
            &who("owner@x"),
            0,
        );
        out.reply.unwrap();
        assert!(out.notices[0]
            .payload
            .get_child("items", EVENT)
            .unwrap()
            .has_child("retract", EVENT));
        let out = s.handle(
            Op::Retract {
                node: "n".into(),
                ids: vec!["i1".into()],
                notify: None,
            },
            &who("owner@x"),
            0,
        );
        assert_eq!(condition(&out).0, "item-not-found");
        // Purge and delete are the owner's, and notify.
        let out = s.handle(Op::Purge { node: "n".into() }, &who("sub@x"), 0);
        assert_eq!(condition(&out).0, "forbidden");
        let out = s.handle(Op::Purge { node: "n".into() }, &who("owner@x"), 0);
        assert!(out.notices[0].payload.has_child("purge", EVENT));
        assert!(s.nodes["n"].items.is_empty());
        let out = s.handle(
            Op::Delete {
                node: "n".into(),
                redirect: Some("xmpp:pubsub.x?;node=m".into()),
            },
            &who("owner@x"),
            0,
        );
        let d = out.notices[0].payload.get_child("delete", EVENT).unwrap();
        assert!(d.has_child("redirect", EVENT));
        assert_eq!(out.changes, vec![Change::Deleted("n".into())]);
        assert!(s.nodes.is_empty());
    }

    #[test]
    fn creation_rights_and_instant_nodes() {
        let mut s = service();
        let mut nobody = who("n@x");
        nobody.may_create = false;
        let out = s.handle(
            Op::Create {
                node: Some("n".into()),
                config: None,
            },
            &nobody,
            0,
        );
        assert_eq!(condition(&out).0, "forbidden");
        let out = s.handle(
            Op::Create {
                node: None,
                config: None,
            },
            &who("o@x"),
            0,
        );
        let name = out
            .reply
            .unwrap()
            .unwrap()
            .get_child("create", NS)
            .unwrap()
            .attr("node")
            .unwrap()
            .to_string();
        assert!(s.nodes.contains_key(&name));
        assert_eq!(s.nodes[&name].affiliation("o@x"), Affiliation::Owner);
        // Create with a configuration form; a bad one is refused.
        let out = s.handle(
            Op::Create {
                node: Some("c".into()),
                config: Some(values(&[("pubsub#max_items", "oops")])),
            },
            &who("o@x"),
            0,
        );
        assert_eq!(condition(&out).0, "not-acceptable");
        create(
            &mut s,
            "o@x",
            &[("pubsub#title", "T"), ("pubsub#access_model", "whitelist")],
        );
        assert_eq!(s.nodes["n"].config.title, "T");
        // The service's node limit (3 in these tests).
        let make = |name: &str| Op::Create {
            node: Some(name.into()),
            config: None,
        };
        s.handle(make("m"), &who("o@x"), 0).reply.unwrap();
        let out = s.handle(make("z"), &who("o@x"), 0);
        assert_eq!(condition(&out).0, "resource-constraint");
    }

    #[test]
    fn max_items_keeps_the_newest_and_items_are_retrievable() {
        let mut s = service();
        create(&mut s, "o@x", &[("pubsub#max_items", "3")]);
        for i in 1..=5 {
            s.handle(publish(Some(&i.to_string()), "x"), &who("o@x"), i);
        }
        // Republishing an id makes it the newest.
        s.handle(publish(Some("3"), "again"), &who("o@x"), 9);
        let out = s.handle(items(None), &who("reader@x"), 0);
        assert_eq!(item_ids(&out), vec!["4", "5", "3"]);
        let out = s.handle(items(Some(2)), &who("reader@x"), 0);
        assert_eq!(item_ids(&out), vec!["5", "3"]);
        let out = s.handle(
            Op::Items {
                node: "n".into(),
                max_items: None,
                ids: vec!["3".into(), "4".into(), "nope".into()],
                rsm: None,
            },
            &who("reader@x"),
            0,
        );
        assert_eq!(item_ids(&out), vec!["3", "4"]);
        // RSM: pages, with the total count.
        let page = |rsm: Rsm, s: &mut PubSub| {
            let out = s.handle(
                Op::Items {
                    node: "n".into(),
                    max_items: None,
                    ids: vec![],
                    rsm: Some(rsm),
                },
                &who("reader@x"),
                0,
            );
            let set = out
                .reply
                .as_ref()
                .unwrap()
                .as_ref()
                .unwrap()
                .get_child("set", RSM)
                .unwrap()
                .clone();
            (item_ids(&out), set.child_text("count", RSM).unwrap())
        };
        assert_eq!(
            page(
                Rsm {
                    max: Some(2),
                    ..Rsm::default()
                },
                &mut s
            ),
            (vec!["4".into(), "5".into()], "3".into())
        );
        assert_eq!(
            page(
                Rsm {
                    max: Some(2),
                    after: Some("5".into()),
                    ..Rsm::default()
                },
                &mut s
            )
            .0,
            vec!["3"]
        );
        assert_eq!(
            page(
                Rsm {
                    max: Some(1),
                    before: Some(String::new()),
                    ..Rsm::default()
                },
                &mut s
            )
            .0,
            vec!["3"]
        );
        // Lowering max_items drops the oldest, in storage too.
        let out = s.handle(
            Op::Configure {
                node: "n".into(),
                form: Some(values(&[("pubsub#max_items", "1")])),
            },
            &who("o@x"),
            0,
        );
        out.reply.unwrap();
        assert!(out
            .changes
            .contains(&Change::Retracted("n".into(), vec!["4".into(), "5".into()])));
    }

    #[test]
    fn whitelist_refuses_strangers_and_admits_members() {
        let mut s = service();
        create(&mut s, "o@x", &[("pubsub#access_model", "whitelist")]);
        let out = s.handle(subscribe("stranger@x"), &who("stranger@x"), 0);
        assert_eq!(condition(&out), ("not-allowed", Some("closed-node".into())));
        let out = s.handle(items(None), &who("stranger@x"), 0);
        assert_eq!(condition(&out).0, "not-allowed");
        let out = s.handle(
            Op::Affiliations {
                node: "n".into(),
                set: Some(vec![("m@x/r".into(), "member".into())]),
            },
            &who("stranger@x"),
            0,
        );
        assert_eq!(condition(&out).0, "forbidden");
        let out = s.handle(
            Op::Affiliations {
                node: "n".into(),
                set: Some(vec![("m@x/r".into(), "member".into())]),
            },
            &who("o@x"),
            0,
        );
        assert_eq!(
            out.changes,
            vec![Change::Affiliation(
                "n".into(),
                "m@x".into(),
                Some(Affiliation::Member)
            )]
        );
        s.handle(subscribe("m@x"), &who("m@x"), 0).reply.unwrap();
        // Subscribing someone else is refused.
        let out = s.handle(subscribe("m@x"), &who("stranger@x"), 0);
        assert_eq!(condition(&out), ("bad-request", Some("invalid-jid".into())));
        // An outcast loses the subscription.
        let out = s.handle(
            Op::Affiliations {
                node: "n".into(),
                set: Some(vec![("m@x".into(), "outcast".into())]),
            },
            &who("o@x"),
            0,
        );
        assert!(out
            .changes
            .contains(&Change::Subscription("n".into(), "m@x".into(), None)));
        assert_eq!(
            condition(&s.handle(items(None), &who("m@x"), 0)).0,
            "forbidden"
        );
    }

    #[test]
    fn presence_and_roster_access_models() {
        let mut s = service();
        create(&mut s, "o@x", &[("pubsub#access_model", "presence")]);
        let out = s.handle(subscribe("c@x"), &who("c@x"), 0);
        assert_eq!(
            condition(&out),
            (
                "not-authorized",
                Some("presence-subscription-required".into())
            )
        );
        let mut contact = who("c@x");
        contact.relation = Relation {
            subscribed: true,
            groups: vec!["Friends".into()],
        };
        s.handle(subscribe("c@x"), &contact, 0).reply.unwrap();
        s.handle(
            Op::Configure {
                node: "n".into(),
                form: Some(values(&[
                    ("pubsub#access_model", "roster"),
                    ("pubsub#roster_groups_allowed", "Work"),
                ])),
            },
            &who("o@x"),
            0,
        )
        .reply
        .unwrap();
        assert_eq!(
            condition(&s.handle(items(None), &contact, 0)),
            ("not-authorized", Some("not-in-roster-group".into()))
        );
        contact.relation.groups.push("Work".into());
        s.handle(items(None), &contact, 0).reply.unwrap();
    }

    #[test]
    fn authorize_model_asks_the_owner() {
        let mut s = service();
        create(&mut s, "o@x", &[("pubsub#access_model", "authorize")]);
        let out = s.handle(subscribe("c@x/r"), &who("c@x/r"), 0);
        let sub = out
            .reply
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .get_child("subscription", NS)
            .unwrap()
            .clone();
        assert_eq!(sub.attr("subscription"), Some("pending"));
        assert_eq!(out.notices.len(), 1);
        assert_eq!(out.notices[0].to, "o@x");
        let form = &out.notices[0].payload;
        assert_eq!(
            forms::form_type(form).as_deref(),
            Some(SUBSCRIBE_AUTHORIZATION)
        );
        // Not subscribed yet: no items.
        assert_eq!(
            condition(&s.handle(items(None), &who("c@x"), 0)).0,
            "not-authorized"
        );
        // A stranger may not decide; the owner may.
        let a = super::super::protocol::Authorization {
            node: "n".into(),
            jid: "c@x/r".into(),
            allow: true,
        };
        assert!(s.authorize(&a, &who("c@x")).is_err());
        let out = s.authorize(&a, &who("o@x")).unwrap();
        let ev = out.notices[0]
            .payload
            .get_child("subscription", EVENT)
            .unwrap();
        assert_eq!(ev.attr("subscription"), Some("subscribed"));
        s.handle(items(None), &who("c@x"), 0).reply.unwrap();
        // The owner's subscription list shows it; the owner can remove it.
        let out = s.handle(
            Op::Subscriptions {
                node: "n".into(),
                set: None,
            },
            &who("o@x"),
            0,
        );
        let list = out.reply.unwrap().unwrap();
        assert_eq!(
            list.get_child("subscriptions", OWNER)
                .unwrap()
                .children()
                .count(),
            1
        );
        let out = s.handle(
            Op::Subscriptions {
                node: "n".into(),
                set: Some(vec![("c@x/r".into(), "none".into())]),
            },
            &who("o@x"),
            0,
        );
        assert!(out
            .changes
            .contains(&Change::Subscription("n".into(), "c@x/r".into(), None)));
    }

    #[test]
    fn publish_rights_follow_affiliations_and_publish_model() {
        let mut s = service();
        create(&mut s, "o@x", &[]);
        assert_eq!(
            condition(&s.handle(publish(Some("a"), "x"), &who("p@x"), 0)).0,
            "forbidden"
        );
        s.handle(
            Op::Affiliations {
                node: "n".into(),
                set: Some(vec![
                    ("p@x".into(), "publish-only".into()),
                    ("q@x".into(), "publisher".into()),
                ]),
            },
            &who("o@x"),
            0,
        )
        .reply
        .unwrap();
        s.handle(publish(Some("a"), "x"), &who("p@x"), 0)
            .reply
            .unwrap();
        s.handle(publish(Some("b"), "x"), &who("q@x"), 0)
            .reply
            .unwrap();
        // Publish-only may retract its own items only, and cannot read.
        let retract = |id: &str| Op::Retract {
            node: "n".into(),
            ids: vec![id.into()],
            notify: Some(false),
        };
        assert_eq!(
            condition(&s.handle(retract("b"), &who("p@x"), 0)).0,
            "forbidden"
        );
        let out = s.handle(retract("a"), &who("p@x"), 0);
        assert!(out.notices.is_empty(), "notify=false");
        assert_eq!(
            condition(&s.handle(items(None), &who("p@x"), 0)).0,
            "forbidden"
        );
        // Open publish model: anyone.
        s.handle(
            Op::Configure {
                node: "n".into(),
                form: Some(values(&[("pubsub#publish_model", "open")])),
            },
            &who("o@x"),
            0,
        )
        .reply
        .unwrap();
        s.handle(publish(Some("c"), "x"), &who("anyone@x"), 0)
            .reply
            .unwrap();
        // Payload rules.
        let bad = Op::Publish {
            node: "n".into(),
            item: Some(NewItem {
                id: None,
                payload: vec![payload("a"), payload("b")],
            }),
            options: None,
        };
        assert_eq!(
            condition(&s.handle(bad, &who("o@x"), 0)),
            ("bad-request", Some("invalid-payload".into()))
        );
        let empty = Op::Publish {
            node: "n".into(),
            item: None,
            options: None,
        };
        assert_eq!(
            condition(&s.handle(empty, &who("o@x"), 0)),
            ("bad-request", Some("item-required".into()))
        );
        let big = Op::Publish {
            node: "n".into(),
            item: Some(NewItem {
                id: None,
                payload: vec![payload(&"x".repeat(2000))],
            }),
            options: None,
        };
        assert_eq!(
            condition(&s.handle(big, &who("o@x"), 0)),
            ("not-acceptable", Some("payload-too-big".into()))
        );
    }

    #[test]
    fn pep_auto_creates_with_publish_options_then_checks_preconditions() {
        let mut s = pep("u@x");
        let mut owner = who("u@x/r");
        owner.admin = true;
        let op = |access: &str| Op::Publish {
            node: "n".into(),
            item: Some(NewItem {
                id: Some("current".into()),
                payload: vec![payload("x")],
            }),
            options: Some(values(&[
                ("FORM_TYPE", PUBLISH_OPTIONS),
                ("pubsub#access_model", access),
                ("pubsub#persist_items", "true"),
            ])),
        };
        s.handle(op("whitelist"), &owner, 0).reply.unwrap();
        assert_eq!(s.nodes["n"].config.access_model, AccessModel::Whitelist);
        s.handle(op("whitelist"), &owner, 0).reply.unwrap();
        let out = s.handle(op("open"), &owner, 0);
        assert_eq!(
            condition(&out),
            ("conflict", Some("precondition-not-met".into()))
        );
        // Without payload exposure settings, PEP items carry no publisher.
        let out = s.handle(items(None), &owner, 0);
        let p = out.reply.unwrap().unwrap();
        assert!(p
            .get_child("items", NS)
            .unwrap()
            .get_child("item", NS)
            .unwrap()
            .attr("publisher")
            .is_none());
        // Only the owner creates nodes on its PEP.
        let mut other = who("v@x");
        other.may_create = false;
        let out = s.handle(publish(Some("x"), "x"), &other, 0);
        assert_eq!(condition(&out).0, "forbidden");
    }

    #[test]
    fn last_item_on_subscribe_and_on_presence() {
        let mut s = pep("u@x");
        let mut owner = who("u@x");
        owner.admin = true;
        s.handle(publish(Some("current"), "mood"), &owner, 7)
            .reply
            .unwrap();
        let mut contact = who("c@x/r");
        contact.relation.subscribed = true;
        let out = s.handle(subscribe("c@x/r"), &contact, 0);
        assert_eq!(out.later.len(), 1);
        assert_eq!(out.later[0].delay, Some(7));
        let n = s.last_item_notice("n", "c@x/r", true).unwrap();
        assert_eq!(n.to, "c@x/r");
        s.handle(
            Op::Configure {
                node: "n".into(),
                form: Some(values(&[("pubsub#send_last_published_item", "on_sub")])),
            },
            &owner,
            0,
        )
        .reply
        .unwrap();
        assert!(s.last_item_notice("n", "c@x/r", true).is_none());
        assert!(s.last_item_notice("n", "c@x/r", false).is_some());
    }

    #[test]
    fn restores_what_it_persisted() {
        let mut s = service();
        create(&mut s, "o@x", &[("pubsub#title", "T")]);
        s.handle(subscribe("c@x/r"), &who("c@x/r"), 0)
            .reply
            .unwrap();
        s.handle(publish(Some("i"), "x"), &who("o@x"), 3)
            .reply
            .unwrap();
        let n = &s.nodes["n"];
        let stored = StoredNode {
            node: "n".into(),
            config: serde_json::to_string(&n.config).unwrap(),
            affiliations: n
                .affiliations
                .iter()
                .map(|(j, a)| (j.clone(), a.as_str().into()))
                .collect(),
            subscriptions: n
                .subscriptions
                .iter()
                .map(|(j, s)| stored_subscription(j, s))
                .collect(),
            items: n.items.iter().map(stored_item).collect(),
        };
        let r = PubSub::restore(s.policy.clone(), vec![stored]);
        assert_eq!(r.nodes["n"], s.nodes["n"]);
    }

    #[test]
    fn subscription_options_and_own_lists() {
        let mut s = service();
        create(&mut s, "o@x", &[]);
        s.handle(subscribe("c@x/r"), &who("c@x/r"), 0)
            .reply
            .unwrap();
        let opts = |form: Option<Values>| Op::Options {
            node: "n".into(),
            jid: "c@x/r".into(),
            form,
        };
        let out = s.handle(opts(None), &who("c@x/r"), 0);
        let form = out.reply.unwrap().unwrap();
        let x = form
            .get_child("options", NS)
            .unwrap()
            .get_child("x", forms::NS)
            .unwrap()
            .clone();
        assert_eq!(forms::values(&x)["pubsub#deliver"], vec!["1".to_string()]);
        assert_eq!(
            condition(&s.handle(opts(None), &who("e@x"), 0)).0,
            "forbidden"
        );
        let bad = values(&[("pubsub#show-values", "sleepy")]);
        assert_eq!(
            condition(&s.handle(opts(Some(bad)), &who("c@x"), 0)),
            ("bad-request", Some("invalid-options".into()))
        );
        // Notifications off: nothing for this subscriber.
        s.handle(
            opts(Some(values(&[("pubsub#deliver", "false")]))),
            &who("c@x"),
            0,
        )
        .reply
        .unwrap();
        let out = s.handle(publish(Some("1"), "x"), &who("o@x"), 0);
        assert!(out.notices.is_empty());
        // show-values travel with the notice, for the adapter to apply.
        s.handle(
            opts(Some(values(&[
                ("pubsub#deliver", "1"),
                ("pubsub#show-values", "chat"),
            ]))),
            &who("c@x"),
            0,
        )
        .reply
        .unwrap();
        let out = s.handle(publish(Some("2"), "x"), &who("o@x"), 0);
        assert_eq!(out.notices[0].show, vec!["chat".to_string()]);
        // The subscriber's and the owner's own lists.
        let out = s.handle(Op::MySubscriptions { node: None }, &who("c@x/other"), 0);
        let list = out.reply.unwrap().unwrap();
        let sub = list
            .get_child("subscriptions", NS)
            .unwrap()
            .get_child("subscription", NS)
            .unwrap()
            .clone();
        assert_eq!(sub.attr("jid"), Some("c@x/r"));
        let out = s.handle(Op::MyAffiliations { node: None }, &who("o@x"), 0);
        let list = out.reply.unwrap().unwrap();
        let aff = list
            .get_child("affiliations", NS)
            .unwrap()
            .get_child("affiliation", NS)
            .unwrap()
            .clone();
        assert_eq!(aff.attr("affiliation"), Some("owner"));
        // Unsubscribing twice: not-subscribed.
        s.handle(
            Op::Unsubscribe {
                node: "n".into(),
                jid: "c@x/r".into(),
            },
            &who("c@x/r"),
            0,
        )
        .reply
        .unwrap();
        let out = s.handle(
            Op::Unsubscribe {
                node: "n".into(),
                jid: "c@x/r".into(),
            },
            &who("c@x/r"),
            0,
        );
        assert_eq!(
            condition(&out),
            ("unexpected-request", Some("not-subscribed".into()))
        );
    }
}
