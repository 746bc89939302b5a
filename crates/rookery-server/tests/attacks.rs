//! Attacks against a running server: a billion laughs, a 100 MB stanza, deep nesting, many
//! attributes, a slowloris, many connections from one address and a subscription flood. Each is
//! cut off with bounded memory while two signed-in users keep chatting with low latency. The
//! runtime has worker threads, as the server's does, so one connection's parsing does not stall
//! the others' tasks.

mod common;

use common::*;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The latency the chatting users must keep during an attack.
const MAX_LATENCY: Duration = Duration::from_millis(100);
/// How much the (in-process) server may grow while an attack is fought off.
const MAX_RSS_GROWTH: u64 = 50 * 1024 * 1024;

/// This process's resident memory in bytes; the server runs in it.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Two signed-in users who keep chatting while an attack runs.
struct Chat {
    alice: Client,
    bob: Client,
    sent: u32,
    worst: Duration,
}

impl Chat {
    async fn start(s: &TestServer) -> Chat {
        s.add_user("alice", "secret-a").await;
        s.add_user("bob", "secret-b").await;
        Chat {
            alice: s.login("alice", "secret-a").await,
            bob: s.login("bob", "secret-b").await,
            sent: 0,
            worst: Duration::ZERO,
        }
    }

    /// One message from alice to bob; records how long it took to arrive.
    async fn round(&mut self) {
        self.sent += 1;
        let id = format!("m{}", self.sent);
        let started = Instant::now();
        self.alice
            .send(&format!(
                "<message to='{}' id='{id}' type='chat'><body>still here</body></message>",
                self.bob.jid()
            ))
            .await;
        self.bob
            .recv_until(|e| e.name() == "message" && e.attr("id") == Some(&id))
            .await;
        self.worst = self.worst.max(started.elapsed());
    }

    /// Runs `attack` while chatting every 20 ms, and a few rounds after it; asserts the latency
    /// and the memory the server took meanwhile.
    async fn during<T: Send + 'static>(
        &mut self,
        attack: impl Future<Output = T> + Send + 'static,
    ) -> T {
        self.round().await;
        let before = rss();
        let attack = tokio::spawn(attack);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while !attack.is_finished() {
            tick.tick().await;
            self.round().await;
        }
        let out = attack.await.unwrap();
        for _ in 0..3 {
            self.round().await;
        }
        let grown = rss().saturating_sub(before);
        assert!(grown < MAX_RSS_GROWTH, "memory grew by {grown} bytes");
        assert!(
            self.worst < MAX_LATENCY,
            "chat latency {:?} over {} messages",
            self.worst,
            self.sent
        );
        out
    }
}

