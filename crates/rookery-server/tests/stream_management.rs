//! XEP-0198 against the real server: acks, resumption without loss or duplicates, and what
//! happens to unacknowledged messages when a session does not come back.

mod common;

use common::{Client, TestServer};
use rookery_bench::client::{self, Online, Reader};
use rookery_bench::scram::Mechanism;
use rookery_xml::{ns, Element, StreamEvent};

const SM: &str = "urn:xmpp:sm:3";

async fn authenticated(
    s: &TestServer,
    user: &str,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Reader,
) {
    s.authenticated(user, "pw123456").await
}

fn bodies(els: &[Element]) -> Vec<String> {
    els.iter()
        .filter(|e| e.name() == "message")
        .filter_map(|e| e.child_text("body", ns::CLIENT))
        .collect()
}

async fn enable(c: &mut Client) -> String {
    c.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let e = c.recv_until(|e| e.ns() == SM).await;
    assert!(e.is("enabled", SM), "{e}");
    assert_eq!(e.attr("resume"), Some("true"));
    e.attr("id").unwrap().to_string()
}

#[tokio::test]
async fn acks_count_stanzas_both_ways() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    enable(&mut bob).await;
    bob.send("<message to='alice@localhost/r'><body>1</body></message>")
        .await;
    bob.send("<message to='alice@localhost/r'><body>2</body></message>")
        .await;
    bob.send(&format!("<r xmlns='{SM}'/>")).await;
    let a = bob.recv_until(|e| e.is("a", SM)).await;
    assert_eq!(a.attr("h"), Some("2"));
    alice
        .send("<message to='bob@localhost/r'><body>x</body></message>")
        .await;
    // The server asks for an ack along with what it sends.
    bob.recv_until(|e| e.name() == "message").await;
    let r = bob.recv_until(|e| e.ns() == SM).await;
    assert!(r.is("r", SM), "{r}");
    bob.send(&format!("<a xmlns='{SM}' h='1'/>")).await;
    bob.expect_silence().await;
    // Acknowledging more than was sent ends the stream.
    bob.send(&format!("<a xmlns='{SM}' h='9'/>")).await;
    loop {
        match bob.event().await {
            StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => break,
            StreamEvent::Close => panic!("closed without a stream error"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_every_message_exactly_once() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    let id = enable(&mut bob).await;
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>one</body></message>")
        .await;
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>two</body></message>")
        .await;
    let first = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(first.child_text("body", ns::CLIENT).as_deref(), Some("one"));
    // Bob has handled "one" only; then his connection dies.
    drop(bob);
    alice.drain().await;
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>three</body></message>")
        .await;
    alice.drain().await;
    let (mut io, reader) = authenticated(&s, "bob").await;
    client::send(
        &mut io,
        &format!("<resume xmlns='{SM}' previd='{id}' h='1'/>"),
    )
    .await
    .unwrap();
    let mut bob = Client {
        online: Online {
            jid: "bob@localhost/r".into(),
            stream: io.into(),
            reader,
            login_time: Default::default(),
        },
    };
    let resumed = bob.recv_until(|e| e.ns() == SM).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    assert_eq!(resumed.attr("h"), Some("0"));
    let got = bodies(&bob.drain().await);
    assert_eq!(
        got,
        ["two", "three"],
        "unacked and held messages, once each"
    );
    // The session is the same: no presence went out, messages keep flowing.
    alice.expect_silence().await;
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>four</body></message>")
        .await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("four"));
    // A wrong id fails and leaves the stream usable for binding.
    let (mut io, mut reader) = authenticated(&s, "alice").await;
    client::send(
        &mut io,
        &format!("<resume xmlns='{SM}' previd='nope' h='0'/>"),
    )
    .await
    .unwrap();
    match reader.next_event(&mut io).await.unwrap() {
        StreamEvent::Stanza(f) => assert!(f.is("failed", SM), "{f}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unacked_messages_go_offline_when_the_session_does_not_come_back() {
    let s = TestServer::start_with(|c| c.limits.resume_timeout_seconds = 1).await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    enable(&mut bob).await;
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>lost?</body></message>")
        .await;
    bob.recv_until(|e| e.name() == "message").await;
    drop(bob);
    // After the timeout Bob is unavailable to Alice...
    // (they are not subscribed, so she sees nothing; wait for the session to end instead)
    let user = rookery_core::BareJid::new("bob@localhost").unwrap();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while !s.server.sessions.resources(&user).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // ...and the message he never acknowledged waits for him.
    let online = client::login(&s.settings("pw123456", Mechanism::ScramSha256), "bob")
        .await
        .unwrap();
    let mut bob = Client { online };
    let got = bodies(&bob.drain().await);
    assert_eq!(got, ["lost?"]);
    alice.expect_silence().await;
}
