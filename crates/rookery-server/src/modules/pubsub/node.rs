//! XEP-0060 Publish-Subscribe nodes: configuration (the pubsub#node_config form), affiliations,
//! subscriptions and items, and who may do what with them. No I/O.

use crate::forms::{self, Field};
use rookery_core::stanza::{ErrorType, StanzaError};
use rookery_core::Element;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

pub const NS: &str = "http://jabber.org/protocol/pubsub";
pub const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
pub const SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";
pub const META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
pub const SUBSCRIBE_AUTHORIZATION: &str =
    "http://jabber.org/protocol/pubsub#subscribe_authorization";
const XDATA_VALIDATE: &str = "http://jabber.org/protocol/xdata-validate";

/// A stanza error with a XEP-0060 §… application condition (`pubsub#errors`).
pub fn pubsub_error(base: StanzaError, condition: &str) -> StanzaError {
    let mut e = base;
    e.extra = Some(Box::new(Element::new(condition, ERRORS)));
    e
}

/// `<unsupported feature='…'/>` (XEP-0060 §… feature-not-implemented cases).
pub fn unsupported(feature: &str) -> StanzaError {
    let mut e = StanzaError::feature_not_implemented();
    e.extra = Some(Box::new(
        Element::new("unsupported", ERRORS).with_attr("feature", feature),
    ));
    e
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Affiliation {
    Owner,
    Publisher,
    PublishOnly,
    Member,
    None,
    Outcast,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Publisher => "publisher",
            Affiliation::PublishOnly => "publish-only",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "owner" => Affiliation::Owner,
            "publisher" => Affiliation::Publisher,
            "publish-only" => Affiliation::PublishOnly,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }

    /// May publish items (§4.1, table 4).
    pub fn publishes(self) -> bool {
        matches!(
            self,
            Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly
        )
    }

    /// Belongs to the node's whitelist: owners, publishers and members see everything.
    pub fn whitelisted(self) -> bool {
        matches!(
            self,
            Affiliation::Owner | Affiliation::Publisher | Affiliation::Member
        )
    }
}

macro_rules! choice {
    ($name:ident { $($variant:ident => $s:literal),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name { $($variant),* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)* _ => None }
            }
        }
    };
}

choice!(AccessModel {
    Authorize => "authorize",
    Open => "open",
    Presence => "presence",
    Roster => "roster",
    Whitelist => "whitelist",
});
choice!(PublishModel {
    Publishers => "publishers",
    Subscribers => "subscribers",
    Open => "open",
});
choice!(SendLast {
    Never => "never",
    OnSub => "on_sub",
    OnSubAndPresence => "on_sub_and_presence",
});
choice!(NotificationType {
    Normal => "normal",
    Headline => "headline",
});
choice!(ItemReply {
    Owner => "owner",
    Publisher => "publisher",
    None => "none",
});

/// A node's configuration (pubsub#node_config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    pub title: String,
    pub description: String,
    /// pubsub#type: the payload namespace.
    pub payload_type: String,
    /// Items kept; None is "max", the service's limit.
    pub max_items: Option<usize>,
    pub persist_items: bool,
    pub access_model: AccessModel,
    pub roster_groups_allowed: Vec<String>,
    pub publish_model: PublishModel,
    pub send_last_published_item: SendLast,
    pub deliver_notifications: bool,
    pub deliver_payloads: bool,
    pub notification_type: NotificationType,
    pub notify_delete: bool,
    pub notify_retract: bool,
    pub notify_config: bool,
    pub itemreply: ItemReply,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            title: String::new(),
            description: String::new(),
            payload_type: String::new(),
            max_items: Some(20),
            persist_items: true,
            access_model: AccessModel::Open,
            roster_groups_allowed: Vec::new(),
            publish_model: PublishModel::Publishers,
            send_last_published_item: SendLast::Never,
            deliver_notifications: true,
            deliver_payloads: true,
            notification_type: NotificationType::Headline,
            notify_delete: true,
            notify_retract: true,
            notify_config: false,
            itemreply: ItemReply::None,
        }
    }
}

