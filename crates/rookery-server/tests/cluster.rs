//! Cluster mode: three nodes on one Redis (and one shared storage) serve as one: presence,
//! chat, carbons and a room across nodes, and a node that dies is purged by the survivors.
//!
//! Redis comes from `ROOKERY_TEST_REDIS` (default `redis://127.0.0.1:6379/`); each test uses its
//! own key prefix. Without Redis the tests fail, unless `ROOKERY_SKIP_REDIS=1`.

mod common;

use common::{Client, TestServer};
use rookery_core::storage::Storage;
use rookery_server::storage::MemoryStorage;
use rookery_xml::{ns, Element};
use std::sync::Arc;

fn redis_url() -> Option<String> {
    if std::env::var("ROOKERY_SKIP_REDIS").as_deref() == Ok("1") {
        eprintln!("ROOKERY_SKIP_REDIS=1: cluster test skipped");
        return None;
    }
    let url =
        std::env::var("ROOKERY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    if std::net::TcpStream::connect(&addr).is_err() {
        panic!("Redis is not reachable at {url}: start it (scripts/test does) or set ROOKERY_SKIP_REDIS=1");
    }
    Some(url)
}

/// `n` nodes named n1.. sharing one storage and a fresh key prefix, with users alice, bob and
/// carol.
async fn cluster(n: usize) -> Option<Vec<TestServer>> {
    let url = redis_url()?;
    cluster_on(vec![url; n]).await
}

