//! Protocol tests: the real server on ephemeral ports, spoken to in raw XMPP (RFC 6120, 6121).

mod common;

use common::{error_condition, Raw, TestServer};
use rookery_bench::client;
use rookery_bench::scram::Mechanism;
use rookery_xml::{ns, Element, StreamEvent};

fn msg(to: &str, body: &str) -> String {
    format!("<message to='{to}' type='chat' id='m1'><body>{body}</body></message>")
}

#[tokio::test]
async fn scram_sha1_and_sha256_logins_and_wrong_password() {
    let s = TestServer::start().await;
    s.add_user("alice", "secret1").await;
    for mech in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
        let online = client::login(&s.settings("secret1", mech), "alice")
            .await
            .unwrap();
        assert_eq!(online.jid, "alice@localhost/r");
    }
    let Err(err) = client::login(&s.settings("wrong", Mechanism::ScramSha256), "alice").await
    else {
        panic!("wrong password accepted")
    };
    assert!(format!("{err:#}").contains("not-authorized"), "{err:#}");
    let Err(err) = client::login(&s.settings("secret1", Mechanism::ScramSha256), "nobody").await
    else {
        panic!("unknown user accepted")
    };
    assert!(format!("{err:#}").contains("not-authorized"), "{err:#}");
}

#[tokio::test]
async fn features_before_and_after_tls() {
    let s = TestServer::start().await;
    let mut raw = Raw::connect(s.c2s).await;
    let f = raw.open("localhost").await;
    let st = f.get_child("starttls", ns::TLS).expect("starttls offered");
    assert!(st.has_child("required", ns::TLS));
    // Without TLS no mechanism is offered when encryption is required.
    assert!(!f.has_child("mechanisms", ns::SASL));
    raw.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
        .await;
    match raw.event().await {
        Some(StreamEvent::Stanza(el)) => {
            assert!(el.is("failure", ns::SASL));
            assert!(el.has_child("encryption-required", ns::SASL));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_host_gets_host_unknown() {
    let s = TestServer::start().await;
    let mut raw = Raw::connect(s.c2s).await;
    raw.send(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.example' version='1.0'>").await;
    assert_eq!(raw.stream_error().await.as_deref(), Some("host-unknown"));
}

#[tokio::test]
async fn bad_input_gets_the_right_stream_error_and_others_carry_on() {
    let s = TestServer::start_with(|c| {
        c.tls.require_encryption = false;
        c.limits.max_stanza_bytes_unauthenticated = 4096;
    })
    .await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"<message><body>unclosed</message>".to_vec(),
            "not-well-formed",
        ),
        // RFC 6120 §11.1: comments are restricted XML.
        (b"<!-- comment -->".to_vec(), "restricted-xml"),
        (
            format!("<message><body>{}</body></message>", "x".repeat(10_000)).into_bytes(),
            "policy-violation",
        ),
        ("<a>".repeat(200).into_bytes(), "policy-violation"),
        (
            b"<message to='bob@localhost'><body>hi</body></message>".to_vec(),
            "not-authorized",
        ),
        (
            b"<foo xmlns='urn:example'/>".to_vec(),
            "unsupported-stanza-type",
        ),
    ];
    for (input, expected) in cases {
        let mut raw = Raw::connect(s.c2s).await;
        raw.open("localhost").await;
        raw.send(&input).await;
        assert_eq!(
            raw.stream_error().await.as_deref(),
            Some(expected),
            "{}",
            String::from_utf8_lossy(&input)
        );
    }
    // A garbage first byte: the stream error still comes with a header.
    let mut raw = Raw::connect(s.c2s).await;
    raw.send(b"\x00\x01garbage").await;
    assert_eq!(raw.stream_error().await.as_deref(), Some("not-well-formed"));
    // The existing session is unaffected.
    let mut bob = s.login("bob", "pw123456").await;
    alice.send(&msg("bob@localhost/r", "still here")).await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("still here")
    );
}

#[tokio::test]
async fn spoofed_from_is_invalid_from() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    alice
        .send("<message from='bob@localhost/r' to='alice@localhost'><body>x</body></message>")
        .await;
    alice.expect_stream_error("invalid-from").await;
}

