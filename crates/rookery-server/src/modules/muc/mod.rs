//! XEP-0045 Multi-User Chat service at `conference.<host>`: routes stanzas to rooms, keeps
//! persistent rooms in storage, answers service discovery. Room rules live in `room`.

mod admin;
pub mod room;

use super::{Module, Registry, Service};
use crate::Server;
use async_trait::async_trait;
use dashmap::DashMap;
use rookery_core::config::MucOptions;
use rookery_core::stanza::{self, StanzaError};
use rookery_core::{ns, BareJid, Element, FullJid, Jid};
use room::{Affiliation, Room, Saved};
use std::sync::Arc;
use tokio::sync::Mutex;

const STORE: &str = "muc_room";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";

pub struct Muc {
    /// Service domains this module answers for.
    pub domains: Vec<String>,
    pub options: super::Live<MucOptions>,
    rooms: DashMap<BareJid, Arc<Mutex<Room>>>,
}

impl Muc {
    pub fn new(hosts: &[String], options: MucOptions) -> Muc {
        Muc {
            domains: hosts
                .iter()
                .map(|h| format!("{}.{}", options.subdomain, h))
                .collect(),
            options: super::Live::new(options),
            rooms: DashMap::new(),
        }
    }
}

impl Module for Muc {
    fn name(&self) -> &'static str {
        "muc"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        for d in &self.domains {
            reg.service(d, self.clone());
        }
        reg.sampler(self.clone());
        reg.room_admin(self.clone());
        reg.reload(self.clone());
    }
}

#[async_trait]
impl super::Reload for Muc {
    async fn reload(&self, config: &rookery_core::config::Config) -> Vec<&'static str> {
        let mut new = config.modules.muc.clone();
        let old = self.options.get();
        let mut restart = Vec::new();
        if new.subdomain != old.subdomain {
            restart.push("modules.muc.subdomain");
            new.subdomain = old.subdomain.clone();
        }
        self.options.set(new);
        restart
    }
}

#[async_trait]
impl crate::metrics::Sampler for Muc {
    async fn sample(&self, m: &crate::metrics::Metrics) {
        let rooms: Vec<Arc<Mutex<Room>>> = self.rooms.iter().map(|r| r.value().clone()).collect();
        let mut occupants = 0;
        for r in &rooms {
            occupants += r.lock().await.occupant_count();
        }
        m.muc_rooms.inc_by(rooms.len() as i64);
        m.muc_occupants.inc_by(occupants as i64);
    }
}

/// Every persistent room in storage, with its saved state.
async fn stored_rooms(server: &Server) -> Vec<(BareJid, Saved)> {
    match server.storage.kv_all(STORE).await {
        Ok(all) => all
            .into_iter()
            .filter_map(|(jid, _, value)| {
                Some((
                    BareJid::new(&jid).ok()?,
                    serde_json::from_str::<Saved>(&value).ok()?,
                ))
            })
            .collect(),
        Err(e) => {
            tracing::error!(%e, "reading stored rooms failed");
            Vec::new()
        }
    }
}

/// A room's name in the service's item list: its configured name, else its node.
fn listing_name(jid: &BareJid, config: &room::Config) -> String {
    if config.name.is_empty() {
        jid.node().map(|n| n.to_string()).unwrap_or_default()
    } else {
        config.name.clone()
    }
}

fn reply(el: &Element, payload: Option<Element>) -> Element {
    let mut r = stanza::iq_result(el);
    if let Some(p) = payload {
        r.push_child(p);
    }
    r
}

impl Muc {
    fn defaults(&self) -> room::Config {
        let options = self.options.get();
        room::Config {
            persistent: options.persistent_by_default,
            history_length: options.history_length,
            max_users: options.max_occupants,
            ..room::Config::default()
        }
    }

