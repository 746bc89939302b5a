//! Server-to-server federation (RFC 6120, XEP-0220 dialback) between two real servers on
//! loopback, bad input on s2s streams, and external components (XEP-0114).

mod common;

use common::{component, error_condition, read_event, TestServer};
use rookery_core::config::{CertificateConfig, ComponentConfig, Config};
use rookery_server::s2s::{Auth, Direction, StreamInfo};
use rookery_xml::{ns, Element, Limits, StreamEvent, StreamParser};
use std::collections::VecDeque;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Two federating servers, `a.test` and `b.test`, each with `alice`/`bob` accounts. Their s2s
/// listeners take ephemeral ports; each learns the other's address once both run.
async fn pair() -> (TestServer, TestServer) {
    pair_with(|_| {}, |_| {}).await
}

async fn pair_with(
    tweak_a: impl FnOnce(&mut Config),
    tweak_b: impl FnOnce(&mut Config),
) -> (TestServer, TestServer) {
    fn base(c: &mut Config, me: &str) {
        c.hosts = vec![me.into()];
        c.s2s.enabled = true;
        c.listen.s2s = vec!["127.0.0.1:0".into()];
    }
    let a = TestServer::start_with(|c| {
        base(c, "a.test");
        tweak_a(c)
    })
    .await;
    let b = TestServer::start_with(|c| {
        base(c, "b.test");
        tweak_b(c)
    })
    .await;
    for (from, to, domain) in [(&a, &b, "b.test"), (&b, &a, "a.test")] {
        let addr = to.running.as_ref().unwrap().s2s[0].to_string();
        from.server.s2s.set_route(domain, &addr);
        from.server
            .s2s
            .set_route(&format!("conference.{domain}"), &addr);
    }
    a.add_user("alice", "pw123456").await;
    b.add_user("bob", "pw123456").await;
    (a, b)
}

/// A certificate authority for the federation tests, with certificates for `a.test` and
/// `b.test` (each also naming `*.<domain>`) in PEM files.
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "federation test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let issuer = rcgen::Issuer::from_params(&p, &ca_key);
        for domain in ["a.test", "b.test"] {
            let leaf =
                rcgen::CertificateParams::new(vec![domain.into(), format!("*.{domain}")]).unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = leaf.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.path().join(format!("{domain}.crt")), cert.pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("{domain}.key")),
                key.serialize_pem(),
            )
            .unwrap();
        }
        TestCa { dir }
    }

    /// Serves `domain` with its CA-issued certificate and trusts the CA for peers.
    fn apply(&self, c: &mut Config) {
        let domain = c.hosts[0].clone();
        c.tls.certificates = vec![CertificateConfig {
            host: domain.clone(),
            cert: self.dir.path().join(format!("{domain}.crt")),
            key: self.dir.path().join(format!("{domain}.key")),
        }];
        c.s2s.ca_file = Some(self.dir.path().join("ca.pem"));
    }
}

fn streams(s: &TestServer, direction: Direction) -> Vec<StreamInfo> {
    let mut v: Vec<StreamInfo> = s
        .server
        .s2s
        .streams()
        .into_iter()
        .filter(|i| i.direction == direction)
        .collect();
    v.sort_by(|a, b| (&a.local, &a.remote).cmp(&(&b.local, &b.remote)));
    v
}

async fn chat_both_ways(alice: &mut common::Client, bob: &mut common::Client) {
    alice
        .send("<message to='bob@b.test' type='chat'><body>ping</body></message>")
        .await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("ping"));
    bob.send("<message to='alice@a.test' type='chat'><body>pong</body></message>")
        .await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("pong"));
}

#[tokio::test]
async fn certificates_authenticate_by_sasl_external_over_one_bidirectional_stream() {
    let ca = TestCa::new();
    let secure = |c: &mut Config| {
        ca.apply(c);
        c.s2s.secure_auth = true;
    };
    let (a, b) = pair_with(secure, secure).await;
    let mut alice = a.login("alice", "pw123456").await;
    let mut bob = b.login("bob", "pw123456").await;
    chat_both_ways(&mut alice, &mut bob).await;
    let out = streams(&a, Direction::Out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        (out[0].remote.as_str(), out[0].auth),
        ("b.test", Auth::SaslExternal)
    );
    assert!(out[0].bidi);
    let incoming = streams(&b, Direction::In);
    assert_eq!(incoming.len(), 1, "{incoming:?}");
    assert_eq!(
        (incoming[0].remote.as_str(), incoming[0].auth),
        ("a.test", Auth::SaslExternal)
    );
    // Bob's answer went back over Alice's server's stream (XEP-0288): b opened none.
    assert!(streams(&b, Direction::Out).is_empty());
}

