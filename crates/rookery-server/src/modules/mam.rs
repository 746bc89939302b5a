//! XEP-0313 Message Archive Management: per-user archives of 1:1 messages with XEP-0359 stanza
//! ids and XEP-0059 paging. Writes go through one batching task, so archiving costs one
//! transaction per batch rather than per message.

use super::{
    Events, IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, SessionHook,
    StanzaHook,
};
use crate::forms::{self, Field};
use crate::session::SessionHandle;
use crate::Server;
use async_trait::async_trait;
use base64::Engine;
use dashmap::DashMap;
use rookery_core::stanza::StanzaError;
use rookery_core::storage::{ArchiveQuery, Archived};
use rookery_core::{ns, BareJid, Element, Jid};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:mam:2";
pub const SID: &str = "urn:xmpp:sid:0";
const RSM: &str = "http://jabber.org/protocol/rsm";
const FORWARD: &str = "urn:xmpp:forward:0";
const PREFS: &str = "mam_prefs";
const MAX_PAGE: usize = 250;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Prefs {
    default: String,
    always: Vec<String>,
    never: Vec<String>,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            default: "always".into(),
            always: Vec::new(),
            never: Vec::new(),
        }
    }
}

#[derive(Default)]
pub struct Mam {
    prefs: DashMap<BareJid, Arc<Prefs>>,
    epoch: super::CacheEpoch,
}

impl super::UserCache for Mam {
    fn topic(&self) -> &'static str {
        PREFS
    }

    fn forget(&self, user: &BareJid) {
        self.epoch.bump();
        self.prefs.remove(user);
    }

    fn holds(&self, user: &BareJid) -> bool {
        self.prefs.contains_key(user)
    }
}

impl Module for Mam {
    fn name(&self) -> &'static str {
        "mam"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.caches.push(self.clone());
        reg.iq(NS, "query", On::Account, self.clone());
        reg.iq(NS, "prefs", On::Account, self.clone());
        reg.iq(NS, "metadata", On::Account, self.clone());
        reg.account_feature(NS);
        reg.account_feature("urn:xmpp:mam:2#extended");
        reg.account_feature("urn:xmpp:mam:2#flip-page");
        reg.account_feature(SID);
        reg.stanza_hook(self.clone());
        reg.hook(self);
    }
}

pub fn new_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
}

fn stamp(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn parse_time(s: &str) -> Result<i64, StanzaError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_micros())
        .map_err(|_| StanzaError::bad_request().with_text("bad timestamp"))
}

/// Messages worth keeping: chat and normal ones with content, not hinted otherwise (XEP-0334).
fn archivable(el: &Element) -> bool {
    let t = el.attr("type").unwrap_or("normal");
    (t == "chat" || t == "normal")
        && el.has_child("body", ns::CLIENT)
        && !el.has_child("no-store", "urn:xmpp:hints")
        && !el.has_child("no-permanent-store", "urn:xmpp:hints")
}

impl Mam {
    async fn prefs(&self, server: &Server, user: &BareJid) -> Arc<Prefs> {
        if let Some(p) = self.prefs.get(user) {
            return p.clone();
        }
        let stored = self
            .epoch
            .load(|| async { server.storage.kv_get(user, PREFS, "").await.ok().flatten() })
            .await;
        let p: Prefs = stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let p = Arc::new(p);
        self.prefs.insert(user.clone(), p.clone());
        p
    }

    async fn wanted(&self, server: &Server, user: &BareJid, with: &str) -> bool {
        let p = self.prefs(server, user).await;
        if p.never.iter().any(|j| j == with) {
            return false;
        }
        if p.always.iter().any(|j| j == with) {
            return true;
        }
        match p.default.as_str() {
            "never" => false,
            "roster" => matches!(server.storage.roster_item(user, with).await, Ok(Some(_))),
            _ => true,
        }
    }

    async fn archive(
        &self,
        server: &Server,
        owner: &BareJid,
        with: &str,
        el: &Element,
        id: String,
    ) {
        let mut stored = el.clone();
        stored.retain_children(|c| c.ns() != SID);
        let m = Archived {
            id,
            timestamp: chrono::Utc::now().timestamp_micros(),
            with: with.to_string(),
            stanza: stored.to_xml(),
        };
        server
            .archive
            .append(&server.storage, owner.to_string(), m)
            .await;
    }

    async fn flush(&self, server: &Server) {
        server.archive.flush(&server.storage).await;
    }
}

