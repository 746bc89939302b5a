//! Protocol tests for publish-subscribe: the pubsub service (XEP-0060), PEP (XEP-0163) with
//! entity capabilities (XEP-0115), avatars (XEP-0084/0398) and bookmarks (XEP-0402/0048).

mod common;

use common::{announce_caps, disco_info, error_condition, Client, TestServer};
use rookery_core::storage::{RosterItem, Subscription};
use rookery_core::BareJid;
use rookery_xml::{ns, Element};

const PS: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";
const SVC: &str = "pubsub.localhost";

fn iq(kind: &str, id: &str, to: Option<&str>, payload: &str) -> Element {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    Element::parse(&format!(
        "<iq xmlns='jabber:client' type='{kind}' id='{id}'{to}>{payload}</iq>"
    ))
    .unwrap()
}

async fn ok(c: &mut Client, el: Element) -> Element {
    let r = c.iq(el).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    r
}

async fn event(c: &mut Client, from: &str) -> Element {
    let m = c
        .recv_until(|e| e.name() == "message" && e.attr("from") == Some(from))
        .await;
    m.get_child("event", EVENT)
        .unwrap_or_else(|| panic!("no event in {m}"))
        .clone()
}

fn item_ids(r: &Element) -> Vec<String> {
    r.get_child("pubsub", PS)
        .and_then(|p| p.get_child("items", PS))
        .map(|i| {
            i.children()
                .map(|c| c.attr("id").unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn publish(node: &str, id: &str, payload: &str) -> String {
    format!(
        "<pubsub xmlns='{PS}'><publish node='{node}'><item id='{id}'>{payload}</item></publish></pubsub>"
    )
}

fn items(node: &str) -> String {
    format!("<pubsub xmlns='{PS}'><items node='{node}'/></pubsub>")
}

#[tokio::test]
async fn service_node_lifecycle_with_notifications() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;

    // The service is listed, and describes itself.
    let r = ok(
        &mut alice,
        iq(
            "get",
            "d1",
            Some("localhost"),
            &format!("<query xmlns='{ITEMS}'/>"),
        ),
    )
    .await;
    let q = r.get_child("query", ITEMS).unwrap();
    assert!(q.children().any(|i| i.attr("jid") == Some(SVC)), "{r}");
    let r = ok(
        &mut alice,
        iq("get", "d2", Some(SVC), &format!("<query xmlns='{INFO}'/>")),
    )
    .await;
    let q = r.get_child("query", INFO).unwrap();
    let id = q.get_child("identity", INFO).unwrap();
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("pubsub"), Some("service"))
    );

    // Create with a configuration form.
    let create = format!(
        "<pubsub xmlns='{PS}'><create node='news'/><configure><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
         <field var='pubsub#title'><value>News</value></field>\
         <field var='pubsub#max_items'><value>2</value></field></x></configure></pubsub>"
    );
    ok(&mut alice, iq("set", "c1", Some(SVC), &create)).await;
    let r = alice.iq(iq("set", "c2", Some(SVC), &create)).await;
    assert_eq!(error_condition(&r).as_deref(), Some("conflict"));
    let r = ok(
        &mut alice,
        iq(
            "get",
            "cfg",
            Some(SVC),
            &format!("<pubsub xmlns='{OWNER}'><configure node='news'/></pubsub>"),
        ),
    )
    .await;
    let form = r
        .get_child("pubsub", OWNER)
        .and_then(|p| p.get_child("configure", OWNER))
        .and_then(|c| c.get_child("x", "jabber:x:data"))
        .unwrap();
    let title = form
        .children()
        .find(|f| f.attr("var") == Some("pubsub#title"))
        .unwrap();
    assert_eq!(
        title.child_text("value", "jabber:x:data").as_deref(),
        Some("News")
    );
    let r = ok(
        &mut bob,
        iq("get", "d3", Some(SVC), &format!("<query xmlns='{ITEMS}'/>")),
    )
    .await;
    let node = r
        .get_child("query", ITEMS)
        .unwrap()
        .children()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        (node.attr("node"), node.attr("name")),
        (Some("news"), Some("News"))
    );

    // Subscribe, then hear of publications.
    let r = ok(
        &mut bob,
        iq(
            "set",
            "s1",
            Some(SVC),
            &format!(
                "<pubsub xmlns='{PS}'><subscribe node='news' jid='bob@localhost/r'/></pubsub>"
            ),
        ),
    )
    .await;
    let sub = r
        .get_child("pubsub", PS)
        .unwrap()
        .get_child("subscription", PS)
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    for id in ["a", "b", "c"] {
        let r = ok(
            &mut alice,
            iq(
                "set",
                "p",
                Some(SVC),
                &publish("news", id, "<entry xmlns='urn:x'>hi</entry>"),
            ),
        )
        .await;
        let published = r
            .get_child("pubsub", PS)
            .unwrap()
            .get_child("publish", PS)
            .unwrap();
        assert_eq!(
            published.get_child("item", PS).unwrap().attr("id"),
            Some(id)
        );
        let ev = event(&mut bob, SVC).await;
        let item = ev
            .get_child("items", EVENT)
            .unwrap()
            .get_child("item", EVENT)
            .unwrap();
        assert_eq!(item.attr("id"), Some(id));
        assert_eq!(item.attr("publisher"), Some("alice@localhost"));
        assert!(item.has_child("entry", "urn:x"));
    }
    // max_items 2 keeps the newest two.
    let r = ok(&mut bob, iq("get", "i1", Some(SVC), &items("news"))).await;
    assert_eq!(item_ids(&r), vec!["b", "c"]);

    // Retract with notify, purge, delete: each one notified.
    let retract = format!(
        "<pubsub xmlns='{PS}'><retract node='news' notify='true'><item id='b'/></retract></pubsub>"
    );
    let r = bob.iq(iq("set", "r0", Some(SVC), &retract)).await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    ok(&mut alice, iq("set", "r1", Some(SVC), &retract)).await;
    let ev = event(&mut bob, SVC).await;
    assert_eq!(
        ev.get_child("items", EVENT)
            .unwrap()
            .get_child("retract", EVENT)
            .unwrap()
            .attr("id"),
        Some("b")
    );
    ok(
        &mut alice,
        iq(
            "set",
            "pg",
            Some(SVC),
            &format!("<pubsub xmlns='{OWNER}'><purge node='news'/></pubsub>"),
        ),
    )
    .await;
    assert!(event(&mut bob, SVC).await.has_child("purge", EVENT));
    let r = ok(&mut bob, iq("get", "i2", Some(SVC), &items("news"))).await;
    assert!(item_ids(&r).is_empty());
    ok(
        &mut alice,
        iq(
            "set",
            "del",
            Some(SVC),
            &format!("<pubsub xmlns='{OWNER}'><delete node='news'/></pubsub>"),
        ),
    )
    .await;
    assert!(event(&mut bob, SVC).await.has_child("delete", EVENT));
    let r = bob.iq(iq("get", "i3", Some(SVC), &items("news"))).await;
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
}