#[tokio::test]
async fn secure_auth_refuses_peers_without_a_valid_certificate() {
    // b demands certificates; a has only its self-signed one.
    let ca = TestCa::new();
    let (a, b) = pair_with(
        |_| {},
        |c| {
            ca.apply(c);
            c.s2s.secure_auth = true;
        },
    )
    .await;
    let mut alice = a.login("alice", "pw123456").await;
    let mut bob = b.login("bob", "pw123456").await;
    alice
        .send("<message to='bob@b.test' id='in'><body>?</body></message>")
        .await;
    let e = alice.recv_until(|e| e.attr("id") == Some("in")).await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
    bob.send("<message to='alice@a.test' id='out'><body>?</body></message>")
        .await;
    let e = bob.recv_until(|e| e.attr("id") == Some("out")).await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
    assert!(b.server.s2s.streams().is_empty());
}

#[tokio::test]
async fn insecure_domains_may_still_use_dialback() {
    let ca = TestCa::new();
    let (a, b) = pair_with(
        |_| {},
        |c| {
            ca.apply(c);
            c.s2s.secure_auth = true;
            c.s2s.insecure_domains = vec!["a.test".into()];
        },
    )
    .await;
    let mut alice = a.login("alice", "pw123456").await;
    let mut bob = b.login("bob", "pw123456").await;
    chat_both_ways(&mut alice, &mut bob).await;
    let out = streams(&a, Direction::Out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].auth, Auth::Dialback);
}

#[tokio::test]
async fn direct_tls_routes_reach_the_direct_tls_listener() {
    let (a, b) = pair_with(
        |_| {},
        |c| c.listen.s2s_direct_tls = vec!["127.0.0.1:0".into()],
    )
    .await;
    // Only the direct TLS port: the STARTTLS one would work too and prove nothing.
    let direct = b.running.as_ref().unwrap().s2s_direct_tls[0];
    a.server.s2s.set_route("b.test", &format!("tls://{direct}"));
    let mut alice = a.login("alice", "pw123456").await;
    let mut bob = b.login("bob", "pw123456").await;
    chat_both_ways(&mut alice, &mut bob).await;
    assert_eq!(streams(&a, Direction::Out).len(), 1);
    assert!(streams(&b, Direction::Out).is_empty());
}

#[tokio::test]
async fn two_servers_federate_subscriptions_presence_messages_and_rooms() {
    let (a, b) = pair().await;
    let mut alice = a.login("alice", "pw123456").await;
    let mut bob = b.login("bob", "pw123456").await;

    // Both hold their roster, so they get subscription answers and pushes (RFC 6121 §2.1.6).
    let roster_get =
        "<iq xmlns='jabber:client' type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>";
    alice.iq(Element::parse(roster_get).unwrap()).await;
    bob.iq(Element::parse(roster_get).unwrap()).await;
    // Subscription handshake across servers.
    alice
        .send("<presence to='bob@b.test' type='subscribe'/>")
        .await;
    let req = bob
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("subscribe"))
        .await;
    assert_eq!(req.attr("from"), Some("alice@a.test"));
    bob.send("<presence to='alice@a.test' type='subscribed'/>")
        .await;
    let ok = alice
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("subscribed"))
        .await;
    assert_eq!(ok.attr("from"), Some("bob@b.test"));
    // Bob's current presence follows the approval.
    let p = alice
        .recv_until(|e| e.name() == "presence" && e.attr("type").is_none())
        .await;
    assert_eq!(p.attr("from"), Some(bob.jid()));
    let roster = alice
        .iq(Element::parse(
            "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .unwrap())
        .await;
    let item = roster
        .get_child("query", "jabber:iq:roster")
        .and_then(|q| q.get_child("item", "jabber:iq:roster"))
        .unwrap();
    assert_eq!(item.attr("subscription"), Some("to"));

    // Messages both ways.
    alice
        .send("<message to='bob@b.test' type='chat' id='m1'><body>hello from a</body></message>")
        .await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("hello from a")
    );
    assert!(m.attr("from").unwrap().starts_with("alice@a.test/"));
    bob.send("<message to='alice@a.test' type='chat' id='m2'><body>hello from b</body></message>")
        .await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("hello from b")
    );

    // Stanzas larger than the pre-authentication limit cross once the domain is proven.
    let big = "x".repeat(40 * 1024);
    alice
        .send(&format!(
            "<message to='bob@b.test' type='chat'><body>{big}</body></message>"
        ))
        .await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).map(|b| b.len()),
        Some(big.len())
    );

    // An IQ to a remote user's full JID and its answer (ping is answered by bob's client: our
    // test client answers nothing, so ask the remote server itself).
    let pong = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='p1' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>").unwrap())
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
    assert_eq!(pong.attr("from"), Some("b.test"));

    // Bob joins a room on a.test.
    alice
        .send("<presence to='room@conference.a.test/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    alice
        .recv_until(|e| e.name() == "message" && e.has_child("subject", ns::CLIENT))
        .await;
    // The room was created locked: configure it as an instant room.
    alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='set' id='cfg' to='room@conference.a.test'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>").unwrap())
        .await;
    bob.send("<presence to='room@conference.a.test/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    let own = bob
        .recv_until(|e| {
            e.name() == "presence" && e.attr("from") == Some("room@conference.a.test/Bob")
        })
        .await;
    let codes: Vec<&str> = own
        .get_child("x", "http://jabber.org/protocol/muc#user")
        .unwrap()
        .children()
        .filter_map(|c| c.attr("code"))
        .collect();
    assert!(codes.contains(&"110"), "{own}");
    bob.send(
        "<message to='room@conference.a.test' type='groupchat'><body>hi room</body></message>",
    )
    .await;
    let m = alice
        .recv_until(|e| e.name() == "message" && e.attr("type") == Some("groupchat"))
        .await;
    assert_eq!(m.attr("from"), Some("room@conference.a.test/Bob"));
    // The room's stanzas to Bob joined a.test's stream to b.test by dialback (multiplexing)
    // rather than opening a second one.
    let out = streams(&a, Direction::Out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].remote, "b.test");
}