    async fn service_iq(&self, server: &Server, el: &Element, domain: &str) -> Element {
        let Some(payload) = el.children().next() else {
            return stanza::error_reply(el, &StanzaError::bad_request());
        };
        if el.attr("type") != Some("get") {
            return stanza::error_reply(el, &StanzaError::service_unavailable());
        }
        match (payload.ns(), payload.name()) {
            (INFO, "query") if payload.attr("node").is_none() => {
                let mut q = Element::new("query", INFO).with_child(
                    Element::new("identity", INFO)
                        .with_attr("category", "conference")
                        .with_attr("type", "text")
                        .with_attr("name", self.options.get().name.clone()),
                );
                for f in [INFO, ITEMS, room::MUC, room::OCCUPANT_ID, "urn:xmpp:ping"] {
                    q.push_child(Element::new("feature", INFO).with_attr("var", f));
                }
                reply(el, Some(q))
            }
            (ITEMS, "query") => {
                let mut listed: std::collections::BTreeMap<String, String> = Default::default();
                let rooms: Vec<Arc<Mutex<Room>>> = self
                    .rooms
                    .iter()
                    .filter(|r| r.key().domain().as_str() == domain)
                    .map(|r| r.value().clone())
                    .collect();
                for r in rooms {
                    let r = r.lock().await;
                    if r.config.public && !r.locked {
                        listed.insert(r.jid.to_string(), listing_name(&r.jid, &r.config));
                    }
                }
                // In a cluster other nodes are home to other rooms: the persistent ones are in
                // the shared storage (temporary rooms elsewhere are not listed).
                if server.cluster.is_some() {
                    for (jid, saved) in stored_rooms(server).await {
                        if jid.domain().as_str() == domain && saved.config.public {
                            let name = listing_name(&jid, &saved.config);
                            listed.entry(jid.to_string()).or_insert(name);
                        }
                    }
                }
                let mut q = Element::new("query", ITEMS);
                for (jid, name) in listed {
                    q.push_child(
                        Element::new("item", ITEMS)
                            .with_attr("jid", jid)
                            .with_attr("name", name),
                    );
                }
                reply(el, Some(q))
            }
            (_, "ping") => reply(el, None),
            _ => stanza::error_reply(el, &StanzaError::service_unavailable()),
        }
    }

    async fn save(&self, server: &Server, room: &mut Room) {
        if !room.dirty {
            return;
        }
        room.dirty = false;
        let value = if room.config.persistent && !room.destroyed {
            Some(serde_json::to_string(&room.saved()).expect("room state serialises"))
        } else {
            None
        };
        if let Err(e) = server
            .storage
            .kv_set(&room.jid, STORE, "", value.as_deref())
            .await
        {
            tracing::error!(%e, room = %room.jid, "saving room failed");
        }
    }
}

impl Muc {
    /// Rooms held here that `user` owns (`modules.muc.max_rooms_per_user`).
    async fn rooms_owned(&self, user: &BareJid) -> usize {
        let rooms: Vec<Arc<Mutex<Room>>> = self.rooms.iter().map(|r| r.value().clone()).collect();
        let mut n = 0;
        for r in rooms {
            let r = r.lock().await;
            if !r.destroyed && r.affiliation(user) == Affiliation::Owner {
                n += 1;
            }
        }
        n
    }

    async fn load(&self, server: &Server, jid: &BareJid) -> Option<Arc<Mutex<Room>>> {
        let saved = server.storage.kv_get(jid, STORE, "").await.ok()??;
        let saved = serde_json::from_str::<Saved>(&saved).ok()?;
        let room = Arc::new(Mutex::new(Room::restore(jid.clone(), saved)));
        Some(
            self.rooms
                .entry(jid.clone())
                .or_insert(room)
                .value()
                .clone(),
        )
    }
}

#[async_trait]
impl Service for Muc {
    fn home_key(&self, el: &Element) -> Option<String> {
        let to = Jid::new(el.attr("to")?).ok()?;
        Some(to.to_bare().to_string())
    }

