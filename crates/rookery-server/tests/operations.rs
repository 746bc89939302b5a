//! Operations: Prometheus metrics at `/metrics`, and push notifications (XEP-0357) to an app
//! server that is an external component (XEP-0114).

mod common;

use common::TestServer;
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