fn options<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<(&'static str, &'static str)> {
    all.iter().map(|v| (name(*v), name(*v))).collect()
}

fn text(var: &str, label: &str, v: &str) -> Field {
    // An empty text field carries no <value/> (as deployed servers send it).
    Field::new(
        var,
        "text-single",
        label,
        if v.is_empty() {
            vec![]
        } else {
            vec![v.to_string()]
        },
    )
}

fn max_items_string(m: Option<usize>) -> String {
    m.map_or_else(|| "max".to_string(), |n| n.to_string())
}

impl NodeConfig {
    /// The configuration form (§8.2.1), with fields and labels in the order deployed servers
    /// (Prosody) use; clients read fields by var. `limit` is the service's item limit.
    pub fn form(&self, limit: usize) -> Element {
        let fields = vec![
            Field::hidden("FORM_TYPE", NODE_CONFIG),
            text("pubsub#title", "Title", &self.title),
            text("pubsub#description", "Description", &self.description),
            text(
                "pubsub#type",
                "The type of node data, usually specified by the namespace of the payload (if any)",
                &self.payload_type,
            ),
            text(
                "pubsub#max_items",
                "Max # of items to persist",
                &max_items_string(self.max_items),
            )
            .with_extra(
                Element::new("validate", XDATA_VALIDATE)
                    .with_attr("datatype", "pubsub:integer-or-max")
                    .with_child(
                        Element::new("range", XDATA_VALIDATE)
                            .with_attr("min", "1")
                            .with_attr("max", limit.to_string()),
                    ),
            ),
            Field::boolean(
                "pubsub#persist_items",
                "Persist items to storage",
                self.persist_items,
            ),
            Field::list(
                "pubsub#access_model",
                "Specify the subscriber model",
                self.access_model.as_str(),
                &options(AccessModel::ALL, AccessModel::as_str),
            ),
            Field::list_multi(
                "pubsub#roster_groups_allowed",
                "Roster groups allowed to subscribe",
                &self.roster_groups_allowed,
                &[],
            ),
            Field::list(
                "pubsub#publish_model",
                "Specify the publisher model",
                self.publish_model.as_str(),
                &options(PublishModel::ALL, PublishModel::as_str),
            ),
            Field::list(
                "pubsub#send_last_published_item",
                "",
                self.send_last_published_item.as_str(),
                &options(SendLast::ALL, SendLast::as_str),
            ),
            Field::boolean(
                "pubsub#deliver_notifications",
                "Whether to deliver event notifications",
                self.deliver_notifications,
            ),
            Field::boolean(
                "pubsub#deliver_payloads",
                "Whether to deliver payloads with event notifications",
                self.deliver_payloads,
            ),
            Field::list(
                "pubsub#notification_type",
                "Specify the delivery style for notifications",
                self.notification_type.as_str(),
                &[
                    ("Messages of type normal", "normal"),
                    ("Messages of type headline", "headline"),
                ],
            ),
            Field::boolean(
                "pubsub#notify_delete",
                "Whether to notify subscribers when the node is deleted",
                self.notify_delete,
            ),
            Field::boolean(
                "pubsub#notify_retract",
                "Whether to notify subscribers when items are removed from the node",
                self.notify_retract,
            ),
            Field::list(
                "pubsub#itemreply",
                "Specify whose JID to include as the publisher of items",
                self.itemreply.as_str(),
                &[
                    ("Include the node owner's JID", "owner"),
                    ("Include the item publisher's JID", "publisher"),
                    ("Don't include any JID with items", "none"),
                ],
            ),
        ];
        forms::form("form", None, &fields)
    }

