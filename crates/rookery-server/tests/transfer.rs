//! File transfer against the real server: HTTP upload (XEP-0363) slots, PUT and GET over
//! HTTPS; the SOCKS5 proxy (XEP-0065); external services (XEP-0215); in-band bytestreams
//! (XEP-0047) across a stream management resumption.

mod common;

use common::http::{https, Reply};
use common::{error_condition, Client, TestServer};
use rookery_bench::client::{self, Online};
use rookery_bench::scram::Mechanism;
use rookery_core::config::{ExternalService, ServiceSecret, UploadContents};
use rookery_xml::{ns, Element};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPLOAD: &str = "urn:xmpp:http:upload:0";
const BYTESTREAMS: &str = "http://jabber.org/protocol/bytestreams";
const EXTDISCO: &str = "urn:xmpp:extdisco:2";
const IBB: &str = "http://jabber.org/protocol/ibb";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const SM: &str = "urn:xmpp:sm:3";

fn request(filename: &str, size: u64, content_type: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", format!("slot-{filename}-{size}"))
        .with_attr("to", "upload.localhost")
        .with_child(
            Element::new("request", UPLOAD)
                .with_attr("filename", filename)
                .with_attr("size", size.to_string())
                .with_attr("content-type", content_type),
        )
}

/// A granted slot: the GET/PUT path on our HTTPS listener and the Authorization header.
struct Slot {
    path: String,
    auth: String,
}

async fn slot(s: &TestServer, c: &mut Client, filename: &str, size: u64, ctype: &str) -> Slot {
    let r = c.iq(request(filename, size, ctype)).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    let slot = r.get_child("slot", UPLOAD).unwrap();
    let get = slot.get_child("get", UPLOAD).unwrap().attr("url").unwrap();
    let put = slot.get_child("put", UPLOAD).unwrap();
    assert_eq!(put.attr("url"), Some(get), "PUT and GET share the URL");
    let header = put.get_child("header", UPLOAD).unwrap();
    assert_eq!(header.attr("name"), Some("Authorization"));
    // An HTTPS listener is configured, so URLs point at it.
    let base = format!("https://127.0.0.1:{}", s.https.port());
    Slot {
        path: get
            .strip_prefix(&base)
            .unwrap_or_else(|| panic!("{get}"))
            .to_string(),
        auth: header.text(),
    }
}

async fn put(s: &TestServer, slot: &Slot, ctype: &str, body: &[u8]) -> Reply {
    let len = body.len().to_string();
    https(
        s.https,
        "PUT",
        &slot.path,
        &[
            ("Authorization", &slot.auth),
            ("Content-Type", ctype),
            ("Content-Length", &len),
        ],
        body,
    )
    .await
}

async fn user(s: &TestServer, name: &str) -> Client {
    s.add_user(name, "pw123456").await;
    s.login(name, "pw123456").await
}

#[tokio::test]
async fn upload_round_trip_with_ranges_single_use_and_discovery() {
    round_trip(UploadContents::Files).await;
}

#[tokio::test]
async fn upload_round_trip_with_contents_in_the_database() {
    round_trip(UploadContents::Database).await;
}

