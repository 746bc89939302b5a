//! Tests of `storage::copy`: data of every kind survives SQLite → PostgreSQL and SQLite → SQLite.

use super::{copy, is_empty};
use crate::storage::{postgres::testdb::TestDb, MemoryStorage, SqliteStorage};
use rookery_core::storage::*;
use rookery_core::BareJid;

/// A user's roster as read back: (user, version, items, pending inbound requests).
type Roster = (String, u64, Vec<RosterItem>, Vec<(String, String)>);
/// One key-value store as read back: (store, [(owner, key, value)]).
type KvStore = (String, Vec<(String, String, String)>);

/// Everything a backend holds, read through the contracts.
#[derive(Debug)]
struct Snapshot {
    accounts: Vec<(String, Option<Credentials>)>,
    rosters: Vec<Roster>,
    offline: Vec<(String, Vec<String>)>,
    kv: Vec<KvStore>,
    archives: Vec<(String, Vec<Archived>)>,
    pubsub: Vec<(String, Vec<StoredNode>)>,
    /// Stored uploads with their contents kept in the database.
    uploads: Vec<(Upload, Vec<Vec<u8>>)>,
}

fn jid(s: &str) -> BareJid {
    BareJid::new(s).unwrap()
}

async fn snapshot(s: &dyn Storage) -> Snapshot {
    let mut snap = Snapshot {
        accounts: vec![],
        rosters: vec![],
        offline: vec![],
        kv: vec![],
        archives: vec![],
        pubsub: vec![],
        uploads: vec![],
    };
    for f in s.all_uploads().await.unwrap() {
        let mut pieces = Vec::new();
        while let Some(p) = s.upload_chunk(&f.id, pieces.len() as u32).await.unwrap() {
            pieces.push(p);
        }
        snap.uploads.push((f, pieces));
    }
    for u in s.all_accounts().await.unwrap() {
        let c = s.credentials(&jid(&u)).await.unwrap();
        snap.accounts.push((u, c));
    }
    for u in s.roster_owners().await.unwrap() {
        let (v, items) = s.roster(&jid(&u)).await.unwrap();
        let pending = s.pending_in(&jid(&u)).await.unwrap();
        snap.rosters.push((u, v, items, pending));
    }
    for u in s.offline_owners().await.unwrap() {
        let q = s.peek_offline(&jid(&u)).await.unwrap();
        snap.offline.push((u, q));
    }
    for store in s.kv_stores().await.unwrap() {
        let all = s.kv_all(&store).await.unwrap();
        snap.kv.push((store, all));
    }
    for owner in s.archive_owners().await.unwrap() {
        let q = ArchiveQuery {
            max: 100_000,
            ..Default::default()
        };
        let page = s.archive_query(&owner, &q).await.unwrap();
        assert!(page.complete);
        snap.archives.push((owner, page.items));
    }
    for service in s.pubsub_services().await.unwrap() {
        let nodes = s.pubsub_load(&service).await.unwrap();
        snap.pubsub.push((service, nodes));
    }
    snap
}