#[tokio::test]
async fn invalid_jid_and_unknown_user_get_stanza_errors() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    alice
        .send("<message to='a@b@c' id='bad'><body>x</body></message>")
        .await;
    let e = alice.recv_until(|e| e.attr("id") == Some("bad")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("jid-malformed"));
    alice
        .send("<message to='ghost@localhost' id='ghost'><body>x</body></message>")
        .await;
    let e = alice.recv_until(|e| e.attr("id") == Some("ghost")).await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    // Remote domains are not reachable yet.
    alice
        .send("<message to='x@remote.example' id='far'><body>x</body></message>")
        .await;
    let e = alice.recv_until(|e| e.attr("id") == Some("far")).await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
}

#[tokio::test]
async fn messages_to_full_and_bare_jids_and_priorities() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    alice.send(&msg("bob@localhost", "to bare")).await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.attr("from"), Some("alice@localhost/r"));
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("to bare"));
    bob.send(&msg("alice@localhost/r", "to full")).await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("to full"));
    // Negative priority: not a target for bare-JID messages, so they go offline.
    bob.send("<presence><priority>-1</priority></presence>")
        .await;
    bob.drain().await;
    alice.send(&msg("bob@localhost", "kept")).await;
    bob.expect_silence().await;
    let stored = s
        .server
        .storage
        .count_offline(&rookery_core::BareJid::new("bob@localhost").unwrap())
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn offline_messages_arrive_with_delay_on_next_presence() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    alice.send(&msg("bob@localhost", "one")).await;
    alice.send(&msg("bob@localhost/gone", "two")).await;
    alice.expect_silence().await;
    let bob_online = client::login(&s.settings("pw123456", Mechanism::ScramSha256), "bob")
        .await
        .unwrap();
    let mut bob = common::Client { online: bob_online };
    for expected in ["one", "two"] {
        let m = bob.recv_until(|e| e.name() == "message").await;
        assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some(expected));
        let d = m.get_child("delay", "urn:xmpp:delay").expect("delay stamp");
        assert_eq!(d.attr("from"), Some("localhost"));
        assert!(d.attr("stamp").unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn offline_queue_is_capped() {
    let s = TestServer::start_with(|c| c.limits.max_offline_messages = 2).await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    for i in 0..3 {
        alice
            .send(&format!(
                "<message to='bob@localhost' id='o{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    let e = alice.recv_until(|e| e.attr("id") == Some("o2")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
}

#[tokio::test]
async fn same_resource_replaces_the_old_session_with_conflict() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut first = s.login("alice", "pw123456").await;
    let mut second = s.login("alice", "pw123456").await;
    first.expect_stream_error("conflict").await;
    second.expect_silence().await;
}

fn roster_set(id: &str, jid: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_child(
            Element::new("query", "jabber:iq:roster")
                .with_child(Element::new("item", "jabber:iq:roster").with_attr("jid", jid)),
        )
}

fn roster_get(id: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", id)
        .with_child(Element::new("query", "jabber:iq:roster"))
}

#[tokio::test]
async fn mutual_subscription_presence_and_removal() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    s.add_user("eve", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    let mut eve = s.login("eve", "pw123456").await;
    alice.iq(roster_get("r0")).await;
    bob.iq(roster_get("r0")).await;
    let r = alice.iq(roster_set("r1", "bob@localhost")).await;
    assert_eq!(r.attr("type"), Some("result"));
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let req = bob
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("subscribe"))
        .await;
    assert_eq!(req.attr("from"), Some("alice@localhost"));
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    // Alice learns of the approval and sees Bob's presence.
    alice
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("subscribed"))
        .await;
    let p = alice
        .recv_until(|e| e.name() == "presence" && e.attr("from") == Some("bob@localhost/r"))
        .await;
    assert_eq!(p.attr("type"), None);
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    alice
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("subscribe"))
        .await;
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    bob.recv_until(|e| e.name() == "presence" && e.attr("from") == Some("alice@localhost/r"))
        .await;
    let roster = alice.iq(roster_get("r2")).await;
    let item = roster
        .get_child("query", "jabber:iq:roster")
        .unwrap()
        .children()
        .next()
        .unwrap()
        .clone();
    assert_eq!(item.attr("subscription"), Some("both"));
    // Status changes reach the contact, not a stranger.
    bob.send("<presence><show>away</show><status>lunch</status></presence>")
        .await;
    let p = alice
        .recv_until(|e| e.name() == "presence" && e.attr("from") == Some("bob@localhost/r"))
        .await;
    assert_eq!(p.child_text("show", ns::CLIENT).as_deref(), Some("away"));
    eve.expect_silence().await;
    // A dropped connection turns into unavailable presence for contacts.
    drop(bob);
    let p = alice
        .recv_until(|e| e.name() == "presence" && e.attr("from") == Some("bob@localhost/r"))
        .await;
    assert_eq!(p.attr("type"), Some("unavailable"));
    // Removing the contact cancels both subscriptions.
    let mut bob = s.login("bob", "pw123456").await;
    bob.iq(roster_get("r0")).await;
    let remove = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "rm")
        .with_child(
            Element::new("query", "jabber:iq:roster").with_child(
                Element::new("item", "jabber:iq:roster")
                    .with_attr("jid", "bob@localhost")
                    .with_attr("subscription", "remove"),
            ),
        );
    assert_eq!(alice.iq(remove).await.attr("type"), Some("result"));
    // Bob's side goes from both to to (Alice unsubscribed) to none (Alice cancelled his).
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("none") {
        let push = bob
            .recv_until(|e| e.name() == "iq" && e.has_child("query", "jabber:iq:roster"))
            .await;
        let item = push
            .get_child("query", "jabber:iq:roster")
            .unwrap()
            .children()
            .next()
            .unwrap()
            .clone();
        states.push(item.attr("subscription").unwrap().to_string());
    }
    assert_eq!(states, ["to", "none"]);
    let roster = alice.iq(roster_get("r3")).await;
    assert_eq!(
        roster
            .get_child("query", "jabber:iq:roster")
            .unwrap()
            .children()
            .count(),
        0
    );
}