async fn round_trip(contents: UploadContents) {
    let s = TestServer::start_with(|c| {
        c.modules.upload.max_file_size = 5_000_000;
        c.modules.upload.store = Some(contents);
    })
    .await;
    let mut alice = user(&s, "alice").await;
    let items = alice
        .iq(Element::parse(
            "<iq xmlns='jabber:client' type='get' id='i' to='localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
        )
        .unwrap())
        .await;
    let xml = items.to_xml();
    assert!(
        xml.contains("upload.localhost") && xml.contains("proxy.localhost"),
        "{xml}"
    );
    let info = alice
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='d' to='upload.localhost'><query xmlns='{INFO}'/></iq>"
        ))
        .unwrap())
        .await;
    let xml = info.to_xml();
    assert!(
        xml.contains("category='store'") && xml.contains(UPLOAD),
        "{xml}"
    );
    assert!(
        xml.contains("<value>5000000</value>"),
        "XEP-0128 max-file-size: {xml}"
    );

    // More than two pieces of contents kept in the database.
    let body: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let slot = slot(
        &s,
        &mut alice,
        "très cool.bin",
        body.len() as u64,
        "application/octet-stream",
    )
    .await;
    assert!(
        slot.path.ends_with("/tr%C3%A8s%20cool.bin"),
        "{}",
        slot.path
    );
    // Nothing is there before the upload.
    assert_eq!(
        https(s.https, "GET", &slot.path, &[], b"").await.status,
        404
    );
    assert_eq!(
        put(&s, &slot, "application/octet-stream", &body)
            .await
            .status,
        201
    );
    // A slot takes one upload.
    assert_eq!(
        put(&s, &slot, "application/octet-stream", &body)
            .await
            .status,
        409
    );

    let got = https(s.https, "GET", &slot.path, &[], b"").await;
    assert_eq!(got.status, 200);
    assert!(got.body == body, "the same bytes back");
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("content-length"), Some("600000"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert!(got
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));

    // Ranges within a piece and across pieces.
    for (a, b) in [(1000, 1999), (262_000, 530_000), (599_990, 599_999)] {
        let part = https(
            s.https,
            "GET",
            &slot.path,
            &[("Range", &format!("bytes={a}-{b}"))],
            b"",
        )
        .await;
        assert_eq!(part.status, 206);
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {a}-{b}/600000").as_str())
        );
        assert!(part.body == body[a..=b], "bytes {a}-{b}");
    }
    let beyond = https(
        s.https,
        "GET",
        &slot.path,
        &[("Range", "bytes=600000-")],
        b"",
    )
    .await;
    assert_eq!(beyond.status, 416);
    let head = https(s.https, "HEAD", &slot.path, &[], b"").await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    // Another name under the same id is not the file.
    let other = slot.path.rsplit_once('/').unwrap().0.to_string() + "/other.bin";
    assert_eq!(https(s.https, "GET", &other, &[], b"").await.status, 404);
}

#[tokio::test]
async fn slot_requests_are_checked_against_limits_types_and_quotas() {
    let s = TestServer::start_with(|c| {
        let u = &mut c.modules.upload;
        u.max_file_size = 1000;
        u.quota_bytes = 1500;
        u.daily_quota_bytes = 2500;
        u.allowed_types = vec!["text/plain".into(), "image/*".into()];
    })
    .await;
    let mut alice = user(&s, "alice").await;
    let refused = |r: &Element| (error_condition(r), r.to_xml());

    let r = alice.iq(request("big.txt", 1001, "text/plain")).await;
    let (cond, xml) = refused(&r);
    assert_eq!(cond.as_deref(), Some("not-acceptable"));
    assert!(
        xml.contains(
            "<file-too-large xmlns='urn:xmpp:http:upload:0'><max-file-size>1000</max-file-size>"
        ),
        "{xml}"
    );
    for (name, size, ctype, want) in [
        ("neg.txt", "-5", "text/plain", "bad-request"),
        ("a/b.txt", "5", "text/plain", "bad-request"),
        (
            "evil.exe",
            "5",
            "application/x-executable",
            "not-acceptable",
        ),
    ] {
        let mut iq = request(name, 0, ctype);
        iq.get_child_mut("request", UPLOAD)
            .unwrap()
            .set_attr("size", size);
        let r = alice.iq(iq).await;
        assert_eq!(error_condition(&r).as_deref(), Some(want), "{r}");
    }
    assert_eq!(
        alice
            .iq(request("pic.PNG", 5, "image/png"))
            .await
            .attr("type"),
        Some("result")
    );

    // 1000 stored + 5 reserved: 600 more would pass the quota of 1500.
    let first = slot(&s, &mut alice, "a.txt", 1000, "text/plain").await;
    assert_eq!(
        put(&s, &first, "text/plain", &[b'a'; 1000]).await.status,
        201
    );
    let r = alice.iq(request("b.txt", 600, "text/plain")).await;
    let (cond, xml) = refused(&r);
    assert_eq!(cond.as_deref(), Some("resource-constraint"), "{xml}");
    assert!(xml.contains("type='wait'"), "{xml}");
    // The reservation lapses with its slot: that is when to retry.
    assert!(
        xml.contains("<retry xmlns='urn:xmpp:http:upload:0' stamp='"),
        "{xml}"
    );
    // Other users have their own quota.
    let mut bob = user(&s, "bob").await;
    assert_eq!(
        bob.iq(request("b.txt", 1000, "text/plain"))
            .await
            .attr("type"),
        Some("result")
    );
}

