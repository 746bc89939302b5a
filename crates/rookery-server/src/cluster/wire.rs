//! What nodes tell each other over Redis: session records, directory events, bus messages
//! (JSON), and serving the bus messages addressed to this node.

use crate::session::{PresenceState, SessionHandle};
use crate::Server;
use rookery_core::{Element, FullJid, Jid};
use serde::{Deserialize, Serialize};

/// One session as the directory keeps it: what other nodes need to route to it and to answer
/// for it (probes, carbons, roster and blocklist pushes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub available: bool,
    pub priority: i8,
    /// The last broadcast presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// When it was sent, in microseconds since the epoch.
    pub presence_at: Option<i64>,
    pub carbons: bool,
    pub interested: bool,
    pub blocklist: bool,
    /// The XEP-0198 id the session may be resumed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumable: Option<String>,
    /// Its connection dropped and it waits to be resumed; its client is CSI-inactive (push).
    #[serde(default)]
    pub hibernating: bool,
    #[serde(default)]
    pub inactive: bool,
}

impl Record {
    pub fn of(h: &SessionHandle) -> Record {
        let st = h.state.lock().unwrap();
        Record {
            id: h.id,
            available: st.available,
            priority: st.priority,
            presence: st.last.as_ref().map(|p| p.to_xml()),
            presence_at: st.last_at.map(|t| t.timestamp_micros()),
            carbons: st.carbons,
            interested: st.interested,
            blocklist: st.blocklist_interested,
            resumable: st.resumable.clone(),
            hibernating: st.hibernating,
            inactive: st.inactive,
        }
    }