/// Nodes each reaching Redis at its own URL (a proxy, to cut a node off).
async fn cluster_on(urls: Vec<String>) -> Option<Vec<TestServer>> {
    let n = urls.len();
    let prefix = format!(
        "rookery-test-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
    let mut nodes = vec![];
    for (i, url) in (1..=n).zip(urls) {
        nodes.push(node(&format!("n{i}"), url, &prefix, storage.clone()).await);
    }
    for u in ["alice", "bob", "carol"] {
        nodes[0].add_user(u, "pw123456").await;
    }
    // Every node sees every other one.
    let want = n;
    for node in &nodes {
        let c = node.server.cluster.as_ref().unwrap();
        wait_for(|| c.live_nodes().len() == want, "all nodes live").await;
    }
    Some(nodes)
}

/// A cluster node named `name` on Redis `url` with key prefix `prefix`.
async fn node(name: &str, url: String, prefix: &str, storage: Arc<dyn Storage>) -> TestServer {
    let (name, prefix) = (name.to_string(), prefix.to_string());
    TestServer::start_sharing(
        move |c| {
            c.cluster.redis = Some(url);
            c.cluster.node = Some(name);
            c.cluster.prefix = prefix;
            c.cluster.heartbeat_ms = 100;
            c.cluster.node_timeout_ms = 600;
        },
        storage,
    )
    .await
}

/// Another node `name` joining the cluster of `nodes`, once every node sees it.
async fn join(nodes: &[TestServer], name: &str) -> TestServer {
    let first = &nodes[0].server;
    let cfg = &first.config.cluster;
    let new = node(
        name,
        cfg.redis.clone().unwrap(),
        &cfg.prefix,
        first.storage.clone(),
    )
    .await;
    let want = nodes.len() + 1;
    for n in nodes.iter().chain([&new]) {
        let c = n.server.cluster.as_ref().unwrap();
        wait_for(|| c.live_nodes().len() == want, "the new node live").await;
    }
    new
}

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let end = tokio::time::Instant::now() + common::WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until every node's directory knows the session `full` (replication is asynchronous:
/// a stanza routed before it arrives treats the user as offline there).
async fn known_everywhere(nodes: &[TestServer], full: &str) {
    let jid: rookery_core::FullJid = full.parse().unwrap();
    for n in nodes {
        wait_for(
            || n.server.sessions.get(&jid).is_some(),
            &format!("{full} in every node's directory"),
        )
        .await;
    }
}

/// Alice signed in on the first node and Bob on the second, each known to every node.
async fn alice_and_bob(nodes: &[TestServer]) -> (Client, Client) {
    let alice = nodes[0].login("alice", "pw123456").await;
    let bob = nodes[1].login("bob", "pw123456").await;
    known_everywhere(nodes, "alice@localhost/r").await;
    known_everywhere(nodes, "bob@localhost/r").await;
    (alice, bob)
}

async fn roster_get(c: &mut Client) {
    c.iq(Element::parse(
        "<iq xmlns='jabber:client' type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .unwrap())
        .await;
}

/// Mutual subscription between `a` and `b` (bare JIDs `ja`, `jb`, resource `r`).
async fn befriend(nodes: &[TestServer], a: &mut Client, ja: &str, b: &mut Client, jb: &str) {
    roster_get(a).await;
    roster_get(b).await;
    // Subscription requests reach resources that are available and asked for the roster: wait
    // until every node's copy of both sessions says so (replication is asynchronous).
    for full in [format!("{ja}/r"), format!("{jb}/r")] {
        let jid: rookery_core::FullJid = full.parse().unwrap();
        for n in nodes {
            let ready = || {
                n.server.sessions.get(&jid).is_some_and(|s| {
                    let st = s.state.lock().unwrap();
                    st.available && st.interested
                })
            };
            wait_for(
                ready,
                &format!("{full} available and interested everywhere"),
            )
            .await;
        }
    }
    a.send(&format!("<presence to='{jb}' type='subscribe'/>"))
        .await;
    b.recv_until(|e| e.name() == "presence" && e.attr("type") == Some("subscribe"))
        .await;
    b.send(&format!("<presence to='{ja}' type='subscribed'/>"))
        .await;
    b.send(&format!("<presence to='{ja}' type='subscribe'/>"))
        .await;
    a.recv_until(|e| e.name() == "presence" && e.attr("type") == Some("subscribe"))
        .await;
    a.send(&format!("<presence to='{jb}' type='subscribed'/>"))
        .await;
    // Each sees the other's presence once the subscription is mutual.
    a.recv_until(|e| {
        e.name() == "presence"
            && e.attr("type").is_none()
            && e.attr("from").is_some_and(|f| f.starts_with(jb))
    })
    .await;
    b.recv_until(|e| {
        e.name() == "presence"
            && e.attr("type").is_none()
            && e.attr("from").is_some_and(|f| f.starts_with(ja))
    })
    .await;
}

#[tokio::test]
async fn users_on_different_nodes_subscribe_chat_and_get_carbons() {
    let Some(nodes) = cluster(3).await else {
        return;
    };
    let (mut alice, mut bob) = alice_and_bob(&nodes).await;
    befriend(
        &nodes,
        &mut alice,
        "alice@localhost",
        &mut bob,
        "bob@localhost",
    )
    .await;

    // Alice's second session, on the third node, with carbons.
    let mut alice2 = nodes[2].login_as("alice", "pw123456", "phone").await;
    known_everywhere(&nodes, "alice@localhost/phone").await;
    alice2
        .iq(Element::parse(
            "<iq xmlns='jabber:client' type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
        )
        .unwrap())
        .await;
    // Bob sees Alice's new resource come online through the directory.
    bob.recv_until(|e| e.name() == "presence" && e.attr("from") == Some("alice@localhost/phone"))
        .await;
    let carbons_on = || {
        nodes[0]
            .server
            .sessions
            .resources(&"alice@localhost".parse().unwrap())
            .iter()
            .any(|s| s.jid.resource().as_str() == "phone" && s.state.lock().unwrap().carbons)
    };
    wait_for(carbons_on, "alice/phone's carbons flag on node 1").await;

    alice
        .send("<message to='bob@localhost' type='chat' id='m1'><body>hi bob</body></message>")
        .await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("hi bob"));
    assert_eq!(m.attr("from"), Some("alice@localhost/r"));
    // The copy of what Alice sent reaches her phone on node 3 (XEP-0280 §6).
    let sent = alice2
        .recv_until(|e| e.name() == "message" && e.has_child("sent", "urn:xmpp:carbons:2"))
        .await;
    assert!(sent.to_xml().contains("hi bob"), "{sent}");

    bob.send("<message to='alice@localhost/phone' type='chat'><body>to the phone</body></message>")
        .await;
    let m = alice2
        .recv_until(|e| e.name() == "message" && e.child_text("body", ns::CLIENT).is_some())
        .await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("to the phone")
    );

    // Presence changes travel too.
    alice2.send("<presence><show>away</show></presence>").await;
    let p = bob
        .recv_until(|e| e.name() == "presence" && e.attr("from") == Some("alice@localhost/phone"))
        .await;
    assert_eq!(p.child_text("show", ns::CLIENT).as_deref(), Some("away"));
    // Counted per node.
    let status = nodes[1]
        .server
        .cluster
        .as_ref()
        .unwrap()
        .status(&nodes[1].server);
    assert_eq!(
        status,
        vec![("n1".into(), 1), ("n2".into(), 1), ("n3".into(), 1)]
    );
}

#[tokio::test]
async fn a_room_has_occupants_on_every_node() {
    let Some(nodes) = cluster(3).await else {
        return;
    };
    let mut clients = [
        nodes[0].login("alice", "pw123456").await,
        nodes[1].login("bob", "pw123456").await,
        nodes[2].login("carol", "pw123456").await,
    ];
    for u in ["alice", "bob", "carol"] {
        known_everywhere(&nodes, &format!("{u}@localhost/r")).await;
    }
    let room = "lounge@conference.localhost";
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&format!(
            "<presence to='{room}/u{i}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ))
        .await;
        c.recv_until(|e| {
            e.name() == "presence" && e.attr("from") == Some(format!("{room}/u{i}").as_str())
        })
        .await;
        if i == 0 {
            // Created locked: make it an instant room.
            c.iq(Element::parse(&format!("<iq xmlns='jabber:client' type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")).unwrap())
                .await;
        }
    }
    clients[1]
        .send(&format!(
            "<message to='{room}' type='groupchat'><body>hello all</body></message>"
        ))
        .await;
    for c in clients.iter_mut() {
        let m = c
            .recv_until(|e| {
                e.name() == "message"
                    && e.attr("type") == Some("groupchat")
                    && e.child_text("body", ns::CLIENT).is_some()
            })
            .await;
        assert_eq!(m.attr("from"), Some(format!("{room}/u1").as_str()));
    }
    // The room lives on exactly one node.
    let home = nodes[0].server.cluster.as_ref().unwrap().home(room);
    for n in &nodes {
        assert_eq!(n.server.cluster.as_ref().unwrap().home(room), home);
    }
}

#[tokio::test]
async fn a_dead_nodes_sessions_are_purged_and_contacts_see_them_go() {
    let Some(nodes) = cluster(3).await else {
        return;
    };
    let (mut alice, mut bob) = alice_and_bob(&nodes).await;
    befriend(
        &nodes,
        &mut alice,
        "alice@localhost",
        &mut bob,
        "bob@localhost",
    )
    .await;
    // Node 2 stops dead: no goodbye, no unavailable presence from Bob's session.
    nodes[1].server.cluster.as_ref().unwrap().halt();
    let gone = alice
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("unavailable"))
        .await;
    assert_eq!(gone.attr("from"), Some("bob@localhost/r"));
    let c = nodes[0].server.cluster.as_ref().unwrap();
    wait_for(|| c.live_nodes().len() == 2, "two live nodes").await;
    assert!(nodes[0]
        .server
        .sessions
        .resources(&"bob@localhost".parse().unwrap())
        .is_empty());
    // Bob signs in again on another node; Alice sees him and they chat.
    let mut bob = nodes[2].login("bob", "pw123456").await;
    known_everywhere(&nodes[..1], "bob@localhost/r").await;
    alice
        .recv_until(|e| {
            e.name() == "presence"
                && e.attr("from") == Some("bob@localhost/r")
                && e.attr("type").is_none()
        })
        .await;
    alice
        .send("<message to='bob@localhost' type='chat'><body>welcome back</body></message>")
        .await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("welcome back")
    );
}