    /// The value of one field as a form would carry it, for publish-options preconditions.
    fn field_values(&self, var: &str) -> Option<Vec<String>> {
        let b = |v: bool| vec![if v { "1" } else { "0" }.to_string()];
        let s = |v: &str| vec![v.to_string()];
        Some(match var {
            "pubsub#title" => s(&self.title),
            "pubsub#description" => s(&self.description),
            "pubsub#type" => s(&self.payload_type),
            "pubsub#max_items" => vec![max_items_string(self.max_items)],
            "pubsub#persist_items" => b(self.persist_items),
            "pubsub#access_model" => s(self.access_model.as_str()),
            "pubsub#roster_groups_allowed" => self.roster_groups_allowed.clone(),
            "pubsub#publish_model" => s(self.publish_model.as_str()),
            "pubsub#send_last_published_item" => s(self.send_last_published_item.as_str()),
            "pubsub#deliver_notifications" => b(self.deliver_notifications),
            "pubsub#deliver_payloads" => b(self.deliver_payloads),
            "pubsub#notification_type" => s(self.notification_type.as_str()),
            "pubsub#notify_delete" => b(self.notify_delete),
            "pubsub#notify_retract" => b(self.notify_retract),
            "pubsub#notify_config" => b(self.notify_config),
            "pubsub#itemreply" => s(self.itemreply.as_str()),
            _ => return None,
        })
    }

    /// Applies submitted values (a node_config or publish-options form) over this configuration.
    /// Unknown fields are ignored; bad values are `not-acceptable`.
    pub fn apply(
        &mut self,
        values: &HashMap<String, Vec<String>>,
        limit: usize,
    ) -> Result<(), StanzaError> {
        let bad = |var: &str| {
            StanzaError::not_acceptable().with_text(format!(
                "Invalid value for {}",
                var.trim_start_matches("pubsub#")
            ))
        };
        let mut c = self.clone();
        for (var, vals) in values {
            let one = vals.first().map(|s| s.trim()).unwrap_or("");
            let boolean = || forms::parse_bool(one).ok_or_else(|| bad(var));
            match var.as_str() {
                "pubsub#title" => c.title = one.to_string(),
                "pubsub#description" => c.description = one.to_string(),
                "pubsub#type" => c.payload_type = one.to_string(),
                "pubsub#max_items" => {
                    c.max_items = match one {
                        "max" => None,
                        n => match n.parse::<usize>() {
                            Ok(n) if (1..=limit).contains(&n) => Some(n),
                            _ => return Err(bad(var)),
                        },
                    }
                }
                "pubsub#persist_items" => c.persist_items = boolean()?,
                "pubsub#access_model" => {
                    c.access_model = AccessModel::parse(one).ok_or_else(|| bad(var))?
                }
                "pubsub#roster_groups_allowed" => c.roster_groups_allowed = vals.clone(),
                "pubsub#publish_model" => {
                    c.publish_model = PublishModel::parse(one).ok_or_else(|| bad(var))?
                }
                "pubsub#send_last_published_item" => {
                    c.send_last_published_item = SendLast::parse(one).ok_or_else(|| bad(var))?
                }
                "pubsub#deliver_notifications" => c.deliver_notifications = boolean()?,
                "pubsub#deliver_payloads" => c.deliver_payloads = boolean()?,
                "pubsub#notification_type" => {
                    c.notification_type = NotificationType::parse(one).ok_or_else(|| bad(var))?
                }
                "pubsub#notify_delete" => c.notify_delete = boolean()?,
                "pubsub#notify_retract" => c.notify_retract = boolean()?,
                "pubsub#notify_config" => c.notify_config = boolean()?,
                "pubsub#itemreply" => {
                    c.itemreply = ItemReply::parse(one).ok_or_else(|| bad(var))?
                }
                _ => {}
            }
        }
        *self = c;
        Ok(())
    }

    /// Publish-options as preconditions on an existing node (XEP-0060 §7.1.5): every field must
    /// equal the node's configuration.
    pub fn check_preconditions(
        &self,
        values: &HashMap<String, Vec<String>>,
    ) -> Result<(), StanzaError> {
        let mut vars: Vec<&String> = values.keys().filter(|k| *k != "FORM_TYPE").collect();
        vars.sort();
        for var in vars {
            let wanted = &values[var];
            let matches = self.field_values(var).is_some_and(|have| {
                let norm = |v: &str| match forms::parse_bool(v.trim()) {
                    Some(b) if var != "pubsub#max_items" => (if b { "1" } else { "0" }).into(),
                    _ => v.trim().to_string(),
                };
                let mut a: Vec<String> = have.iter().map(|v| norm(v)).collect();
                let mut b: Vec<String> = wanted.iter().map(|v| norm(v)).collect();
                a.sort();
                b.sort();
                a == b
            });
            if !matches {
                let e = StanzaError::conflict().with_text(format!(
                    "Field does not match: {}",
                    var.trim_start_matches("pubsub#")
                ));
                return Err(pubsub_error(e, "precondition-not-met"));
            }
        }
        Ok(())
    }
}

