//! WebSocket (RFC 7395) and BOSH (XEP-0206) against the real server, talking to TCP clients.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use rookery_xml::{ns, Element};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(s: &TestServer) -> Ws {
    let mut req = format!("ws://{}/xmpp-websocket", s.http)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "xmpp"
    );
    ws
}

async fn ws_recv(ws: &mut Ws) -> Element {
    loop {
        let m = tokio::time::timeout(common::WAIT, ws.next())
            .await
            .expect("timed out")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return Element::parse(&t).unwrap();
        }
        assert!(!m.is_close(), "closed");
    }
}

async fn ws_send(ws: &mut Ws, xml: &str) {
    ws.send(Message::Text(xml.to_string().into()))
        .await
        .unwrap();
}

async fn ws_open(ws: &mut Ws) -> Element {
    ws_send(
        ws,
        &format!("<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"),
    )
    .await;
    let open = ws_recv(ws).await;
    assert!(open.is("open", FRAMING), "{open}");
    ws_recv(ws).await
}

fn plain(user: &str, pw: &str) -> String {
    B64.encode(format!("\0{user}\0{pw}"))
}

#[tokio::test]
async fn websocket_login_and_chat_with_a_tcp_client() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let mut ws = ws_connect(&s).await;
    let f = ws_open(&mut ws).await;
    assert!(f.is("features", ns::STREAM));
    assert!(f
        .get_child("mechanisms", ns::SASL)
        .unwrap()
        .children()
        .any(|m| m.text() == "SCRAM-SHA-256"));
    ws_send(
        &mut ws,
        &format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{}</auth>",
            ns::SASL,
            plain("bob", "pw123456")
        ),
    )
    .await;
    assert!(ws_recv(&mut ws).await.is("success", ns::SASL));
    let f = ws_open(&mut ws).await;
    assert!(f.has_child("bind", ns::BIND));
    ws_send(&mut ws, "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>").await;
    let r = ws_recv(&mut ws).await;
    assert_eq!(
        r.get_child("bind", ns::BIND)
            .unwrap()
            .child_text("jid", ns::BIND)
            .unwrap(),
        "bob@localhost/web"
    );
    ws_send(&mut ws, "<presence xmlns='jabber:client'/>").await;
    assert!(ws_recv(&mut ws).await.is("presence", ns::CLIENT));

    let mut alice = s.login("alice", "pw123456").await;
    alice
        .send("<message to='bob@localhost' type='chat'><body>hello web</body></message>")
        .await;
    let m = ws_recv(&mut ws).await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("hello web")
    );
    ws_send(&mut ws, "<message xmlns='jabber:client' to='alice@localhost/r' type='chat'><body>hello tcp</body></message>").await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.attr("from"), Some("bob@localhost/web"));
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("hello tcp")
    );
    ws_send(&mut ws, &format!("<close xmlns='{FRAMING}'/>")).await;
    assert!(ws_recv(&mut ws).await.is("close", FRAMING));
    // Closing made Bob unavailable to... himself only (no contacts), and the server stays up.
    alice.expect_silence().await;
}

#[tokio::test]
async fn websocket_bad_frames_get_stream_errors() {
    let s = TestServer::start().await;
    for bad in [
        "<message><body>unclosed</message>",
        "<open xmlns='urn:other'/>",
    ] {
        let mut ws = ws_connect(&s).await;
        ws_open(&mut ws).await;
        ws_send(&mut ws, bad).await;
        let e = ws_recv(&mut ws).await;
        assert!(e.is("error", ns::STREAM), "{e}");
        assert!(
            e.has_child("not-well-formed", ns::STREAMS_ERR)
                || e.has_child("unsupported-stanza-type", ns::STREAMS_ERR),
            "{e}"
        );
    }
}