    pub fn state(&self) -> PresenceState {
        PresenceState {
            available: self.available,
            priority: self.priority,
            last: self
                .presence
                .as_deref()
                .and_then(|p| Element::parse(p).ok()),
            last_at: self
                .presence_at
                .and_then(chrono::DateTime::from_timestamp_micros),
            carbons: self.carbons,
            blocklist_interested: self.blocklist,
            interested: self.interested,
            directed: Default::default(),
            resumable: self.resumable.clone(),
            hibernating: self.hibernating,
            inactive: self.inactive,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Event {
    Up {
        node: String,
        jid: String,
        rec: Record,
    },
    Down {
        node: String,
        jid: String,
        id: u64,
    },
    NodeDown {
        node: String,
    },
    /// A user's cached data changed on `node` (`modules::UserCache`).
    Invalidate {
        node: String,
        topic: String,
        user: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum BusMsg {
    /// A stanza for one of this node's sessions.
    Deliver { to: String, id: u64, xml: String },
    /// End one of this node's sessions (a conflict or a kick elsewhere).
    Close {
        to: String,
        id: u64,
        condition: String,
        #[serde(default)]
        text: Option<String>,
    },
    /// A stanza for one of this node's sessions if `filter` says it wants it.
    DeliverIf {
        to: String,
        id: u64,
        xml: String,
        filter: String,
        key: String,
    },
    /// A stanza for a service this node is home to.
    Route { xml: String },
    /// A client resumes (XEP-0198) on node `from` a session this node holds: hand it over.
    Migrate {
        id: String,
        user: String,
        from: String,
        token: u64,
    },
    /// The answer to `Migrate`: the session's state, or nothing when it is not here (anymore).
    Migrated {
        token: u64,
        state: Option<MigratedState>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MigratedState {
    pub h_in: u32,
    pub acked: u32,
    pub unacked: Vec<String>,
}

/// For a session that ended before a stanza reached it: a message goes to the account instead
/// (another resource, or offline storage), as when a session ends with messages in its queue.
async fn redeliver(server: &Server, to: &FullJid, mut el: Element) {
    if el.name() == "message" && el.attr("type") != Some("error") {
        el.set_attr("to", to.to_bare().to_string());
        crate::router::deliver(server, el).await;
    }
}

/// A delivery no node heard (its node died and is not purged yet; the caller dropped the
/// session from this node's directory): handled as for a session that ended meanwhile.
pub async fn to_account(server: &Server, to: &str, xml: &str) {
    if let (Ok(to), Ok(el)) = (FullJid::new(to), Element::parse(xml)) {
        redeliver(server, &to, el).await;
    }
}

/// Stream error conditions another node may ask a session to end with.
fn condition(name: &str) -> &'static str {
    match name {
        "conflict" => "conflict",
        "system-shutdown" => "system-shutdown",
        "policy-violation" => "policy-violation",
        "not-authorized" => "not-authorized",
        "reset" => "reset",
        _ => "undefined-condition",
    }
}

pub async fn serve(server: &Server, msg: BusMsg) {
    match msg {
        BusMsg::Deliver { to, xml, .. } => {
            let (Ok(to), Ok(el)) = (FullJid::new(&to), Element::parse(&xml)) else {
                return;
            };
            match server.sessions.get_local(&to) {
                Some(s) => {
                    crate::router::send_to_session(server, &s, el);
                }
                // Rerouting may wait on storage: not in the bus reader's way.
                None => {
                    let server = server.arc();
                    tokio::spawn(async move { redeliver(&server, &to, el).await });
                }
            }
        }
        BusMsg::DeliverIf {
            to,
            xml,
            filter,
            key,
            ..
        } => {
            let Ok(to) = FullJid::new(&to) else { return };
            let Some(f) = server.modules.delivery_filters.get(filter.as_str()) else {
                return;
            };
            if let Some(s) = server
                .sessions
                .get_local(&to)
                .filter(|_| f.wants(&to, &key))
            {
                if let Ok(el) = Element::parse(&xml) {
                    crate::router::send_to_session(server, &s, el);
                }
            }
        }
        BusMsg::Close {
            to,
            id,
            condition: c,
            text,
        } => {
            let Ok(to) = FullJid::new(&to) else { return };
            if let Some(s) = server.sessions.get_local(&to).filter(|s| s.id == id) {
                s.close(condition(&c), text).await;
            }
        }
        BusMsg::Migrate {
            id,
            user,
            from,
            token,
        } => {
            // Waits for the session task: not in the bus reader's way.
            let server = server.arc();
            tokio::spawn(async move {
                let state = hand_over(&server, &id, &user).await;
                if let Some(c) = &server.cluster {
                    c.reply_migrated(&from, token, state);
                }
            });
        }
        BusMsg::Migrated { token, state } => {
            if let Some(c) = &server.cluster {
                c.migrated(token, state);
            }
        }
        BusMsg::Route { xml } => {
            let Ok(el) = Element::parse(&xml) else { return };
            let Some(domain) = el
                .attr("to")
                .and_then(|t| Jid::new(t).ok())
                .map(|j| j.domain().to_string())
            else {
                return;
            };
            crate::router::to_service_here(server, &domain, el).await;
        }
    }
}

/// Asks the hibernating session `id` of `user` to hand its state over.
async fn hand_over(server: &Server, id: &str, user: &str) -> Option<MigratedState> {
    use crate::c2s::sm::Takeover;
    use std::time::Duration;
    let user = rookery_core::BareJid::new(user).ok()?;
    let tx = server.sm.find(id, &user)?;
    let (otx, orx) = tokio::sync::oneshot::channel();
    // A session whose connection still looks alive takes no takeover: the client gets
    // <failed/> and starts afresh.
    tokio::time::timeout(Duration::from_secs(2), tx.send(Takeover::Elsewhere(otx)))
        .await
        .ok()?
        .ok()?;
    let m = tokio::time::timeout(Duration::from_secs(2), orx)
        .await
        .ok()?
        .ok()?;
    Some(MigratedState {
        h_in: m.h_in,
        acked: m.acked,
        unacked: m.unacked.iter().map(|e| e.to_xml()).collect(),
    })
}
