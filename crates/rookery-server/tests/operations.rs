//! Operations: Prometheus metrics at `/metrics`, and push notifications (XEP-0357) to an app
//! server that is an external component (XEP-0114).

mod common;

use common::{Client, TestServer};
use rookery_xml::{Element, StreamEvent};
use std::collections::HashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(s: &TestServer) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series (name with its labels, as exposed); 0 when absent.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_follow_clients_signing_in_and_chatting() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let (status, before) = scrape(&s).await;
    assert_eq!(status, 200, "{before}");
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(value(&before, "rookery_sessions"), 0.0);
    assert!(value(&before, "rookery_process_resident_memory_bytes") > 0.0);
    let msg_in = r#"rookery_stanzas_in_total{kind="message"}"#;
    let msg_out = r#"rookery_stanzas_out_total{kind="message"}"#;
    let scram_ok = r#"rookery_auth_total{mechanism="SCRAM-SHA-256",result="success"}"#;
    let scram_bad = r#"rookery_auth_total{mechanism="SCRAM-SHA-256",result="failure"}"#;
    let tcp = r#"rookery_connections_total{transport="tcp"}"#;

    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    for body in ["one", "two"] {
        alice
            .send(&format!(
                "<message to='bob@localhost' type='chat'><body>{body}</body></message>"
            ))
            .await;
        bob.recv_until(|e| e.name() == "message").await;
    }
    bob.send("<message to='alice@localhost' type='chat'><body>three</body></message>")
        .await;
    alice.recv_until(|e| e.name() == "message").await;
    // A wrong password counts as a failure.
    assert!(rookery_bench::client::login(
        &s.settings("wrong", rookery_bench::scram::Mechanism::ScramSha256),
        "alice"
    )
    .await
    .is_err());

    let (_, after) = scrape(&s).await;
    assert_eq!(value(&after, "rookery_sessions"), 2.0, "{after}");
    assert_eq!(value(&after, msg_in) - value(&before, msg_in), 3.0);
    assert_eq!(value(&after, msg_out) - value(&before, msg_out), 3.0);
    assert_eq!(value(&after, scram_ok) - value(&before, scram_ok), 2.0);
    assert_eq!(value(&after, scram_bad) - value(&before, scram_bad), 1.0);
    assert_eq!(value(&after, tcp) - value(&before, tcp), 3.0);
    // Each message reached a local session: three routing latencies.
    assert_eq!(
        value(&after, "rookery_message_routing_seconds_count")
            - value(&before, "rookery_message_routing_seconds_count"),
        3.0
    );
    assert!(value(&after, "rookery_message_routing_seconds_sum") > 0.0);
}

#[test]
fn metrics_are_refused_to_other_addresses_unless_public() {
    use rookery_server::metrics::may_scrape;
    assert!(may_scrape("127.0.0.1".parse().unwrap(), false));
    assert!(may_scrape("::1".parse().unwrap(), false));
    assert!(!may_scrape("192.0.2.7".parse().unwrap(), false));
    assert!(!may_scrape("2001:db8::7".parse().unwrap(), false));
    assert!(may_scrape("192.0.2.7".parse().unwrap(), true));
}

#[tokio::test]
async fn muc_rooms_and_occupants_are_counted_at_scrape_time() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    alice
        .send("<presence to='room@conference.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    alice
        .recv_until(|e| {
            e.name() == "presence" && e.attr("from") == Some("room@conference.localhost/alice")
        })
        .await;
    let (_, body) = scrape(&s).await;
    assert_eq!(value(&body, "rookery_muc_rooms"), 1.0, "{body}");
    assert_eq!(value(&body, "rookery_muc_occupants"), 1.0);
}

const PUSH: &str = "urn:xmpp:push:0";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const COMPONENT: &str = "jabber:component:accept";

fn with_app_server(c: &mut rookery_core::config::Config) {
    c.listen.component = vec!["127.0.0.1:0".into()];
    c.components = vec![rookery_core::config::ComponentConfig {
        domain: "push.localhost".into(),
        secret: "s3cret".into(),
    }];
}

/// The app server: an external component on `push.localhost`.
async fn app_server(s: &TestServer) -> common::Raw {
    let port = s.running.as_ref().unwrap().component[0].port();
    let (raw, ok) = common::component(port, "push.localhost", "s3cret").await;
    assert!(ok, "component accepted");
    raw
}

/// A server with alice, bob and the app server connected.
async fn push_setup() -> (TestServer, common::Raw) {
    let s = TestServer::start_with(with_app_server).await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let app = app_server(&s).await;
    (s, app)
}

/// The next stanza the app server receives.
async fn next_stanza(app: &mut common::Raw) -> Element {
    loop {
        match app.event().await {
            Some(StreamEvent::Stanza(el)) => return el,
            Some(_) => continue,
            None => panic!("component stream closed"),
        }
    }
}