#[tokio::test]
async fn the_daily_quota_counts_the_last_24_hours() {
    let s = TestServer::start_with(|c| {
        c.modules.upload.quota_bytes = 0;
        c.modules.upload.daily_quota_bytes = 1000;
    })
    .await;
    let mut alice = user(&s, "alice").await;
    let a = slot(&s, &mut alice, "a.txt", 800, "text/plain").await;
    assert_eq!(put(&s, &a, "text/plain", &[1; 800]).await.status, 201);
    let r = alice.iq(request("b.txt", 300, "text/plain")).await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("resource-constraint"),
        "{r}"
    );
    assert!(r.to_xml().contains("today"), "{r}");
    assert_eq!(
        alice
            .iq(request("c.txt", 200, "text/plain"))
            .await
            .attr("type"),
        Some("result")
    );
}

#[tokio::test]
async fn puts_need_a_live_signed_slot_of_the_right_length_and_type() {
    let s = TestServer::start().await;
    let mut alice = user(&s, "alice").await;
    let sl = slot(&s, &mut alice, "note.txt", 5, "text/plain").await;
    let no_auth = https(
        s.https,
        "PUT",
        &sl.path,
        &[("Content-Length", "5"), ("Content-Type", "text/plain")],
        b"hello",
    )
    .await;
    assert_eq!(no_auth.status, 403);
    let forged = Slot {
        path: sl.path.clone(),
        auth: format!("{}x", sl.auth),
    };
    assert_eq!(put(&s, &forged, "text/plain", b"hello").await.status, 403);
    // The grant is for this id and name only.
    let moved = Slot {
        path: sl.path.replace("note.txt", "other.txt"),
        auth: sl.auth.clone(),
    };
    assert_eq!(put(&s, &moved, "text/plain", b"hello").await.status, 403);
    assert_eq!(put(&s, &sl, "text/plain", b"hello!").await.status, 400);
    assert_eq!(put(&s, &sl, "image/png", b"hello").await.status, 415);
    assert_eq!(
        put(&s, &sl, "text/plain; charset=utf-8", b"hello")
            .await
            .status,
        201
    );
    let got = https(s.https, "GET", &sl.path, &[], b"").await;
    assert_eq!(got.body, b"hello");
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert!(got
        .header("content-disposition")
        .unwrap()
        .starts_with("inline"));

    // CORS for web clients on other sites.
    let pre = https(
        s.https,
        "OPTIONS",
        &sl.path,
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "PUT"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
        b"",
    )
    .await;
    assert_eq!(pre.status, 200);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("PUT"));
}

#[tokio::test]
async fn an_expired_slot_is_refused() {
    // Slots that are void as soon as they are granted: no waiting needed.
    let s = TestServer::start_with(|c| c.modules.upload.slot_lifetime_seconds = 0).await;
    let mut alice = user(&s, "alice").await;
    let sl = slot(&s, &mut alice, "late.txt", 4, "text/plain").await;
    let r = put(&s, &sl, "text/plain", b"late").await;
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("expired"));
}

/// SOCKS5 CONNECT to the proxy with DST.ADDR `hash`; the reply's status.
async fn socks5(addr: (String, u16), hash: &str) -> (TcpStream, u8) {
    let mut s = TcpStream::connect((addr.0.as_str(), addr.1)).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    let mut req = vec![5, 1, 0, 3, 40];
    req.extend_from_slice(hash.as_bytes());
    req.extend_from_slice(&[0, 0]);
    s.write_all(&req).await.unwrap();
    let mut r = [0u8; 47];
    s.read_exact(&mut r).await.unwrap();
    (s, r[1])
}