#[tokio::test]
async fn whitelist_node_rejects_a_stranger() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("eve", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut eve = s.login("eve", "pw123456").await;
    let create = format!(
        "<pubsub xmlns='{PS}'><create node='secret'/><configure><x xmlns='jabber:x:data' type='submit'>\
         <field var='pubsub#access_model'><value>whitelist</value></field></x></configure></pubsub>"
    );
    ok(&mut alice, iq("set", "c", Some(SVC), &create)).await;
    ok(
        &mut alice,
        iq(
            "set",
            "p",
            Some(SVC),
            &publish("secret", "1", "<x xmlns='urn:x'/>"),
        ),
    )
    .await;
    let subscribe =
        format!("<pubsub xmlns='{PS}'><subscribe node='secret' jid='eve@localhost'/></pubsub>");
    let r = eve.iq(iq("set", "s", Some(SVC), &subscribe)).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-allowed"));
    assert!(r
        .get_child("error", ns::CLIENT)
        .unwrap()
        .has_child("closed-node", ERRORS));
    let r = eve.iq(iq("get", "i", Some(SVC), &items("secret"))).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-allowed"));
    // Hidden from discovery too.
    let r = ok(
        &mut eve,
        iq("get", "d", Some(SVC), &format!("<query xmlns='{ITEMS}'/>")),
    )
    .await;
    assert_eq!(r.get_child("query", ITEMS).unwrap().children().count(), 0);
    // Once a member, she may.
    ok(
        &mut alice,
        iq(
            "set",
            "a",
            Some(SVC),
            &format!("<pubsub xmlns='{OWNER}'><affiliations node='secret'><affiliation jid='eve@localhost' affiliation='member'/></affiliations></pubsub>"),
        ),
    )
    .await;
    ok(&mut eve, iq("set", "s2", Some(SVC), &subscribe)).await;
    let r = ok(&mut eve, iq("get", "i2", Some(SVC), &items("secret"))).await;
    assert_eq!(item_ids(&r), vec!["1"]);
}