const OPEN: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Sends `payload` on a fresh connection (after the stream header) and returns the stream error.
async fn send_raw(addr: std::net::SocketAddr, payload: String) -> Option<String> {
    let mut raw = Raw::connect(addr).await;
    raw.open("localhost").await;
    raw.send(payload.as_bytes()).await;
    raw.stream_error().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billion_laughs_is_restricted_xml() {
    let s = TestServer::start().await;
    let mut chat = Chat::start(&s).await;
    let mut entities = String::from("<!ENTITY lol0 'lol'>");
    for i in 1..10 {
        let refs = format!("&lol{};", i - 1).repeat(10);
        entities.push_str(&format!("<!ENTITY lol{i} '{refs}'>"));
    }
    let addr = s.c2s;
    let cond = chat
        .during(async move {
            // Before the stream header, as a document type declaration would come...
            let mut raw = Raw::connect(addr).await;
            raw.send(format!("<?xml version='1.0'?><!DOCTYPE lolz [{entities}]>{OPEN}").as_bytes())
                .await;
            let first = raw.stream_error().await;
            // ...and inside the stream, where only a reference can come.
            let second = send_raw(addr, "<message><body>&lol9;</body></message>".into()).await;
            (first, second)
        })
        .await;
    assert_eq!(cond.0.as_deref(), Some("restricted-xml"));
    assert_eq!(cond.1.as_deref(), Some("restricted-xml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabyte_stanza_before_auth_is_cut_off() {
    let s = TestServer::start().await;
    let mut chat = Chat::start(&s).await;
    let limit = s.server.config.limits.max_stanza_bytes_unauthenticated;
    let addr = s.c2s;
    let (written, cond) = chat
        .during(async move {
            let mut raw = Raw::connect(addr).await;
            raw.open("localhost").await;
            let _ = raw.io.write_all(b"<message><body>").await;
            let chunk = vec![b'x'; 64 * 1024];
            let mut written = 0usize;
            while written < 100 * 1024 * 1024 {
                if raw.io.write_all(&chunk).await.is_err() {
                    break;
                }
                written += chunk.len();
            }
            (written, raw.stream_error().await)
        })
        .await;
    assert_eq!(cond.as_deref(), Some("policy-violation"));
    // The server read about `limit` bytes and closed; what else got written sat in socket
    // buffers (a few MB on loopback at most).
    assert!(
        written < limit + 16 * 1024 * 1024,
        "{written} bytes written before the server closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_nested_elements_hit_the_depth_limit() {
    let s = TestServer::start().await;
    let mut chat = Chat::start(&s).await;
    let addr = s.c2s;
    let cond = chat.during(send_raw(addr, "<a>".repeat(100_000))).await;
    assert_eq!(cond.as_deref(), Some("policy-violation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_attributes_are_cut_off() {
    let s = TestServer::start_with(|c| {
        // Room for the whole start tag, so that the attribute count is what stops it.
        c.limits.max_stanza_bytes_unauthenticated = 1024 * 1024;
    })
    .await;
    let mut chat = Chat::start(&s).await;
    let attrs: String = (0..10_000).map(|i| format!(" a{i}='x'")).collect();
    let cond = chat
        .during(send_raw(s.c2s, format!("<message{attrs}/>")))
        .await;
    assert_eq!(cond.as_deref(), Some("policy-violation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_dropped_at_the_auth_deadline() {
    let s = TestServer::start_with(|c| c.limits.auth_timeout_seconds = 1).await;
    let mut chat = Chat::start(&s).await;
    let addr = s.c2s;
    let (elapsed, cond) = chat
        .during(async move {
            let mut raw = Raw::connect(addr).await;
            let started = Instant::now();
            // One byte of a stream header every 200 ms, until the server hangs up.
            let mut bytes = OPEN.bytes().cycle();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = raw.io.write_all(&[bytes.next().unwrap()]).await;
                    }
                    r = raw.io.read(&mut buf) => match r {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => break,
                    },
                }
                assert!(started.elapsed() < WAIT, "never dropped");
            }
            let got = String::from_utf8_lossy(&got).into_owned();
            let cond = got
                .contains("<connection-timeout")
                .then(|| "connection-timeout".to_string());
            (started.elapsed(), cond)
        })
        .await;
    assert_eq!(cond.as_deref(), Some("connection-timeout"));
    assert!(
        elapsed < Duration::from_secs(3),
        "dropped after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_are_limited() {
    let s = TestServer::start_with(|c| c.limits.max_connections_per_ip = 50).await;
    let mut chat = Chat::start(&s).await;
    let server = s.server.clone();
    let addr = s.c2s;
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let (accepted, refused) = chat
        .during(async move {
            let mut open = Vec::new();
            let mut refused = 0;
            for _ in 0..300 {
                let mut raw = Raw::connect(addr).await;
                // The chatting users hold 2 of the 50 places.
                if open.len() < 48 {
                    raw.open("localhost").await;
                    open.push(raw);
                } else {
                    assert_eq!(
                        raw.stream_error().await.as_deref(),
                        Some("policy-violation")
                    );
                    refused += 1;
                }
            }
            assert_eq!(server.c2s_per_ip.count(ip), 50);
            let accepted = open.len();
            drop(open);
            // The places come back once those connections are gone.
            let deadline = Instant::now() + WAIT;
            while server.c2s_per_ip.count(ip) > 2 {
                assert!(Instant::now() < deadline, "places not released");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut raw = Raw::connect(addr).await;
            raw.open("localhost").await;
            (accepted, refused)
        })
        .await;
    assert_eq!((accepted, refused), (48, 252));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_flood_stops_at_the_roster_limit() {
    let s = TestServer::start_with(|c| {
        c.limits.max_roster_items = 100;
        // The roster limit is what this test is about, not the rate.
        c.limits.subscriptions_per_minute = 0;
    })
    .await;
    let mut chat = Chat::start(&s).await;
    s.add_user("mallory", "secret-m").await;
    let mut mallory = s.login("mallory", "secret-m").await;
    let flood = async move {
        let mut refused = 0;
        for batch in 0..10 {
            let mut xml = String::new();
            for i in 0..100 {
                xml.push_str(&format!(
                    "<presence type='subscribe' to='victim{}@elsewhere.example'/>",
                    batch * 100 + i
                ));
            }
            mallory.send(&xml).await;
            refused += mallory
                .drain()
                .await
                .iter()
                .filter(|e| e.attr("type") == Some("error"))
                .filter(|e| error_condition(e).as_deref() == Some("not-allowed"))
                .count();
        }
        refused
    };
    let refused = chat.during(flood).await;
    let user = rookery_core::BareJid::new("mallory@localhost").unwrap();
    let (_, roster) = s.server.storage.roster(&user).await.unwrap();
    assert_eq!(roster.len(), 100);
    assert_eq!(refused, 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_subscription_requests_are_capped() {
    let s = TestServer::start_with(|c| c.limits.max_roster_items = 2).await;
    s.add_user("victim", "secret-v").await;
    for i in 0..3 {
        let name = format!("s{i}");
        s.add_user(&name, "secret-s").await;
        let mut c = s.login(&name, "secret-s").await;
        c.send("<presence type='subscribe' to='victim@localhost'/>")
            .await;
        c.drain().await;
    }
    let victim = rookery_core::BareJid::new("victim@localhost").unwrap();
    let pending = s.server.storage.pending_in(&victim).await.unwrap();
    let senders: Vec<&str> = pending.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(senders.len(), 2, "{senders:?}");
    // The victim signing in is offered the first two.
    let mut v = s.login("victim", "secret-v").await;
    v.expect_silence().await;
}

/// `limits.rate_stanzas_per_second`: a client beyond it waits for its next stanza to be taken
/// (here 40 pings at 20 a second: the first 20 at once, the rest over about a second), while an
/// administrator is exempt.
#[tokio::test]
async fn a_client_over_the_stanza_rate_is_slowed_and_admins_are_not() {
    let s = TestServer::start_with(|c| {
        c.limits.rate_stanzas_per_second = 20;
        c.admins = vec!["boss@localhost".into()];
    })
    .await;
    let pings = |who: &str| {
        (0..40)
            .map(|i| format!("<iq type='get' id='{who}{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"))
            .collect::<String>()
    };
    async fn answered(c: &mut Client, last: &str) -> Duration {
        let started = Instant::now();
        c.recv_until(|e| e.attr("id") == Some(last)).await;
        started.elapsed()
    }
    s.add_user("boss", "secret-b").await;
    s.add_user("eve", "secret-e").await;
    let mut boss = s.login("boss", "secret-b").await;
    let mut eve = s.login("eve", "secret-e").await;
    eve.send(&pings("e")).await;
    let slowed = answered(&mut eve, "e39").await;
    assert!(slowed >= Duration::from_millis(800), "{slowed:?}");
    boss.send(&pings("b")).await;
    let exempt = answered(&mut boss, "b39").await;
    assert!(exempt < Duration::from_millis(800), "{exempt:?}");
}

/// `limits.stranger_days`: a new account gets no messages or subscription requests from
/// strangers; its contacts and the server's administrators still reach it.
#[tokio::test]
async fn strangers_do_not_reach_a_new_account() {
    let s = TestServer::start_with(|c| {
        c.limits.stranger_days = 7;
        c.admins = vec!["boss@localhost".into()];
    })
    .await;
    for u in ["newbie", "friend", "spammer", "boss"] {
        s.add_user(u, "secret-x").await;
    }
    let newbie = rookery_core::BareJid::new("newbie@localhost").unwrap();
    let item = rookery_core::storage::RosterItem {
        jid: "friend@localhost".into(),
        subscription: rookery_core::storage::Subscription::Both,
        ..Default::default()
    };
    s.server
        .storage
        .put_roster_item(&newbie, &item)
        .await
        .unwrap();
    let mut n = s.login("newbie", "secret-x").await;
    let mut spammer = s.login("spammer", "secret-x").await;
    let mut friend = s.login("friend", "secret-x").await;
    let mut boss = s.login("boss", "secret-x").await;
    spammer
        .send("<message to='newbie@localhost' type='chat'><body>cheap watches</body></message>")
        .await;
    spammer
        .send("<presence to='newbie@localhost' type='subscribe'/>")
        .await;
    spammer.drain().await;
    friend
        .send("<message to='newbie@localhost' type='chat'><body>hi from a friend</body></message>")
        .await;
    boss.send("<message to='newbie@localhost' type='chat'><body>welcome</body></message>")
        .await;
    friend.drain().await;
    boss.drain().await;
    let got: Vec<String> = n
        .drain()
        .await
        .iter()
        .filter(|e| e.name() != "presence" || e.attr("type") == Some("subscribe"))
        .map(|e| e.to_xml())
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().any(|x| x.contains("hi from a friend")),
        "{got:?}"
    );
    assert!(got.iter().any(|x| x.contains("welcome")), "{got:?}");
}

/// `modules.muc.max_rooms_per_user`: an account creating rooms stops at the limit; joining
/// existing rooms is unaffected.
#[tokio::test]
async fn room_creation_stops_at_the_per_user_limit() {
    let s = TestServer::start_with(|c| c.modules.muc.max_rooms_per_user = 2).await;
    s.add_user("maker", "secret-m").await;
    let mut m = s.login("maker", "secret-m").await;
    for i in 0..3 {
        m.send(&format!(
            "<presence to='r{i}@conference.localhost/m'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ))
        .await;
        let reply = m
            .recv_until(|e| {
                e.name() == "presence"
                    && e.attr("from") == Some(&format!("r{i}@conference.localhost/m"))
            })
            .await;
        if i < 2 {
            assert_eq!(reply.attr("type"), None, "{reply}");
        } else {
            assert_eq!(reply.attr("type"), Some("error"), "{reply}");
            assert_eq!(
                error_condition(&reply).as_deref(),
                Some("resource-constraint")
            );
        }
    }
}

/// `limits.rate_stanzas_per_second_per_ip`: connections from one address share one bucket, so
/// two clients together are held to the address's rate (60 pings at 20 a second: the first 20 at
/// once, the rest over about two seconds).
#[tokio::test]
async fn clients_from_one_address_share_its_stanza_rate() {
    let s = TestServer::start_with(|c| c.limits.rate_stanzas_per_second_per_ip = 20).await;
    s.add_user("a", "secret-a").await;
    s.add_user("b", "secret-b").await;
    let mut a = s.login("a", "secret-a").await;
    let mut b = s.login("b", "secret-b").await;
    let pings = |who: &str| {
        (0..30)
            .map(|i| format!("<iq type='get' id='{who}{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"))
            .collect::<String>()
    };
    let started = Instant::now();
    a.send(&pings("a")).await;
    b.send(&pings("b")).await;
    a.recv_until(|e| e.attr("id") == Some("a29")).await;
    b.recv_until(|e| e.attr("id") == Some("b29")).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1600), "{took:?}");
}