#[tokio::test]
async fn a_block_made_on_one_node_holds_on_the_others() {
    let Some(nodes) = cluster(2).await else {
        return;
    };
    let mut alice = nodes[0].login("alice", "pw123456").await;
    let mut bob = nodes[1].login("bob", "pw123456").await;
    known_everywhere(&nodes, "bob@localhost/r").await;
    // Node 1 learns (and caches) Bob's privacy lists while routing this.
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>one</body></message>")
        .await;
    bob.recv_until(|e| e.name() == "message").await;
    bob.iq(Element::parse(
        "<iq xmlns='jabber:client' type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block></iq>",
    )
    .unwrap())
    .await;
    // The block reaches node 1 as an invalidation of its copy.
    let caches = &nodes[0].server.modules.caches;
    let privacy = caches.iter().find(|c| c.topic() == "privacy").unwrap();
    let bob_jid = "bob@localhost".parse().unwrap();
    wait_for(
        || !privacy.holds(&bob_jid),
        "node 1 to drop its copy of Bob's lists",
    )
    .await;
    alice
        .send("<message to='bob@localhost/r' type='chat' id='two'><body>two</body></message>")
        .await;
    let e = alice.recv_until(|e| e.attr("id") == Some("two")).await;
    assert_eq!(e.attr("type"), Some("error"), "{e}");
    // (Bob gets the privacy list push of his block, and nothing from Alice.)
    let got = bob.drain().await;
    assert!(!got.iter().any(|e| e.name() == "message"), "{got:?}");
}