#[async_trait]
impl StanzaHook for Mam {
    fn events(&self) -> Events {
        Events::MESSAGE_INBOUND | Events::MESSAGE_SENT
    }

    async fn message_inbound(&self, server: &Server, user: &BareJid, el: &mut Element) {
        if !archivable(el) {
            return;
        }
        let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
            return;
        };
        let with = from.to_bare().to_string();
        if !self.wanted(server, user, &with).await {
            return;
        }
        // Only our own stanza-id is trustworthy (XEP-0359 §5): drop any claiming to be it.
        let me = user.to_string();
        el.retain_children(|c| {
            !(c.ns() == SID && c.name() == "stanza-id" && c.attr("by") == Some(me.as_str()))
        });
        let id = new_id();
        self.archive(server, user, &with, el, id.clone()).await;
        el.push_child(
            Element::new("stanza-id", SID)
                .with_attr("id", id)
                .with_attr("by", me),
        );
    }

    async fn message_sent(&self, server: &Server, origin: &SessionHandle, el: &Element) {
        if !archivable(el) {
            return;
        }
        let Some(to) = el.attr("to").and_then(|t| Jid::new(t).ok()) else {
            return;
        };
        let user = origin.bare();
        let with = to.to_bare().to_string();
        if self.wanted(server, &user, &with).await {
            self.archive(server, &user, &with, el, new_id()).await;
        }
    }
}

fn query_form() -> Element {
    forms::form(
        "form",
        None,
        &[
            Field::hidden("FORM_TYPE", NS),
            Field::new("with", "jid-single", "", vec![]),
            Field::new("start", "text-single", "", vec![]),
            Field::new("end", "text-single", "", vec![]),
            Field::new("before-id", "text-single", "", vec![]),
            Field::new("after-id", "text-single", "", vec![]),
            Field::new("ids", "text-multi", "", vec![]),
        ],
    )
}

fn prefs_element(p: &Prefs) -> Element {
    let list = |name: &str, jids: &[String]| {
        Element::new(name, NS).with_children(
            jids.iter()
                .map(|j| Element::new("jid", NS).with_text(j.clone())),
        )
    };
    Element::new("prefs", NS)
        .with_attr("default", p.default.clone())
        .with_child(list("always", &p.always))
        .with_child(list("never", &p.never))
}