/// Reads a push publish; answers it with `answer` (`None`: a result); returns (node, summary
/// fields, publish-options fields).
async fn expect_push(
    app: &mut common::Raw,
    answer: Option<&str>,
) -> (
    String,
    HashMap<String, Vec<String>>,
    HashMap<String, Vec<String>>,
) {
    let iq = next_stanza(app).await;
    assert!(iq.is("iq", COMPONENT), "a publish, got {iq}");
    assert_eq!(iq.attr("type"), Some("set"));
    assert_eq!(iq.attr("from"), Some("alice@localhost"));
    assert_eq!(iq.attr("to"), Some("push.localhost"));
    let pubsub = iq.get_child("pubsub", PUBSUB).expect("pubsub");
    let publish = pubsub.get_child("publish", PUBSUB).expect("publish");
    let x = publish
        .get_child("item", PUBSUB)
        .and_then(|i| i.get_child("notification", PUSH))
        .and_then(|n| n.get_child("x", "jabber:x:data"))
        .expect("notification form");
    let options = pubsub
        .get_child("publish-options", PUBSUB)
        .and_then(|o| o.get_child("x", "jabber:x:data"))
        .map(fields)
        .unwrap_or_default();
    let id = iq.attr("id").unwrap();
    let reply = match answer {
        None => format!("<iq type='result' from='push.localhost' to='alice@localhost' id='{id}'/>"),
        Some(cond) => format!("<iq type='error' from='push.localhost' to='alice@localhost' id='{id}'><error type='cancel'><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"),
    };
    app.send(reply.as_bytes()).await;
    (
        publish.attr("node").unwrap().to_string(),
        fields(x),
        options,
    )
}

fn fields(x: &Element) -> HashMap<String, Vec<String>> {
    x.children()
        .filter(|f| f.name() == "field")
        .map(|f| {
            (
                f.attr("var").unwrap().to_string(),
                f.children().map(|v| v.text()).collect(),
            )
        })
        .collect()
}

/// Proves the app server got nothing before it: a message sent after whatever should not have
/// been pushed arrives next.
async fn expect_no_push(app: &mut common::Raw, sender: &mut Client) {
    sender
        .send("<message to='push.localhost' id='mark'><body>mark</body></message>")
        .await;
    let el = next_stanza(app).await;
    assert!(
        el.name() == "message" && el.attr("id") == Some("mark"),
        "no push expected, got {el}"
    );
}

/// Waits until everything the app server sent before has been handled by the server (its
/// stanzas are handled in order): a ping to the server is answered after them.
async fn sync(app: &mut common::Raw) {
    app.send(b"<iq type='get' from='push.localhost' to='localhost' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let el = next_stanza(app).await;
        if el.attr("id") == Some("sync") {
            return;
        }
    }
}

async fn enable_push(c: &mut Client, node: &str) {
    let r = c
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='set' id='en-{node}'><enable xmlns='{PUSH}' jid='push.localhost' node='{node}'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='secret'><value>tok-{node}</value></field></x></enable></iq>"
        ))
        .unwrap())
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
}