/// Data of every kind, shaped so that a naive copy would differ: roster versions ahead of
/// the item count, archive and pubsub orders unlike id or timestamp order, more archive entries
/// than one copy page.
async fn fill(s: &dyn Storage) {
    let alice = jid("alice@a.test");
    let bob = jid("bob@b.test");
    let room = "room@conference.a.test";
    let c1 = crate::scram::derive_with_salt("one", vec![1; 16], 64);
    let c2 = crate::scram::derive_with_salt("two", vec![2; 12], 96);
    assert!(s.create_account(&alice, &c1).await.unwrap());
    assert!(s.create_account(&bob, &c2).await.unwrap());
    for (i, contact) in ["zed@x", "amy@y", "gone@z"].iter().enumerate() {
        let item = RosterItem {
            jid: contact.to_string(),
            name: (i != 1).then(|| format!("Name {i} ü")),
            subscription: [Subscription::Both, Subscription::From, Subscription::To][i],
            ask: i == 1,
            approved: i == 0,
            groups: vec![format!("g{i}"), "Shared".into()],
        };
        s.put_roster_item(&alice, &item).await.unwrap();
    }
    s.remove_roster_item(&alice, "gone@z").await.unwrap();
    s.put_pending_in(&alice, "eve@x", "<presence type='subscribe'/>")
        .await
        .unwrap();
    s.put_pending_in(
        &bob,
        "carol@x",
        "<presence type='subscribe' from='carol@x'/>",
    )
    .await
    .unwrap();
    for m in ["third", "first", "second"] {
        s.push_offline(&bob, m, 100).await.unwrap();
    }
    s.kv_set(&alice, "vcard", "", Some("<vCard xmlns='vcard-temp'/>"))
        .await
        .unwrap();
    s.kv_set(&bob, "private", "a:b", Some("<b xmlns='a'/>"))
        .await
        .unwrap();
    s.kv_set(&jid(room), "muc_rooms", "", Some("{\"persistent\":true}"))
        .await
        .unwrap();
    let batch: Vec<(String, Archived)> = (0..2500i64)
        .map(|i| {
            let owner = if i % 5 == 0 { room } else { "alice@a.test" };
            let m = Archived {
                id: format!("{:x}", (i * 7919) % 10007),
                timestamp: 1_700_000_000_000_000 - i * 1000,
                with: format!("peer{}@x", i % 3),
                stanza: format!("<message><body>{i}</body></message>"),
            };
            (owner.to_string(), m)
        })
        .collect();
    s.archive_append(&batch).await.unwrap();
    let item = |id: &str, ts: i64| StoredItem {
        id: id.to_string(),
        publisher: "alice@a.test".into(),
        timestamp: ts,
        payload: format!("<entry xmlns='urn:x'>{id}</entry>"),
    };
    for (service, node) in [
        ("pubsub.a.test", "news"),
        ("alice@a.test", "urn:xmpp:avatar"),
    ] {
        s.pubsub_put_node(service, node, "{\"max_items\":10}")
            .await
            .unwrap();
        s.pubsub_set_affiliation(service, node, "alice@a.test", Some("owner"))
            .await
            .unwrap();
        let sub = StoredSubscription {
            jid: "bob@b.test/phone".into(),
            subid: "s1".into(),
            state: "subscribed".into(),
            options: "{}".into(),
        };
        s.pubsub_set_subscription(service, node, &sub.jid, Some(&sub))
            .await
            .unwrap();
        for (i, id) in ["c", "a", "b", "c"].iter().enumerate() {
            s.pubsub_put_item(service, node, &item(id, 10 - i as i64), 10)
                .await
                .unwrap();
        }
    }
    s.pubsub_put_node("pubsub.a.test", "empty", "{}")
        .await
        .unwrap();
    for (id, pieces) in [("0a", 2u32), ("0b", 0)] {
        let file = Upload {
            id: id.into(),
            owner: "alice@a.test".into(),
            filename: format!("{id}.bin"),
            content_type: "application/octet-stream".into(),
            size: 10,
            created: 5,
            expires: Some(99),
            stored: false,
            token_hash: vec![1; 32],
        };
        assert!(s.upload_reserve(&file, &|_| true).await.unwrap());
        assert!(s.upload_finish(id, 6, Some(100), None).await.unwrap());
        for seq in 0..pieces {
            s.upload_put_chunk(id, seq, &[seq as u8; 5]).await.unwrap();
        }
    }
    // An unused slot is not data worth moving.
    let slot = Upload {
        id: "0c".into(),
        owner: "alice@a.test".into(),
        ..Default::default()
    };
    assert!(s.upload_reserve(&slot, &|_| true).await.unwrap());
}

async fn copies_everything(from: &dyn Storage, to: &dyn Storage) {
    fill(from).await;
    let before = snapshot(from).await;
    assert_eq!(
        before.archives.iter().map(|a| a.1.len()).sum::<usize>(),
        2500
    );
    assert!(is_empty(to).await.unwrap());
    let report = copy(from, to).await.unwrap();
    assert_eq!(report.accounts, 2);
    assert_eq!(report.archived_messages, 2500);
    assert_eq!(report.pubsub_nodes, 3);
    assert_eq!(report.uploads, 2);
    assert_eq!(before.uploads[0].1.len(), 2);
    let after = snapshot(to).await;
    assert_eq!(after.accounts, before.accounts);
    assert_eq!(after.rosters, before.rosters);
    assert_eq!(after.offline, before.offline);
    assert_eq!(after.kv, before.kv);
    assert_eq!(after.archives, before.archives);
    assert_eq!(after.pubsub, before.pubsub);
    assert_eq!(after.uploads, before.uploads);
    // The copy goes on as the original would: the roster version continues from where it was.
    let alice = jid("alice@a.test");
    let item = RosterItem {
        jid: "new@x".into(),
        ..Default::default()
    };
    assert_eq!(
        to.put_roster_item(&alice, &item).await.unwrap(),
        from.put_roster_item(&alice, &item).await.unwrap()
    );
    let refused = copy(from, to).await.unwrap_err().to_string();
    assert!(refused.contains("not empty"), "{refused}");
}

#[tokio::test]
async fn sqlite_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let from = SqliteStorage::open(&path("from.sqlite")).await.unwrap();
    let to = SqliteStorage::open(&path("to.sqlite")).await.unwrap();
    copies_everything(&from, &to).await;
}

#[tokio::test]
async fn sqlite_to_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from = SqliteStorage::open(dir.path().join("from.sqlite").to_str().unwrap())
        .await
        .unwrap();
    copies_everything(&from, &db.open().await).await;
}

#[tokio::test]
async fn memory_to_memory() {
    copies_everything(&MemoryStorage::default(), &MemoryStorage::default()).await;
}