#[tokio::test]
async fn a_session_resumes_on_another_node_with_every_message_once() {
    const SM: &str = "urn:xmpp:sm:3";
    let Some(nodes) = cluster(2).await else {
        return;
    };
    let mut alice = nodes[0].login("alice", "pw123456").await;
    let mut bob = nodes[1].login("bob", "pw123456").await;
    bob.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = bob.recv_until(|e| e.ns() == SM).await;
    let id = enabled.attr("id").unwrap().to_string();
    known_everywhere(&nodes, "bob@localhost/r").await;
    let resumable = || {
        nodes[0]
            .server
            .sessions
            .get(&"bob@localhost/r".parse().unwrap())
            .is_some_and(|s| s.state.lock().unwrap().resumable.as_deref() == Some(id.as_str()))
    };
    wait_for(resumable, "node 1 to learn Bob's session is resumable").await;
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>one</body></message>")
        .await;
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>two</body></message>")
        .await;
    let first = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(first.child_text("body", ns::CLIENT).as_deref(), Some("one"));
    bob.recv_until(|e| e.name() == "message").await;
    // Bob handled "one" only; his connection to node 2 dies; he comes back on node 1.
    drop(bob);
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>three</body></message>")
        .await;
    let (mut io, reader) = nodes[0].authenticated("bob", "pw123456").await;
    rookery_bench::client::send(
        &mut io,
        &format!("<resume xmlns='{SM}' previd='{id}' h='1'/>"),
    )
    .await
    .unwrap();
    let mut bob = Client {
        online: rookery_bench::client::Online {
            jid: "bob@localhost/r".into(),
            stream: io.into(),
            reader,
            login_time: Default::default(),
        },
    };
    let resumed = bob.recv_until(|e| e.ns() == SM).await;
    assert!(resumed.is("resumed", SM), "{resumed}");
    let mut got = vec![];
    while got.len() < 2 {
        let m = bob.recv_until(|e| e.name() == "message").await;
        got.push(m.child_text("body", ns::CLIENT).unwrap_or_default());
    }
    assert_eq!(
        got,
        ["two", "three"],
        "unacked and held messages, once each"
    );
    // Bob's session now lives on node 1, under the same id; nothing else arrives twice.
    let later = bob.drain().await;
    assert!(!later.iter().any(|e| e.name() == "message"), "{later:?}");
    assert!(nodes[0]
        .server
        .sessions
        .get_local(&"bob@localhost/r".parse().unwrap())
        .is_some());
    // No unavailable presence went out for the move.
    let seen = alice.drain().await;
    assert!(
        !seen.iter().any(|e| e.attr("type") == Some("unavailable")),
        "{seen:?}"
    );
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>four</body></message>")
        .await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("four"));
}

