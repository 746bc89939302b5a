//! XEP-0060 requests as types: a `<pubsub/>` IQ payload (user or owner namespace) parsed into
//! one [`Op`], so the engine never looks at raw XML requests.

use super::node::{pubsub_error, NS, OWNER, SUBSCRIBE_AUTHORIZATION};
use crate::forms;
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use std::collections::HashMap;

pub const RSM: &str = "http://jabber.org/protocol/rsm";

/// Submitted form values by field var.
pub type Values = HashMap<String, Vec<String>>;

/// One item of a publish request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewItem {
    pub id: Option<String>,
    /// Payload elements as sent (one is expected).
    pub payload: Vec<Element>,
}

/// XEP-0059 paging of an items request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rsm {
    pub max: Option<usize>,
    pub after: Option<String>,
    /// `Some("")` is `<before/>`: the last page.
    pub before: Option<String>,
    pub index: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// §8.1: `node` None is an instant node.
    Create {
        node: Option<String>,
        config: Option<Values>,
    },
    /// §6.1, with subscription options submitted along (§6.3.7).
    Subscribe {
        node: String,
        jid: String,
        options: Option<Values>,
    },
    Unsubscribe {
        node: String,
        jid: String,
    },
    /// §6.3: options of a subscription (get when `form` is None).
    Options {
        node: String,
        jid: String,
        form: Option<Values>,
    },
    /// §6.5
    Items {
        node: String,
        max_items: Option<usize>,
        ids: Vec<String>,
        rsm: Option<Rsm>,
    },
    /// §7.1
    Publish {
        node: String,
        item: Option<NewItem>,
        options: Option<Values>,
    },
    /// §7.2
    Retract {
        node: String,
        ids: Vec<String>,
        notify: Option<bool>,
    },
    /// §5.6: the requester's subscriptions (all nodes or one).
    MySubscriptions {
        node: Option<String>,
    },
    /// §5.7
    MyAffiliations {
        node: Option<String>,
    },
    /// §6.4 and §8.3: default subscription options / default node configuration.
    DefaultOptions,
    DefaultConfig,
    /// §8.2 (get when `form` is None).
    Configure {
        node: String,
        form: Option<Values>,
    },
    /// §8.4
    Delete {
        node: String,
        redirect: Option<String>,
    },
    /// §8.5
    Purge {
        node: String,
    },
    /// §8.8 (get when `set` is None): (jid, state) pairs, state "none" removing.
    Subscriptions {
        node: String,
        set: Option<Vec<(String, String)>>,
    },
    /// §8.9 (get when `set` is None): (jid, affiliation) pairs.
    Affiliations {
        node: String,
        set: Option<Vec<(String, String)>>,
    },
}