#[tokio::test]
async fn items_and_subscriptions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_in(dir.path()).await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    {
        let mut alice = s.login("alice", "pw123456").await;
        let mut bob = s.login("bob", "pw123456").await;
        ok(
            &mut alice,
            iq(
                "set",
                "c",
                Some(SVC),
                &format!("<pubsub xmlns='{PS}'><create node='log'/></pubsub>"),
            ),
        )
        .await;
        ok(
            &mut bob,
            iq(
                "set",
                "s",
                Some(SVC),
                &format!(
                    "<pubsub xmlns='{PS}'><subscribe node='log' jid='bob@localhost'/></pubsub>"
                ),
            ),
        )
        .await;
        for id in ["one", "two"] {
            ok(
                &mut alice,
                iq(
                    "set",
                    id,
                    Some(SVC),
                    &publish("log", id, "<entry xmlns='urn:x'/>"),
                ),
            )
            .await;
        }
        // A PEP node too.
        ok(
            &mut alice,
            iq(
                "set",
                "pep",
                None,
                &publish(
                    "urn:x:mood",
                    "current",
                    "<mood xmlns='urn:x:mood'>happy</mood>",
                ),
            ),
        )
        .await;
    }
    s.shutdown().await;
    let s = TestServer::start_in(dir.path()).await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    let r = ok(&mut bob, iq("get", "i", Some(SVC), &items("log"))).await;
    assert_eq!(item_ids(&r), vec!["one", "two"]);
    let r = ok(&mut alice, iq("get", "i", None, &items("urn:x:mood"))).await;
    assert_eq!(item_ids(&r), vec!["current"]);
    // The subscription and the ownership survived: Bob still hears of new items.
    ok(
        &mut alice,
        iq(
            "set",
            "three",
            Some(SVC),
            &publish("log", "three", "<entry xmlns='urn:x'/>"),
        ),
    )
    .await;
    let ev = event(&mut bob, SVC).await;
    assert_eq!(
        ev.get_child("items", EVENT)
            .unwrap()
            .get_child("item", EVENT)
            .unwrap()
            .attr("id"),
        Some("three")
    );
}