    async fn rehome(&self, server: &Server) {
        let Some(cluster) = &server.cluster else {
            return;
        };
        // Rooms another node won (it joined the cluster) go there: their state is saved, and
        // their occupants are told to rejoin, which takes them to the new home.
        let leaving: Vec<BareJid> = self
            .rooms
            .iter()
            .filter(|r| !cluster.is_home(r.key().as_str()))
            .map(|r| r.key().clone())
            .collect();
        for jid in leaving {
            let Some((_, room)) = self.rooms.remove(&jid) else {
                continue;
            };
            let mut room = room.lock().await;
            self.save(server, &mut room).await;
            for p in room.hand_over() {
                crate::router::deliver(server, p).await;
            }
        }
        // Occupants whose node died left without a word: they leave now.
        let rooms: Vec<(BareJid, Arc<Mutex<Room>>)> = self
            .rooms
            .iter()
            .map(|r| (r.key().clone(), r.value().clone()))
            .collect();
        for (jid, room) in rooms {
            let gone: Vec<(FullJid, String)> = room
                .lock()
                .await
                .occupant_sessions()
                .into_iter()
                .filter(|(s, _)| {
                    server.config.is_local_host(s.domain().as_str())
                        && server.sessions.get(s).is_none()
                })
                .collect();
            for (session, nick) in gone {
                let leave = Element::new("presence", ns::CLIENT)
                    .with_attr("type", "unavailable")
                    .with_attr("from", session.to_string())
                    .with_attr("to", format!("{jid}/{nick}"));
                self.handle(server, leave).await;
            }
        }
    }