fn hash(sid: &str, requester: &str, target: &str) -> String {
    Sha1::digest(format!("{sid}{requester}{target}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn activate(sid: &str, target: &str) -> Element {
    Element::parse(&format!(
        "<iq xmlns='jabber:client' type='set' id='act-{sid}' to='proxy.localhost'>\
         <query xmlns='{BYTESTREAMS}' sid='{sid}'><activate>{target}</activate></query></iq>"
    ))
    .unwrap()
}

#[tokio::test]
async fn the_proxy_pairs_a_stream_that_only_its_requester_may_activate() {
    let s = TestServer::start().await;
    let mut alice = user(&s, "alice").await;
    let mut bob = user(&s, "bob").await;
    let r = alice
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='sh' to='proxy.localhost'><query xmlns='{BYTESTREAMS}'/></iq>"
        ))
        .unwrap())
        .await;
    let sh = r
        .get_child("query", BYTESTREAMS)
        .and_then(|q| q.get_child("streamhost", BYTESTREAMS))
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(sh.attr("jid"), Some("proxy.localhost"));
    let addr = (
        sh.attr("host").unwrap().to_string(),
        sh.attr("port").unwrap().parse::<u16>().unwrap(),
    );
    assert_eq!(addr.0, "127.0.0.1");

    let (a, b) = (alice.jid().to_string(), bob.jid().to_string());
    let h = hash("s1", &a, &b);
    let (mut target, st) = socks5(addr.clone(), &h).await;
    // Activation with one party only.
    let r = alice.iq(activate("s1", &b)).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-allowed"), "{r}");
    let (mut requester, sr) = socks5(addr.clone(), &h).await;
    assert_eq!((st, sr), (0, 0));
    // The target may not activate (its hash is another), nor may anyone else.
    let r = bob.iq(activate("s1", &a)).await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("item-not-found"),
        "{r}"
    );
    let r = bob.iq(activate("s1", &b)).await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("item-not-found"),
        "{r}"
    );
    let r = alice.iq(activate("s1", &b)).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");

    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        requester.write_all(&sent).await.unwrap();
        requester.shutdown().await.unwrap();
        requester
    });
    let mut got = Vec::new();
    target.read_to_end(&mut got).await.unwrap();
    assert!(got == data, "all bytes relayed in order");
    writer.await.unwrap();
}

#[tokio::test]
async fn external_services_come_with_turn_credentials() {
    let s = TestServer::start_with(|c| {
        let e = &mut c.modules.extdisco;
        e.secret = Some("coturn-secret".into());
        e.ttl_seconds = 600;
        e.services = vec![
            ExternalService {
                kind: "stun".into(),
                port: Some(3478),
                transport: Some("udp".into()),
                ..Default::default()
            },
            ExternalService {
                kind: "turn".into(),
                host: Some("turn.example.org".into()),
                port: Some(3478),
                transport: Some("udp".into()),
                secret: Some(ServiceSecret::Shared(true)),
                ..Default::default()
            },
        ];
    })
    .await;
    let mut alice = user(&s, "alice").await;
    let r = alice
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='x' to='localhost'><services xmlns='{EXTDISCO}'/></iq>"
        ))
        .unwrap())
        .await;
    let services: Vec<&Element> = r
        .get_child("services", EXTDISCO)
        .unwrap()
        .children()
        .collect();
    assert_eq!(services.len(), 2, "{r}");
    assert_eq!(services[0].attr("host"), Some("localhost"));
    assert_eq!(services[0].attr("password"), None);
    let turn = services[1];
    assert_eq!(turn.attr("restricted"), Some("1"));
    let user = turn.attr("username").unwrap();
    let expires: u64 = user.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 590..=now + 610).contains(&expires), "{user}");
    assert_eq!(
        turn.attr("password").unwrap(),
        rookery_server::modules::extdisco::turn_credentials("coturn-secret", expires, None).1
    );
    let r = alice
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='c' to='localhost'><credentials xmlns='{EXTDISCO}'>\
             <service type='turn' host='turn.example.org'/></credentials></iq>"
        ))
        .unwrap())
        .await;
    let creds: Vec<&Element> = r
        .get_child("credentials", EXTDISCO)
        .unwrap()
        .children()
        .collect();
    assert_eq!(creds.len(), 1, "{r}");
    let r = alice
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='b' to='localhost'><credentials xmlns='{EXTDISCO}'>\
             <service host='turn.example.org'/></credentials></iq>"
        ))
        .unwrap())
        .await;
    assert_eq!(error_condition(&r).as_deref(), Some("bad-request"), "{r}");
}

