//! XEP-0045 rooms as administrators manage them (admin API and page): listing, creating and
//! destroying without joining. In a cluster a room lives on its home node; this node acts on the
//! rooms it is home to and lists the persistent ones of the others from storage.

use super::room::{Affiliation, Room};
use super::{listing_name, stored_rooms, Muc};
use crate::modules::{RoomAdmin, RoomSummary};
use crate::Server;
use async_trait::async_trait;
use rookery_core::BareJid;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;

impl Muc {
    fn serves(&self, jid: &BareJid) -> bool {
        jid.node().is_some() && self.domains.iter().any(|d| d == jid.domain().as_str())
    }

    /// Refuses a room another node is home to.
    fn here(&self, server: &Server, jid: &BareJid) -> Result<(), String> {
        match &server.cluster {
            Some(c) if !c.is_home(jid.as_str()) => Err(format!(
                "{jid} lives on cluster node {}: ask that node",
                c.home(jid.as_str())
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl RoomAdmin for Muc {
    async fn rooms(&self, server: &Server) -> Vec<RoomSummary> {
        let mut out: BTreeMap<String, RoomSummary> = BTreeMap::new();
        let live: Vec<Arc<Mutex<Room>>> = self.rooms.iter().map(|r| r.value().clone()).collect();
        for r in live {
            let r = r.lock().await;
            if r.destroyed {
                continue;
            }
            out.insert(
                r.jid.to_string(),
                RoomSummary {
                    jid: r.jid.to_string(),
                    name: listing_name(&r.jid, &r.config),
                    occupants: r.occupant_count(),
                    persistent: r.config.persistent,
                    public: r.config.public,
                },
            );
        }
        for (jid, saved) in stored_rooms(server).await {
            if self.serves(&jid) {
                out.entry(jid.to_string()).or_insert_with(|| RoomSummary {
                    jid: jid.to_string(),
                    name: listing_name(&jid, &saved.config),
                    occupants: 0,
                    persistent: true,
                    public: saved.config.public,
                });
            }
        }
        out.into_values().collect()
    }

    async fn create_room(
        &self,
        server: &Server,
        jid: &BareJid,
        owner: &BareJid,
        name: &str,
    ) -> Result<(), String> {
        if !self.serves(jid) {
            return Err(format!("{jid} is not a room of this server's MUC service"));
        }
        self.here(server, jid)?;
        let exists = self.rooms.contains_key(jid)
            || stored_rooms(server).await.iter().any(|(j, _)| j == jid);
        if exists {
            return Err(format!("{jid} exists"));
        }
        let mut config = self.defaults();
        config.persistent = true;
        config.name = name.to_string();
        let mut room = Room::new(jid.clone(), config);
        room.affiliations
            .insert(owner.to_string(), Affiliation::Owner);
        room.dirty = true;
        self.save(server, &mut room).await;
        self.rooms.insert(jid.clone(), Arc::new(Mutex::new(room)));
        tracing::info!(room = %jid, %owner, "room created by an administrator");
        Ok(())
    }

    async fn destroy_room(
        &self,
        server: &Server,
        jid: &BareJid,
        reason: Option<&str>,
    ) -> Result<bool, String> {
        if !self.serves(jid) {
            return Ok(false);
        }
        self.here(server, jid)?;
        let room = match self.rooms.get(jid).map(|r| r.clone()) {
            Some(r) => r,
            None => match self.load(server, jid).await {
                Some(r) => r,
                None => return Ok(false),
            },
        };
        let mut room = room.lock().await;
        if room.destroyed {
            return Ok(false);
        }
        let notes = room.destroy_by_service(reason);
        self.save(server, &mut room).await;
        drop(room);
        self.rooms.remove(jid);
        for n in notes {
            crate::router::deliver(server, n).await;
        }
        tracing::info!(room = %jid, "room destroyed by an administrator");
        Ok(true)
    }
}