#[tokio::test]
async fn pep_published_on_one_node_is_read_on_another() {
    let Some(nodes) = cluster(2).await else {
        return;
    };
    let mut desk = nodes[0].login_as("alice", "pw123456", "desk").await;
    let mut phone = nodes[1].login_as("alice", "pw123456", "phone").await;
    let nick = "http://jabber.org/protocol/nick";
    let publish = |v: &str| {
        Element::parse(&format!(
            "<iq xmlns='jabber:client' type='set' id='p-{v}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{nick}'><item id='current'><nick xmlns='{nick}'>{v}</nick></item></publish></pubsub></iq>"
        ))
        .unwrap()
    };
    let read = || {
        Element::parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='g' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{nick}'/></pubsub></iq>"
        ))
        .unwrap()
    };
    let current =
        |r: &Element| r.to_xml().contains(">one<") as u8 + 2 * r.to_xml().contains(">two<") as u8;
    let caches = &nodes[1].server.modules.caches;
    let pep = caches.iter().find(|c| c.topic() == "pep").unwrap();
    let alice = "alice@localhost".parse().unwrap();
    // Node 2 may hold a copy of Alice's PEP (loaded when her phone came online); a publish on
    // node 1 makes it drop that copy (asynchronously: a read racing the invalidation may still
    // see the old one).
    let r = desk.iq(publish("one")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    wait_for(
        || !pep.holds(&alice),
        "node 2 to drop its copy of Alice's PEP",
    )
    .await;
    let r = phone.iq(read()).await;
    assert_eq!(current(&r), 1, "{r}");
    // Again, now that node 2 surely holds a copy with "one".
    assert!(pep.holds(&alice));
    let r = desk.iq(publish("two")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    wait_for(
        || !pep.holds(&alice),
        "node 2 to drop its copy of Alice's PEP",
    )
    .await;
    let r = phone.iq(read()).await;
    assert_eq!(current(&r), 2, "{r}");
}

/// A TCP proxy to Redis whose connections the test can cut.
struct Cuttable {
    url: String,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Cuttable {
    async fn new(upstream: &str) -> Cuttable {
        let upstream = upstream
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}/", l.local_addr().unwrap());
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = l.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Cuttable { url, conns }
    }

    /// Drops every connection made so far (new ones go through).
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

#[tokio::test]
async fn a_node_cut_off_from_redis_reconnects_and_catches_up() {
    let Some(direct) = redis_url() else { return };
    let proxy = Cuttable::new(&direct).await;
    let Some(nodes) = cluster_on(vec![direct.clone(), proxy.url.clone()]).await else {
        return;
    };
    let (mut alice, mut bob) = alice_and_bob(&nodes).await;
    proxy.cut();
    // While node 2 is cut off, Carol signs in on node 1: node 2 misses that event.
    let _carol = nodes[0].login("carol", "pw123456").await;
    // Node 2 resubscribes and reloads the directory.
    known_everywhere(&nodes[1..], "carol@localhost/r").await;
    alice
        .send("<message to='bob@localhost/r' type='chat'><body>still there?</body></message>")
        .await;
    let m = bob.recv_until(|e| e.name() == "message").await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("still there?")
    );
    bob.send("<message to='alice@localhost/r' type='chat'><body>yes</body></message>")
        .await;
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("yes"));
}