#[tokio::test]
async fn subscription_request_to_offline_user_waits_for_login() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    alice
        .send("<presence to='bob@localhost' type='subscribe'><status>it is me</status></presence>")
        .await;
    alice.drain().await;
    let online = client::login(&s.settings("pw123456", Mechanism::ScramSha256), "bob")
        .await
        .unwrap();
    let mut bob = common::Client { online };
    let req = bob
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("subscribe"))
        .await;
    assert_eq!(
        req.child_text("status", ns::CLIENT).as_deref(),
        Some("it is me")
    );
}

#[tokio::test]
async fn roster_versioning_returns_empty_when_unchanged() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    alice.iq(roster_set("a", "x@localhost")).await;
    let r = alice.iq(roster_get("g1")).await;
    let ver = r
        .get_child("query", "jabber:iq:roster")
        .unwrap()
        .attr("ver")
        .unwrap()
        .to_string();
    let mut get = roster_get("g2");
    get.get_child_mut("query", "jabber:iq:roster")
        .unwrap()
        .set_attr("ver", ver);
    let r = alice.iq(get).await;
    assert_eq!(r.attr("type"), Some("result"));
    assert!(r.children().next().is_none());
}

#[tokio::test]
async fn graceful_shutdown_sends_system_shutdown() {
    let mut s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    alice.expect_silence().await;
    let stop = tokio::spawn(async move {
        s.shutdown().await;
        s
    });
    alice.expect_stream_error("system-shutdown").await;
    stop.await.unwrap();
}