/// Subscription options (pubsub#subscribe_options).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubOptions {
    /// Notifications wanted at all.
    pub deliver: bool,
    /// Presence states in which notifications are wanted (empty: any).
    pub show_values: Vec<String>,
}

impl Default for SubOptions {
    fn default() -> Self {
        SubOptions {
            deliver: true,
            show_values: Vec::new(),
        }
    }
}

const SHOWS: [(&str, &str); 5] = [
    ("Away", "away"),
    ("Eager to Chat", "chat"),
    ("Do Not Disturb", "dnd"),
    ("Available", "online"),
    ("Extended Away", "xa"),
];

impl SubOptions {
    pub fn form(&self) -> Element {
        forms::form(
            "form",
            None,
            &[
                Field::hidden("FORM_TYPE", SUBSCRIBE_OPTIONS),
                Field::boolean(
                    "pubsub#deliver",
                    "Whether an entity wants to receive or disable notifications",
                    self.deliver,
                ),
                Field::list_multi(
                    "pubsub#show-values",
                    "The presence states for which an entity wants to receive notifications",
                    &self.show_values,
                    &SHOWS,
                ),
            ],
        )
    }

    pub fn apply(&mut self, values: &HashMap<String, Vec<String>>) -> Result<(), StanzaError> {
        let mut o = self.clone();
        for (var, vals) in values {
            match var.as_str() {
                "pubsub#deliver" => {
                    o.deliver = vals
                        .first()
                        .and_then(|v| forms::parse_bool(v.trim()))
                        .ok_or_else(|| {
                            pubsub_error(StanzaError::bad_request(), "invalid-options")
                        })?
                }
                "pubsub#show-values" => {
                    if vals.iter().any(|v| !SHOWS.iter().any(|(_, s)| s == v)) {
                        return Err(pubsub_error(StanzaError::bad_request(), "invalid-options"));
                    }
                    o.show_values = vals.clone()
                }
                _ => {}
            }
        }
        *self = o;
        Ok(())
    }
}

choice!(SubState {
    Subscribed => "subscribed",
    Pending => "pending",
    Unconfigured => "unconfigured",
});

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub state: SubState,
    pub subid: String,
    pub options: SubOptions,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    /// Bare JID of the publisher.
    pub publisher: String,
    /// Microseconds since the Unix epoch.
    pub timestamp: i64,
    pub payload: Option<Element>,
}

/// A requester's standing with a node's owners, for the presence and roster access models.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relation {
    /// An owner's roster has the requester with a `from` or `both` subscription.
    pub subscribed: bool,
    /// Groups the requester is in on the owners' rosters.
    pub groups: Vec<String>,
}

/// What deciding access to a node needs: a snapshot that outlives the node (for the deletion
/// notice to PEP contacts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub model: AccessModel,
    pub groups: Vec<String>,
    pub affiliations: BTreeMap<String, Affiliation>,
}