#[async_trait]
impl IqHandler for Mam {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden());
        }
        let user = req.from.to_bare();
        let payload = req.payload().clone();
        match (payload.name(), req.kind) {
            ("prefs", IqType::Get) => Ok(IqReply::Payload(prefs_element(
                &*self.prefs(server, &user).await,
            ))),
            ("prefs", IqType::Set) => {
                let default = payload.attr("default").unwrap_or("always").to_string();
                if !["always", "never", "roster"].contains(&default.as_str()) {
                    return Err(StanzaError::bad_request());
                }
                let jids = |name: &str| -> Vec<String> {
                    payload
                        .get_child(name, NS)
                        .map(|l| {
                            l.children()
                                .filter_map(|j| Jid::new(j.text().trim()).ok())
                                .map(|j| j.to_string())
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let p = Prefs {
                    default,
                    always: jids("always"),
                    never: jids("never"),
                };
                let json = serde_json::to_string(&p).expect("prefs serialise");
                server
                    .storage
                    .kv_set(&user, PREFS, "", Some(&json))
                    .await
                    .map_err(|_| StanzaError::internal_server_error())?;
                let el = prefs_element(&p);
                server.changed_user_data(PREFS, &user);
                self.prefs.insert(user, Arc::new(p));
                Ok(IqReply::Payload(el))
            }
            ("metadata", IqType::Get) => {
                // XEP-0313 §5.3: the first and last message of the archive.
                self.flush(server).await;
                let mut md = Element::new("metadata", NS);
                let ends = [("start", false), ("end", true)];
                for (name, from_end) in ends {
                    let q = ArchiveQuery {
                        max: 1,
                        from_end,
                        ..Default::default()
                    };
                    let page = server
                        .storage
                        .archive_query(user.as_str(), &q)
                        .await
                        .map_err(|_| StanzaError::internal_server_error())?;
                    if let Some(m) = page.items.first() {
                        md.push_child(
                            Element::new(name, NS)
                                .with_attr("id", m.id.clone())
                                .with_attr("timestamp", stamp(m.timestamp)),
                        );
                    }
                }
                Ok(IqReply::Payload(md))
            }
            ("query", IqType::Get) => Ok(IqReply::Payload(
                Element::new("query", NS).with_child(query_form()),
            )),
            ("query", IqType::Set) => self.query(server, &req, &user, &payload).await,
            _ => Err(StanzaError::bad_request()),
        }
    }
}

impl Mam {
    async fn query(
        &self,
        server: &Server,
        req: &IqRequest,
        user: &BareJid,
        payload: &Element,
    ) -> IqResult {
        run_query(server, user.as_str(), &req.from.to_string(), payload)
            .await
            .map(IqReply::Payload)
    }
}

/// Runs a MAM query against archive `owner` (a user or a room), sends the results to `to`, and
/// returns the `<fin/>` for the IQ result.
pub async fn run_query(
    server: &Server,
    owner: &str,
    to: &str,
    payload: &Element,
) -> Result<Element, StanzaError> {
    let mut q = ArchiveQuery {
        max: 50,
        ..Default::default()
    };
    if let Some(x) = payload.get_child("x", forms::NS) {
        let v = forms::values(x);
        let one = |k: &str| {
            v.get(k)
                .and_then(|l| l.first())
                .filter(|s| !s.is_empty())
                .cloned()
        };
        if let Some(w) = one("with") {
            q.with = Some(
                Jid::new(&w)
                    .map_err(|_| StanzaError::jid_malformed())?
                    .to_string(),
            );
        }
        q.start = one("start").map(|s| parse_time(&s)).transpose()?;
        q.end = one("end").map(|s| parse_time(&s)).transpose()?;
        q.before = one("before-id");
        q.after = one("after-id");
        q.ids = v.get("ids").cloned().unwrap_or_default();
    }
    if let Some(set) = payload.get_child("set", RSM) {
        if let Some(m) = set.child_text("max", RSM) {
            q.max = m.trim().parse().map_err(|_| StanzaError::bad_request())?;
        }
        if let Some(a) = set.child_text("after", RSM).filter(|a| !a.is_empty()) {
            q.after = Some(a);
        }
        if let Some(b) = set.get_child("before", RSM) {
            let t = b.text();
            if t.is_empty() {
                q.from_end = true;
            } else {
                q.before = Some(t);
            }
        }
    }
    q.max = q.max.min(MAX_PAGE);
    server.archive.flush(&server.storage).await;
    let page = server.storage.archive_query(owner, &q).await.map_err(|e| {
        if e.0 == "item-not-found" {
            StanzaError::item_not_found()
        } else {
            StanzaError::internal_server_error()
        }
    })?;
    let queryid = payload.attr("queryid").map(str::to_string);
    let to = to.to_string();
    let mut items: Vec<&Archived> = page.items.iter().collect();
    // XEP-0313 §4.1.3 (extended): the page's messages newest first.
    if payload.has_child("flip-page", NS) {
        items.reverse();
    }
    for m in items {
        let Ok(mut inner) = Element::parse(&m.stanza) else {
            continue;
        };
        inner.set_ns(ns::CLIENT);
        let result = Element::new("result", NS)
            .with_opt_attr("queryid", queryid.clone())
            .with_attr("id", m.id.clone())
            .with_child(
                Element::new("forwarded", FORWARD)
                    .with_child(
                        Element::new("delay", "urn:xmpp:delay")
                            .with_attr("stamp", stamp(m.timestamp)),
                    )
                    .with_child(inner),
            );
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("from", owner)
            .with_attr("to", to.clone())
            .with_child(result);
        crate::router::deliver_to_full(server, msg);
    }
    let mut set = Element::new("set", RSM);
    if let (Some(first), Some(last)) = (page.items.first(), page.items.last()) {
        set.push_child(Element::new("first", RSM).with_text(first.id.clone()));
        set.push_child(Element::new("last", RSM).with_text(last.id.clone()));
    }
    set.push_child(Element::new("count", RSM).with_text(page.count.to_string()));
    let mut fin = Element::new("fin", NS)
        .with_opt_attr("queryid", queryid)
        .with_child(set);
    if page.complete {
        fin.set_attr("complete", "true");
    }
    Ok(fin)
}

/// The cache is filled when a session becomes available, so the routing path rarely waits on
/// storage, and emptied when the user's last session goes.
#[async_trait]
impl SessionHook for Mam {
    async fn on_available(&self, server: &Server, session: &crate::session::SessionHandle) {
        self.prefs(server, &session.bare()).await;
    }

    async fn on_unavailable(
        &self,
        server: &Server,
        session: &crate::session::SessionHandle,
        _status: Option<String>,
    ) {
        if super::is_last_available(server, session) {
            self.prefs.remove(&session.bare());
        }
    }
}
