//! XEP-0045 Multi-User Chat: one room's state and rules, without I/O. Each operation returns the
//! stanzas to send; the service adapter delivers them.

use crate::forms::{self, Field};
use base64::Engine;
use rookery_core::stanza::{self, ErrorType, StanzaError};
use rookery_core::{ns, BareJid, Element, FullJid, Jid};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};

pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const USER: &str = "http://jabber.org/protocol/muc#user";
pub const ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub const REGISTER: &str = "jabber:iq:register";
const REGISTER_FORM: &str = "http://jabber.org/protocol/muc#register";
const REQUEST_FORM: &str = "http://jabber.org/protocol/muc#request";
const DELAY: &str = "urn:xmpp:delay";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// Room configuration (the muc#roomconfig form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    pub password: String,
    pub max_users: usize,
    /// Everyone sees real JIDs (non-anonymous); otherwise only moderators do.
    pub whois_anyone: bool,
    pub history_length: usize,
    /// Who may send private messages: anyone, participants, moderators, none.
    pub allow_pm: String,
    pub change_subject: bool,
    pub allow_invites: bool,
    /// Roles whose presence is broadcast (`muc#roomconfig_presencebroadcast`); "none" also lists
    /// members who are not in the room, by their reserved nick, to newcomers.
    pub presence_broadcast: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: String::new(),
            max_users: 200,
            whois_anyone: false,
            history_length: 20,
            allow_pm: "anyone".into(),
            change_subject: false,
            allow_invites: false,
            presence_broadcast: vec!["moderator".into(), "participant".into(), "visitor".into()],
        }
    }
}

/// What survives a restart of a persistent room.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    pub config: Config,
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<(String, String)>,
    /// Nicknames reserved by members (bare JID → nick), XEP-0045 §7.10.
    #[serde(default)]
    pub reserved: BTreeMap<String, String>,
}

struct Occupant {
    nick: String,
    bare: BareJid,
    /// Each joined session and its last presence (multi-session nicks).
    sessions: Vec<(FullJid, Element)>,
    role: Role,
    id: String,
    /// When this occupant's presence last went to the room, and whether a newer one waits.
    last_broadcast: Option<std::time::Instant>,
    deferred: bool,
    /// Groupchat message tokens left, and when they were last refilled.
    tokens: f64,
    refilled: Option<std::time::Instant>,
}

impl Occupant {
    /// Takes one message token at `rate` per second (bursts of five seconds' worth).
    fn may_send(&mut self, rate: f64) -> bool {
        let now = std::time::Instant::now();
        let burst = (rate * 5.0).max(1.0);
        let tokens = match self.refilled {
            Some(t) => (self.tokens + now.duration_since(t).as_secs_f64() * rate).min(burst),
            None => burst,
        };
        self.refilled = Some(now);
        if tokens >= 1.0 {
            self.tokens = tokens - 1.0;
            true
        } else {
            self.tokens = tokens;
            false
        }
    }
}

impl Room {
    /// Every joined session with its nick.
    pub fn occupant_sessions(&self) -> Vec<(FullJid, String)> {
        self.occupants
            .iter()
            .flat_map(|o| o.sessions.iter().map(|(j, _)| (j.clone(), o.nick.clone())))
            .collect()
    }

    /// What each occupant session is told when the room leaves this node (another node of the
    /// cluster became its home): it is out, because of a service shutdown (status 332), so
    /// clients rejoin, which brings them to the new home.
    pub fn hand_over(&self) -> Vec<Element> {
        self.occupant_sessions()
            .into_iter()
            .map(|(session, nick)| {
                Element::new("presence", ns::CLIENT)
                    .with_attr("type", "unavailable")
                    .with_attr("from", format!("{}/{nick}", self.jid))
                    .with_attr("to", session.to_string())
                    .with_child(
                        Element::new("x", USER)
                            .with_child(
                                Element::new("item", USER)
                                    .with_attr(
                                        "affiliation",
                                        self.affiliation(&session.to_bare()).as_str(),
                                    )
                                    .with_attr("role", "none"),
                            )
                            .with_child(status(110))
                            .with_child(status(332)),
                    )
            })
            .collect()
    }
}

/// Presence updates from one occupant reach the room at most this often; in between, the latest
/// waits (a client flapping between away and available costs a big room one broadcast a second).
pub const PRESENCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Room {
    pub jid: BareJid,
    pub config: Config,
    pub affiliations: BTreeMap<String, Affiliation>,
    /// Nicknames reserved by members (bare JID → nick).
    reserved: BTreeMap<String, String>,
    occupants: Vec<Occupant>,
    subject: Option<(String, String)>,
    history: VecDeque<(chrono::DateTime<chrono::Utc>, Element)>,
    /// Created and not yet configured: only the owner may enter (XEP-0045 §10.1).
    pub locked: bool,
    secret: String,
    /// Persistent state changed since the last save.
    pub dirty: bool,
    /// The room is gone (destroyed, or empty and temporary).
    pub destroyed: bool,
    /// The last groupchat message to go into the room's archive, for the adapter to store.
    pub to_archive: Option<Element>,
    /// Some presence update waits: the adapter calls [`Room::flush_presence`] after
    /// `presence_interval`.
    pub presence_waiting: bool,
    pub presence_interval: std::time::Duration,
    /// `modules.muc.occupant_messages_per_second` (0: unlimited), set by the service.
    pub message_rate: f64,
    /// A flush is already scheduled.
    pub flush_scheduled: bool,
}

fn err(orig: &Element, e: StanzaError) -> Element {
    let mut r = stanza::error_reply(orig, &e);
    // The room is the entity that returns the error (XEP-0045 examples, RFC 6120 §8.3.2 `by`).
    if let Some(room) = orig
        .attr("to")
        .and_then(|t| Jid::new(t).ok())
        .map(|j| j.to_bare())
    {
        if let Some(e) = r.get_child_mut("error", ns::CLIENT) {
            e.set_attr("by", room.to_string());
        }
    }
    r
}

fn payload_ns_is_owner(iq: &Element) -> bool {
    iq.children().next().is_some_and(|p| p.ns() == OWNER)
}

fn status(code: u16) -> Element {
    Element::new("status", USER).with_attr("code", code.to_string())
}

impl Room {
    pub fn new(jid: BareJid, defaults: Config) -> Room {
        let secret = format!("{:x}", rand::random::<u128>());
        Room {
            jid,
            config: defaults,
            affiliations: BTreeMap::new(),
            reserved: BTreeMap::new(),
            occupants: Vec::new(),
            subject: None,
            history: VecDeque::new(),
            locked: false,
            secret,
            dirty: false,
            destroyed: false,
            to_archive: None,
            presence_waiting: false,
            presence_interval: PRESENCE_INTERVAL,
            message_rate: 0.0,
            flush_scheduled: false,
        }
    }

    pub fn restore(jid: BareJid, saved: Saved) -> Room {
        let mut r = Room::new(jid, saved.config);
        r.affiliations = saved.affiliations;
        r.subject = saved.subject;
        r.reserved = saved.reserved;
        r
    }