#[tokio::test]
async fn direct_tls_with_alpn() {
    let s = TestServer::start().await;
    let mut cfg = (*rookery_bench::tls::client_config().unwrap()).clone();
    cfg.alpn_protocols = vec![b"xmpp-client".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.direct).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"xmpp-client"[..]));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("</stream:features>") {
        let n = tokio::time::timeout(common::WAIT, tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(!got.contains("starttls"), "{got}");
    assert!(got.contains("SCRAM-SHA-256-PLUS"), "{got}");
    assert!(got.contains("PLAIN"), "{got}");
}

#[tokio::test]
async fn silent_clients_are_pinged_then_dropped() {
    let s = TestServer::start_with(|c| {
        c.limits.ping_interval_seconds = 1;
        c.limits.ping_timeout_seconds = 1;
    })
    .await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let ping = alice
        .recv_until(|e| e.has_child("ping", "urn:xmpp:ping"))
        .await;
    assert_eq!(ping.attr("type"), Some("get"));
    assert_eq!(ping.attr("from"), Some("localhost"));
    // Answering keeps the session; the next ping goes unanswered.
    alice
        .send(&format!(
            "<iq type='result' id='{}' to='localhost'/>",
            ping.attr("id").unwrap()
        ))
        .await;
    alice
        .recv_until(|e| e.has_child("ping", "urn:xmpp:ping"))
        .await;
    alice.expect_stream_error("connection-timeout").await;
}

/// A connection quiet past the point where it frees its parser (two seconds) reads on in the
/// stream's namespace scope; the one timer for quiet and pings still pings on time after input.
#[tokio::test]
async fn quiet_sessions_compact_and_read_on() {
    let s = TestServer::start_with(|c| {
        c.limits.ping_interval_seconds = 4;
    })
    .await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    for (round, body) in ["after a pause", "after another"].into_iter().enumerate() {
        // The quiet period is what is tested here: nothing else marks its end.
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let (from, to) = if round == 0 {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        let peer = if round == 0 { "bob" } else { "alice" };
        from.send(&format!(
            "<message to='{peer}@localhost/r' type='chat' id='q{round}'><body>{body}</body>\
             <x:hint xmlns:x='urn:example:hint'/></message>"
        ))
        .await;
        let m = to.recv_until(|e| e.name() == "message").await;
        assert!(m.is("message", ns::CLIENT));
        assert_eq!(m.child_text("body", ns::CLIENT).unwrap(), body);
        assert!(m.has_child("hint", "urn:example:hint"));
    }
    // Bob's last input came 2.5 s after his login: his ping is due 4 s after that input.
    let ping = bob
        .recv_until(|e| e.has_child("ping", "urn:xmpp:ping"))
        .await;
    assert_eq!(ping.attr("type"), Some("get"));
}

#[tokio::test]
async fn services_answer_on_the_server_and_accounts() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let info = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").unwrap())
        .await;
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let features: Vec<String> = q
        .children()
        .filter_map(|f| f.attr("var").map(str::to_string))
        .collect();
    for f in [
        "urn:xmpp:ping",
        "jabber:iq:version",
        "vcard-temp",
        "jabber:iq:last",
        "urn:xmpp:time",
        "jabber:iq:private",
    ] {
        assert!(
            features.iter().any(|x| x == f),
            "{f} missing from {features:?}"
        );
    }
    let v = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>").unwrap())
        .await;
    let q = v.get_child("query", "jabber:iq:version").unwrap();
    assert_eq!(
        q.child_text("name", "jabber:iq:version").as_deref(),
        Some("Rookery")
    );
    assert!(!q.has_child("os", "jabber:iq:version"));
    let t = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>").unwrap())
        .await;
    assert!(t
        .get_child("time", "urn:xmpp:time")
        .unwrap()
        .child_text("utc", "urn:xmpp:time")
        .unwrap()
        .ends_with('Z'));
    // Private storage round trip, invisible to others.
    let set = "<iq xmlns='jabber:client' type='set' id='p1'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs></query></iq>";
    assert_eq!(
        alice.iq(Element::parse(set).unwrap()).await.attr("type"),
        Some("result")
    );
    let got = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='p2'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>").unwrap())
        .await;
    let prefs = got
        .get_child("query", "jabber:iq:private")
        .unwrap()
        .get_child("prefs", "urn:example:prefs")
        .unwrap()
        .clone();
    assert_eq!(
        prefs.child_text("theme", "urn:example:prefs").as_deref(),
        Some("dark")
    );
    // Unknown payloads get service-unavailable.
    let e = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='u' to='localhost'><nope xmlns='urn:nope'/></iq>").unwrap())
        .await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
}

#[tokio::test]
async fn version_can_be_switched_off() {
    let s = TestServer::start_with(|c| c.modules.disabled = vec!["version".into()]).await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let e = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>").unwrap())
        .await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
}

#[tokio::test]
async fn archive_pages_through_500_messages_both_ways() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    for i in 0..500 {
        alice
            .send(&format!(
                "<message to='bob@localhost' type='chat' id='m{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    // Each delivered message carries the archive's id for it (XEP-0359).
    let mut delivered_ids = Vec::new();
    while delivered_ids.len() < 500 {
        let m = bob.recv_until(|e| e.name() == "message").await;
        let sid = m
            .get_child("stanza-id", "urn:xmpp:sid:0")
            .expect("stanza-id");
        assert_eq!(sid.attr("by"), Some("bob@localhost"));
        delivered_ids.push(sid.attr("id").unwrap().to_string());
    }
    let query = |id: &str, rsm: &str| {
        Element::parse(&format!(
            "<iq xmlns='jabber:client' type='set' id='{id}'><query xmlns='urn:xmpp:mam:2' queryid='{id}'>\
             <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>alice@localhost</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>"
        ))
        .unwrap()
    };
    async fn page(c: &mut common::Client, q: Element) -> (Vec<(String, String)>, Element) {
        let id = q.attr("id").unwrap().to_string();
        c.send_el(q).await;
        let mut got = Vec::new();
        loop {
            let el = c.recv().await;
            if el.name() == "iq" && el.attr("id") == Some(&id) {
                assert_eq!(el.attr("type"), Some("result"), "{el}");
                return (got, el.get_child("fin", "urn:xmpp:mam:2").unwrap().clone());
            }
            let r = el
                .get_child("result", "urn:xmpp:mam:2")
                .expect("a result message");
            let inner = r
                .get_child("forwarded", "urn:xmpp:forward:0")
                .unwrap()
                .get_child("message", ns::CLIENT)
                .unwrap();
            got.push((
                r.attr("id").unwrap().to_string(),
                inner.child_text("body", ns::CLIENT).unwrap(),
            ));
        }
    }
    // Forwards, 100 at a time.
    let mut all = Vec::new();
    let mut after = String::new();
    for n in 0.. {
        let rsm = if after.is_empty() {
            "<max>100</max>".to_string()
        } else {
            format!("<max>100</max><after>{after}</after>")
        };
        let (items, fin) = page(&mut bob, query(&format!("f{n}"), &rsm)).await;
        let set = fin
            .get_child("set", "http://jabber.org/protocol/rsm")
            .unwrap();
        assert_eq!(
            set.child_text("count", "http://jabber.org/protocol/rsm")
                .as_deref(),
            Some("500")
        );
        after = items.last().map(|(id, _)| id.clone()).unwrap_or_default();
        all.extend(items);
        if fin.attr("complete") == Some("true") {
            break;
        }
        assert!(n < 10, "paging did not end");
    }
    let bodies: Vec<String> = all.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(bodies, (0..500).map(|i| i.to_string()).collect::<Vec<_>>());
    let ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, delivered_ids);
    // Backwards from the end.
    let (last_page, fin) = page(&mut bob, query("b0", "<max>30</max><before/>")).await;
    assert_eq!(last_page.first().unwrap().1, "470");
    assert_eq!(last_page.last().unwrap().1, "499");
    assert_ne!(fin.attr("complete"), Some("true"));
    let (prev, _) = page(
        &mut bob,
        query(
            "b1",
            &format!("<max>30</max><before>{}</before>", last_page[0].0),
        ),
    )
    .await;
    assert_eq!(prev.first().unwrap().1, "440");
    // The sender's archive has them too.
    let (mine, _) = page(&mut alice, Element::parse("<iq xmlns='jabber:client' type='set' id='a0'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>5</max></set></query></iq>").unwrap()).await;
    assert_eq!(mine.len(), 5);
    // An unknown id is item-not-found.
    bob.send_el(query("bad", "<after>nope</after>")).await;
    let e = bob.recv_until(|e| e.attr("id") == Some("bad")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("item-not-found"));
}

#[tokio::test]
async fn inactive_clients_get_presence_late_and_deduplicated() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    // Mutual subscription so presence flows.
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    bob.recv_until(|e| e.attr("type") == Some("subscribe"))
        .await;
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    alice
        .recv_until(|e| e.name() == "presence" && e.attr("from") == Some("bob@localhost/r"))
        .await;
    alice.drain().await;
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    bob.send("<presence><show>away</show></presence>").await;
    bob.send("<presence><show>dnd</show></presence>").await;
    bob.send("<message to='alice@localhost/r' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    bob.drain().await;
    bob.send("<message to='alice@localhost/r' type='chat'><body>wake up</body></message>")
        .await;
    // Held presence (only the latest) and the chat state come first, then the message.
    let p = alice.recv().await;
    assert_eq!(
        (p.name(), p.child_text("show", ns::CLIENT).as_deref()),
        ("presence", Some("dnd")),
        "{p}"
    );
    let cs = alice.recv().await;
    assert!(
        cs.has_child("composing", "http://jabber.org/protocol/chatstates"),
        "{cs}"
    );
    let m = alice.recv().await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("wake up"));
    alice.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    bob.send("<presence/>").await;
    let p = alice.recv_until(|e| e.name() == "presence").await;
    assert_eq!(p.attr("from"), Some("bob@localhost/r"));
}

#[tokio::test]
async fn room_messages_are_archived_with_the_rooms_stanza_ids() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    alice.send("<presence to='lounge@conference.localhost/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    alice
        .recv_until(|e| e.has_child("subject", ns::CLIENT))
        .await;
    let instant = "<iq type='set' id='cfg' to='lounge@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>";
    alice.send(instant).await;
    alice.recv_until(|e| e.attr("id") == Some("cfg")).await;
    bob.send("<presence to='lounge@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    bob.recv_until(|e| e.has_child("subject", ns::CLIENT)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        alice.send(&format!("<message to='lounge@conference.localhost' type='groupchat'><body>m{i}</body></message>")).await;
        let m = bob
            .recv_until(|e| e.name() == "message" && e.has_child("body", ns::CLIENT))
            .await;
        assert_eq!(m.attr("from"), Some("lounge@conference.localhost/Alice"));
        let sid = m
            .get_child("stanza-id", "urn:xmpp:sid:0")
            .expect("room stanza-id");
        assert_eq!(sid.attr("by"), Some("lounge@conference.localhost"));
        ids.push(sid.attr("id").unwrap().to_string());
    }
    bob.send("<iq type='set' id='q' to='lounge@conference.localhost'><query xmlns='urn:xmpp:mam:2' queryid='x'/></iq>").await;
    let mut got = Vec::new();
    loop {
        let el = bob.recv().await;
        if el.attr("id") == Some("q") {
            assert_eq!(el.attr("type"), Some("result"), "{el}");
            break;
        }
        if let Some(r) = el.get_child("result", "urn:xmpp:mam:2") {
            assert_eq!(el.attr("from"), Some("lounge@conference.localhost"));
            let inner = r
                .get_child("forwarded", "urn:xmpp:forward:0")
                .unwrap()
                .get_child("message", ns::CLIENT)
                .unwrap();
            assert_eq!(
                inner.attr("from"),
                Some("lounge@conference.localhost/Alice")
            );
            got.push(r.attr("id").unwrap().to_string());
        }
    }
    assert_eq!(got, ids);
    // Outsiders may not read it.
    s.add_user("eve", "pw123456").await;
    let mut eve = s.login("eve", "pw123456").await;
    eve.send("<iq type='set' id='q2' to='lounge@conference.localhost'><query xmlns='urn:xmpp:mam:2'/></iq>").await;
    let e = eve.recv_until(|e| e.attr("id") == Some("q2")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
}

/// XEP-0191 §6: the blocklist is the default privacy list's jid+deny items, and edits through
/// either protocol show up in the other.
#[tokio::test]
async fn blocklist_and_privacy_lists_share_one_store() {
    let s = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw123456").await;
    }
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    let mut carol = s.login("carol", "pw123456").await;
    let iq = |xml: &str| Element::parse(xml).unwrap();
    alice
        .iq(iq("<iq xmlns='jabber:client' type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>"))
        .await;
    let r = alice
        .iq(iq("<iq xmlns='jabber:client' type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    // The block became the first item of a default privacy list.
    let names = alice
        .iq(iq(
            "<iq xmlns='jabber:client' type='get' id='p1'><query xmlns='jabber:iq:privacy'/></iq>",
        ))
        .await;
    let q = names.get_child("query", "jabber:iq:privacy").unwrap();
    let default = q
        .get_child("default", "jabber:iq:privacy")
        .and_then(|d| d.attr("name"))
        .expect("a default list")
        .to_string();
    let list = alice
        .iq(iq(&format!("<iq xmlns='jabber:client' type='get' id='p2'><query xmlns='jabber:iq:privacy'><list name='{default}'/></query></iq>")))
        .await;
    let items: Vec<(String, String, String)> = list
        .get_child("query", "jabber:iq:privacy")
        .and_then(|q| q.get_child("list", "jabber:iq:privacy"))
        .unwrap()
        .children()
        .map(|i| {
            let a = |n: &str| i.attr(n).unwrap_or_default().to_string();
            (a("type"), a("value"), a("action"))
        })
        .collect();
    assert_eq!(
        items,
        [(
            "jid".to_string(),
            "bob@localhost".to_string(),
            "deny".to_string()
        )]
    );
    alice.drain().await;
    // Replacing that list through XEP-0016 changes the blocklist, with block/unblock pushes.
    let r = alice
        .iq(iq(&format!("<iq xmlns='jabber:client' type='set' id='p3'><query xmlns='jabber:iq:privacy'><list name='{default}'>\
            <item type='jid' value='carol@localhost' action='deny' order='1'/>\
            <item action='allow' order='2'/></list></query></iq>")))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let pushes = alice.drain().await;
    let pushed = |name: &str, jid: &str| {
        pushes.iter().any(|p| {
            p.get_child(name, "urn:xmpp:blocking")
                .is_some_and(|b| b.children().any(|i| i.attr("jid") == Some(jid)))
        })
    };
    assert!(pushed("block", "carol@localhost"), "{pushes:?}");
    assert!(pushed("unblock", "bob@localhost"), "{pushes:?}");
    let bl = alice
        .iq(iq("<iq xmlns='jabber:client' type='get' id='bl2'><blocklist xmlns='urn:xmpp:blocking'/></iq>"))
        .await;
    let jids: Vec<&str> = bl
        .get_child("blocklist", "urn:xmpp:blocking")
        .unwrap()
        .children()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert_eq!(jids, ["carol@localhost"]);
    // And the routing path follows: Bob gets through, Carol does not.
    bob.send("<message to='alice@localhost/r' id='m1'><body>from bob</body></message>")
        .await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("from bob")
    );
    carol
        .send("<message to='alice@localhost/r' id='m2'><body>from carol</body></message>")
        .await;
    let e = carol.recv_until(|e| e.attr("id") == Some("m2")).await;
    assert_eq!(e.attr("type"), Some("error"));
    // Unblocking everyone through XEP-0191 empties the list that held only the block.
    alice
        .iq(iq("<iq xmlns='jabber:client' type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'/></iq>"))
        .await;
    let list = alice
        .iq(iq(&format!("<iq xmlns='jabber:client' type='get' id='p4'><query xmlns='jabber:iq:privacy'><list name='{default}'/></query></iq>")))
        .await;
    let rules = list
        .get_child("query", "jabber:iq:privacy")
        .and_then(|q| q.get_child("list", "jabber:iq:privacy"))
        .unwrap()
        .children()
        .count();
    assert_eq!(rules, 1, "only the allow-all rule is left");
}

#[tokio::test]
async fn privacy_lists_filter_by_jid_and_kind() {
    let s = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw123456").await;
    }
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    let mut carol = s.login("carol", "pw123456").await;
    let set = "<iq xmlns='jabber:client' type='set' id='l1'><query xmlns='jabber:iq:privacy'><list name='quiet'>\
        <item type='jid' value='bob@localhost' action='deny' order='1'><message/></item>\
        <item action='allow' order='2'/></list></query></iq>";
    assert_eq!(
        alice.iq(Element::parse(set).unwrap()).await.attr("type"),
        Some("result")
    );
    // Not active yet: Bob gets through.
    bob.send("<message to='alice@localhost/r' id='b1'><body>before</body></message>")
        .await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("before"));
    let active = "<iq xmlns='jabber:client' type='set' id='a1'><query xmlns='jabber:iq:privacy'><active name='quiet'/></query></iq>";
    assert_eq!(
        alice.iq(Element::parse(active).unwrap()).await.attr("type"),
        Some("result")
    );
    bob.send("<message to='alice@localhost/r' id='b2'><body>blocked</body></message>")
        .await;
    let e = bob.recv_until(|e| e.attr("id") == Some("b2")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    // Carol is not on the list; IQs from Bob are not covered by the message rule.
    carol
        .send("<message to='alice@localhost/r'><body>hi from carol</body></message>")
        .await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("hi from carol")
    );
    // Listing shows the active list; an unknown list is item-not-found.
    let names = alice
        .iq(Element::parse(
            "<iq xmlns='jabber:client' type='get' id='g'><query xmlns='jabber:iq:privacy'/></iq>",
        )
        .unwrap())
        .await;
    let q = names.get_child("query", "jabber:iq:privacy").unwrap();
    assert_eq!(
        q.get_child("active", "jabber:iq:privacy")
            .unwrap()
            .attr("name"),
        Some("quiet")
    );
    let e = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='g2'><query xmlns='jabber:iq:privacy'><list name='nope'/></query></iq>").unwrap())
        .await;
    assert_eq!(error_condition(&e).as_deref(), Some("item-not-found"));
    // Declining the active list lets Bob through again.
    alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='set' id='a2'><query xmlns='jabber:iq:privacy'><active/></query></iq>").unwrap())
        .await;
    bob.send("<message to='alice@localhost/r'><body>after</body></message>")
        .await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("after"));
}