impl Op {
    /// The node an operation is about, if it names one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Op::Create { node, .. }
            | Op::MySubscriptions { node }
            | Op::MyAffiliations { node } => node.as_deref(),
            Op::Subscribe { node, .. }
            | Op::Unsubscribe { node, .. }
            | Op::Options { node, .. }
            | Op::Items { node, .. }
            | Op::Publish { node, .. }
            | Op::Retract { node, .. }
            | Op::Configure { node, .. }
            | Op::Delete { node, .. }
            | Op::Purge { node }
            | Op::Subscriptions { node, .. }
            | Op::Affiliations { node, .. } => Some(node),
            Op::DefaultOptions | Op::DefaultConfig => None,
        }
    }

    /// Parses the payload of an IQ get (`set` false) or set.
    pub fn parse(payload: &Element, set: bool) -> Result<Op, StanzaError> {
        if payload.name() != "pubsub" || (payload.ns() != NS && payload.ns() != OWNER) {
            return Err(StanzaError::feature_not_implemented());
        }
        let owner = payload.ns() == OWNER;
        let ns = payload.ns();
        let children: Vec<&Element> = payload.children().filter(|c| c.ns() == ns).collect();
        let Some(first) = children.first() else {
            return Err(StanzaError::bad_request().with_text("empty pubsub request"));
        };
        let node = |e: &Element| e.attr("node").map(str::to_string);
        let need_node = |e: &Element| {
            node(e)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| pubsub_error(StanzaError::bad_request(), "nodeid-required"))
        };
        let form_in = |name: &str| -> Option<Values> {
            children
                .iter()
                .find(|c| c.name() == name)
                .and_then(|c| c.get_child("x", forms::NS))
                .map(forms::values)
        };
        let wrong = || StanzaError::bad_request().with_text("unexpected request type");
        let op = match (owner, first.name(), set) {
            (false, "create", true) => Op::Create {
                node: node(first).filter(|n| !n.is_empty()),
                config: form_in("configure"),
            },
            (false, "subscribe", true) => Op::Subscribe {
                node: need_node(first)?,
                jid: jid_attr(first)?,
                options: form_in("options"),
            },
            (false, "unsubscribe", true) => Op::Unsubscribe {
                node: need_node(first)?,
                jid: jid_attr(first)?,
            },
            (false, "options", _) => Op::Options {
                node: need_node(first)?,
                jid: jid_attr(first)?,
                form: if set {
                    Some(
                        first
                            .get_child("x", forms::NS)
                            .map(forms::values)
                            .ok_or_else(StanzaError::bad_request)?,
                    )
                } else {
                    None
                },
            },
            (false, "items", false) => Op::Items {
                node: need_node(first)?,
                max_items: match first.attr("max_items") {
                    Some(m) => Some(m.trim().parse().map_err(|_| StanzaError::bad_request())?),
                    None => None,
                },
                ids: first
                    .children()
                    .filter(|c| c.is("item", NS))
                    .filter_map(|c| c.attr("id").map(str::to_string))
                    .collect(),
                rsm: payload.get_child("set", RSM).map(parse_rsm).transpose()?,
            },
            (false, "publish", true) => {
                let items: Vec<&Element> = first.children().filter(|c| c.is("item", NS)).collect();
                if items.len() > 1 {
                    return Err(pubsub_error(
                        StanzaError::bad_request().with_text("one item per publish"),
                        "invalid-payload",
                    ));
                }
                Op::Publish {
                    node: need_node(first)?,
                    item: items.first().map(|i| NewItem {
                        id: i.attr("id").filter(|s| !s.is_empty()).map(str::to_string),
                        payload: i.children().cloned().collect(),
                    }),
                    options: form_in("publish-options"),
                }
            }
            (false, "retract", true) => Op::Retract {
                node: need_node(first)?,
                ids: first
                    .children()
                    .filter(|c| c.is("item", NS))
                    .filter_map(|c| c.attr("id").map(str::to_string))
                    .collect(),
                notify: first.attr("notify").and_then(forms::parse_bool),
            },
            (false, "subscriptions", false) => Op::MySubscriptions { node: node(first) },
            (false, "affiliations", false) => Op::MyAffiliations { node: node(first) },
            (false, "default", false) => Op::DefaultOptions,
            (true, "default", false) => Op::DefaultConfig,
            (true, "configure", _) => Op::Configure {
                node: need_node(first)?,
                form: if set {
                    let x = first
                        .get_child("x", forms::NS)
                        .ok_or_else(|| StanzaError::bad_request().with_text("no form"))?;
                    if x.attr("type") == Some("cancel") {
                        Some(Values::new())
                    } else {
                        Some(forms::values(x))
                    }
                } else {
                    None
                },
            },
            (true, "delete", true) => Op::Delete {
                node: need_node(first)?,
                redirect: first
                    .get_child("redirect", OWNER)
                    .and_then(|r| r.attr("uri"))
                    .map(str::to_string),
            },
            (true, "purge", true) => Op::Purge {
                node: need_node(first)?,
            },
            (true, "subscriptions", _) => Op::Subscriptions {
                node: need_node(first)?,
                set: set.then(|| pairs(first, "subscription", "subscription")),
            },
            (true, "affiliations", _) => Op::Affiliations {
                node: need_node(first)?,
                set: set.then(|| pairs(first, "affiliation", "affiliation")),
            },
            _ => return Err(wrong().with_type(rookery_core::stanza::ErrorType::Modify)),
        };
        Ok(op)
    }
}