    pub fn saved(&self) -> Saved {
        Saved {
            config: self.config.clone(),
            affiliations: self.affiliations.clone(),
            subject: self.subject.clone(),
            reserved: self.reserved.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    pub fn occupant_count(&self) -> usize {
        self.occupants.len()
    }

    pub fn affiliation(&self, who: &BareJid) -> Affiliation {
        self.affiliations
            .get(who.as_str())
            .copied()
            .unwrap_or(Affiliation::None)
    }

    fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{}", self.jid, nick)
    }

    fn find_session(&self, from: &FullJid) -> Option<usize> {
        self.occupants
            .iter()
            .position(|o| o.sessions.iter().any(|(j, _)| j == from))
    }

    fn find_nick(&self, nick: &str) -> Option<usize> {
        self.occupants.iter().position(|o| o.nick == nick)
    }

    /// Whether `from` is in the room, and as which nick.
    pub fn nick_of(&self, from: &FullJid) -> Option<String> {
        self.find_session(from)
            .map(|i| self.occupants[i].nick.clone())
    }

    fn occupant_id(&self, bare: &BareJid) -> String {
        let h = Sha256::digest(format!("{}:{}", self.secret, bare).as_bytes());
        base64::engine::general_purpose::STANDARD.encode(&h[..16])
    }

    fn sees_jids(&self, recipient: &Occupant) -> bool {
        self.config.whois_anyone || recipient.role == Role::Moderator
    }

    /// Whether others see the presence of an occupant with `role`.
    fn broadcasts(&self, role: Role) -> bool {
        role == Role::None
            || self
                .config
                .presence_broadcast
                .iter()
                .any(|r| r == role.as_str())
    }

    fn initial_role(&self, aff: Affiliation) -> Role {
        match aff {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            _ if self.config.moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }

    /// The muc#user item describing occupant `o` for a recipient.
    fn item(&self, o: &Occupant, with_jid: Option<&FullJid>) -> Element {
        Element::new("item", USER)
            .with_attr("affiliation", self.affiliation(&o.bare).as_str())
            .with_attr("role", o.role.as_str())
            .with_opt_attr("jid", with_jid.map(|j| j.to_string()))
    }

    /// Presence of occupant `idx` (its session `s`) as seen by `to`.
    #[allow(clippy::too_many_arguments)]
    fn presence_for(
        &self,
        idx: usize,
        s: usize,
        to: &FullJid,
        viewer_sees: bool,
        extra: &[Element],
        before: &[Element],
        after: &[Element],
    ) -> Element {
        let o = &self.occupants[idx];
        let (jid, pres) = &o.sessions[s];
        let mut p = Element::new("presence", ns::CLIENT)
            .with_attr("from", self.occupant_jid(&o.nick))
            .with_attr("to", to.to_string());
        if let Some(t) = pres.attr("type") {
            p.set_attr("type", t);
        }
        for c in pres.children() {
            if c.ns() != MUC && c.ns() != USER && c.ns() != OCCUPANT_ID {
                p.push_child(c.clone());
            }
        }
        let own = o.sessions.iter().any(|(j, _)| j == to);
        // Prosody's order, which clients and its tests see: status codes, the item, then 110.
        let is_110 = |e: &&Element| e.attr("code") == Some("110");
        let mut x = Element::new("x", USER).with_children(
            before
                .iter()
                .chain(after.iter().filter(|e| !is_110(e)))
                .cloned(),
        );
        let mut item = self.item(o, (viewer_sees || own).then_some(jid));
        for e in extra {
            item.push_child(e.clone());
        }
        x.push_child(item);
        for a in after.iter().filter(is_110) {
            x.push_child(a.clone());
        }
        p.push_child(x);
        p.push_child(Element::new("occupant-id", OCCUPANT_ID).with_attr("id", o.id.clone()));
        p
    }

    /// Presence of occupant `idx` to every session in the room, with self-presence rules.
    fn broadcast_presence(
        &self,
        idx: usize,
        out: &mut Vec<Element>,
        extra: &[Element],
        statuses: &[u16],
        self_statuses: &[u16],
    ) {
        let s = self.occupants[idx].sessions.len() - 1;
        let shown = self.broadcasts(self.occupants[idx].role);
        for r in &self.occupants {
            let sees = self.sees_jids(r);
            let is_self = r.nick == self.occupants[idx].nick;
            if !shown && !is_self {
                continue;
            }
            for (to, _) in &r.sessions {
                let mut after: Vec<Element> = statuses.iter().map(|c| status(*c)).collect();
                if is_self {
                    after.extend(self_statuses.iter().map(|c| status(*c)));
                    after.push(status(110));
                }
                out.push(self.presence_for(idx, s, to, sees, extra, &[], &after));
            }
        }
    }

    /// A presence stanza sent to room/nick by `from`.
    pub fn presence(
        &mut self,
        from: &FullJid,
        nick: &str,
        el: &Element,
        created: bool,
    ) -> Vec<Element> {
        let mut out = Vec::new();
        let ptype = el.attr("type");
        match (self.find_session(from), ptype) {
            (Some(i), Some("unavailable")) => self.leave(i, from, el, &mut out, &[]),
            (Some(i), Some("error")) => {
                // The occupant's client bounced something: it is gone (XEP-0045 §9.7, code 333).
                let mut text = String::from("Kicked");
                if let Some(e) = el.get_child("error", ns::CLIENT) {
                    if let Some(c) = e
                        .children()
                        .find(|c| c.ns() == ns::STANZAS_ERR && c.name() != "text")
                    {
                        text.push_str(&format!(": {}", c.name().replace('-', " ")));
                    }
                    if let Some(t) = e.child_text("text", ns::STANZAS_ERR) {
                        text.push_str(&format!(": {t}"));
                    }
                }
                let gone = Element::new("presence", ns::CLIENT)
                    .with_attr("type", "unavailable")
                    .with_child(Element::new("status", ns::CLIENT).with_text(text));
                self.leave(i, from, &gone, &mut out, &[333]);
            }
            (None, Some("unavailable")) | (None, Some("error")) => {}
            (None, Some("probe")) => out.push(err(
                el,
                StanzaError::not_acceptable().with_type(ErrorType::Cancel),
            )),
            (Some(i), Some("probe")) => {
                // An occupant asks for another's current presence.
                let sees = self.sees_jids(&self.occupants[i]);
                if let Some(t) = self.find_nick(nick) {
                    for s in 0..self.occupants[t].sessions.len() {
                        out.push(self.presence_for(t, s, from, sees, &[], &[], &[]));
                    }
                } else if let Some((j, _)) = self.reserved.iter().find(|(_, n)| *n == nick) {
                    out.push(self.offline_member(j, nick, from, sees));
                }
            }
            (Some(i), _) if self.occupants[i].nick == nick => {
                // A presence update from an occupant.
                let s = self.occupants[i]
                    .sessions
                    .iter()
                    .position(|(j, _)| j == from)
                    .unwrap();
                self.occupants[i].sessions[s].1 = el.clone();
                let now = std::time::Instant::now();
                let rejoin = el.has_child("x", MUC);
                let o = &mut self.occupants[i];
                let recent = o
                    .last_broadcast
                    .is_some_and(|t| now.duration_since(t) < self.presence_interval);
                if recent && !rejoin {
                    o.deferred = true;
                    self.presence_waiting = true;
                } else {
                    o.last_broadcast = Some(now);
                    o.deferred = false;
                    self.broadcast_presence(i, &mut out, &[], &[], &[]);
                }
                if rejoin {
                    // A client that rejoins without leaving (after a reconnect) needs the room
                    // state again: history and subject.
                    self.send_history_and_subject(from, el, &mut out);
                }
            }
            (Some(i), _) => self.change_nick(i, from, nick, el, &mut out),
            (None, None) => self.join(from, nick, el, created, &mut out),
            (None, Some(_)) => out.push(err(el, StanzaError::bad_request())),
        }
        out
    }

    fn join(
        &mut self,
        from: &FullJid,
        nick: &str,
        el: &Element,
        created: bool,
        out: &mut Vec<Element>,
    ) {
        let bare = from.to_bare();
        let aff = self.affiliation(&bare);
        let mut reject = |e: StanzaError| {
            let mut r = err(el, e);
            r.set_attr("from", self.occupant_jid(nick));
            out.push(r);
        };
        if nick.trim().is_empty() {
            return reject(StanzaError::jid_malformed().with_type(ErrorType::Modify));
        }
        if self.locked && aff != Affiliation::Owner {
            return reject(
                StanzaError::item_not_found()
                    .with_text("This room is locked until its owner configures it"),
            );
        }
        if aff == Affiliation::Outcast {
            return reject(StanzaError::forbidden().with_text("You are banned from this room"));
        }
        if let Some(i) = self.find_nick(nick) {
            if self.occupants[i].bare != bare {
                return reject(StanzaError::conflict().with_text("That nickname is taken"));
            }
        }
        if self.reserved_by_other(nick, &bare) {
            return reject(StanzaError::conflict().with_text("That nickname is reserved"));
        }
        if self.config.members_only && aff < Affiliation::Member {
            return reject(StanzaError {
                kind: ErrorType::Auth,
                condition: "registration-required",
                text: Some("Members only".into()),
                extra: None,
            });
        }
        let given = el
            .get_child("x", MUC)
            .and_then(|x| x.child_text("password", MUC))
            .unwrap_or_default();
        if !self.config.password.is_empty() && given != self.config.password {
            return reject(StanzaError::not_authorized().with_text("A password is required"));
        }
        if self.find_nick(nick).is_none()
            && self.occupants.len() >= self.config.max_users
            && aff < Affiliation::Admin
        {
            return reject(
                StanzaError::service_unavailable()
                    .with_type(ErrorType::Wait)
                    .with_text("The room is full"),
            );
        }
        let idx = match self.find_nick(nick) {
            Some(i) => {
                self.occupants[i].sessions.push((from.clone(), el.clone()));
                i
            }
            None => {
                let id = self.occupant_id(&bare);
                self.occupants.push(Occupant {
                    nick: nick.to_string(),
                    role: self.initial_role(aff),
                    bare,
                    sessions: vec![(from.clone(), el.clone())],
                    id,
                    last_broadcast: None,
                    tokens: 0.0,
                    refilled: None,
                    deferred: false,
                });
                self.occupants.len() - 1
            }
        };
        // Existing occupants to the newcomer.
        let newcomer_sees = self.sees_jids(&self.occupants[idx]);
        for (i, o) in self.occupants.iter().enumerate() {
            if i == idx || !self.broadcasts(o.role) {
                continue;
            }
            for s in 0..o.sessions.len() {
                out.push(self.presence_for(i, s, from, newcomer_sees, &[], &[], &[]));
            }
        }
        if self.config.presence_broadcast.iter().any(|r| r == "none") {
            for (j, n) in &self.reserved {
                if self.find_nick(n).is_none() {
                    out.push(self.offline_member(j, n, from, newcomer_sees));
                }
            }
        }
        // The newcomer to everyone, then to itself with status codes.
        let s = self.occupants[idx].sessions.len() - 1;
        let shown = self.broadcasts(self.occupants[idx].role);
        for (i, r) in self.occupants.iter().enumerate() {
            if i == idx || !shown {
                continue;
            }
            let sees = self.sees_jids(r);
            for (to, _) in &r.sessions {
                out.push(self.presence_for(idx, s, to, sees, &[], &[], &[]));
            }
        }
        let before: Vec<Element> = if created { vec![status(201)] } else { vec![] };
        let mut after = vec![];
        if self.config.whois_anyone {
            after.push(status(100));
        }
        after.push(status(110));
        out.push(self.presence_for(idx, s, from, true, &[], &before, &after));
        self.send_history_and_subject(from, el, out);
    }

    /// History, then the subject (XEP-0045 §7.2.15, §7.2.16).
    fn send_history_and_subject(&self, from: &FullJid, el: &Element, out: &mut Vec<Element>) {
        let limit = el
            .get_child("x", MUC)
            .and_then(|x| x.get_child("history", MUC))
            .cloned();
        for m in self.history_for(limit.as_ref()) {
            let mut m = m;
            m.set_attr("to", from.to_string());
            out.push(m);
        }
        let subject = match &self.subject {
            Some((by, text)) => Element::new("message", ns::CLIENT)
                .with_attr("type", "groupchat")
                .with_attr(
                    "from",
                    if by.is_empty() {
                        self.jid.to_string()
                    } else {
                        self.occupant_jid(by)
                    },
                )
                .with_child(Element::new("subject", ns::CLIENT).with_text(text.clone())),
            None => Element::new("message", ns::CLIENT)
                .with_attr("type", "groupchat")
                .with_attr("from", self.jid.to_string())
                .with_child(Element::new("subject", ns::CLIENT)),
        };
        out.push(subject.with_attr("to", from.to_string()));
    }

    fn history_for(&self, limit: Option<&Element>) -> Vec<Element> {
        let max_stanzas = limit
            .and_then(|h| h.attr("maxstanzas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let max_chars = limit
            .and_then(|h| h.attr("maxchars"))
            .and_then(|v| v.parse::<usize>().ok());
        let since = limit
            .and_then(|h| h.attr("since"))
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&chrono::Utc));
        let seconds = limit
            .and_then(|h| h.attr("seconds"))
            .and_then(|v| v.parse::<i64>().ok());
        let now = chrono::Utc::now();
        let mut picked: Vec<Element> = Vec::new();
        let mut chars = 0usize;
        for (at, m) in self.history.iter().rev() {
            if picked.len() >= max_stanzas {
                break;
            }
            if since.is_some_and(|s| *at < s)
                || seconds.is_some_and(|s| (now - *at).num_seconds() > s)
            {
                break;
            }
            let mut m = m.clone();
            m.push_child(
                Element::new("delay", DELAY)
                    .with_attr("from", self.jid.to_string())
                    .with_attr("stamp", at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            );
            if let Some(max) = max_chars {
                chars += m.to_xml().len();
                if chars > max {
                    break;
                }
            }
            picked.push(m);
        }
        picked.reverse();
        picked
    }

    fn leave(
        &mut self,
        idx: usize,
        from: &FullJid,
        el: &Element,
        out: &mut Vec<Element>,
        statuses: &[u16],
    ) {
        let s = self.occupants[idx]
            .sessions
            .iter()
            .position(|(j, _)| j == from)
            .unwrap();
        let mut gone = el.clone();
        gone.set_attr("type", "unavailable");
        self.occupants[idx].sessions[s].1 = gone;
        let last = self.occupants[idx].sessions.len() == 1;
        if last {
            self.occupants[idx].role = Role::None;
            for r in &self.occupants {
                let sees = self.sees_jids(r);
                for (to, _) in &r.sessions {
                    let mut after: Vec<Element> = statuses.iter().map(|c| status(*c)).collect();
                    if to == from || r.nick == self.occupants[idx].nick {
                        after.push(status(110));
                    }
                    out.push(self.presence_for(idx, s, to, sees, &[], &[], &after));
                }
            }
            self.occupants.remove(idx);
        } else {
            let mut after: Vec<Element> = statuses.iter().map(|c| status(*c)).collect();
            after.push(status(110));
            out.push(self.presence_for(idx, s, from, true, &[], &[], &after));
            self.occupants[idx].sessions.remove(s);
        }
        if self.occupants.is_empty() && !self.config.persistent {
            self.destroyed = true;
        }
    }

    fn change_nick(
        &mut self,
        idx: usize,
        from: &FullJid,
        nick: &str,
        el: &Element,
        out: &mut Vec<Element>,
    ) {
        if nick.trim().is_empty() {
            out.push(err(
                el,
                StanzaError::jid_malformed().with_type(ErrorType::Modify),
            ));
            return;
        }
        if self.find_nick(nick).is_some() {
            let mut r = err(
                el,
                StanzaError::conflict().with_text("That nickname is taken"),
            );
            r.set_attr("from", self.occupant_jid(nick));
            out.push(r);
            return;
        }
        // Unavailable from the old nick with 303 and the new one, then available from the new.
        let s = self.occupants[idx]
            .sessions
            .iter()
            .position(|(j, _)| j == from)
            .unwrap();
        let mut gone = self.occupants[idx].sessions[s].1.clone();
        gone.set_attr("type", "unavailable");
        let keep = std::mem::replace(&mut self.occupants[idx].sessions[s].1, gone);
        for r in &self.occupants {
            let sees = self.sees_jids(r);
            for (to, _) in &r.sessions {
                let own = r.nick == self.occupants[idx].nick;
                let after = if own { vec![status(110)] } else { vec![] };
                let mut p = self.presence_for(idx, s, to, sees, &[], &[status(303)], &after);
                if let Some(item) = p
                    .get_child_mut("x", USER)
                    .and_then(|x| x.get_child_mut("item", USER))
                {
                    item.set_attr("nick", nick);
                }
                out.push(p);
            }
        }
        let _ = keep;
        self.occupants[idx].nick = nick.to_string();
        self.occupants[idx].sessions[s].1 = el.clone();
        self.broadcast_presence(idx, out, &[], &[], &[]);
    }

    /// A message to the room (groupchat, invitations) or to an occupant (private).
    pub fn message(
        &mut self,
        from: &FullJid,
        to_nick: Option<&str>,
        el: &Element,
        stanza_id: &str,
    ) -> Vec<Element> {
        let mut out = Vec::new();
        let mtype = el.attr("type").unwrap_or("normal");
        if mtype == "error" {
            return out;
        }
        let sender = self.find_session(from);
        if let Some(nick) = to_nick {
            // Private message (§7.5).
            let Some(si) = sender else {
                out.push(err(
                    el,
                    StanzaError::not_acceptable().with_text("You are not in this room"),
                ));
                return out;
            };
            if mtype == "groupchat" {
                out.push(err(el, StanzaError::bad_request()));
                return out;
            }
            let allowed = match self.config.allow_pm.as_str() {
                "none" => false,
                "moderators" => self.occupants[si].role == Role::Moderator,
                "participants" => self.occupants[si].role >= Role::Participant,
                _ => true,
            };
            if !allowed {
                out.push(err(
                    el,
                    StanzaError::forbidden().with_text("Private messages are not allowed"),
                ));
                return out;
            }
            let Some(ti) = self.find_nick(nick) else {
                out.push(err(
                    el,
                    StanzaError::item_not_found().with_text("No such occupant"),
                ));
                return out;
            };
            for (to, _) in &self.occupants[ti].sessions {
                let mut m = el.clone();
                m.set_attr("from", self.occupant_jid(&self.occupants[si].nick));
                m.set_attr("to", to.to_string());
                if !m.has_child("x", USER) {
                    m.push_child(Element::new("x", USER));
                }
                out.push(m);
            }
            return out;
        }
        if mtype != "groupchat" {
            return self.room_message(from, el);
        }
        let Some(si) = sender else {
            out.push(err(
                el,
                StanzaError::not_acceptable().with_text("You are not in this room"),
            ));
            return out;
        };
        if self.occupants[si].role < Role::Participant {
            out.push(err(
                el,
                StanzaError::forbidden().with_text("You have no voice"),
            ));
            return out;
        }
        let rate = self.message_rate;
        if rate > 0.0 && !self.occupants[si].may_send(rate) {
            out.push(err(
                el,
                StanzaError::resource_constraint().with_text("You are sending messages too fast"),
            ));
            return out;
        }
        let nick = self.occupants[si].nick.clone();
        if let Some(subject) = el.get_child("subject", ns::CLIENT) {
            if !(self.config.change_subject || self.occupants[si].role == Role::Moderator) {
                out.push(err(
                    el,
                    StanzaError::forbidden().with_text("You may not change the subject"),
                ));
                return out;
            }
            self.subject = Some((nick.clone(), subject.text()));
            self.dirty = true;
        }
        let mut m = el.clone();
        m.remove_attr("to");
        m.set_attr("from", self.occupant_jid(&nick));
        m.retain_children(|c| c.ns() != OCCUPANT_ID && c.name() != "delay");
        m.push_child(
            Element::new("occupant-id", OCCUPANT_ID).with_attr("id", self.occupants[si].id.clone()),
        );
        // XEP-0359: the room's id for this message, as stored in its archive.
        m.retain_children(|c| {
            !(c.ns() == "urn:xmpp:sid:0" && c.attr("by") == Some(self.jid.as_str()))
        });
        m.push_child(
            Element::new("stanza-id", "urn:xmpp:sid:0")
                .with_attr("id", stanza_id)
                .with_attr("by", self.jid.to_string()),
        );
        for r in &self.occupants {
            for (to, _) in &r.sessions {
                let mut c = m.clone();
                c.set_attr("to", to.to_string());
                out.push(c);
            }
        }
        if m.has_child("body", ns::CLIENT) {
            self.to_archive = Some(m.clone());
        }
        if m.has_child("body", ns::CLIENT) && self.config.history_length > 0 {
            self.history.push_back((chrono::Utc::now(), m));
            while self.history.len() > self.config.history_length {
                self.history.pop_front();
            }
        }
        out
    }

    /// Non-groupchat messages to the room itself: mediated invitations and declines (§7.8.2).
    fn room_message(&mut self, from: &FullJid, el: &Element) -> Vec<Element> {
        let mut out = Vec::new();
        if let Some(form) = el
            .children()
            .find(|c| c.is("x", forms::NS))
            .filter(|x| x.attr("type") == Some("submit"))
        {
            let v = forms::values(form);
            if v.get("FORM_TYPE")
                .and_then(|f| f.first())
                .map(String::as_str)
                == Some(REQUEST_FORM)
            {
                self.voice_request(from, el, &v, &mut out);
                return out;
            }
        }
        let Some(x) = el.get_child("x", USER) else {
            out.push(err(el, StanzaError::bad_request()));
            return out;
        };
        if let Some(inv) = x.get_child("invite", USER) {
            let Some(to) = inv.attr("to").and_then(|t| Jid::new(t).ok()) else {
                out.push(err(el, StanzaError::jid_malformed()));
                return out;
            };
            let sender = self.find_session(from);
            let role = sender.map(|i| self.occupants[i].role).unwrap_or(Role::None);
            let aff = self.affiliation(&from.to_bare());
            if sender.is_none()
                || (self.config.members_only
                    && !self.config.allow_invites
                    && aff < Affiliation::Admin)
            {
                out.push(err(el, StanzaError::forbidden()));
                return out;
            }
            let _ = role;
            if self.config.members_only && self.affiliation(&to.to_bare()) < Affiliation::Member {
                self.affiliations
                    .insert(to.to_bare().to_string(), Affiliation::Member);
                self.dirty = true;
            }
            let inviter = sender
                .map(|i| self.occupant_jid(&self.occupants[i].nick))
                .unwrap_or_else(|| from.to_bare().to_string());
            let reason = inv
                .get_child("reason", USER)
                .cloned()
                .unwrap_or_else(|| Element::new("reason", USER));
            let invite = Element::new("invite", USER)
                .with_attr("from", inviter.clone())
                .with_child(reason.clone());
            let mut ux = Element::new("x", USER).with_child(invite);
            if !self.config.password.is_empty() {
                ux.push_child(
                    Element::new("password", USER).with_text(self.config.password.clone()),
                );
            }
            let body = format!("{inviter} invited you to the room {}", self.jid);
            // XEP-0249's element too, for clients that only know direct invitations.
            let direct = Element::new("x", "jabber:x:conference")
                .with_attr("jid", self.jid.to_string())
                .with_opt_attr(
                    "password",
                    (!self.config.password.is_empty()).then(|| self.config.password.clone()),
                )
                .with_opt_attr("reason", Some(reason.text()).filter(|r| !r.is_empty()));
            out.push(
                Element::new("message", ns::CLIENT)
                    .with_attr("from", self.jid.to_string())
                    .with_attr("to", to.to_string())
                    .with_opt_attr("id", el.attr("id"))
                    .with_child(ux)
                    .with_child(Element::new("body", ns::CLIENT).with_text(body))
                    .with_child(direct),
            );
            return out;
        }
        if let Some(dec) = x.get_child("decline", USER) {
            if let Some(to) = dec.attr("to").and_then(|t| Jid::new(t).ok()) {
                let mut d =
                    Element::new("decline", USER).with_attr("from", from.to_bare().to_string());
                if let Some(r) = dec.get_child("reason", USER) {
                    d.push_child(r.clone());
                }
                out.push(
                    Element::new("message", ns::CLIENT)
                        .with_attr("from", self.jid.to_string())
                        .with_attr("to", to.to_string())
                        .with_child(Element::new("x", USER).with_child(d)),
                );
            }
            return out;
        }
        out.push(err(el, StanzaError::bad_request()));
        out
    }

    /// Owner and admin IQs (§9, §10).
    pub fn iq(&mut self, from: &FullJid, el: &Element) -> Vec<Element> {
        let payload = el
            .children()
            .next()
            .cloned()
            .unwrap_or_else(|| Element::new("none", ""));
        let get = el.attr("type") == Some("get");
        let result = match (payload.ns(), payload.name()) {
            (OWNER, "query") => self.owner(from, &payload, get),
            (ADMIN, "query") => self.admin(from, &payload, get),
            (REGISTER, "query") => self.register(from, &payload, get),
            _ => Err(StanzaError::service_unavailable()),
        };
        match result {
            Ok((payload, mut extra)) => {
                let mut reply = stanza::iq_result(el);
                if let Some(p) = payload {
                    reply.push_child(p);
                }
                // Prosody's order: configuration results before the notices they cause,
                // affiliation and role notices before the result.
                if payload_ns_is_owner(el) {
                    extra.insert(0, reply);
                } else {
                    extra.push(reply);
                }
                extra
            }
            Err(e) => vec![err(el, e)],
        }
    }

    pub fn config_form(&self) -> Element {
        self.config_template().to_element()
    }

    /// The muc#roomconfig form with the current values; submissions are checked against it.
    fn config_template(&self) -> forms::Form {
        let c = &self.config;
        forms::Form::new(
            "form",
            Some("Room configuration"),
            vec![
                Field::hidden("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"),
                Field::text("muc#roomconfig_roomname", "Name", &c.name),
                Field::text("muc#roomconfig_roomdesc", "Description", &c.description),
                Field::boolean(
                    "muc#roomconfig_persistentroom",
                    "Persistent (kept when empty)",
                    c.persistent,
                ),
                Field::boolean(
                    "muc#roomconfig_publicroom",
                    "Listed in the room directory",
                    c.public,
                ),
                Field::boolean("muc#roomconfig_membersonly", "Members only", c.members_only),
                Field::boolean(
                    "muc#roomconfig_moderatedroom",
                    "Moderated (only participants may speak)",
                    c.moderated,
                ),
                Field::boolean(
                    "muc#roomconfig_passwordprotectedroom",
                    "Password protected",
                    !c.password.is_empty(),
                ),
                Field::new(
                    "muc#roomconfig_roomsecret",
                    "text-private",
                    "Password",
                    vec![c.password.clone()],
                ),
                Field::integer(
                    "muc#roomconfig_maxusers",
                    "Maximum occupants",
                    c.max_users as i64,
                    Some(1),
                    None,
                ),
                Field::list(
                    "muc#roomconfig_whois",
                    "Who may see real JIDs",
                    if c.whois_anyone {
                        "anyone"
                    } else {
                        "moderators"
                    },
                    &[("Moderators", "moderators"), ("Anyone", "anyone")],
                ),
                Field::integer(
                    "muc#roomconfig_historylength",
                    "Messages of history sent on join",
                    c.history_length as i64,
                    Some(0),
                    None,
                ),
                Field::list(
                    "muc#roomconfig_allowpm",
                    "Who may send private messages",
                    &c.allow_pm,
                    &[
                        ("Anyone", "anyone"),
                        ("Participants", "participants"),
                        ("Moderators", "moderators"),
                        ("Nobody", "none"),
                    ],
                ),
                Field::boolean(
                    "muc#roomconfig_changesubject",
                    "Occupants may change the subject",
                    c.change_subject,
                ),
                Field::boolean(
                    "muc#roomconfig_allowinvites",
                    "Occupants may invite others",
                    c.allow_invites,
                ),
                Field::list_multi(
                    "muc#roomconfig_presencebroadcast",
                    "Roles whose presence is shown",
                    &c.presence_broadcast,
                    &[
                        ("Moderator", "moderator"),
                        ("Participant", "participant"),
                        ("Visitor", "visitor"),
                        ("Offline members", "none"),
                    ],
                ),
            ],
        )
    }

    fn apply_config(&mut self, x: &Element) -> Result<Vec<u16>, StanzaError> {
        let submitted = forms::Form::parse(x)?;
        self.config_template().validate(&submitted)?;
        let v = forms::values(x);
        // A submitted field with no <value/> means the empty string.
        let one = |k: &str| {
            v.get(k)
                .map(|vals| vals.first().cloned().unwrap_or_default())
        };
        let boolean = |k: &str| one(k).and_then(|s| forms::parse_bool(&s));
        let mut c = self.config.clone();
        if let Some(s) = one("muc#roomconfig_roomname") {
            c.name = s;
        }
        if let Some(s) = one("muc#roomconfig_roomdesc") {
            c.description = s;
        }
        if let Some(b) = boolean("muc#roomconfig_persistentroom") {
            c.persistent = b;
        }
        if let Some(b) = boolean("muc#roomconfig_publicroom") {
            c.public = b;
        }
        if let Some(b) = boolean("muc#roomconfig_membersonly") {
            c.members_only = b;
        }
        if let Some(b) = boolean("muc#roomconfig_moderatedroom") {
            c.moderated = b;
        }
        if let Some(s) = one("muc#roomconfig_roomsecret") {
            c.password = s;
        }
        if boolean("muc#roomconfig_passwordprotectedroom") == Some(false) {
            c.password.clear();
        }
        if let Some(s) = one("muc#roomconfig_maxusers") {
            c.max_users = s
                .parse()
                .map_err(|_| StanzaError::not_acceptable().with_text("maxusers"))?;
        }
        if let Some(s) = one("muc#roomconfig_whois") {
            c.whois_anyone = s == "anyone";
        }
        if let Some(s) = one("muc#roomconfig_historylength") {
            c.history_length = s
                .parse::<usize>()
                .map_err(|_| StanzaError::not_acceptable())?
                .min(200);
        }
        if let Some(s) = one("muc#roomconfig_allowpm") {
            if !["anyone", "participants", "moderators", "none"].contains(&s.as_str()) {
                return Err(StanzaError::not_acceptable().with_text("allowpm"));
            }
            c.allow_pm = s;
        }
        if let Some(b) = boolean("muc#roomconfig_changesubject") {
            c.change_subject = b;
        }
        if let Some(b) = boolean("muc#roomconfig_allowinvites") {
            c.allow_invites = b;
        }
        if let Some(roles) = v.get("muc#roomconfig_presencebroadcast") {
            if roles
                .iter()
                .any(|r| !["moderator", "participant", "visitor", "none"].contains(&r.as_str()))
            {
                return Err(StanzaError::not_acceptable().with_text("presencebroadcast"));
            }
            c.presence_broadcast = roles.clone();
        }
        let mut codes = vec![];
        if c.whois_anyone != self.config.whois_anyone {
            codes.push(if c.whois_anyone { 172 } else { 173 });
        }
        if c != self.config {
            codes.push(104);
        }
        self.config = c;
        self.dirty = true;
        Ok(codes)
    }

    #[allow(clippy::type_complexity)]
    fn owner(
        &mut self,
        from: &FullJid,
        q: &Element,
        get: bool,
    ) -> Result<(Option<Element>, Vec<Element>), StanzaError> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err(StanzaError::forbidden().with_text("Owners only"));
        }
        if get {
            return Ok((
                Some(Element::new("query", OWNER).with_child(self.config_form())),
                vec![],
            ));
        }
        if let Some(d) = q.get_child("destroy", OWNER) {
            return Ok((None, self.destroy(d)));
        }
        let Some(x) = q.get_child("x", forms::NS) else {
            return Err(StanzaError::bad_request());
        };
        match x.attr("type") {
            Some("submit") => {
                let codes = self.apply_config(x)?;
                let was_locked = std::mem::replace(&mut self.locked, false);
                let mut notes = Vec::new();
                let _ = was_locked;
                if !codes.is_empty() {
                    let mut ux = Element::new("x", USER);
                    for c in codes {
                        ux.push_child(status(c));
                    }
                    for r in &self.occupants {
                        for (to, _) in &r.sessions {
                            notes.push(
                                Element::new("message", ns::CLIENT)
                                    .with_attr("type", "groupchat")
                                    .with_attr("from", self.jid.to_string())
                                    .with_attr("to", to.to_string())
                                    .with_child(ux.clone()),
                            );
                        }
                    }
                }
                if self.config.members_only {
                    // Non-members leave a room that became members-only (§9.6, code 322).
                    let outs: Vec<(usize, FullJid)> = self
                        .occupants
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| self.affiliation(&o.bare) < Affiliation::Member)
                        .flat_map(|(i, o)| o.sessions.iter().map(move |(j, _)| (i, j.clone())))
                        .collect();
                    for (_, j) in outs.into_iter().rev() {
                        if let Some(i) = self.find_session(&j) {
                            let pres = Element::new("presence", ns::CLIENT)
                                .with_attr("type", "unavailable");
                            self.leave(i, &j, &pres, &mut notes, &[322]);
                        }
                    }
                }
                Ok((None, notes))
            }
            Some("cancel") => {
                if self.locked {
                    let d = Element::new("destroy", OWNER);
                    return Ok((None, self.destroy(&d)));
                }
                Ok((None, vec![]))
            }
            _ => Err(StanzaError::bad_request()),
        }
    }

