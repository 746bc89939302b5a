//! The parser attacks of `attacks.rs` on the other ways in: server-to-server streams before
//! authentication, external component streams, WebSocket and BOSH. Every transport shares the
//! stream parser and its limits; each attack here gets its stream error (or HTTP refusal) with
//! bounded memory, and a client signed in meanwhile keeps chatting.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rookery_core::config::ComponentConfig;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// How much this (in-process) server may grow while the attacks are fought off.
const MAX_RSS_GROWTH: u64 = 50 * 1024 * 1024;

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        * 1024
}

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.s2s.enabled = true;
        c.listen.s2s = vec!["127.0.0.1:0".into()];
        c.listen.component = vec!["127.0.0.1:0".into()];
        c.components = vec![ComponentConfig {
            domain: "bot.localhost".into(),
            secret: "s3cret".into(),
        }];
    })
    .await
}

const S2S_OPEN: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' from='evil.example' version='1.0'>";
const COMPONENT_OPEN: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
    xmlns:stream='http://etherx.jabber.org/streams' to='bot.localhost'>";

/// Opens a raw stream with `header` on `addr` and sends `payload` while reading what comes back
/// (so a server closing early is heard, not reset away); returns the stream error condition.
async fn attack_raw(addr: std::net::SocketAddr, header: &str, payload: &str) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let data = format!("{header}{payload}").into_bytes();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                break;
            }
        }
        wr
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(WAIT, rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let _ = writer.await;
    let text = String::from_utf8_lossy(&got);
    let error = text.split("<stream:error>").nth(1)?;
    let name = error
        .trim_start_matches('<')
        .split([' ', '/', '>'])
        .next()?;
    Some(name.to_string())
}

fn laughs() -> String {
    let mut entities = String::from("<!ENTITY lol0 'lol'>");
    for i in 1..10 {
        let refs = format!("&lol{};", i - 1).repeat(10);
        entities.push_str(&format!("<!ENTITY lol{i} '{refs}'>"));
    }
    format!("<?xml version='1.0'?><!DOCTYPE lolz [{entities}]>")
}

/// A signed-in pair exchanges a message; returns how long it took.
async fn chat_round(alice: &mut Client, bob: &mut Client, n: u32) -> Duration {
    let started = Instant::now();
    alice
        .send(&format!(
            "<message to='bob@localhost/r' id='c{n}' type='chat'><body>still here</body></message>"
        ))
        .await;
    bob.recv_until(|e| e.name() == "message" && e.attr("id") == Some(&format!("c{n}")))
        .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_component_streams_get_the_parser_limits_before_authentication() {
    let s = server().await;
    s.add_user("alice", "secret-a").await;
    s.add_user("bob", "secret-b").await;
    let mut alice = s.login("alice", "secret-a").await;
    let mut bob = s.login("bob", "secret-b").await;
    let running = s.running.as_ref().unwrap();
    let (s2s, component) = (running.s2s[0], running.component[0]);
    let before = rss();
    let deep = "<a>".repeat(100_000);
    let attrs: String = (0..10_000).map(|i| format!(" a{i}='x'")).collect();
    let wide = format!("<iq{attrs}/>");
    let big = format!(
        "<message><body>{}</body></message>",
        "x".repeat(4 * 1024 * 1024)
    );
    for (name, addr, header) in [
        ("s2s", s2s, S2S_OPEN),
        ("component", component, COMPONENT_OPEN),
    ] {
        for (what, payload, want) in [
            ("nesting", deep.as_str(), "policy-violation"),
            ("attributes", wide.as_str(), "policy-violation"),
            ("size", big.as_str(), "policy-violation"),
            (
                "entity",
                "<message><body>&lol9;</body></message>",
                "restricted-xml",
            ),
        ] {
            let cond = attack_raw(addr, header, payload).await;
            assert_eq!(cond.as_deref(), Some(want), "{name}: {what}");
        }
        // A document type declaration before the stream header.
        let cond = attack_raw(addr, &laughs(), header).await;
        assert_eq!(cond.as_deref(), Some("restricted-xml"), "{name}: DTD");
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < MAX_RSS_GROWTH, "memory grew by {grown} bytes");
    let latency = chat_round(&mut alice, &mut bob, 1).await;
    assert!(latency < Duration::from_millis(100), "{latency:?}");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(s: &TestServer) -> Ws {
    let mut req = format!("ws://{}/xmpp-websocket", s.http)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Sends `frames` on a fresh WebSocket after `<open/>`; returns the condition of the
/// `<stream:error/>` it gets, or "closed" when the server ends the connection without one (a
/// frame over the size limit is refused by the WebSocket layer itself).
async fn attack_ws(s: &TestServer, frames: Vec<String>) -> String {
    let mut ws = ws(s).await;
    ws.send(Message::Text(
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>".into(),
    ))
    .await
    .unwrap();
    for f in frames {
        if ws.send(Message::Text(f.into())).await.is_err() {
            return "closed".into();
        }
    }
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no answer")
        {
            Some(Ok(Message::Text(t))) => {
                if let Ok(e) = rookery_xml::Element::parse(&t) {
                    if e.name() == "error" {
                        return e
                            .children()
                            .find(|c| c.name() != "text")
                            .map(|c| c.name().to_string())
                            .unwrap_or_default();
                    }
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return "closed".into(),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_bosh_refuse_the_same_attacks() {
    let s = server().await;
    s.add_user("alice", "secret-a").await;
    s.add_user("bob", "secret-b").await;
    let mut alice = s.login("alice", "secret-a").await;
    let mut bob = s.login("bob", "secret-b").await;
    let before = rss();
    assert_eq!(attack_ws(&s, vec!["<a>".repeat(100_000)]).await, "closed");
    let nested = format!("{}{}", "<a>".repeat(64), "</a>".repeat(64));
    assert_eq!(attack_ws(&s, vec![nested]).await, "policy-violation");
    let attrs: String = (0..200).map(|i| format!(" a{i}='x'")).collect();
    assert_eq!(
        attack_ws(&s, vec![format!("<iq xmlns='jabber:client'{attrs}/>")]).await,
        "policy-violation"
    );
    assert_eq!(
        attack_ws(
            &s,
            vec!["<message xmlns='jabber:client'><body>&lol9;</body></message>".into()]
        )
        .await,
        "restricted-xml"
    );
    // BOSH: an oversized body is refused by size before it is parsed; a deep one by depth.
    for body in [
        format!(
            "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost' wait='60' hold='1'>{}</body>",
            "<a>".repeat(100_000)
        ),
        format!(
            "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost' wait='60' hold='1'>{}{}</body>",
            "<a>".repeat(64),
            "</a>".repeat(64)
        ),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
        let req = format!(
            "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(req.as_bytes()).await;
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut resp)).await;
        let resp = String::from_utf8_lossy(&resp);
        let status: u16 = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!(
            status == 413 || status == 400 || resp.contains("policy-violation") || resp.contains("bad-request"),
            "{resp}"
        );
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < MAX_RSS_GROWTH, "memory grew by {grown} bytes");
    let latency = chat_round(&mut alice, &mut bob, 1).await;
    assert!(latency < Duration::from_millis(100), "{latency:?}");
}