    async fn start(&self, server: &Server) {
        for (jid, saved) in stored_rooms(server).await {
            if self.domains.iter().any(|d| d == jid.domain().as_str()) {
                self.rooms
                    .insert(jid.clone(), Arc::new(Mutex::new(Room::restore(jid, saved))));
            }
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
        if to.node().is_none() {
            if el.name() == "iq" && matches!(el.attr("type"), Some("get" | "set")) {
                let r = self.service_iq(server, &el, &domain).await;
                crate::router::deliver(server, r).await;
            } else if el.name() != "presence" {
                crate::router::bounce(server, &el, StanzaError::service_unavailable());
            }
            return;
        }
        // Occupants are sessions: anything else cannot take part.
        let Ok(from) = from.try_into_full() else {
            crate::router::bounce(
                server,
                &el,
                StanzaError::bad_request().with_text("a full JID is needed"),
            );
            return;
        };
        let room_jid = to.to_bare();
        let nick = to.resource().map(|r| r.to_string());
        let mut existing = self.rooms.get(&room_jid).map(|r| r.clone());
        if existing.is_none() && server.cluster.is_some() {
            // A room that moved here from a node that left: its saved state is in storage.
            existing = self.load(server, &room_jid).await;
        }
        let mut created = false;
        let room = match existing {
            Some(r) => r,
            None => {
                let joining =
                    el.name() == "presence" && el.attr("type").is_none() && nick.is_some();
                if !joining {
                    if el.name() != "presence" {
                        crate::router::bounce(server, &el, StanzaError::item_not_found());
                    }
                    return;
                }
                let local = server.config.is_local_host(from.domain().as_str());
                let may_create = match self.options.get().room_creation.as_str() {
                    "admins" => server
                        .config
                        .admins
                        .iter()
                        .any(|a| a == from.to_bare().as_str()),
                    "local" => local,
                    _ => true,
                };
                if !may_create {
                    let mut e = stanza::error_reply(
                        &el,
                        &StanzaError::not_allowed().with_text("Room creation is restricted"),
                    );
                    e.set_attr("from", to.to_string());
                    crate::router::deliver(server, e).await;
                    return;
                }
                let cap = self.options.get().max_rooms_per_user;
                if cap > 0
                    && !crate::admin::is_admin(server, &from.to_bare())
                    && self.rooms_owned(&from.to_bare()).await >= cap
                {
                    let mut e = stanza::error_reply(
                        &el,
                        &StanzaError::resource_constraint()
                            .with_text("You own as many rooms as allowed"),
                    );
                    e.set_attr("from", to.to_string());
                    crate::router::deliver(server, e).await;
                    return;
                }
                let mut r = Room::new(room_jid.clone(), self.defaults());
                r.affiliations
                    .insert(from.to_bare().to_string(), Affiliation::Owner);
                r.locked = self.options.get().lock_new_rooms;
                created = true;
                let r = Arc::new(Mutex::new(r));
                // Two creators racing: the first insert wins and the other joins it.
                let entry = self
                    .rooms
                    .entry(room_jid.clone())
                    .or_insert(r.clone())
                    .clone();
                if !Arc::ptr_eq(&entry, &r) {
                    created = false;
                }
                entry
            }
        };
        let room_lock = room.clone();
        let mut room = room.lock().await;
        room.message_rate = self.options.get().occupant_messages_per_second;
        // XEP-0313 for rooms: occupants and members may read the archive.
        if el.name() == "iq" && nick.is_none() {
            if let Some(q) = el.get_child("query", "urn:xmpp:mam:2") {
                let allowed = room.nick_of(&from).is_some()
                    || room.affiliation(&from.to_bare()) >= Affiliation::Member;
                drop(room);
                let reply = if !allowed {
                    stanza::error_reply(&el, &StanzaError::forbidden())
                } else if el.attr("type") == Some("set") {
                    match crate::modules::mam::run_query(
                        server,
                        room_jid.as_str(),
                        from.as_str(),
                        q,
                    )
                    .await
                    {
                        Ok(fin) => reply(&el, Some(fin)),
                        Err(e) => stanza::error_reply(&el, &e),
                    }
                } else {
                    stanza::error_reply(&el, &StanzaError::bad_request())
                };
                crate::router::deliver(server, reply).await;
                return;
            }
        }
        let out = match (el.name(), &nick) {
            ("presence", Some(n)) => room.presence(&from, n, &el, created),
            // Presence to the room's bare JID concerns the sender's own occupancy.
            ("presence", None) => match room.nick_of(&from) {
                Some(n) => room.presence(&from, &n, &el, false),
                None => vec![],
            },
            ("message", n) => {
                let id = crate::modules::mam::new_id();
                let out = room.message(&from, n.as_deref(), &el, &id);
                if let Some(m) = room.to_archive.take() {
                    let mut stored = m.clone();
                    stored.retain_children(|c| c.ns() != "urn:xmpp:sid:0");
                    let archived = rookery_core::storage::Archived {
                        id,
                        timestamp: chrono::Utc::now().timestamp_micros(),
                        with: m.attr("from").unwrap_or_default().to_string(),
                        stanza: stored.to_xml(),
                    };
                    server
                        .archive
                        .append(&server.storage, room_jid.to_string(), archived)
                        .await;
                }
                out
            }
            ("iq", None) => self.room_iq(&mut room, &from, &el),
            ("iq", Some(n)) => {
                // XEP-0410 self-ping; IQs to other occupants are not relayed.
                let is_ping = el.has_child("ping", "urn:xmpp:ping");
                if is_ping && room.is_joined_as(&from, n) {
                    vec![reply(&el, None)]
                } else if is_ping {
                    vec![stanza::error_reply(&el, &StanzaError::not_acceptable())]
                } else {
                    vec![stanza::error_reply(
                        &el,
                        &StanzaError::service_unavailable(),
                    )]
                }
            }
            _ => vec![],
        };
        if std::mem::take(&mut room.presence_waiting) && !room.flush_scheduled {
            room.flush_scheduled = true;
            // Deliver the latest of the presence updates that arrived too fast, once.
            let (server, interval) = (server.arc(), room.presence_interval);
            tokio::spawn(async move {
                tokio::time::sleep(interval).await;
                let out = room_lock.lock().await.flush_presence();
                for o in out {
                    crate::router::deliver(&server, o).await;
                }
            });
        }
        self.save(server, &mut room).await;
        if room.destroyed {
            self.rooms.remove(&room_jid);
        }
        drop(room);
        for o in out {
            crate::router::deliver(server, o).await;
        }
    }
}

impl Muc {
    fn room_iq(&self, room: &mut Room, from: &FullJid, el: &Element) -> Vec<Element> {
        let Some(payload) = el.children().next() else {
            return vec![stanza::error_reply(el, &StanzaError::bad_request())];
        };
        let get = el.attr("type") == Some("get");
        match (payload.ns(), payload.name(), get) {
            (INFO, "query", true) if payload.attr("node").is_none() => {
                vec![reply(el, Some(room.disco_info()))]
            }
            (INFO, "query", true) if payload.attr("node") == Some("x-roomuser-item") => {
                vec![reply(el, Some(room.reserved_nick_info(from)))]
            }
            (ITEMS, "query", true) => vec![reply(el, Some(Element::new("query", ITEMS)))],
            ("urn:xmpp:ping", "ping", true) => vec![reply(el, None)],
            (room::OWNER, _, _) | (room::ADMIN, _, _) | (room::REGISTER, _, _) => room.iq(from, el),
            _ => vec![stanza::error_reply(el, &StanzaError::service_unavailable())],
        }
    }
}