async fn befriend(s: &TestServer, a: &str, b: &str) {
    for (user, contact) in [(a, b), (b, a)] {
        let user = BareJid::new(&format!("{user}@localhost")).unwrap();
        let item = RosterItem {
            jid: format!("{contact}@localhost"),
            subscription: Subscription::Both,
            ..Default::default()
        };
        s.server
            .storage
            .put_roster_item(&user, &item)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn pep_avatar_reaches_only_contacts_whose_caps_ask_for_it() {
    use base64::Engine;
    use sha1::Digest;
    let s = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw123456").await;
    }
    befriend(&s, "alice", "bob").await;
    befriend(&s, "alice", "carol").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    let mut carol = s.login("carol", "pw123456").await;
    alice.drain().await;
    announce_caps(&mut bob, &["urn:xmpp:avatar:metadata+notify"]).await;
    announce_caps(&mut carol, &["urn:xmpp:tune+notify"]).await;
    alice.drain().await;
    bob.drain().await;
    carol.drain().await;

    // The account shows its PEP.
    let r = ok(
        &mut alice,
        iq(
            "get",
            "info",
            Some("alice@localhost"),
            &format!("<query xmlns='{INFO}'/>"),
        ),
    )
    .await;
    let q = r.get_child("query", INFO).unwrap();
    assert!(q
        .children()
        .any(|i| i.attr("category") == Some("pubsub") && i.attr("type") == Some("pep")));

    let png = b"\x89PNG not really an image";
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    let id = format!("{:x}", sha1::Sha1::digest(png));
    ok(
        &mut alice,
        iq(
            "set",
            "data",
            None,
            &publish(
                "urn:xmpp:avatar:data",
                &id,
                &format!("<data xmlns='urn:xmpp:avatar:data'>{b64}</data>"),
            ),
        ),
    )
    .await;
    let meta = format!(
        "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='{id}' bytes='{}' type='image/png'/></metadata>",
        png.len()
    );
    ok(
        &mut alice,
        iq(
            "set",
            "meta",
            None,
            &publish("urn:xmpp:avatar:metadata", &id, &meta),
        ),
    )
    .await;

    // Bob wants avatar metadata: he gets it, and not the data node.
    let ev = event(&mut bob, "alice@localhost").await;
    let got = ev.get_child("items", EVENT).unwrap();
    assert_eq!(got.attr("node"), Some("urn:xmpp:avatar:metadata"));
    assert_eq!(
        got.get_child("item", EVENT).unwrap().attr("id"),
        Some(id.as_str())
    );
    bob.expect_silence().await;
    // Carol's client does not ask for avatars.
    carol.expect_silence().await;

    // XEP-0398: the vCard has the photo, and presence carries its hash.
    let r = ok(
        &mut bob,
        iq(
            "get",
            "vc",
            Some("alice@localhost"),
            "<vCard xmlns='vcard-temp'/>",
        ),
    )
    .await;
    let photo = r
        .get_child("vCard", "vcard-temp")
        .unwrap()
        .get_child("PHOTO", "vcard-temp")
        .unwrap();
    assert_eq!(
        photo.child_text("BINVAL", "vcard-temp").as_deref(),
        Some(b64.as_str())
    );
    alice.send("<presence/>").await;
    let p = bob
        .recv_until(|e| e.name() == "presence" && e.attr("from") == Some("alice@localhost/r"))
        .await;
    let x = p.get_child("x", "vcard-temp:x:update").expect("x:update");
    assert_eq!(
        x.child_text("photo", "vcard-temp:x:update").as_deref(),
        Some(id.as_str())
    );

    // Items are readable by contacts (presence access) but not by strangers.
    s.add_user("eve", "pw123456").await;
    let mut eve = s.login("eve", "pw123456").await;
    let r = eve
        .iq(iq(
            "get",
            "i",
            Some("alice@localhost"),
            &items("urn:xmpp:avatar:metadata"),
        ))
        .await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-authorized"));
    let r = ok(
        &mut carol,
        iq(
            "get",
            "i",
            Some("alice@localhost"),
            &items("urn:xmpp:avatar:metadata"),
        ),
    )
    .await;
    assert_eq!(item_ids(&r), vec![id.clone()]);
}

#[tokio::test]
async fn vcard_photo_becomes_a_pep_avatar() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    ok(
        &mut alice,
        iq("set", "v", None, "<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>aGVsbG8=</BINVAL></PHOTO></vCard>"),
    )
    .await;
    // sha1("hello")
    let id = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
    let r = ok(
        &mut alice,
        iq("get", "m", None, &items("urn:xmpp:avatar:metadata")),
    )
    .await;
    assert_eq!(item_ids(&r), vec![id]);
    let r = ok(
        &mut alice,
        iq("get", "d", None, &items("urn:xmpp:avatar:data")),
    )
    .await;
    let data = r
        .get_child("pubsub", PS)
        .unwrap()
        .get_child("items", PS)
        .unwrap()
        .get_child("item", PS)
        .unwrap()
        .get_child("data", "urn:xmpp:avatar:data")
        .unwrap()
        .text();
    assert_eq!(data, "aGVsbG8=");
}

