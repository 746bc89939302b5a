//! XEP-0402 PEP Native Bookmarks with XEP-0048 compatibility: bookmarks kept in the
//! `urn:xmpp:bookmarks:1` node (one item per room), in private XML storage (XEP-0049,
//! `storage:bookmarks`) and in the legacy `storage:bookmarks` PEP node (XEP-0223), each change
//! written through to the other two.

use super::engine::{Broadcast, EventKind};
use super::pep::{Pep, PepObserver};
use crate::Server;
use async_trait::async_trait;
use rookery_core::{BareJid, Element, Jid};
use std::collections::BTreeMap;

pub const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
pub const LEGACY: &str = "storage:bookmarks";
pub const COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
pub const COMPAT_PEP: &str = "urn:xmpp:bookmarks:1#compat-pep";
const PRIVATE_STORE: &str = "private";
const PRIVATE_KEY: &str = "{storage:bookmarks}storage";

/// XEP-0402 §5 / XEP-0223 node configuration: private to the owner, every item kept.
const NODE_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#persist_items", "true"),
    ("pubsub#max_items", "max"),
    ("pubsub#send_last_published_item", "never"),
    ("pubsub#access_model", "whitelist"),
];
const LEGACY_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#persist_items", "true"),
    ("pubsub#access_model", "whitelist"),
];

/// One room bookmark, as both formats describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conference {
    pub name: Option<String>,
    pub autojoin: bool,
    pub nick: Option<String>,
    pub password: Option<String>,
    /// XEP-0402 `<extensions/>` children, kept across conversions.
    pub extensions: Vec<Element>,
}

impl Conference {
    /// From a XEP-0402 `<conference/>`.
    pub fn from_bookmarks2(c: &Element) -> Conference {
        Conference {
            name: c.attr("name").map(str::to_string),
            autojoin: c.attr("autojoin").is_some_and(|a| a == "true" || a == "1"),
            nick: c.child_text("nick", BOOKMARKS),
            password: c.child_text("password", BOOKMARKS),
            extensions: c
                .get_child("extensions", BOOKMARKS)
                .map(|e| e.children().cloned().collect())
                .unwrap_or_default(),
        }
    }

    pub fn to_bookmarks2(&self) -> Element {
        let mut c = Element::new("conference", BOOKMARKS)
            .with_opt_attr("name", self.name.clone())
            .with_opt_attr("autojoin", self.autojoin.then_some("true"));
        if let Some(n) = &self.nick {
            c.push_child(Element::new("nick", BOOKMARKS).with_text(n.clone()));
        }
        if let Some(p) = &self.password {
            c.push_child(Element::new("password", BOOKMARKS).with_text(p.clone()));
        }
        if !self.extensions.is_empty() {
            c.push_child(
                Element::new("extensions", BOOKMARKS).with_children(self.extensions.clone()),
            );
        }
        c
    }

    /// From a XEP-0048 `<conference jid=…/>`: (room, bookmark).
    pub fn from_legacy(c: &Element) -> Option<(String, Conference)> {
        let jid = Jid::new(c.attr("jid")?).ok()?.to_bare().to_string();
        Some((
            jid,
            Conference {
                name: c.attr("name").map(str::to_string),
                autojoin: c.attr("autojoin").is_some_and(|a| a == "true" || a == "1"),
                nick: c.child_text("nick", LEGACY),
                password: c.child_text("password", LEGACY),
                extensions: vec![],
            },
        ))
    }

    pub fn to_legacy(&self, jid: &str) -> Element {
        let mut c = Element::new("conference", LEGACY)
            .with_attr("jid", jid)
            .with_opt_attr("name", self.name.clone())
            .with_attr("autojoin", if self.autojoin { "true" } else { "false" });
        if let Some(n) = &self.nick {
            c.push_child(Element::new("nick", LEGACY).with_text(n.clone()));
        }
        if let Some(p) = &self.password {
            c.push_child(Element::new("password", LEGACY).with_text(p.clone()));
        }
        c
    }
}

/// The rooms of a legacy `<storage/>`.
fn legacy_rooms(storage: &Element) -> BTreeMap<String, Conference> {
    storage
        .children()
        .filter(|c| c.is("conference", LEGACY))
        .filter_map(Conference::from_legacy)
        .collect()
}

async fn private_storage(server: &Server, owner: &BareJid) -> Option<Element> {
    server
        .storage
        .kv_get(owner, PRIVATE_STORE, PRIVATE_KEY)
        .await
        .ok()
        .flatten()
        .and_then(|x| Element::parse(&x).ok())
}

/// The bookmarks of `owner` in XEP-0402 form: room → bookmark.
async fn current(server: &Server, pep: &Pep, owner: &BareJid) -> BTreeMap<String, Conference> {
    pep.items(server, owner, BOOKMARKS)
        .await
        .into_iter()
        .filter_map(|i| {
            let c = i.payload?;
            c.is("conference", BOOKMARKS)
                .then(|| (i.id, Conference::from_bookmarks2(&c)))
        })
        .collect()
}