/// Ends a client's stream and waits for the server's close: its session is gone by then.
async fn sign_out(mut c: Client) {
    c.send("</stream:stream>").await;
    loop {
        match tokio::time::timeout(
            common::WAIT,
            c.online.reader.next_event(&mut c.online.stream),
        )
        .await
        .expect("timed out waiting for the close")
        {
            Ok(StreamEvent::Close) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn push_to_an_offline_user_survives_a_restart_and_stops_when_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_in_with(dir.path(), with_app_server).await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut app = app_server(&s).await;
    let mut alice = s.login("alice", "pw123456").await;
    let info = alice
        .iq(Element::parse("<iq xmlns='jabber:client' type='get' id='d1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").unwrap())
        .await;
    assert!(
        info.to_xml().contains(&format!("var=\"{PUSH}\""))
            || info.to_xml().contains(&format!("var='{PUSH}'")),
        "{info}"
    );
    // Enabling needs a node; someone else's account may not be changed.
    let bad = alice
        .iq(Element::parse(&format!("<iq xmlns='jabber:client' type='set' id='b1'><enable xmlns='{PUSH}' jid='push.localhost'/></iq>")).unwrap())
        .await;
    assert_eq!(
        common::error_condition(&bad).as_deref(),
        Some("bad-request")
    );
    enable_push(&mut alice, "n1").await;
    sign_out(alice).await;

    let mut bob = s.login("bob", "pw123456").await;
    // A chat state alone wakes no one.
    bob.send("<message to='alice@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    bob.send("<message to='alice@localhost' type='chat'><body>are you there?</body></message>")
        .await;
    let (node, summary, options) = expect_push(&mut app, None).await;
    assert_eq!(node, "n1");
    assert_eq!(summary["FORM_TYPE"], ["urn:xmpp:push:summary"]);
    assert_eq!(summary["message-count"], ["1"]);
    assert_eq!(summary["last-message-sender"], [bob.jid().to_string()]);
    assert!(
        !summary.contains_key("last-message-body"),
        "no body by default"
    );
    assert_eq!(options["secret"], ["tok-n1"]);
    bob.send("<message to='alice@localhost' type='chat'><body>hello?</body></message>")
        .await;
    let (_, summary, _) = expect_push(&mut app, None).await;
    assert_eq!(summary["message-count"], ["2"]);
    drop(bob);

    // The registration is in storage: a restarted server still pushes.
    s.shutdown().await;
    drop(app);
    let s = TestServer::start_in_with(dir.path(), with_app_server).await;
    let mut app = app_server(&s).await;
    let mut bob = s.login("bob", "pw123456").await;
    bob.send("<message to='alice@localhost' type='chat'><body>after the restart</body></message>")
        .await;
    let (node, _, _) = expect_push(&mut app, None).await;
    assert_eq!(node, "n1");

    // Disabled: no more pushes.
    let mut alice = s.login("alice", "pw123456").await;
    let r = alice
        .iq(Element::parse(&format!("<iq xmlns='jabber:client' type='set' id='d2'><disable xmlns='{PUSH}' jid='push.localhost' node='n1'/></iq>")).unwrap())
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    sign_out(alice).await;
    bob.send("<message to='alice@localhost' type='chat'><body>quiet now</body></message>")
        .await;
    expect_no_push(&mut app, &mut bob).await;
}

#[tokio::test]
async fn a_permanent_error_from_the_app_server_removes_the_registration() {
    let (s, mut app) = push_setup().await;
    let mut alice = s.login("alice", "pw123456").await;
    enable_push(&mut alice, "gone").await;
    sign_out(alice).await;
    let mut bob = s.login("bob", "pw123456").await;
    bob.send("<message to='alice@localhost' type='chat'><body>1</body></message>")
        .await;
    expect_push(&mut app, Some("item-not-found")).await;
    sync(&mut app).await;
    bob.send("<message to='alice@localhost' type='chat'><body>2</body></message>")
        .await;
    expect_no_push(&mut app, &mut bob).await;
    let user = rookery_core::BareJid::new("alice@localhost").unwrap();
    let stored = s
        .server
        .storage
        .kv_get(&user, "push", "registrations")
        .await;
    assert_eq!(stored.unwrap(), None);
}

#[tokio::test]
async fn a_resumable_session_whose_connection_dropped_gets_pushes() {
    const SM: &str = "urn:xmpp:sm:3";
    let (s, mut app) = push_setup().await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    enable_push(&mut alice, "phone").await;
    alice
        .send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = alice.recv_until(|e| e.ns() == SM).await;
    let id = enabled.attr("id").unwrap().to_string();
    // Online and active: nothing to push.
    bob.send("<message to='alice@localhost' type='chat'><body>here?</body></message>")
        .await;
    alice.recv_until(|e| e.name() == "message").await;
    alice.send(&format!("<a xmlns='{SM}' h='1'/>")).await;
    expect_no_push(&mut app, &mut bob).await;

    // The connection dies; the session waits to be resumed and the message is held for it.
    drop(alice);
    bob.send("<message to='alice@localhost' type='chat'><body>wake up</body></message>")
        .await;
    let (node, summary, options) = expect_push(&mut app, None).await;
    assert_eq!(node, "phone");
    assert_eq!(summary["message-count"], ["1"]);
    assert_eq!(summary["last-message-sender"], [bob.jid().to_string()]);
    assert_eq!(options["secret"], ["tok-phone"]);

    // Resumed: the message is there, and the session is no longer pushed for.
    let (mut io, reader) = s.authenticated("alice", "pw123456").await;
    rookery_bench::client::send(
        &mut io,
        &format!("<resume xmlns='{SM}' previd='{id}' h='1'/>"),
    )
    .await
    .unwrap();
    let mut alice = Client {
        online: rookery_bench::client::Online {
            jid: "alice@localhost/r".into(),
            stream: io.into(),
            reader,
            login_time: Default::default(),
        },
    };
    let resumed = alice.recv_until(|e| e.ns() == SM).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", rookery_xml::ns::CLIENT).as_deref(),
        Some("wake up")
    );
    bob.send("<message to='alice@localhost' type='chat'><body>back</body></message>")
        .await;
    alice.recv_until(|e| e.name() == "message").await;
    expect_no_push(&mut app, &mut bob).await;
}

#[tokio::test]
async fn an_inactive_client_gets_pushes() {
    let (s, mut app) = push_setup().await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    enable_push(&mut alice, "csi").await;
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    // Handled in order: once the ping is answered, the client is inactive.
    alice
        .iq(Element::parse(
            "<iq xmlns='jabber:client' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .unwrap())
        .await;
    bob.send("<message to='alice@localhost' type='chat'><body>psst</body></message>")
        .await;
    let (node, _, _) = expect_push(&mut app, None).await;
    assert_eq!(node, "csi");
    alice.recv_until(|e| e.name() == "message").await;
    alice.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    alice
        .iq(Element::parse(
            "<iq xmlns='jabber:client' type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .unwrap())
        .await;
    bob.send("<message to='alice@localhost' type='chat'><body>seen</body></message>")
        .await;
    alice.recv_until(|e| e.name() == "message").await;
    expect_no_push(&mut app, &mut bob).await;
}
