//! XEP-0227 (Portable Import/Export Format, v1.1): every user's data as one XML document, so
//! accounts move between Rookery, Prosody and ejabberd (`rookery export` / `rookery import`).
//!
//! Per user: SCRAM credentials (`urn:xmpp:pie:0#scram`, never a plaintext password), the roster
//! with its version and pending subscription requests, vCard, private XML, offline messages,
//! the message archive (`urn:xmpp:pie:0#mam`) and PEP items. What the XEP has no place for
//! (PEP node configurations, privacy lists, MAM preferences, last activity) travels in
//! Rookery's own namespace, which other servers skip, so Rookery to Rookery loses nothing.
//! Imports read both the v1.1 namespace and the older `xep-0227.html#ns` one, and accept a
//! plaintext `password` (older exports) by deriving SCRAM keys from it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rookery_core::storage::*;
use rookery_core::{ns, BareJid, Element};

pub const NS: &str = "urn:xmpp:pie:0";
const OLD_NS: &str = "http://www.xmpp.org/extensions/xep-0227.html#ns";
const SCRAM_NS: &str = "urn:xmpp:pie:0#scram";
const MAM_NS: &str = "urn:xmpp:pie:0#mam";
/// Rookery's data without a place in XEP-0227.
const EXT_NS: &str = "urn:rookery:pie:0";
const ROSTER_NS: &str = "jabber:iq:roster";
const PRIVATE_NS: &str = "jabber:iq:private";
const VCARD_NS: &str = "vcard-temp";
const PUBSUB_NS: &str = "http://jabber.org/protocol/pubsub";
const FORWARD_NS: &str = "urn:xmpp:forward:0";
const DELAY_NS: &str = "urn:xmpp:delay";
const MAM2_NS: &str = "urn:xmpp:mam:2";
/// Key-value stores XEP-0227 itself covers (the rest go out in `EXT_NS`).
const VCARD_STORE: &str = "vcard";
const PRIVATE_STORE: &str = "private";
/// Held by services, not users (MUC rooms): out of scope (XEP-0227 §2).
const SERVICE_STORES: &[&str] = &["muc_room"];

/// What was exported or imported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub users: usize,
    /// Accounts that already existed on import: left as they were.
    pub skipped: Vec<String>,
}

/// Every user of `hosts` (all hosts when empty), as a `<server-data/>` document.
pub async fn export(s: &dyn Storage, hosts: &[String]) -> anyhow::Result<(Element, Report)> {
    let mut root = Element::new("server-data", NS);
    let mut report = Report::default();
    // Each store read once, by owner.
    let mut kv: std::collections::HashMap<String, Vec<(String, String, String)>> =
        Default::default();
    for store in s.kv_stores().await? {
        if SERVICE_STORES.contains(&store.as_str()) {
            continue;
        }
        for (owner, key, value) in s.kv_all(&store).await? {
            kv.entry(owner)
                .or_default()
                .push((store.clone(), key, value));
        }
    }
    let mut by_host: std::collections::BTreeMap<String, Vec<Element>> = Default::default();
    for user in s.all_accounts().await? {
        let user = BareJid::new(&user)?;
        let host = user.domain().to_string();
        if !hosts.is_empty() && !hosts.contains(&host) {
            continue;
        }
        by_host.entry(host).or_default().push(
            export_user(
                s,
                &user,
                kv.get(user.as_str()).map(Vec::as_slice).unwrap_or_default(),
            )
            .await?,
        );
        report.users += 1;
    }
    for (host, users) in by_host {
        root.push_child(
            Element::new("host", NS)
                .with_attr("jid", host)
                .with_children(users),
        );
    }
    Ok((root, report))
}