fn jid_attr(e: &Element) -> Result<String, StanzaError> {
    let j = e
        .attr("jid")
        .ok_or_else(|| pubsub_error(StanzaError::bad_request(), "jid-required"))?;
    rookery_core::Jid::new(j)
        .map(|j| j.to_string())
        .map_err(|_| pubsub_error(StanzaError::bad_request(), "invalid-jid"))
}

fn pairs(e: &Element, child: &str, attr: &str) -> Vec<(String, String)> {
    e.children()
        .filter(|c| c.name() == child)
        .filter_map(|c| Some((c.attr("jid")?.to_string(), c.attr(attr)?.to_string())))
        .collect()
}

fn parse_rsm(set: &Element) -> Result<Rsm, StanzaError> {
    let num = |name: &str| -> Result<Option<usize>, StanzaError> {
        set.child_text(name, RSM)
            .map(|t| t.trim().parse().map_err(|_| StanzaError::bad_request()))
            .transpose()
    };
    Ok(Rsm {
        max: num("max")?,
        index: num("index")?,
        after: set.child_text("after", RSM).filter(|a| !a.is_empty()),
        before: set.child_text("before", RSM),
    })
}

/// A message an owner sends to answer a subscription authorization request (§8.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub node: String,
    pub jid: String,
    pub allow: bool,
}

impl Authorization {
    pub fn parse(message: &Element) -> Option<Authorization> {
        let x = message.get_child("x", forms::NS)?;
        if x.attr("type") != Some("submit")
            || forms::form_type(x).as_deref() != Some(SUBSCRIBE_AUTHORIZATION)
        {
            return None;
        }
        let v = forms::values(x);
        let one = |k: &str| v.get(k).and_then(|l| l.first()).cloned();
        Some(Authorization {
            node: one("pubsub#node")?,
            jid: one("pubsub#subscriber_jid")?,
            allow: one("pubsub#allow").and_then(|a| forms::parse_bool(&a))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str, set: bool) -> Result<Op, StanzaError> {
        Op::parse(&Element::parse(xml).unwrap(), set)
    }

    #[test]
    fn parses_user_requests() {
        let op = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'>\
             <item id='i'><e xmlns='urn:x'/></item></publish><publish-options>\
             <x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'>\
             <value>open</value></field></x></publish-options></pubsub>",
            true,
        )
        .unwrap();
        let Op::Publish {
            node,
            item: Some(item),
            options: Some(o),
        } = op
        else {
            panic!("{op:?}")
        };
        assert_eq!(node, "n");
        assert_eq!(item.id.as_deref(), Some("i"));
        assert_eq!(item.payload.len(), 1);
        assert_eq!(o["pubsub#access_model"], vec!["open".to_string()]);

        let op = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n' max_items='2'/>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>5</max><before/></set></pubsub>",
            false,
        )
        .unwrap();
        assert_eq!(
            op,
            Op::Items {
                node: "n".into(),
                max_items: Some(2),
                ids: vec![],
                rsm: Some(Rsm {
                    max: Some(5),
                    before: Some(String::new()),
                    ..Rsm::default()
                })
            }
        );
        assert_eq!(
            parse(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create/></pubsub>",
                true
            )
            .unwrap(),
            Op::Create {
                node: None,
                config: None
            }
        );
    }

    #[test]
    fn parses_owner_requests_and_refuses_bad_ones() {
        let op = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='n'>\
             <affiliation jid='a@x' affiliation='publisher'/></affiliations></pubsub>",
            true,
        )
        .unwrap();
        assert_eq!(
            op,
            Op::Affiliations {
                node: "n".into(),
                set: Some(vec![("a@x".into(), "publisher".into())])
            }
        );
        let e = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='n'/></pubsub>",
            true,
        )
        .unwrap_err();
        assert!(e
            .extra
            .unwrap()
            .is("jid-required", super::super::node::ERRORS));
        let e = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items/></pubsub>",
            false,
        )
        .unwrap_err();
        assert!(e
            .extra
            .unwrap()
            .is("nodeid-required", super::super::node::ERRORS));
        assert!(parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub>",
            false
        )
        .is_err());
    }
}