#[tokio::test]
async fn server_info_names_contact_addresses() {
    // XEP-0157: where to report abuse, as configured, in a serverinfo form.
    let s = TestServer::start_with(|c| {
        c.modules.disco.contacts.insert(
            "abuse".into(),
            vec![
                "mailto:abuse@localhost".into(),
                "xmpp:abuse@localhost".into(),
            ],
        );
        c.modules.disco.contacts.insert("sales".into(), vec![]);
    })
    .await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let r = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").unwrap())
        .await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let form = q
        .get_child("x", "jabber:x:data")
        .expect("a serverinfo form");
    let values = |var: &str| -> Vec<String> {
        form.children()
            .filter(|f| f.attr("var") == Some(var))
            .flat_map(|f| f.children().map(|v| v.text()))
            .collect()
    };
    assert_eq!(
        values("FORM_TYPE"),
        ["http://jabber.org/network/serverinfo"]
    );
    assert_eq!(
        values("abuse-addresses"),
        ["mailto:abuse@localhost", "xmpp:abuse@localhost"]
    );
    // Kinds without an address are left out.
    assert!(values("sales-addresses").is_empty());
    // Without contacts, no form.
    let plain = TestServer::start().await;
    plain.add_user("bob", "pw123456").await;
    let mut bob = plain.login("bob", "pw123456").await;
    let r = bob
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").unwrap())
        .await;
    assert!(!r.to_xml().contains("serverinfo"), "{r}");
}

#[tokio::test]
async fn repeated_failures_ban_the_address_whatever_the_account() {
    let s = TestServer::start_with(|c| {
        c.limits.auth_ban_failures = 3;
        c.limits.auth_ban_seconds = 600;
    })
    .await;
    s.add_user("alice", "secret1").await;
    let attempt = |user: &'static str, pw: &'static str| {
        let settings = s.settings(pw, Mechanism::ScramSha256);
        async move { client::login(&settings, user).await }
    };
    // Two wrong passwords and an unknown account: three failures, each plainly refused.
    for (user, pw) in [("alice", "wrong"), ("alice", "wrong"), ("nobody", "x")] {
        let Err(err) = attempt(user, pw).await else {
            panic!("{user} accepted")
        };
        assert!(format!("{err:#}").contains("not-authorized"), "{err:#}");
    }
    // Now even the right password is refused, as is any other account: the ban tells nothing
    // about which accounts exist.
    for (user, pw) in [("alice", "secret1"), ("nobody", "x")] {
        let Err(err) = attempt(user, pw).await else {
            panic!("{user} accepted while banned")
        };
        assert!(
            format!("{err:#}").contains("temporary-auth-failure"),
            "{err:#}"
        );
    }
}