/// Makes the XEP-0402 node hold exactly `rooms` (keeping extensions the legacy format lacks).
async fn write_bookmarks2(
    server: &Server,
    pep: &Pep,
    owner: &BareJid,
    rooms: &BTreeMap<String, Conference>,
) {
    let have = current(server, pep, owner).await;
    for (jid, c) in rooms {
        let mut c = c.clone();
        if let Some(old) = have.get(jid) {
            if c.extensions.is_empty() {
                c.extensions = old.extensions.clone();
            }
            if *old == c {
                continue;
            }
        }
        if let Err(e) = pep
            .publish(
                server,
                owner,
                BOOKMARKS,
                jid,
                c.to_bookmarks2(),
                NODE_OPTIONS,
            )
            .await
        {
            tracing::debug!(?e, "bookmark not synchronised");
        }
    }
    let gone: Vec<String> = have
        .keys()
        .filter(|j| !rooms.contains_key(*j))
        .cloned()
        .collect();
    pep.retract(server, owner, BOOKMARKS, gone).await;
}

/// Writes a legacy `<storage/>` to private XML storage and the legacy PEP node.
async fn write_legacy(
    server: &Server,
    pep: &Pep,
    owner: &BareJid,
    storage: &Element,
    to_pep: bool,
) {
    if let Err(e) = server
        .storage
        .kv_set(owner, PRIVATE_STORE, PRIVATE_KEY, Some(&storage.to_xml()))
        .await
    {
        tracing::error!(%e, "saving legacy bookmarks failed");
    }
    if to_pep {
        if let Err(e) = pep
            .publish(
                server,
                owner,
                LEGACY,
                "current",
                storage.clone(),
                LEGACY_OPTIONS,
            )
            .await
        {
            tracing::debug!(?e, "legacy bookmarks node not synchronised");
        }
    }
}

pub struct Bookmarks;

#[async_trait]
impl PepObserver for Bookmarks {
    async fn changed(&self, server: &Server, pep: &Pep, owner: &BareJid, b: &Broadcast) {
        match b.node.as_str() {
            BOOKMARKS => {
                // Rebuild the legacy document: rooms from the new node, other bookmarks (URLs)
                // from the old document.
                let rooms = match b.what {
                    EventKind::Deleted => BTreeMap::new(),
                    _ => current(server, pep, owner).await,
                };
                let mut storage = Element::new("storage", LEGACY);
                for (jid, c) in &rooms {
                    storage.push_child(c.to_legacy(jid));
                }
                if let Some(old) = private_storage(server, owner).await {
                    for other in old.children().filter(|c| !c.is("conference", LEGACY)) {
                        storage.push_child(other.clone());
                    }
                }
                write_legacy(server, pep, owner, &storage, true).await;
            }
            LEGACY => {
                if let EventKind::Published(item) = &b.what {
                    if let Some(storage) = item.payload.as_ref().filter(|p| p.is("storage", LEGACY))
                    {
                        write_legacy(server, pep, owner, storage, false).await;
                        write_bookmarks2(server, pep, owner, &legacy_rooms(storage)).await;
                    }
                }
            }
            _ => {}
        }
    }
}

/// The user stored a private XML fragment: legacy bookmarks go to PEP (XEP-0402 §6.1 compat).
pub async fn private_stored(server: &Server, pep: &Pep, owner: &BareJid, el: &Element) {
    if !el.is("storage", LEGACY) {
        return;
    }
    write_bookmarks2(server, pep, owner, &legacy_rooms(el)).await;
    if let Err(e) = pep
        .publish(server, owner, LEGACY, "current", el.clone(), LEGACY_OPTIONS)
        .await
    {
        tracing::debug!(?e, "legacy bookmarks node not synchronised");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_what_both_formats_have() {
        let legacy = Element::parse(
            "<storage xmlns='storage:bookmarks'><conference jid='Room@muc.x' name='R' \
             autojoin='1'><nick>me</nick><password>pw</password></conference>\
             <url name='u' url='http://x'/></storage>",
        )
        .unwrap();
        let rooms = legacy_rooms(&legacy);
        let c = &rooms["room@muc.x"];
        assert_eq!(c.name.as_deref(), Some("R"));
        assert!(c.autojoin);
        assert_eq!(c.nick.as_deref(), Some("me"));
        let b2 = c.to_bookmarks2();
        assert_eq!(
            b2.to_xml(),
            "<conference xmlns='urn:xmpp:bookmarks:1' name='R' autojoin='true'><nick>me</nick>\
             <password>pw</password></conference>"
        );
        assert_eq!(&Conference::from_bookmarks2(&b2), c);
        assert_eq!(
            c.to_legacy("room@muc.x").to_xml(),
            "<conference xmlns='storage:bookmarks' jid='room@muc.x' name='R' autojoin='true'>\
             <nick>me</nick><password>pw</password></conference>"
        );
    }
}