/// One BOSH request over a fresh HTTP/1.1 connection.
async fn post(s: &TestServer, body: &str) -> (u16, Element) {
    let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let req = format!(
        "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(common::WAIT * 2, tcp.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8(resp).unwrap();
    let status: u16 = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        Element::parse(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

const HB: &str = "http://jabber.org/protocol/httpbind";

fn bosh(sid: &str, rid: u64, inner: &str) -> String {
    format!("<body xmlns='{HB}' sid='{sid}' rid='{rid}'>{inner}</body>")
}

#[tokio::test]
async fn bosh_session_login_chat_replay_and_terminate() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let (st, b) = post(&s, &format!("<body xmlns='{HB}' rid='100' to='localhost' wait='2' hold='1' ver='1.6' xml:lang='en' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>")).await;
    assert_eq!(st, 200);
    let sid = b.attr("sid").unwrap().to_string();
    assert!(b.get_child("features", ns::STREAM).is_some(), "{b}");
    let (_, b) = post(
        &s,
        &bosh(
            &sid,
            101,
            &format!(
                "<auth xmlns='{}' mechanism='PLAIN'>{}</auth>",
                ns::SASL,
                plain("bob", "pw123456")
            ),
        ),
    )
    .await;
    assert!(b.has_child("success", ns::SASL), "{b}");
    let (_, b) = post(&s, &format!("<body xmlns='{HB}' sid='{sid}' rid='102' xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh'/>")).await;
    assert!(
        b.get_child("features", ns::STREAM)
            .unwrap()
            .has_child("bind", ns::BIND),
        "{b}"
    );
    let (_, b) = post(&s, &bosh(&sid, 103, "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bosh</resource></bind></iq>")).await;
    assert!(b.has_child("iq", ns::CLIENT), "{b}");
    // A repeated rid gets the same answer again.
    let (_, again) = post(&s, &bosh(&sid, 103, "")).await;
    assert_eq!(again, b);
    let (_, b) = post(&s, &bosh(&sid, 104, "<presence xmlns='jabber:client'/>")).await;
    assert!(b.has_child("presence", ns::CLIENT), "{b}");

    // A long poll is answered when a message arrives from a TCP client.
    let s = std::sync::Arc::new(s);
    let s2 = s.clone();
    let sid2 = sid.clone();
    let poll = tokio::spawn(async move { post(&s2, &bosh(&sid2, 105, "")).await });
    let mut alice = s.login("alice", "pw123456").await;
    alice
        .send("<message to='bob@localhost/bosh' type='chat'><body>over http</body></message>")
        .await;
    let (_, b) = poll.await.unwrap();
    let m = b
        .get_child("message", ns::CLIENT)
        .expect("message in the long poll");
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("over http")
    );

    // Requests arriving out of order are processed in rid order.
    let s3 = s.clone();
    let sid3 = sid.clone();
    let later = tokio::spawn(async move {
        post(&s3, &bosh(&sid3, 107, "<message xmlns='jabber:client' to='alice@localhost/r' type='chat'><body>second</body></message>")).await
    });
    tokio::task::yield_now().await;
    post(&s, &bosh(&sid, 106, "<message xmlns='jabber:client' to='alice@localhost/r' type='chat'><body>first</body></message>")).await;
    later.await.unwrap();
    for expected in ["first", "second"] {
        let m = alice.recv_until(|e| e.name() == "message").await;
        assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some(expected));
    }
    let (_, b) = post(&s, &format!("<body xmlns='{HB}' sid='{sid}' rid='108' type='terminate'><presence xmlns='jabber:client' type='unavailable'/></body>")).await;
    assert_eq!(b.attr("type"), Some("terminate"));
    let (st, _) = post(&s, &bosh(&sid, 109, "")).await;
    assert_eq!(st, 404);
    let (st, b) = post(&s, &bosh("nosuchsid", 1, "")).await;
    assert_eq!((st, b.attr("condition")), (404, Some("item-not-found")));
}

#[tokio::test]
async fn host_meta_lists_both_endpoints() {
    let s = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    tcp.write_all(b"GET /.well-known/host-meta.json HTTP/1.1\r\nHost: chat.example:5280\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(
        resp.contains("ws://chat.example:5280/xmpp-websocket"),
        "{resp}"
    );
    assert!(
        resp.contains("http://chat.example:5280/http-bind"),
        "{resp}"
    );
}

#[tokio::test]
async fn https_serves_host_meta_with_secure_endpoints_and_wss_works() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let connector = tokio_rustls::TlsConnector::from(rookery_bench::tls::client_config().unwrap());
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
    let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
    tls.write_all(b"GET /.well-known/host-meta.json HTTP/1.1\r\nHost: chat.example\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.contains("wss://chat.example/xmpp-websocket"), "{resp}");
    assert!(resp.contains("https://chat.example/http-bind"), "{resp}");
    // XMPP over WSS: PLAIN is offered because the connection is encrypted.
    let tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let mut req = "wss://localhost/xmpp-websocket"
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws.send(Message::Text(
        format!("<open xmlns='{FRAMING}' to='localhost' version='1.0'/>").into(),
    ))
    .await
    .unwrap();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let Message::Text(t) = tokio::time::timeout(common::WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            texts.push(t.to_string());
        }
    }
    let f = Element::parse(&texts[1]).unwrap();
    assert!(
        f.get_child("mechanisms", ns::SASL)
            .unwrap()
            .children()
            .any(|m| m.text() == "PLAIN"),
        "{f}"
    );
}

#[tokio::test]
async fn a_bosh_client_that_stops_polling_goes_unavailable() {
    let s = TestServer::start_with(|c| c.http.bosh_inactivity_seconds = 1).await;
    s.add_user("alice", "pw123456").await;
    s.add_user("bob", "pw123456").await;
    let (_, b) = post(
        &s,
        &format!("<body xmlns='{HB}' rid='1' to='localhost' wait='1' hold='1'/>"),
    )
    .await;
    let sid = b.attr("sid").unwrap().to_string();
    post(
        &s,
        &bosh(
            &sid,
            2,
            &format!(
                "<auth xmlns='{}' mechanism='PLAIN'>{}</auth>",
                ns::SASL,
                plain("bob", "pw123456")
            ),
        ),
    )
    .await;
    post(&s, &format!("<body xmlns='{HB}' sid='{sid}' rid='3' xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh'/>")).await;
    post(&s, &bosh(&sid, 4, "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")).await;
    post(
        &s,
        &bosh(
            &sid,
            5,
            "<presence xmlns='jabber:client' to='alice@localhost'/>",
        ),
    )
    .await;
    let mut alice = s.login("alice", "pw123456").await;
    let _ = alice.drain().await;
    // Bob sent directed presence to Alice; when his session times out she gets unavailable.
    post(
        &s,
        &bosh(
            &sid,
            6,
            "<presence xmlns='jabber:client' to='alice@localhost/r'/>",
        ),
    )
    .await;
    let p = alice
        .recv_until(|e| e.name() == "presence" && e.attr("type").is_none())
        .await;
    assert!(p.attr("from").unwrap().starts_with("bob@localhost/"));
    let gone = alice
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("unavailable"))
        .await;
    assert!(gone.attr("from").unwrap().starts_with("bob@localhost/"));
}