#[tokio::test]
async fn unreachable_domains_bounce() {
    let s = TestServer::start_with(|c| {
        c.s2s.enabled = true;
        c.listen.s2s = vec!["127.0.0.1:0".into()];
        c.s2s.connect_timeout_seconds = 2;
        // A port nobody listens on: bound, then released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        c.s2s
            .routes
            .insert("nowhere.test".into(), closed.to_string());
    })
    .await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    alice
        .send("<message to='x@nowhere.test' id='lost'><body>?</body></message>")
        .await;
    let e = alice.recv_until(|e| e.attr("id") == Some("lost")).await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
}

/// A raw s2s stream to a test server, over TLS after STARTTLS.
struct RawS2s {
    io: Box<dyn Io>,
    parser: StreamParser,
    pending: VecDeque<StreamEvent>,
    last_id: Option<String>,
    error: Option<String>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl RawS2s {
    async fn open(port: u16, from: &str, to: &str) -> (RawS2s, Option<String>) {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut r = RawS2s {
            io: Box::new(tcp),
            parser: StreamParser::new(Limits::default()),
            pending: VecDeque::new(),
            last_id: None,
            error: None,
        };
        let features = r.header(from, to).await;
        let Some(features) = features else {
            return (r, None);
        };
        assert!(features.has_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls"));
        r.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        match r.event().await {
            Some(StreamEvent::Stanza(p)) if p.name() == "proceed" => {}
            other => panic!("expected proceed, got {other:?}"),
        }
        let io = std::mem::replace(&mut r.io, Box::new(tokio::io::empty()));
        let connector =
            tokio_rustls::TlsConnector::from(rookery_bench::tls::client_config().unwrap());
        let name = rustls_pki_types::ServerName::try_from(to.to_string()).unwrap();
        r.io = Box::new(connector.connect(name, io).await.unwrap());
        r.parser = StreamParser::new(Limits::default());
        r.header(from, to).await;
        let id = r.last_id.clone();
        (r, id)
    }

    async fn header(&mut self, from: &str, to: &str) -> Option<Element> {
        self.send(&format!("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' from='{from}' to='{to}'>")).await;
        match self.event().await {
            Some(StreamEvent::Header(h)) => {
                self.last_id = h.attr("id").map(str::to_string);
            }
            other => panic!("expected a header, got {other:?}"),
        }
        match self.event().await {
            Some(StreamEvent::Stanza(f)) if f.name() == "features" => Some(f),
            Some(StreamEvent::Stanza(e)) if e.name() == "error" => {
                self.error = e.children().next().map(|c| c.name().to_string());
                None
            }
            other => panic!("expected features, got {other:?}"),
        }
    }

    async fn send(&mut self, s: &str) {
        let _ = self.io.write_all(s.as_bytes()).await;
    }

    async fn event(&mut self) -> Option<StreamEvent> {
        read_event(&mut self.io, &mut self.parser, &mut self.pending).await
    }

    async fn stream_error(&mut self) -> Option<String> {
        while let Some(ev) = self.event().await {
            match ev {
                StreamEvent::Stanza(e) if e.is("error", ns::STREAM) => {
                    return e
                        .children()
                        .find(|c| c.name() != "text")
                        .map(|c| c.name().to_string())
                }
                StreamEvent::Close => return None,
                _ => {}
            }
        }
        None
    }
}

#[tokio::test]
async fn s2s_refuses_wrong_keys_spoofed_domains_and_unknown_hosts() {
    let (a, b) = pair().await;
    let a_port = a.running.as_ref().unwrap().s2s[0].port();
    // A stream for a domain A does not serve.
    let (r, _) = RawS2s::open(a_port, "b.test", "nope.test").await;
    assert_eq!(r.error.as_deref(), Some("host-unknown"));
    drop(r);
    // SASL EXTERNAL without a certificate naming b.test (this peer shows none): refused, and
    // the stream stays open for dialback.
    let (mut r, _id) = RawS2s::open(a_port, "b.test", "a.test").await;
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await;
    match r.event().await {
        Some(StreamEvent::Stanza(f)) if f.name() == "failure" => {
            assert!(
                f.has_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-sasl"),
                "{f}"
            );
        }
        other => panic!("expected a SASL failure, got {other:?}"),
    }
    // Dialback claiming b.test with a made-up key: A asks b.test's server, which says no.
    r.send("<db:result from='b.test' to='a.test'>0123456789abcdef</db:result>")
        .await;
    let verdict = loop {
        match r.event().await {
            Some(StreamEvent::Stanza(e)) if e.name() == "result" => break e,
            Some(_) => continue,
            None => panic!("closed before the verdict"),
        }
    };
    assert_eq!(verdict.attr("type"), Some("invalid"));
    // Stanzas claiming an unproven domain end the stream with invalid-from.
    r.send("<message xmlns='jabber:server' from='mallory@b.test' to='alice@a.test'><body>spoof</body></message>").await;
    assert_eq!(r.stream_error().await.as_deref(), Some("invalid-from"));

    // Real traffic between the two servers is unaffected.
    let mut alice = a.login("alice", "pw123456").await;
    let mut bob = b.login("bob", "pw123456").await;
    bob.send("<message to='alice@a.test' type='chat'><body>still here</body></message>")
        .await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("still here")
    );
    alice.expect_silence().await;
}

async fn component_server() -> TestServer {
    TestServer::start_with(|c| {
        c.listen.component = vec!["127.0.0.1:0".into()];
        c.components = vec![ComponentConfig {
            domain: "bot.localhost".into(),
            secret: "s3cret".into(),
        }];
    })
    .await
}

#[tokio::test]
async fn components_handshake_receive_answer_and_cannot_spoof() {
    let s = component_server().await;
    s.add_user("alice", "pw123456").await;
    let port = s.running.as_ref().unwrap().component[0].port();
    // Wrong secret: refused.
    let (mut bad, ok) = component(port, "bot.localhost", "guess").await;
    assert!(!ok);
    drop(bad.stream_error().await);

    let (mut bot, ok) = component(port, "bot.localhost", "s3cret").await;
    assert!(ok);
    let mut alice = s.login("alice", "pw123456").await;
    alice
        .send("<message to='echo@bot.localhost' id='q1'><body>ping?</body></message>")
        .await;
    let m = loop {
        match bot.event().await {
            Some(StreamEvent::Stanza(m)) if m.name() == "message" => break m,
            Some(_) => continue,
            None => panic!("component stream closed"),
        }
    };
    assert_eq!(m.ns(), "jabber:component:accept");
    assert_eq!(
        m.child_text("body", "jabber:component:accept").as_deref(),
        Some("ping?")
    );
    let from = m.attr("from").unwrap().to_string();
    bot.send(
        format!("<message from='echo@bot.localhost' to='{from}'><body>pong</body></message>")
            .as_bytes(),
    )
    .await;
    let r = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(r.attr("from"), Some("echo@bot.localhost"));
    assert_eq!(r.child_text("body", ns::CLIENT).as_deref(), Some("pong"));
    // A stanza claiming someone else's address ends the component's stream.
    bot.send(b"<message from='alice@localhost' to='alice@localhost'><body>spoof</body></message>")
        .await;
    assert_eq!(bot.stream_error().await.as_deref(), Some("invalid-from"));
    alice.expect_silence().await;
    // While it is gone, its domain answers service-unavailable; it may reconnect.
    alice
        .send("<message to='echo@bot.localhost' id='q2'><body>there?</body></message>")
        .await;
    let e = alice.recv_until(|e| e.attr("id") == Some("q2")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    let (_bot, ok) = component(port, "bot.localhost", "s3cret").await;
    assert!(ok, "the component reconnects");
}