async fn export_user(
    s: &dyn Storage,
    user: &BareJid,
    kv: &[(String, String, String)],
) -> anyhow::Result<Element> {
    let mut el = Element::new("user", NS)
        .with_attr("name", user.node().map(|n| n.as_str()).unwrap_or_default());
    if let Some(c) = s.credentials(user).await? {
        for (mechanism, keys) in [("SCRAM-SHA-1", &c.sha1), ("SCRAM-SHA-256", &c.sha256)] {
            el.push_child(
                Element::new("scram-credentials", SCRAM_NS)
                    .with_attr("mechanism", mechanism)
                    .with_child(
                        Element::new("iter-count", SCRAM_NS).with_text(c.iterations.to_string()),
                    )
                    .with_child(Element::new("salt", SCRAM_NS).with_text(B64.encode(&c.salt)))
                    .with_child(
                        Element::new("server-key", SCRAM_NS)
                            .with_text(B64.encode(&keys.server_key)),
                    )
                    .with_child(
                        Element::new("stored-key", SCRAM_NS)
                            .with_text(B64.encode(&keys.stored_key)),
                    ),
            );
        }
    }
    let (version, items) = s.roster(user).await?;
    if version > 0 || !items.is_empty() {
        let mut q = Element::new("query", ROSTER_NS).with_attr("version", version.to_string());
        for i in items {
            let mut item = Element::new("item", ROSTER_NS)
                .with_attr("jid", i.jid)
                .with_attr("subscription", i.subscription.as_str())
                .with_opt_attr("name", i.name)
                .with_opt_attr("ask", i.ask.then_some("subscribe"))
                .with_opt_attr("approved", i.approved.then_some("true"));
            for g in i.groups {
                item.push_child(Element::new("group", ROSTER_NS).with_text(g));
            }
            q.push_child(item);
        }
        el.push_child(q);
    }
    for (_, stanza) in s.pending_in(user).await? {
        if let Ok(p) = Element::parse(&stanza) {
            el.push_child(p);
        }
    }
    if let Some(v) = s.kv_get(user, VCARD_STORE, "").await? {
        if let Ok(v) = Element::parse(&v) {
            el.push_child(v);
        }
    }
    let mut private = Element::new("query", PRIVATE_NS);
    let mut ext = Element::new("data", EXT_NS);
    for (store, key, value) in kv {
        match store.as_str() {
            PRIVATE_STORE => {
                if let Ok(v) = Element::parse(value) {
                    private.push_child(v);
                }
            }
            VCARD_STORE if key.is_empty() => {}
            _ => ext.push_child(
                Element::new("kv", EXT_NS)
                    .with_attr("store", store.clone())
                    .with_attr("key", key.clone())
                    .with_text(value.clone()),
            ),
        }
    }
    if private.children().next().is_some() {
        el.push_child(private);
    }
    let offline = s.peek_offline(user).await?;
    if !offline.is_empty() {
        el.push_child(
            Element::new("offline-messages", NS)
                .with_children(offline.iter().filter_map(|m| Element::parse(m).ok())),
        );
    }
    let archive = export_archive(s, user).await?;
    if archive.children().next().is_some() {
        el.push_child(archive);
    }
    let nodes = s.pubsub_load(user.as_str()).await?;
    if !nodes.is_empty() {
        let mut items = Element::new("pubsub", PUBSUB_NS);
        for n in nodes {
            ext.push_child(
                Element::new("pep-node", EXT_NS)
                    .with_attr("node", n.node.clone())
                    .with_text(n.config),
            );
            let mut node = Element::new("items", PUBSUB_NS).with_attr("node", n.node);
            for i in n.items {
                let mut item = Element::new("item", PUBSUB_NS)
                    .with_attr("id", i.id)
                    .with_attr("publisher", i.publisher)
                    .with_attr("timestamp", i.timestamp.to_string());
                if let Ok(p) = Element::parse(&i.payload) {
                    item.push_child(p);
                }
                node.push_child(item);
            }
            items.push_child(node);
        }
        el.push_child(items);
    }
    if ext.children().next().is_some() {
        el.push_child(ext);
    }
    Ok(el)
}