#[tokio::test]
async fn bookmarks_stay_in_sync_across_private_storage_and_pep() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let r = ok(
        &mut alice,
        iq("get", "info", None, &format!("<query xmlns='{INFO}'/>")),
    )
    .await;
    let q = r.get_child("query", INFO).unwrap();
    assert!(q
        .children()
        .any(|f| f.attr("var") == Some("urn:xmpp:bookmarks:1#compat")));

    // A legacy client stores bookmarks in private XML storage: they appear in PEP.
    ok(
        &mut alice,
        iq("set", "p1", None, "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
            <conference jid='play@muc.localhost' name='The Play' autojoin='true'><nick>A</nick></conference>\
            </storage></query>"),
    )
    .await;
    let r = ok(
        &mut alice,
        iq("get", "b1", None, &items("urn:xmpp:bookmarks:1")),
    )
    .await;
    assert_eq!(item_ids(&r), vec!["play@muc.localhost"]);
    let conf = r
        .get_child("pubsub", PS)
        .unwrap()
        .get_child("items", PS)
        .unwrap()
        .get_child("item", PS)
        .unwrap()
        .get_child("conference", "urn:xmpp:bookmarks:1")
        .unwrap()
        .clone();
    assert_eq!(conf.attr("autojoin"), Some("true"));
    assert_eq!(
        conf.child_text("nick", "urn:xmpp:bookmarks:1").as_deref(),
        Some("A")
    );
    let r = ok(
        &mut alice,
        iq("get", "b2", None, &items("storage:bookmarks")),
    )
    .await;
    assert_eq!(item_ids(&r), vec!["current"]);

    // A modern client adds one through XEP-0402: the legacy copies follow.
    let opts = "<publish-options><x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
        <field var='pubsub#persist_items'><value>true</value></field>\
        <field var='pubsub#max_items'><value>max</value></field>\
        <field var='pubsub#send_last_published_item'><value>never</value></field>\
        <field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>";
    let p = format!(
        "<pubsub xmlns='{PS}'><publish node='urn:xmpp:bookmarks:1'><item id='orchard@muc.localhost'>\
         <conference xmlns='urn:xmpp:bookmarks:1' name='Orchard'/></item></publish>{opts}</pubsub>"
    );
    ok(&mut alice, iq("set", "b3", None, &p)).await;
    let r = ok(
        &mut alice,
        iq(
            "get",
            "p2",
            None,
            "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>",
        ),
    )
    .await;
    let storage = r
        .get_child("query", "jabber:iq:private")
        .unwrap()
        .get_child("storage", "storage:bookmarks")
        .unwrap();
    let mut rooms: Vec<&str> = storage.children().filter_map(|c| c.attr("jid")).collect();
    rooms.sort();
    assert_eq!(rooms, vec!["orchard@muc.localhost", "play@muc.localhost"]);

    // Retracting in PEP removes it from the legacy storage.
    ok(
        &mut alice,
        iq("set", "b4", None, &format!("<pubsub xmlns='{PS}'><retract node='urn:xmpp:bookmarks:1'><item id='play@muc.localhost'/></retract></pubsub>")),
    )
    .await;
    let r = ok(
        &mut alice,
        iq(
            "get",
            "p3",
            None,
            "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>",
        ),
    )
    .await;
    let storage = r
        .get_child("query", "jabber:iq:private")
        .unwrap()
        .get_child("storage", "storage:bookmarks")
        .unwrap();
    let rooms: Vec<&str> = storage.children().filter_map(|c| c.attr("jid")).collect();
    assert_eq!(rooms, vec!["orchard@muc.localhost"]);
    // Nobody else may read them (whitelist).
    s.add_user("eve", "pw123456").await;
    let mut eve = s.login("eve", "pw123456").await;
    let r = eve
        .iq(iq(
            "get",
            "e",
            Some("alice@localhost"),
            &items("urn:xmpp:bookmarks:1"),
        ))
        .await;
    assert_eq!(r.attr("type"), Some("error"));
}

#[tokio::test]
async fn pep_items_outlive_the_owners_session() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    befriend(&s, "alice", "bob").await;
    {
        let mut alice = s.login("alice", "pw123456").await;
        ok(
            &mut alice,
            iq(
                "set",
                "m",
                None,
                &publish(
                    "urn:x:mood",
                    "current",
                    "<mood xmlns='urn:x:mood'>calm</mood>",
                ),
            ),
        )
        .await;
        alice.send("</stream:stream>").await;
        while !matches!(alice.event().await, rookery_xml::StreamEvent::Close) {}
    }
    // Alice is gone (her PEP service is unloaded); Bob still reads her items from storage.
    let mut bob = s.login("bob", "pw123456").await;
    let r = ok(
        &mut bob,
        iq("get", "i", Some("alice@localhost"), &items("urn:x:mood")),
    )
    .await;
    assert_eq!(item_ids(&r), vec!["current"]);
    let r = ok(
        &mut bob,
        iq(
            "get",
            "d",
            Some("alice@localhost"),
            &format!("<query xmlns='{ITEMS}'/>"),
        ),
    )
    .await;
    let nodes: Vec<&str> = r
        .get_child("query", ITEMS)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("node"))
        .collect();
    assert_eq!(nodes, vec!["urn:x:mood"]);
}