    /// Destroys the room at the service's request (an administrator): occupants are told why.
    pub fn destroy_by_service(&mut self, reason: Option<&str>) -> Vec<Element> {
        let mut d = Element::new("destroy", OWNER);
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            d.push_child(Element::new("reason", OWNER).with_text(r));
        }
        self.destroy(&d)
    }

    fn destroy(&mut self, d: &Element) -> Vec<Element> {
        let mut out = Vec::new();
        let mut destroy = Element::new("destroy", USER).with_opt_attr("jid", d.attr("jid"));
        if let Some(r) = d.get_child("reason", OWNER) {
            destroy.push_child(Element::new("reason", USER).with_text(r.text()));
        }
        for o in &self.occupants {
            for (to, _) in &o.sessions {
                out.push(
                    Element::new("presence", ns::CLIENT)
                        .with_attr("type", "unavailable")
                        .with_attr("from", self.occupant_jid(&o.nick))
                        .with_attr("to", to.to_string())
                        .with_child(
                            Element::new("x", USER)
                                .with_child(
                                    Element::new("item", USER)
                                        .with_attr("affiliation", "none")
                                        .with_attr("role", "none"),
                                )
                                .with_child(destroy.clone())
                                // Each copy is the recipient's own presence.
                                .with_child(status(110)),
                        ),
                );
            }
        }
        self.occupants.clear();
        self.destroyed = true;
        self.dirty = true;
        out
    }

    #[allow(clippy::type_complexity)]
    fn admin(
        &mut self,
        from: &FullJid,
        q: &Element,
        get: bool,
    ) -> Result<(Option<Element>, Vec<Element>), StanzaError> {
        let actor_aff = self.affiliation(&from.to_bare());
        let actor_idx = self.find_session(from);
        let actor_role = actor_idx
            .map(|i| self.occupants[i].role)
            .unwrap_or(Role::None);
        let items: Vec<Element> = q
            .children()
            .filter(|c| c.is("item", ADMIN))
            .cloned()
            .collect();
        if items.is_empty() {
            return Err(StanzaError::bad_request());
        }
        if get {
            let it = &items[0];
            let mut res = Element::new("query", ADMIN);
            if let Some(a) = it.attr("affiliation").and_then(Affiliation::parse) {
                // Members may read the member list, and every list where real JIDs are public.
                let member_may = actor_aff == Affiliation::Member
                    && (a == Affiliation::Member || self.config.whois_anyone);
                if actor_aff < Affiliation::Admin && !member_may {
                    return Err(StanzaError::forbidden());
                }
                for (j, aff) in &self.affiliations {
                    if *aff == a {
                        res.push_child(
                            Element::new("item", ADMIN)
                                .with_attr("affiliation", a.as_str())
                                .with_attr("jid", j.clone())
                                .with_opt_attr("nick", self.reserved.get(j).cloned()),
                        );
                    }
                }
            } else if let Some(r) = it.attr("role").and_then(Role::parse) {
                if actor_role != Role::Moderator {
                    return Err(StanzaError::forbidden());
                }
                for o in self.occupants.iter().filter(|o| o.role == r) {
                    res.push_child(
                        Element::new("item", ADMIN)
                            .with_attr("role", r.as_str())
                            .with_attr("nick", o.nick.clone())
                            .with_attr("affiliation", self.affiliation(&o.bare).as_str())
                            .with_attr("jid", o.sessions[0].0.to_string()),
                    );
                }
            } else {
                return Err(StanzaError::bad_request());
            }
            return Ok((Some(res), vec![]));
        }
        let mut out = Vec::new();
        let actor_nick = actor_idx.map(|i| self.occupants[i].nick.clone());
        for it in items {
            let reason = it.child_text("reason", ADMIN);
            // The target: by JID (affiliations) or by nick (roles, or affiliations of occupants).
            let target_bare = match (it.attr("jid"), it.attr("nick")) {
                (Some(j), _) => Some(
                    Jid::new(j)
                        .map_err(|_| StanzaError::jid_malformed())?
                        .to_bare(),
                ),
                (None, Some(n)) => self.find_nick(n).map(|i| self.occupants[i].bare.clone()),
                (None, None) => return Err(StanzaError::bad_request()),
            };
            let Some(target) = target_bare else {
                return Err(StanzaError::item_not_found());
            };
            let target_aff = self.affiliation(&target);
            if let Some(aff) = it.attr("affiliation") {
                let aff = Affiliation::parse(aff).ok_or_else(StanzaError::bad_request)?;
                let needed = if aff >= Affiliation::Admin || target_aff >= Affiliation::Admin {
                    Affiliation::Owner
                } else {
                    Affiliation::Admin
                };
                if actor_aff < needed {
                    return Err(StanzaError::not_allowed());
                }
                if target == from.to_bare()
                    && aff < Affiliation::Owner
                    && actor_aff == Affiliation::Owner
                {
                    let owners = self
                        .affiliations
                        .values()
                        .filter(|a| **a == Affiliation::Owner)
                        .count();
                    if owners <= 1 {
                        return Err(
                            StanzaError::conflict().with_text("The last owner cannot step down")
                        );
                    }
                }
                if aff == Affiliation::None {
                    self.affiliations.remove(target.as_str());
                } else {
                    self.affiliations.insert(target.to_string(), aff);
                }
                if aff < Affiliation::Member {
                    self.reserved.remove(target.as_str());
                } else if let Some(n) = it.attr("nick").filter(|_| it.attr("jid").is_some()) {
                    if self.reserved_by_other(n, &target) {
                        return Err(StanzaError::conflict().with_text("That nickname is reserved"));
                    }
                    self.reserved.insert(target.to_string(), n.to_string());
                    self.evict_squatter(n, &target, &mut out);
                }
                self.dirty = true;
                self.after_affiliation_change(
                    &target,
                    aff,
                    reason,
                    Some(from),
                    actor_nick.as_deref(),
                    &mut out,
                );
            } else if let Some(role) = it.attr("role") {
                let role = Role::parse(role).ok_or_else(StanzaError::bad_request)?;
                let Some(ti) = it
                    .attr("nick")
                    .and_then(|n| self.find_nick(n))
                    .or_else(|| self.occupants.iter().position(|o| o.bare == target))
                else {
                    return Err(StanzaError::item_not_found());
                };
                if actor_role != Role::Moderator
                    || (role == Role::Moderator && actor_aff < Affiliation::Admin)
                {
                    return Err(StanzaError::not_allowed());
                }
                if target_aff > actor_aff
                    || (role == Role::None && target_aff >= Affiliation::Admin)
                {
                    return Err(StanzaError::not_allowed());
                }
                if role == Role::None {
                    self.remove_occupant(
                        ti,
                        &[307],
                        reason,
                        Some(from),
                        actor_nick.as_deref(),
                        &mut out,
                    );
                } else {
                    self.occupants[ti].role = role;
                    let extra = actor_elements(reason, Some(from), actor_nick.as_deref());
                    self.broadcast_change(ti, &extra, &mut out);
                }
            } else {
                return Err(StanzaError::bad_request());
            }
        }
        Ok((None, out))
    }

    fn after_affiliation_change(
        &mut self,
        target: &BareJid,
        aff: Affiliation,
        reason: Option<String>,
        actor: Option<&FullJid>,
        actor_nick: Option<&str>,
        out: &mut Vec<Element>,
    ) {
        let Some(ti) = self.occupants.iter().position(|o| &o.bare == target) else {
            // Not in the room: tell those who may know (Prosody sends this to occupants).
            let item = Element::new("item", USER)
                .with_attr("jid", target.to_string())
                .with_attr("affiliation", aff.as_str());
            for r in &self.occupants {
                if !self.sees_jids(r) {
                    continue;
                }
                for (to, _) in &r.sessions {
                    out.push(
                        Element::new("message", ns::CLIENT)
                            .with_attr("from", self.jid.to_string())
                            .with_attr("to", to.to_string())
                            .with_child(Element::new("x", USER).with_child(item.clone())),
                    );
                }
            }
            return;
        };
        if aff == Affiliation::Outcast {
            self.remove_occupant(ti, &[301], reason, actor, actor_nick, out);
            return;
        }
        if self.config.members_only && aff < Affiliation::Member {
            self.remove_occupant(ti, &[321], reason, actor, actor_nick, out);
            return;
        }
        self.occupants[ti].role = self.initial_role(aff).max(if aff >= Affiliation::Admin {
            Role::Moderator
        } else {
            Role::Visitor
        });
        if aff < Affiliation::Admin && self.occupants[ti].role == Role::Moderator {
            self.occupants[ti].role = Role::Participant;
        }
        let extra = actor_elements(reason, actor, actor_nick);
        self.broadcast_change(ti, &extra, out);
    }

    /// An occupant's new affiliation or role, to everyone in the room.
    fn broadcast_change(&self, ti: usize, extra: &[(Element, bool)], out: &mut Vec<Element>) {
        let s = self.occupants[ti].sessions.len() - 1;
        for r in &self.occupants {
            let sees = self.sees_jids(r);
            let own = r.nick == self.occupants[ti].nick;
            // The self-presence names the actor by nick only (as Prosody does).
            let extra: Vec<Element> = extra
                .iter()
                .map(|(e, full)| actor_view(e, *full && sees && !own))
                .collect();
            for (to, _) in &r.sessions {
                let after = if own { vec![status(110)] } else { vec![] };
                out.push(self.presence_for(ti, s, to, sees, &extra, &[], &after));
            }
        }
    }

    fn remove_occupant(
        &mut self,
        ti: usize,
        codes: &[u16],
        reason: Option<String>,
        actor: Option<&FullJid>,
        actor_nick: Option<&str>,
        out: &mut Vec<Element>,
    ) {
        self.occupants[ti].role = Role::None;
        let extra = actor_elements(reason, actor, actor_nick);
        let s = self.occupants[ti].sessions.len() - 1;
        for (j, p) in self.occupants[ti].sessions.iter_mut() {
            let _ = j;
            p.set_attr("type", "unavailable");
            p.retain_children(|_| false);
        }
        for r in &self.occupants {
            let sees = self.sees_jids(r);
            let own = r.nick == self.occupants[ti].nick;
            let extra: Vec<Element> = extra
                .iter()
                .map(|(e, full)| actor_view(e, *full && sees))
                .collect();
            for (to, _) in &r.sessions {
                let mut after: Vec<Element> = codes.iter().map(|c| status(*c)).collect();
                if own {
                    after.push(status(110));
                }
                out.push(self.presence_for(ti, s, to, sees, &extra, &[], &after));
            }
        }
        self.occupants.remove(ti);
        if self.occupants.is_empty() && !self.config.persistent {
            self.destroyed = true;
        }
    }

    /// Voice requests (§7.13) go to the moderators as a form; a moderator's approved form
    /// (§8.6) gives the occupant voice.
    fn voice_request(
        &mut self,
        from: &FullJid,
        el: &Element,
        v: &std::collections::HashMap<String, Vec<String>>,
        out: &mut Vec<Element>,
    ) {
        let first = |k: &str| v.get(k).and_then(|x| x.first()).cloned();
        let Some(si) = self.find_session(from) else {
            out.push(err(
                el,
                StanzaError::not_acceptable().with_text("You are not in this room"),
            ));
            return;
        };
        if self.occupants[si].role == Role::Moderator {
            // A moderator's decision on a request.
            let allow = first("muc#request_allow").and_then(|b| forms::parse_bool(&b));
            let Some(nick) = first("muc#roomnick") else {
                out.push(err(el, StanzaError::bad_request()));
                return;
            };
            if allow == Some(true) {
                if let Some(ti) = self.find_nick(&nick) {
                    if self.occupants[ti].role == Role::Visitor {
                        self.occupants[ti].role = Role::Participant;
                        let nick = self.occupants[si].nick.clone();
                        let extra = actor_elements(None, Some(from), Some(&nick));
                        self.broadcast_change(ti, &extra, out);
                    }
                }
            }
            return;
        }
        if self.occupants[si].role != Role::Visitor {
            // Participants already have voice; nothing to ask for.
            return;
        }
        let o = &self.occupants[si];
        let form = forms::form(
            "form",
            Some("Voice request"),
            &[
                Field::hidden("FORM_TYPE", REQUEST_FORM),
                Field::list(
                    "muc#role",
                    "Requested role",
                    "participant",
                    &[("Participant", "participant")],
                ),
                Field::new("muc#jid", "jid-single", "User ID", vec![from.to_string()]),
                Field::text("muc#roomnick", "Room nickname", &o.nick),
                Field::boolean("muc#request_allow", "Grant voice to this person?", false),
            ],
        );
        for m in self.occupants.iter().filter(|m| m.role == Role::Moderator) {
            for (to, _) in &m.sessions {
                out.push(
                    Element::new("message", ns::CLIENT)
                        .with_attr("from", self.jid.to_string())
                        .with_attr("to", to.to_string())
                        .with_child(form.clone()),
                );
            }
        }
    }

    /// The presence of a member who is not in the room, under the nick they reserved.
    fn offline_member(&self, bare: &str, nick: &str, to: &FullJid, sees: bool) -> Element {
        let aff = self
            .affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None);
        let item = Element::new("item", USER)
            .with_attr("nick", nick)
            .with_attr("affiliation", aff.as_str())
            .with_attr("role", "none")
            .with_opt_attr("jid", sees.then(|| bare.to_string()));
        Element::new("presence", ns::CLIENT)
            .with_attr("from", self.occupant_jid(nick))
            .with_attr("to", to.to_string())
            .with_attr("type", "unavailable")
            .with_child(Element::new("x", USER).with_child(item))
    }

    /// Whether `nick` is reserved by someone other than `bare`.
    fn reserved_by_other(&self, nick: &str, bare: &BareJid) -> bool {
        self.reserved
            .iter()
            .any(|(j, n)| n == nick && j != bare.as_str())
    }

    /// Someone else sitting on a nick just reserved for `owner` leaves (Prosody: code 307).
    fn evict_squatter(&mut self, nick: &str, owner: &BareJid, out: &mut Vec<Element>) {
        if let Some(i) = self
            .find_nick(nick)
            .filter(|i| &self.occupants[*i].bare != owner)
        {
            let reason = Some("This nickname is reserved".to_string());
            self.remove_occupant(i, &[307], reason, None, None, out);
        }
    }

    /// In-room registration (XEP-0045 §7.10): members reserve their nickname; `<remove/>` gives up
    /// membership. Unaffiliated users cannot register themselves (as Prosody by default).
    #[allow(clippy::type_complexity)]
    fn register(
        &mut self,
        from: &FullJid,
        q: &Element,
        get: bool,
    ) -> Result<(Option<Element>, Vec<Element>), StanzaError> {
        let bare = from.to_bare();
        let aff = self.affiliation(&bare);
        if aff < Affiliation::Member {
            return Err(StanzaError {
                kind: ErrorType::Auth,
                condition: "registration-required",
                text: None,
                extra: None,
            });
        }
        let mut out = Vec::new();
        if get {
            let mut q = Element::new("query", REGISTER);
            let current = self.reserved.get(bare.as_str()).cloned();
            if current.is_some() {
                q.push_child(Element::new("registered", REGISTER));
            }
            let nick = Field::new(
                "muc#register_roomnick",
                "text-single",
                "Nickname",
                current.into_iter().collect(),
            )
            .required();
            q.push_child(forms::form(
                "form",
                None,
                &[Field::hidden("FORM_TYPE", REGISTER_FORM), nick],
            ));
            return Ok((Some(q), out));
        }
        if q.has_child("remove", REGISTER) {
            if aff == Affiliation::Owner
                && self
                    .affiliations
                    .values()
                    .filter(|a| **a == Affiliation::Owner)
                    .count()
                    <= 1
            {
                return Err(StanzaError::conflict().with_text("The last owner cannot leave"));
            }
            self.affiliations.remove(bare.as_str());
            self.reserved.remove(bare.as_str());
            self.dirty = true;
            self.after_affiliation_change(&bare, Affiliation::None, None, None, None, &mut out);
            return Ok((None, out));
        }
        let x = q
            .get_child("x", forms::NS)
            .filter(|x| x.attr("type") == Some("submit"))
            .ok_or_else(StanzaError::bad_request)?;
        let v = forms::values(x);
        if v.get("FORM_TYPE")
            .and_then(|f| f.first())
            .map(String::as_str)
            != Some(REGISTER_FORM)
        {
            return Err(StanzaError::bad_request().with_text("FORM_TYPE must be muc#register"));
        }
        let nick = v
            .get("muc#register_roomnick")
            .and_then(|n| n.first())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| StanzaError::not_acceptable().with_text("A nickname is required"))?;
        if Jid::new(&format!("{}/{}", self.jid, nick)).is_err() {
            return Err(StanzaError::jid_malformed().with_type(ErrorType::Modify));
        }
        let taken = self
            .find_nick(&nick)
            .is_some_and(|i| self.occupants[i].bare != bare);
        if taken || self.reserved_by_other(&nick, &bare) {
            return Err(StanzaError::conflict().with_text("That nickname is taken"));
        }
        self.reserved.insert(bare.to_string(), nick);
        self.dirty = true;
        if let Some(i) = self.occupants.iter().position(|o| o.bare == bare) {
            self.broadcast_change(i, &[], &mut out);
        }
        Ok((None, out))
    }

    /// Disco#info on node `x-roomuser-item`: the asker's reserved nickname (§7.10, "discovering
    /// reserved room nickname").
    pub fn reserved_nick_info(&self, from: &FullJid) -> Element {
        const INFO: &str = "http://jabber.org/protocol/disco#info";
        let mut q = Element::new("query", INFO).with_attr("node", "x-roomuser-item");
        if let Some(n) = self.reserved.get(from.to_bare().as_str()) {
            q.push_child(
                Element::new("identity", INFO)
                    .with_attr("category", "conference")
                    .with_attr("type", "text")
                    .with_attr("name", n.clone()),
            );
        }
        q
    }

    /// The presence updates that waited (see [`PRESENCE_INTERVAL`]), each occupant's latest.
    pub fn flush_presence(&mut self) -> Vec<Element> {
        self.presence_waiting = false;
        self.flush_scheduled = false;
        let mut out = Vec::new();
        let now = std::time::Instant::now();
        for i in 0..self.occupants.len() {
            if self.occupants[i].deferred {
                self.occupants[i].deferred = false;
                self.occupants[i].last_broadcast = Some(now);
                self.broadcast_presence(i, &mut out, &[], &[], &[]);
            }
        }
        out
    }

    /// XEP-0410: is `from` joined as `nick`?
    pub fn is_joined_as(&self, from: &FullJid, nick: &str) -> bool {
        self.find_session(from)
            .is_some_and(|i| self.occupants[i].nick == nick)
    }

    /// Disco#info of the room (XEP-0045 §6.4) with muc#roominfo.
    pub fn disco_info(&self) -> Element {
        const INFO: &str = "http://jabber.org/protocol/disco#info";
        let c = &self.config;
        let mut q = Element::new("query", INFO).with_child(
            Element::new("identity", INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr(
                    "name",
                    if c.name.is_empty() {
                        self.jid.node().map(|n| n.to_string()).unwrap_or_default()
                    } else {
                        c.name.clone()
                    },
                ),
        );
        let features = [
            MUC,
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            OCCUPANT_ID,
            "urn:xmpp:ping",
            "urn:xmpp:mam:2",
            "urn:xmpp:sid:0",
            REGISTER,
            REQUEST_FORM,
            if c.public { "muc_public" } else { "muc_hidden" },
            if c.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if c.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if c.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if c.password.is_empty() {
                "muc_unsecured"
            } else {
                "muc_passwordprotected"
            },
            if c.whois_anyone {
                "muc_nonanonymous"
            } else {
                "muc_semianonymous"
            },
        ];
        for f in features {
            q.push_child(Element::new("feature", INFO).with_attr("var", f));
        }
        q.push_child(forms::form(
            "result",
            None,
            &[
                Field::hidden("FORM_TYPE", "http://jabber.org/protocol/muc#roominfo"),
                Field::text("muc#roominfo_description", "Description", &c.description),
                Field::text(
                    "muc#roominfo_occupants",
                    "Number of occupants",
                    &self.occupants.len().to_string(),
                ),
                Field::text("muc#roomconfig_roomname", "Name", &c.name),
                Field::boolean(
                    "muc#roomconfig_changesubject",
                    "Occupants may change the subject",
                    c.change_subject,
                ),
                Field::text(
                    "muc#roominfo_subject",
                    "Subject",
                    self.subject.as_ref().map(|(_, s)| s.as_str()).unwrap_or(""),
                ),
            ],
        ));
        q
    }
}