async fn export_archive(s: &dyn Storage, user: &BareJid) -> anyhow::Result<Element> {
    let mut archive = Element::new("archive", MAM_NS);
    let mut after = None;
    loop {
        let page = s
            .archive_query(
                user.as_str(),
                &ArchiveQuery {
                    after: after.clone(),
                    max: 1000,
                    ..ArchiveQuery::default()
                },
            )
            .await?;
        for a in &page.items {
            let Ok(stanza) = Element::parse(&a.stanza) else {
                continue;
            };
            let stamp = chrono::DateTime::from_timestamp_micros(a.timestamp)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            archive.push_child(
                Element::new("result", MAM2_NS)
                    .with_attr("id", a.id.clone())
                    .with_attr("with", a.with.clone())
                    .with_child(
                        Element::new("forwarded", FORWARD_NS)
                            .with_child(Element::new("delay", DELAY_NS).with_attr("stamp", stamp))
                            .with_child(stanza),
                    ),
            );
        }
        after = page.items.last().map(|a| a.id.clone());
        if page.complete || after.is_none() {
            break;
        }
    }
    Ok(archive)
}

/// Reads an export file: one document as large as it needs, with bounded nesting.
pub fn parse(text: &str) -> anyhow::Result<Element> {
    let limits = rookery_xml::Limits {
        max_stanza_bytes: usize::MAX,
        max_depth: 64,
        max_attributes: 64,
        // A vCard photo is one long text node.
        max_token_bytes: 64 * 1024 * 1024,
    };
    rookery_xml::parse_document(text.as_bytes(), &limits).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Imports a `<server-data/>` document (or one `<host/>` or `<user/>`). Accounts that exist
/// already are left untouched and reported.
pub async fn import(s: &dyn Storage, doc: &Element) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let is = |e: &Element, name: &str| e.name() == name && (e.ns() == NS || e.ns() == OLD_NS);
    let hosts: Vec<&Element> = if is(doc, "server-data") {
        doc.children().filter(|h| is(h, "host")).collect()
    } else if is(doc, "host") {
        vec![doc]
    } else {
        anyhow::bail!("not a XEP-0227 document: <{}/> in {}", doc.name(), doc.ns());
    };
    for host in hosts {
        let domain = host.attr("jid").unwrap_or_default();
        for u in host.children().filter(|u| is(u, "user")) {
            let name = u.attr("name").unwrap_or_default();
            let user = BareJid::new(&format!("{name}@{domain}"))?;
            let Some(creds) = credentials(u)? else {
                anyhow::bail!("{user}: no SCRAM credentials and no password");
            };
            if !s.create_account(&user, &creds).await? {
                report.skipped.push(user.to_string());
                continue;
            }
            crate::lookalike::add(s, &user).await?;
            import_user(s, &user, u).await?;
            report.users += 1;
        }
    }
    Ok(report)
}

/// SCRAM keys from `<scram-credentials/>` (both hashes when given; a file with only one, such as
/// Prosody's SHA-1, leaves the other empty, which no login can match), or from a password.
fn credentials(u: &Element) -> anyhow::Result<Option<Credentials>> {
    if let Some(p) = u.attr("password") {
        return Ok(Some(crate::scram::derive_credentials(p)));
    }
    let mut out: Option<Credentials> = None;
    for c in u.children().filter(|c| c.is("scram-credentials", SCRAM_NS)) {
        let text = |n: &str| c.child_text(n, SCRAM_NS).unwrap_or_default();
        let b64 = |n: &str| B64.decode(text(n).trim());
        let keys = ScramKeys {
            stored_key: b64("stored-key")?,
            server_key: b64("server-key")?,
        };
        let salt = b64("salt")?;
        let iterations: u32 = text("iter-count").trim().parse()?;
        let creds = out.get_or_insert_with(|| Credentials {
            salt: salt.clone(),
            iterations,
            sha1: ScramKeys {
                stored_key: vec![],
                server_key: vec![],
            },
            sha256: ScramKeys {
                stored_key: vec![],
                server_key: vec![],
            },
        });
        anyhow::ensure!(
            creds.salt == salt && creds.iterations == iterations,
            "SCRAM credentials with different salts cannot be kept together"
        );
        match c.attr("mechanism") {
            Some("SCRAM-SHA-1") => creds.sha1 = keys,
            Some("SCRAM-SHA-256") => creds.sha256 = keys,
            _ => {}
        }
    }
    Ok(out)
}