#[tokio::test]
async fn a_contact_coming_online_gets_the_last_items_it_wants() {
    let s = TestServer::start().await;
    for u in ["alice", "bob"] {
        s.add_user(u, "pw123456").await;
    }
    befriend(&s, "alice", "bob").await;
    let mut alice = s.login("alice", "pw123456").await;
    ok(
        &mut alice,
        iq(
            "set",
            "t",
            None,
            &publish(
                "urn:x:tune",
                "current",
                "<tune xmlns='urn:x:tune'>Cedars</tune>",
            ),
        ),
    )
    .await;
    ok(
        &mut alice,
        iq(
            "set",
            "m",
            None,
            &publish("urn:x:mood", "current", "<mood xmlns='urn:x:mood'/>"),
        ),
    )
    .await;
    // Bob's client wants tunes only; it learns Alice's last one as soon as the server knows.
    let mut bob = s.login("bob", "pw123456").await;
    announce_caps(&mut bob, &["urn:x:tune+notify"]).await;
    let m = bob
        .recv_until(|e| e.name() == "message" && e.attr("from") == Some("alice@localhost"))
        .await;
    let ev = m.get_child("event", EVENT).unwrap();
    assert_eq!(
        ev.get_child("items", EVENT).unwrap().attr("node"),
        Some("urn:x:tune")
    );
    assert!(m.has_child("delay", "urn:xmpp:delay"), "{m}");
    bob.expect_silence().await;
    // The same presence again brings nothing new.
    bob.send("<presence/>").await;
    let got = bob.drain().await;
    assert!(got.iter().all(|e| e.name() != "message"), "{got:?}");
}

/// Two federating servers, `a.test` (alice) and `b.test` (bob), mutual contacts.
async fn federated_pair() -> (TestServer, TestServer) {
    // Ephemeral s2s ports; each server learns the other's address once both run.
    let make = |me: &'static str| {
        move |c: &mut rookery_core::config::Config| {
            c.hosts = vec![me.into()];
            c.s2s.enabled = true;
            c.listen.s2s = vec!["127.0.0.1:0".into()];
        }
    };
    let a = TestServer::start_with(make("a.test")).await;
    let b = TestServer::start_with(make("b.test")).await;
    for (from, to, domain) in [(&a, &b, "b.test"), (&b, &a, "a.test")] {
        let addr = to.running.as_ref().unwrap().s2s[0].to_string();
        from.server.s2s.set_route(domain, &addr);
    }
    a.add_user("alice", "pw123456").await;
    b.add_user("bob", "pw123456").await;
    for (s, user, contact) in [
        (&a, "alice@a.test", "bob@b.test"),
        (&b, "bob@b.test", "alice@a.test"),
    ] {
        let item = RosterItem {
            jid: contact.into(),
            subscription: Subscription::Both,
            ..Default::default()
        };
        s.server
            .storage
            .put_roster_item(&BareJid::new(user).unwrap(), &item)
            .await
            .unwrap();
    }
    (a, b)
}

#[tokio::test]
async fn pep_notifications_cross_federation() {
    let (a, b) = federated_pair().await;
    let mut alice = a.login("alice", "pw123456").await;
    let mut bob = b.login("bob", "pw123456").await;
    // Bob announces that he wants tunes; alice's server (over s2s) and his own ask what his caps
    // mean. He answers every question until alice's server has asked.
    let info = disco_info(&["urn:x:tune+notify"]);
    let ver = rookery_server::modules::pubsub::caps::ver(&info, "sha-1").unwrap();
    bob.send(&format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='{ver}'/></presence>"
    ))
    .await;
    loop {
        let q = bob
            .recv_until(|e| {
                e.name() == "iq" && e.attr("type") == Some("get") && e.has_child("query", INFO)
            })
            .await;
        let mut answer = info.clone();
        answer.set_attr(
            "node",
            q.get_child("query", INFO).unwrap().attr("node").unwrap(),
        );
        bob.send_el(
            Element::new("iq", ns::CLIENT)
                .with_attr("type", "result")
                .with_attr("id", q.attr("id").unwrap())
                .with_attr("to", q.attr("from").unwrap())
                .with_child(answer),
        )
        .await;
        if q.attr("from") == Some("alice@a.test") {
            break;
        }
    }
    // A barrier for the answer's trip to a.test: a round trip to it over the same s2s stream.
    let pong = bob
        .iq(iq(
            "get",
            "ping",
            Some("a.test"),
            "<ping xmlns='urn:xmpp:ping'/>",
        ))
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
    alice.drain().await;
    ok(
        &mut alice,
        iq(
            "set",
            "t",
            None,
            &publish(
                "urn:x:tune",
                "current",
                "<tune xmlns='urn:x:tune'>Cedars</tune>",
            ),
        ),
    )
    .await;
    let ev = event(&mut bob, "alice@a.test").await;
    let item = ev
        .get_child("items", EVENT)
        .unwrap()
        .get_child("item", EVENT)
        .unwrap();
    assert_eq!(item.attr("id"), Some("current"));
    // Bob may read Alice's presence-access node from his server.
    let r = ok(
        &mut bob,
        iq("get", "i", Some("alice@a.test"), &items("urn:x:tune")),
    )
    .await;
    assert_eq!(item_ids(&r), vec!["current"]);
}