/// The `<actor/>` and `<reason/>` children of an item; the bool says whether the actor's real
/// JID may be shown (replaced per recipient by [`actor_view`]).
fn actor_elements(
    reason: Option<String>,
    actor: Option<&FullJid>,
    actor_nick: Option<&str>,
) -> Vec<(Element, bool)> {
    let mut v: Vec<(Element, bool)> = actor
        .map(|a| {
            (
                Element::new("actor", USER)
                    .with_attr("jid", a.to_string())
                    .with_opt_attr("nick", actor_nick.map(str::to_string)),
                true,
            )
        })
        .into_iter()
        .collect();
    if let Some(r) = reason {
        v.push((Element::new("reason", USER).with_text(r), false));
    }
    v
}

fn actor_view(e: &Element, show_jid: bool) -> Element {
    let mut e = e.clone();
    if e.name() == "actor" && !show_jid {
        e.remove_attr("jid");
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> FullJid {
        FullJid::new(s).unwrap()
    }

    fn join(nick: &str) -> Element {
        Element::parse(&format!(
            "<presence xmlns='jabber:client' to='r@muc/{nick}'><x xmlns='{MUC}'/></presence>"
        ))
        .unwrap()
    }

    fn new_room() -> Room {
        let mut r = Room::new(BareJid::new("r@muc").unwrap(), Config::default());
        r.affiliations.insert("owner@h".into(), Affiliation::Owner);
        r
    }

    fn iq(body: &str) -> Element {
        Element::parse(&format!(
            "<iq xmlns='jabber:client' id='i' to='r@muc' type='set'>{body}</iq>"
        ))
        .unwrap()
    }

    fn register_nick(nick: &str) -> Element {
        iq(&format!(
            "<query xmlns='{REGISTER}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>{REGISTER_FORM}</value></field>\
             <field var='muc#register_roomnick'><value>{nick}</value></field></x></query>"
        ))
    }

    #[test]
    fn members_reserve_nicks_others_cannot_take_them() {
        let mut r = new_room();
        r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        // Unaffiliated users may not register.
        let out = r.iq(&full("m@h/x"), &register_nick("Emm"));
        assert!(out[0].to_xml().contains("registration-required"));
        r.affiliations.insert("m@h".into(), Affiliation::Member);
        let out = r.iq(&full("m@h/x"), &register_nick("Emm"));
        assert_eq!(out.last().unwrap().attr("type"), Some("result"));
        // The nick is taken for everyone else, but not for its owner.
        let out = r.presence(&full("z@h/b"), "Emm", &join("Emm"), false);
        assert!(out[0].to_xml().contains("conflict"));
        let info = r.reserved_nick_info(&full("m@h/other"));
        assert_eq!(
            info.get_child("identity", "http://jabber.org/protocol/disco#info")
                .and_then(|i| i.attr("name")),
            Some("Emm")
        );
        // An owner reserving a nick someone else sits on evicts them with 307.
        r.presence(&full("z@h/b"), "Zed", &join("Zed"), false);
        let set = iq(&format!(
            "<query xmlns='{ADMIN}'><item affiliation='member' jid='q@h' nick='Zed'/></query>"
        ));
        let out = r.iq(&full("owner@h/a"), &set);
        assert!(out
            .iter()
            .any(|e| e.attr("to") == Some("z@h/b") && e.to_xml().contains("307")));
        assert!(r.nick_of(&full("z@h/b")).is_none());
        // <remove/> gives up both the nick and the membership.
        let out = r.iq(
            &full("m@h/x"),
            &iq(&format!("<query xmlns='{REGISTER}'><remove/></query>")),
        );
        assert_eq!(out.last().unwrap().attr("type"), Some("result"));
        assert_eq!(
            r.affiliation(&BareJid::new("m@h").unwrap()),
            Affiliation::None
        );
        assert!(!r.saved().reserved.contains_key("m@h"));
        assert!(r.presence(&full("z@h/c"), "Emm", &join("Emm"), false)[0]
            .attr("type")
            .is_none());
    }

    #[test]
    fn rapid_presence_updates_are_coalesced() {
        let mut r = new_room();
        r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        r.presence(&full("g@h/b"), "G", &join("G"), false);
        let away = |show: &str| {
            Element::parse(&format!(
                "<presence xmlns='jabber:client' to='r@muc/G'><show>{show}</show></presence>"
            ))
            .unwrap()
        };
        // The first update goes out at once (to both occupants), the next ones wait.
        assert_eq!(
            r.presence(&full("g@h/b"), "G", &away("away"), false).len(),
            2
        );
        assert!(r
            .presence(&full("g@h/b"), "G", &away("xa"), false)
            .is_empty());
        assert!(r
            .presence(&full("g@h/b"), "G", &away("dnd"), false)
            .is_empty());
        assert!(r.presence_waiting);
        // The flush sends only the latest.
        let out = r.flush_presence();
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|p| p.child_text("show", ns::CLIENT).as_deref() == Some("dnd")));
        assert!(r.flush_presence().is_empty());
    }

    #[test]
    fn configuration_is_validated_against_the_form() {
        let mut r = new_room();
        r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        let submit = |fields: &str| {
            iq(&format!(
                "<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                 {fields}</x></query>"
            ))
        };
        for bad in [
            "<field var='muc#roomconfig_maxusers'><value>lots</value></field>",
            "<field var='muc#roomconfig_maxusers'><value>0</value></field>",
            "<field var='muc#roomconfig_whois'><value>everybody</value></field>",
            "<field var='muc#roomconfig_membersonly'><value>perhaps</value></field>",
        ] {
            let out = r.iq(&full("owner@h/a"), &submit(bad));
            assert!(
                out[0].to_xml().contains("not-acceptable"),
                "{bad}: {}",
                out[0]
            );
        }
        assert_eq!(r.config.max_users, Config::default().max_users);
        let out = r.iq(
            &full("owner@h/a"),
            &submit("<field var='muc#roomconfig_maxusers'><value>30</value></field>"),
        );
        assert_eq!(out[0].attr("type"), Some("result"));
        assert_eq!(r.config.max_users, 30);
    }

    #[test]
    fn voice_request_reaches_moderators_and_approval_grants_voice() {
        let mut r = new_room();
        r.config.moderated = true;
        r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        r.presence(&full("v@h/b"), "Vis", &join("Vis"), false);
        let request = Element::parse(&format!(
            "<message xmlns='jabber:client' to='r@muc'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>{REQUEST_FORM}</value></field>\
             <field var='muc#role'><value>participant</value></field></x></message>"
        ))
        .unwrap();
        let out = r.message(&full("v@h/b"), None, &request, "id1");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attr("to"), Some("owner@h/a"));
        let form = out[0].get_child("x", forms::NS).unwrap();
        let v = forms::values(form);
        assert_eq!(v["muc#roomnick"], ["Vis"]);
        assert_eq!(v["muc#jid"], ["v@h/b"]);
        // A visitor cannot approve; the moderator's approval gives voice.
        let approve = Element::parse(&format!(
            "<message xmlns='jabber:client' to='r@muc'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>{REQUEST_FORM}</value></field>\
             <field var='muc#roomnick'><value>Vis</value></field>\
             <field var='muc#request_allow'><value>true</value></field></x></message>"
        ))
        .unwrap();
        let own = r.message(&full("v@h/b"), None, &approve, "id1");
        assert!(own.iter().all(|e| e.name() == "message"), "no role change");
        let out = r.message(&full("owner@h/a"), None, &approve, "id2");
        assert_eq!(out.len(), 2, "the new role goes to both occupants");
        let item = out[0]
            .get_child("x", USER)
            .and_then(|x| x.get_child("item", USER));
        assert_eq!(item.and_then(|i| i.attr("role")), Some("participant"));
        let m = Element::parse(
            "<message xmlns='jabber:client' to='r@muc' type='groupchat'><body>hi</body></message>",
        )
        .unwrap();
        assert_eq!(r.message(&full("v@h/b"), None, &m, "id3").len(), 2);
    }

    #[test]
    fn join_sends_others_then_self_with_110_then_subject() {
        let mut r = new_room();
        let out = r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        assert_eq!(out.len(), 2);
        let x = out[0].get_child("x", USER).unwrap();
        let codes: Vec<_> = x.children().filter_map(|c| c.attr("code")).collect();
        assert_eq!(codes, ["201", "110"]);
        assert_eq!(
            x.get_child("item", USER).unwrap().attr("role"),
            Some("moderator")
        );
        assert!(out[1].has_child("subject", ns::CLIENT));
        let out = r.presence(&full("guest@h/b"), "Guest", &join("Guest"), false);
        // Owner's presence to guest, guest's to owner, guest's self-presence, subject.
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].attr("from"), Some("r@muc/Own"));
        // Semi-anonymous: the guest does not see the owner's JID; the owner sees the guest's.
        assert!(out[0]
            .get_child("x", USER)
            .unwrap()
            .get_child("item", USER)
            .unwrap()
            .attr("jid")
            .is_none());
        assert_eq!(out[1].attr("to"), Some("owner@h/a"));
        assert_eq!(
            out[1]
                .get_child("x", USER)
                .unwrap()
                .get_child("item", USER)
                .unwrap()
                .attr("jid"),
            Some("guest@h/b")
        );
    }

    #[test]
    fn nick_conflict_ban_password_and_members_only() {
        let mut r = new_room();
        r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        let out = r.presence(&full("x@h/b"), "Own", &join("Own"), false);
        assert_eq!(out[0].attr("type"), Some("error"));
        assert!(out[0].to_xml().contains("conflict"));
        r.affiliations.insert("bad@h".into(), Affiliation::Outcast);
        assert!(r.presence(&full("bad@h/b"), "Bad", &join("Bad"), false)[0]
            .to_xml()
            .contains("forbidden"));
        r.config.password = "pw".into();
        assert!(r.presence(&full("y@h/b"), "Y", &join("Y"), false)[0]
            .to_xml()
            .contains("not-authorized"));
        r.config.password.clear();
        r.config.members_only = true;
        assert!(r.presence(&full("y@h/b"), "Y", &join("Y"), false)[0]
            .to_xml()
            .contains("registration-required"));
    }

    #[test]
    fn an_occupant_sending_too_fast_is_refused_after_a_burst() {
        let mut r = new_room();
        r.message_rate = 1.0;
        r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        let m = Element::parse(
            "<message xmlns='jabber:client' type='groupchat' to='r@muc'><body>hi</body></message>",
        )
        .unwrap();
        // Five seconds' worth pass at once; the sixth waits for a token.
        for i in 0..5 {
            let out = r.message(&full("owner@h/a"), None, &m, &format!("s{i}"));
            assert_eq!(out[0].attr("type"), Some("groupchat"), "{}", out[0]);
        }
        let out = r.message(&full("owner@h/a"), None, &m, "s5");
        assert_eq!(out.len(), 1);
        assert!(
            out[0].to_xml().contains("resource-constraint"),
            "{}",
            out[0]
        );
    }

    #[test]
    fn groupchat_fans_out_and_is_kept_as_history() {
        let mut r = new_room();
        r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        r.presence(&full("g@h/b"), "G", &join("G"), false);
        let m = Element::parse(
            "<message xmlns='jabber:client' type='groupchat' to='r@muc'><body>hi</body></message>",
        )
        .unwrap();
        let out = r.message(&full("g@h/b"), None, &m, "sid1");
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o.attr("from") == Some("r@muc/G")));
        let out = r.presence(&full("late@h/c"), "Late", &join("Late"), false);
        let hist: Vec<_> = out
            .iter()
            .filter(|o| o.has_child("body", ns::CLIENT))
            .collect();
        assert_eq!(hist.len(), 1);
        assert!(hist[0].has_child("delay", DELAY));
        // A non-occupant cannot post.
        let out = r.message(&full("stranger@h/x"), None, &m, "sid2");
        assert_eq!(out[0].attr("type"), Some("error"));
    }

    #[test]
    fn kick_and_leave_and_temporary_room_ends() {
        let mut r = new_room();
        r.presence(&full("owner@h/a"), "Own", &join("Own"), true);
        r.presence(&full("g@h/b"), "G", &join("G"), false);
        let kick = Element::parse(&format!("<iq xmlns='jabber:client' type='set' id='k' to='r@muc'><query xmlns='{ADMIN}'><item nick='G' role='none'/></query></iq>")).unwrap();
        let out = r.iq(&full("owner@h/a"), &kick);
        // Notices to the occupants first, the result last.
        assert_eq!(out.last().unwrap().attr("type"), Some("result"));
        assert!(out.iter().any(|o| o.to_xml().contains("code='307'")));
        assert_eq!(r.occupant_count(), 1);
        let leave = Element::parse("<presence xmlns='jabber:client' type='unavailable'/>").unwrap();
        r.presence(&full("owner@h/a"), "Own", &leave, false);
        assert!(r.destroyed);
    }
}