async fn import_user(s: &dyn Storage, user: &BareJid, u: &Element) -> anyhow::Result<()> {
    for c in u.children() {
        match (c.ns(), c.name()) {
            (ROSTER_NS, "query") => {
                let version = c.attr("version").and_then(|v| v.parse().ok()).unwrap_or(1);
                let items: Vec<RosterItem> = c
                    .children()
                    .filter(|i| i.is("item", ROSTER_NS))
                    .map(|i| RosterItem {
                        jid: i.attr("jid").unwrap_or_default().to_string(),
                        name: i.attr("name").map(str::to_string),
                        subscription: i
                            .attr("subscription")
                            .and_then(Subscription::parse)
                            .unwrap_or_default(),
                        ask: i.attr("ask") == Some("subscribe"),
                        approved: i.attr("approved") == Some("true"),
                        groups: i
                            .children()
                            .filter(|g| g.is("group", ROSTER_NS))
                            .map(|g| g.text())
                            .collect(),
                    })
                    .collect();
                s.restore_roster(user, version, &items).await?;
            }
            (ns::CLIENT, "presence") if c.attr("type") == Some("subscribe") => {
                if let Some(from) = c.attr("from").and_then(|f| BareJid::new(f).ok()) {
                    s.put_pending_in(user, from.as_str(), &c.to_xml()).await?;
                }
            }
            (VCARD_NS, "vCard") => {
                s.kv_set(user, VCARD_STORE, "", Some(&c.to_xml())).await?;
            }
            (PRIVATE_NS, "query") => {
                for p in c.children() {
                    // As modules::private keys them.
                    let key = format!("{{{}}}{}", p.ns(), p.name());
                    s.kv_set(user, PRIVATE_STORE, &key, Some(&p.to_xml()))
                        .await?;
                }
            }
            (_, "offline-messages") if c.ns() == NS || c.ns() == OLD_NS => {
                for m in c.children() {
                    s.push_offline(user, &m.to_xml(), usize::MAX).await?;
                }
            }
            (MAM_NS, "archive") => import_archive(s, user, c).await?,
            (PUBSUB_NS, "pubsub") => import_pep(s, user, c, u).await?,
            (EXT_NS, "data") => {
                for kv in c.children().filter(|k| k.is("kv", EXT_NS)) {
                    let (Some(store), Some(key)) = (kv.attr("store"), kv.attr("key")) else {
                        continue;
                    };
                    s.kv_set(user, store, key, Some(&kv.text())).await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

async fn import_archive(s: &dyn Storage, user: &BareJid, archive: &Element) -> anyhow::Result<()> {
    let mut batch = vec![];
    for r in archive.children().filter(|r| r.is("result", MAM2_NS)) {
        let Some(fwd) = r.get_child("forwarded", FORWARD_NS) else {
            continue;
        };
        let Some(stanza) = fwd.children().find(|c| c.ns() == ns::CLIENT) else {
            continue;
        };
        let timestamp = fwd
            .get_child("delay", DELAY_NS)
            .and_then(|d| d.attr("stamp"))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_micros())
            .unwrap_or_default();
        // The other party: as recorded, or the side of the message that is not the user.
        let with = r.attr("with").map(str::to_string).unwrap_or_else(|| {
            let bare = |a: &str| {
                stanza
                    .attr(a)
                    .and_then(|j| rookery_core::Jid::new(j).ok())
                    .map(|j| j.to_bare().to_string())
                    .unwrap_or_default()
            };
            let to = bare("to");
            if to == user.as_str() {
                bare("from")
            } else {
                to
            }
        });
        batch.push((
            user.to_string(),
            Archived {
                id: r.attr("id").unwrap_or_default().to_string(),
                timestamp,
                with,
                stanza: stanza.to_xml(),
            },
        ));
    }
    for chunk in batch.chunks(1000) {
        s.archive_append(chunk).await?;
    }
    Ok(())
}

async fn import_pep(
    s: &dyn Storage,
    user: &BareJid,
    pubsub: &Element,
    u: &Element,
) -> anyhow::Result<()> {
    let service = user.as_str();
    let configs: std::collections::HashMap<&str, String> = u
        .children()
        .filter(|c| c.is("data", EXT_NS))
        .flat_map(|d| d.children().filter(|n| n.is("pep-node", EXT_NS)))
        .filter_map(|n| Some((n.attr("node")?, n.text())))
        .collect();
    let defaults = serde_json::to_string(&crate::modules::pubsub::pep::node_defaults())?;
    for node in pubsub.children().filter(|n| n.is("items", PUBSUB_NS)) {
        let Some(name) = node.attr("node") else {
            continue;
        };
        let config = configs
            .get(name)
            .cloned()
            .unwrap_or_else(|| defaults.clone());
        s.pubsub_put_node(service, name, &config).await?;
        s.pubsub_set_affiliation(service, name, service, Some("owner"))
            .await?;
        for item in node.children().filter(|i| i.is("item", PUBSUB_NS)) {
            let stored = StoredItem {
                id: item.attr("id").unwrap_or_default().to_string(),
                publisher: item.attr("publisher").unwrap_or(service).to_string(),
                timestamp: item
                    .attr("timestamp")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_default(),
                payload: item
                    .children()
                    .next()
                    .map(|p| p.to_xml())
                    .unwrap_or_default(),
            };
            s.pubsub_put_item(service, name, &stored, usize::MAX)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    async fn filled() -> MemoryStorage {
        let s = MemoryStorage::default();
        let juliet = BareJid::new("juliet@capulet.test").unwrap();
        let romeo = BareJid::new("romeo@capulet.test").unwrap();
        for u in [&juliet, &romeo] {
            s.create_account(u, &crate::scram::derive_with_salt("pw", vec![7; 16], 64))
                .await
                .unwrap();
        }
        s.put_roster_item(
            &juliet,
            &RosterItem {
                jid: "romeo@capulet.test".into(),
                name: Some("Romeo".into()),
                subscription: Subscription::Both,
                groups: vec!["Friends".into()],
                ..RosterItem::default()
            },
        )
        .await
        .unwrap();
        s.put_pending_in(
            &juliet,
            "nurse@capulet.test",
            "<presence xmlns='jabber:client' from='nurse@capulet.test' to='juliet@capulet.test' type='subscribe'/>",
        )
        .await
        .unwrap();
        s.kv_set(
            &juliet,
            VCARD_STORE,
            "",
            Some("<vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard>"),
        )
        .await
        .unwrap();
        s.kv_set(
            &juliet,
            PRIVATE_STORE,
            "{urn:x}prefs",
            Some("<prefs xmlns='urn:x'>1</prefs>"),
        )
        .await
        .unwrap();
        s.kv_set(&juliet, "mam_prefs", "", Some("{\"default\":\"roster\"}"))
            .await
            .unwrap();
        for b in ["one", "two"] {
            s.push_offline(
                &juliet,
                &format!("<message xmlns='jabber:client' from='romeo@capulet.test/r' to='juliet@capulet.test' type='chat'><body>{b}</body></message>"),
                100,
            )
            .await
            .unwrap();
        }
        s.archive_append(&[(
            "juliet@capulet.test".into(),
            Archived {
                id: "a1".into(),
                timestamp: 1_700_000_000_123_456,
                with: "romeo@capulet.test".into(),
                stanza: "<message xmlns='jabber:client' from='romeo@capulet.test/r' to='juliet@capulet.test'><body>archived</body></message>".into(),
            },
        )])
        .await
        .unwrap();
        s.pubsub_put_node("juliet@capulet.test", "urn:x:tune", "{\"max_items\":5}")
            .await
            .unwrap();
        s.pubsub_put_item(
            "juliet@capulet.test",
            "urn:x:tune",
            &StoredItem {
                id: "current".into(),
                publisher: "juliet@capulet.test".into(),
                timestamp: 5,
                payload: "<tune xmlns='urn:x:tune'>la</tune>".into(),
            },
            5,
        )
        .await
        .unwrap();
        s
    }

    #[tokio::test]
    async fn an_export_imports_into_a_fresh_server_unchanged() {
        let from = filled().await;
        let (doc, report) = export(&from, &[]).await.unwrap();
        assert_eq!(report.users, 2);
        // Through text, as the file goes.
        let doc = parse(&format!("<?xml version='1.0'?>\n{}", doc.to_xml())).unwrap();
        assert!(
            !doc.to_xml().contains("password"),
            "credentials only as SCRAM keys"
        );
        let to = MemoryStorage::default();
        let r = import(&to, &doc).await.unwrap();
        assert_eq!((r.users, r.skipped.len()), (2, 0));
        let juliet = BareJid::new("juliet@capulet.test").unwrap();
        assert_eq!(
            to.credentials(&juliet).await.unwrap(),
            from.credentials(&juliet).await.unwrap()
        );
        assert_eq!(
            to.roster(&juliet).await.unwrap(),
            from.roster(&juliet).await.unwrap()
        );
        assert_eq!(
            to.pending_in(&juliet).await.unwrap().len(),
            from.pending_in(&juliet).await.unwrap().len()
        );
        for (store, key) in [
            (VCARD_STORE, ""),
            (PRIVATE_STORE, "{urn:x}prefs"),
            ("mam_prefs", ""),
        ] {
            let a = from.kv_get(&juliet, store, key).await.unwrap().unwrap();
            let b = to.kv_get(&juliet, store, key).await.unwrap().unwrap();
            assert_eq!(Element::parse(&a).ok(), Element::parse(&b).ok(), "{store}");
            assert_eq!(a.starts_with('{'), b.starts_with('{'));
        }
        assert_eq!(
            to.peek_offline(&juliet).await.unwrap().len(),
            2,
            "offline messages, in order"
        );
        let q = ArchiveQuery {
            max: 10,
            ..ArchiveQuery::default()
        };
        let (a, b) = (
            from.archive_query("juliet@capulet.test", &q).await.unwrap(),
            to.archive_query("juliet@capulet.test", &q).await.unwrap(),
        );
        assert_eq!(b.items.len(), 1);
        assert_eq!(
            (&b.items[0].id, b.items[0].timestamp, &b.items[0].with),
            (&a.items[0].id, a.items[0].timestamp, &a.items[0].with)
        );
        let pep = to.pubsub_load("juliet@capulet.test").await.unwrap();
        assert_eq!(pep[0].config, "{\"max_items\":5}");
        assert_eq!(
            pep[0].items[0].payload,
            "<tune xmlns='urn:x:tune'>la</tune>"
        );
        // Importing again changes nothing and says so.
        let again = import(&to, &doc).await.unwrap();
        assert_eq!((again.users, again.skipped.len()), (0, 2));
    }

    #[tokio::test]
    async fn an_older_file_with_a_password_imports() {
        let doc = Element::parse(
            "<server-data xmlns='http://www.xmpp.org/extensions/xep-0227.html#ns'>\
             <host jid='montague.test'><user name='romeo' password='s3cret'>\
             <query xmlns='jabber:iq:roster'><item jid='juliet@capulet.test' subscription='both'/></query>\
             </user></host></server-data>",
        )
        .unwrap();
        let s = MemoryStorage::default();
        assert_eq!(import(&s, &doc).await.unwrap().users, 1);
        let romeo = BareJid::new("romeo@montague.test").unwrap();
        let c = s.credentials(&romeo).await.unwrap().unwrap();
        assert!(crate::scram::verify_password(&c, "s3cret"));
        assert_eq!(s.roster(&romeo).await.unwrap().1.len(), 1);
        let bad = Element::parse("<nope xmlns='urn:x'/>").unwrap();
        assert!(import(&s, &bad).await.is_err());
    }
}