#[tokio::test]
async fn pep_notifications_reach_contacts_on_other_nodes_that_want_them() {
    let Some(nodes) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = alice_and_bob(&nodes).await;
    befriend(
        &nodes,
        &mut alice,
        "alice@localhost",
        &mut bob,
        "bob@localhost",
    )
    .await;
    // Bob's client wants tunes; only node 2 learns what his capabilities mean.
    common::announce_caps(&mut bob, &["urn:x:tune+notify"]).await;
    alice.drain().await;
    let publish = |node: &str, v: &str| {
        Element::parse(&format!(
            "<iq xmlns='jabber:client' type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'><item id='current'><x xmlns='{node}'>{v}</x></item></publish></pubsub></iq>"
        ))
        .unwrap()
    };
    // A node Bob did not ask for reaches nobody; the tune does.
    alice.iq(publish("urn:x:mood", "happy")).await;
    alice.iq(publish("urn:x:tune", "la")).await;
    let m = bob
        .recv_until(|e| {
            e.name() == "message" && e.has_child("event", "http://jabber.org/protocol/pubsub#event")
        })
        .await;
    assert!(m.to_xml().contains("urn:x:tune"), "{m}");
    assert_eq!(m.attr("from"), Some("alice@localhost"));
    let rest = bob.drain().await;
    assert!(
        !rest.iter().any(|e| e.to_xml().contains("urn:x:mood")),
        "{rest:?}"
    );
}

/// HTTP upload (XEP-0363) across nodes: a slot granted by one node is uploaded to through
/// another and the file is served by a third, as behind a load balancer; the slot is used once
/// across all of them.
#[tokio::test]
async fn an_upload_slot_from_one_node_works_on_every_node() {
    use common::http::https;
    let Some(nodes) = cluster(3).await else {
        return;
    };
    let mut alice = nodes[0].login("alice", "pw123456").await;
    let body: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
    let r = alice
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='slot' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='cat.jpg' size='{}' content-type='image/jpeg'/></iq>",
            body.len()
        ))
        .unwrap())
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    let slot = r.get_child("slot", "urn:xmpp:http:upload:0").unwrap();
    let url = slot
        .get_child("put", "urn:xmpp:http:upload:0")
        .and_then(|p| p.attr("url"))
        .unwrap()
        .to_string();
    let auth = slot
        .get_child("put", "urn:xmpp:http:upload:0")
        .and_then(|p| p.get_child("header", "urn:xmpp:http:upload:0"))
        .unwrap()
        .text();
    let path = format!("/upload/{}", url.split_once("/upload/").unwrap().1);
    let len = body.len().to_string();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "image/jpeg"),
        ("Content-Length", len.as_str()),
    ];
    let put = https(nodes[1].https, "PUT", &path, &headers, &body).await;
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    for (i, node) in nodes.iter().enumerate() {
        let got = https(node.https, "GET", &path, &[], b"").await;
        assert_eq!(got.status, 200, "GET on node {}", i + 1);
        assert!(got.body == body, "the same bytes from node {}", i + 1);
        assert_eq!(got.header("content-type"), Some("image/jpeg"));
    }
    let part = https(
        nodes[2].https,
        "GET",
        &path,
        &[("Range", "bytes=262140-262150")],
        b"",
    )
    .await;
    assert_eq!(part.status, 206);
    assert!(part.body == body[262_140..=262_150]);
    // The slot was used on node 2: node 3 knows.
    let again = https(nodes[2].https, "PUT", &path, &headers, &body).await;
    assert_eq!(again.status, 409);
}