fn ibb_data(to: &str, seq: u16, data: &str) -> String {
    format!(
        "<iq type='set' id='d{seq}' to='{to}'><data xmlns='{IBB}' sid='ibb1' seq='{seq}'>{data}</data></iq>"
    )
}

#[tokio::test]
async fn in_band_bytestreams_survive_a_resumption_in_sequence() {
    let s = TestServer::start().await;
    let mut alice = user(&s, "alice").await;
    let mut bob = user(&s, "bob").await;
    let bob_jid = bob.jid().to_string();
    bob.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = bob.recv_until(|e| e.ns() == SM).await;
    let previd = enabled.attr("id").unwrap().to_string();

    alice
        .send(&format!(
            "<iq type='set' id='open' to='{bob_jid}'><open xmlns='{IBB}' sid='ibb1' block-size='4096' stanza='iq'/></iq>"
        ))
        .await;
    let open = bob.recv_until(|e| e.name() == "iq").await;
    assert!(open.has_child("open", IBB), "{open}");
    bob.send(&format!(
        "<iq type='result' id='open' to='{}'/>",
        alice.jid()
    ))
    .await;
    alice.recv_until(|e| e.attr("id") == Some("open")).await;
    // Bob handles block 0 (he has now handled 2 stanzas: the open and block 0), then his
    // connection dies while blocks 1-3 are on their way.
    alice.send(&ibb_data(&bob_jid, 0, "AAAA")).await;
    let d0 = bob.recv_until(|e| e.name() == "iq").await;
    assert_eq!(d0.get_child("data", IBB).unwrap().attr("seq"), Some("0"));
    drop(bob);
    alice.drain().await;
    for seq in 1..4 {
        alice.send(&ibb_data(&bob_jid, seq, "QkJC")).await;
    }
    alice.drain().await;

    let cfg = s.settings("pw123456", Mechanism::ScramSha256);
    let (mut io, mut reader, features) = client::secure_stream(&cfg).await.unwrap();
    client::authenticate(&cfg, "bob", &mut io, &mut reader, &features)
        .await
        .unwrap();
    client::open_stream(&cfg, &mut io, &mut reader)
        .await
        .unwrap();
    client::send(
        &mut io,
        &format!("<resume xmlns='{SM}' previd='{previd}' h='2'/>"),
    )
    .await
    .unwrap();
    let mut bob = Client {
        online: Online {
            jid: bob_jid.clone(),
            stream: io.into(),
            reader,
            login_time: Default::default(),
        },
    };
    let resumed = bob.recv_until(|e| e.ns() == SM).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    let mut seqs = Vec::new();
    for el in bob.drain().await {
        if let Some(d) = el.get_child("data", IBB) {
            seqs.push(d.attr("seq").unwrap().to_string());
            bob.send(&format!(
                "<iq type='result' id='{}' to='{}'/>",
                el.attr("id").unwrap(),
                alice.jid()
            ))
            .await;
        }
    }
    assert_eq!(seqs, ["1", "2", "3"], "held blocks, once each and in order");
    for seq in 1..4 {
        let id = format!("d{seq}");
        let r = alice
            .recv_until(|e| e.attr("id") == Some(id.as_str()))
            .await;
        assert_eq!(r.attr("type"), Some("result"), "{r}");
    }
}