impl Access {
    /// May `bare` (an owner when `admin`) see the node's items (§4.5)? Authorize-model subscribers
    /// are checked by the caller, which knows the subscriptions.
    pub fn check(&self, bare: &str, admin: bool, rel: &Relation) -> Result<(), StanzaError> {
        let aff = if admin {
            Affiliation::Owner
        } else {
            self.affiliations
                .get(bare)
                .copied()
                .unwrap_or(Affiliation::None)
        };
        match aff {
            Affiliation::Outcast | Affiliation::PublishOnly => return Err(StanzaError::forbidden()),
            a if a.whitelisted() => return Ok(()),
            _ => {}
        }
        match self.model {
            AccessModel::Open => Ok(()),
            AccessModel::Presence if rel.subscribed => Ok(()),
            AccessModel::Presence => Err(pubsub_error(
                StanzaError::not_authorized(),
                "presence-subscription-required",
            )),
            AccessModel::Roster if rel.groups.iter().any(|g| self.groups.contains(g)) => Ok(()),
            AccessModel::Roster => Err(pubsub_error(
                StanzaError::not_authorized(),
                "not-in-roster-group",
            )),
            AccessModel::Whitelist => Err(pubsub_error(
                StanzaError::not_allowed().with_type(ErrorType::Cancel),
                "closed-node",
            )),
            AccessModel::Authorize => Err(pubsub_error(
                StanzaError::not_authorized(),
                "not-subscribed",
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub config: NodeConfig,
    /// Bare JID → affiliation (never `none`).
    pub affiliations: BTreeMap<String, Affiliation>,
    /// Subscribed JID (bare or full) → subscription.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Oldest first.
    pub items: Vec<Item>,
}

impl Node {
    pub fn new(name: &str, config: NodeConfig) -> Node {
        Node {
            name: name.to_string(),
            config,
            affiliations: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            items: Vec::new(),
        }
    }

    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn owners(&self) -> Vec<String> {
        self.affiliations
            .iter()
            .filter(|(_, a)| **a == Affiliation::Owner)
            .map(|(j, _)| j.clone())
            .collect()
    }

    pub fn access(&self) -> Access {
        Access {
            model: self.config.access_model,
            groups: self.config.roster_groups_allowed.clone(),
            affiliations: self.affiliations.clone(),
        }
    }

    /// An approved subscription of any JID of `bare`.
    pub fn subscribed(&self, bare: &str) -> bool {
        self.subscriptions
            .iter()
            .any(|(j, s)| bare_of(j) == bare && s.state == SubState::Subscribed)
    }

    pub fn last_item(&self) -> Option<&Item> {
        self.items.last()
    }

    /// How many items the node keeps.
    pub fn keep(&self, limit: usize) -> usize {
        if !self.config.persist_items {
            // Transient nodes still remember the last item, for late subscribers.
            return 1;
        }
        self.config.max_items.unwrap_or(limit).min(limit)
    }

    /// Items and notifications carry a publisher JID per pubsub#itemreply, unless the service
    /// decides (`expose`).
    pub fn publisher_attr(&self, item: &Item, expose: Option<bool>) -> Option<String> {
        match expose {
            Some(true) => Some(item.publisher.clone()),
            Some(false) => None,
            None => match self.config.itemreply {
                ItemReply::Publisher => Some(item.publisher.clone()),
                ItemReply::Owner => self.owners().into_iter().next(),
                ItemReply::None => None,
            },
        }
    }

    /// `<item id=…>` with its payload, for a retrieval (`ns` pubsub) or a notification (event).
    pub fn item_element(
        &self,
        item: &Item,
        ns: &str,
        payload: bool,
        expose: Option<bool>,
    ) -> Element {
        let mut e = Element::new("item", ns)
            .with_attr("id", item.id.clone())
            .with_opt_attr("publisher", self.publisher_attr(item, expose));
        if payload {
            if let Some(p) = &item.payload {
                e.push_child(p.clone());
            }
        }
        e
    }

    /// The pubsub#meta-data form (disco#info on the node, configuration notifications).
    pub fn meta_data(&self) -> Element {
        let publishers: Vec<String> = self
            .affiliations
            .iter()
            .filter(|(_, a)| **a == Affiliation::Publisher)
            .map(|(j, _)| j.clone())
            .collect();
        forms::form(
            "result",
            None,
            &[
                Field::hidden("FORM_TYPE", META_DATA),
                Field::text("pubsub#title", "Title", &self.config.title),
                Field::text(
                    "pubsub#description",
                    "Description",
                    &self.config.description,
                ),
                Field::text("pubsub#type", "Payload type", &self.config.payload_type),
                Field::list(
                    "pubsub#access_model",
                    "Access model",
                    self.config.access_model.as_str(),
                    &[],
                ),
                Field::list(
                    "pubsub#publish_model",
                    "Publish model",
                    self.config.publish_model.as_str(),
                    &[],
                ),
                Field::jid_multi("pubsub#owner", "Node owners", &self.owners()),
                Field::jid_multi("pubsub#publisher", "Publishers", &publishers),
                Field::text(
                    "pubsub#num_subscribers",
                    "Number of subscribers",
                    &self.subscriptions.len().to_string(),
                ),
            ],
        )
    }
}

pub fn bare_of(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn config_form_round_trips_through_apply() {
        let mut c = NodeConfig::default();
        c.apply(
            &vals(&[
                ("pubsub#title", "Nice tunes"),
                ("pubsub#max_items", "max"),
                ("pubsub#access_model", "whitelist"),
                ("pubsub#persist_items", "false"),
                ("pubsub#itemreply", "publisher"),
            ]),
            256,
        )
        .unwrap();
        let form = c.form(256);
        let mut parsed = NodeConfig::default();
        parsed.apply(&forms::values(&form), 256).unwrap();
        assert_eq!(parsed, c);
        assert_eq!(c.max_items, None);
        assert_eq!(parsed.access_model, AccessModel::Whitelist);
    }

    #[test]
    fn bad_values_are_refused_and_change_nothing() {
        let mut c = NodeConfig::default();
        for (k, v) in [
            ("pubsub#max_items", "0"),
            ("pubsub#max_items", "257"),
            ("pubsub#access_model", "friends"),
            ("pubsub#persist_items", "maybe"),
        ] {
            let e = c
                .apply(&vals(&[("pubsub#title", "x"), (k, v)]), 256)
                .unwrap_err();
            assert_eq!(e.condition, "not-acceptable");
        }
        assert_eq!(c, NodeConfig::default());
    }

    #[test]
    fn preconditions_compare_normalised_values() {
        let c = NodeConfig {
            access_model: AccessModel::Whitelist,
            max_items: Some(255),
            ..NodeConfig::default()
        };
        c.check_preconditions(&vals(&[
            ("FORM_TYPE", PUBLISH_OPTIONS),
            ("pubsub#persist_items", "true"),
            ("pubsub#max_items", "255"),
            ("pubsub#access_model", "whitelist"),
        ]))
        .unwrap();
        let e = c
            .check_preconditions(&vals(&[("pubsub#access_model", "open")]))
            .unwrap_err();
        assert_eq!(e.condition, "conflict");
        assert_eq!(
            e.text.as_deref(),
            Some("Field does not match: access_model")
        );
        assert!(e.extra.unwrap().is("precondition-not-met", ERRORS));
        assert!(c
            .check_preconditions(&vals(&[("pubsub#no_such_thing", "1")]))
            .is_err());
    }

    #[test]
    fn access_models() {
        let mut a = Access {
            model: AccessModel::Presence,
            groups: vec!["Friends".into()],
            affiliations: BTreeMap::from([
                ("m@x".to_string(), Affiliation::Member),
                ("o@x".to_string(), Affiliation::Outcast),
                ("p@x".to_string(), Affiliation::PublishOnly),
            ]),
        };
        let none = Relation::default();
        let sub = Relation {
            subscribed: true,
            groups: vec!["Friends".into()],
        };
        assert!(a.check("s@x", false, &sub).is_ok());
        let e = a.check("s@x", false, &none).unwrap_err();
        assert_eq!(e.condition, "not-authorized");
        assert!(a.check("m@x", false, &none).is_ok());
        assert!(a.check("o@x", false, &sub).is_err());
        assert!(a.check("p@x", false, &sub).is_err());
        assert!(a.check("anyone@x", true, &none).is_ok());
        a.model = AccessModel::Roster;
        assert!(a.check("s@x", false, &sub).is_ok());
        assert!(a.check("s@x", false, &none).is_err());
        a.model = AccessModel::Whitelist;
        assert!(a.check("s@x", false, &sub).is_err());
        assert!(a.check("m@x", false, &none).is_ok());
        a.model = AccessModel::Open;
        assert!(a.check("s@x", false, &none).is_ok());
        assert!(a.check("o@x", false, &none).is_err());
    }
}