/// The MUC service's room list (XEP-0045 §6.3) names the persistent public rooms of every
/// node, whichever node answers it.
#[tokio::test]
async fn the_room_list_names_rooms_homed_on_every_node() {
    let Some(nodes) = cluster(2).await else {
        return;
    };
    let cluster = nodes[0].server.cluster.as_ref().unwrap();
    // One room homed on each node.
    let mut rooms: Vec<String> = Vec::new();
    for i in 0.. {
        let room = format!("room{i}@conference.localhost");
        if !rooms.iter().any(|r| cluster.home(r) == cluster.home(&room)) {
            rooms.push(room);
        }
        if rooms.len() == 2 {
            break;
        }
    }
    let mut alice = nodes[0].login("alice", "pw123456").await;
    for (i, room) in rooms.iter().enumerate() {
        alice
            .send(&format!(
                "<presence to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ))
            .await;
        alice
            .recv_until(|e| {
                e.name() == "presence" && e.attr("from") == Some(format!("{room}/al").as_str())
            })
            .await;
        let r = alice
            .iq(Element::parse(&format!(
                "<iq xmlns='jabber:client' type='set' id='cfg{i}' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                 <field var='muc#roomconfig_roomname'><value>Room {i}</value></field>\
                 <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
                 <field var='muc#roomconfig_publicroom'><value>1</value></field></x></query></iq>"
            ))
            .unwrap())
            .await;
        assert_eq!(r.attr("type"), Some("result"), "{r}");
    }
    let mut bob = nodes[1].login("bob", "pw123456").await;
    let items = bob
        .iq(Element::parse(
            "<iq xmlns='jabber:client' type='get' id='list' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
        )
        .unwrap())
        .await;
    let listed: Vec<(String, String)> = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .map(|i| {
            (
                i.attr("jid").unwrap().to_string(),
                i.attr("name").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (rooms[0].clone(), "Room 0".to_string()),
            (rooms[1].clone(), "Room 1".to_string())
        ],
        "{items}"
    );
}

/// A node joining the cluster wins some rooms by hashing: their occupants are told the room
/// shut down here (XEP-0045 status 332), and rejoining brings them to the new home, which has
/// the room's saved state.
#[tokio::test]
async fn a_joining_node_takes_rooms_and_their_occupants_follow() {
    use rookery_server::cluster::home_among;
    let Some(nodes) = cluster(2).await else {
        return;
    };
    let room = (0..)
        .map(|i| format!("moving{i}@conference.localhost"))
        .find(|r| home_among(&["n1", "n2", "n3"], r) == Some(&"n3"))
        .unwrap();
    let mut alice = nodes[0].login("alice", "pw123456").await;
    let join_room =
        format!("<presence to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    let joined = |e: &Element| {
        e.name() == "presence"
            && e.attr("type").is_none()
            && e.attr("from") == Some(format!("{room}/al").as_str())
    };
    alice.send(&join_room).await;
    alice.recv_until(joined).await;
    let r = alice
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field var='muc#roomconfig_roomname'><value>Moving</value></field>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"
        ))
        .unwrap())
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");

    let n3 = join(&nodes, "n3").await;
    let out = alice
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("unavailable"))
        .await;
    let xml = out.to_xml();
    assert!(
        xml.contains("code='332'") && xml.contains("code='110'"),
        "{xml}"
    );
    // Rejoining reaches the room on its new home, configured as it was.
    alice.send(&join_room).await;
    alice.recv_until(joined).await;
    let info = alice
        .iq(Element::parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='info' to='{room}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .unwrap())
        .await;
    assert!(info.to_xml().contains("name='Moving'"), "{info}");
    assert_eq!(&*n3.server.cluster.as_ref().unwrap().home(&room), "n3");
    alice
        .send(&format!(
            "<message to='{room}' type='groupchat'><body>still here</body></message>"
        ))
        .await;
    alice
        .recv_until(|e| {
            e.name() == "message"
                && e.attr("type") == Some("groupchat")
                && e.child_text("body", ns::CLIENT).as_deref() == Some("still here")
        })
        .await;
}
