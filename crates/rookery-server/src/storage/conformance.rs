//! One behavioural suite every storage backend must pass.

use rookery_core::storage::*;
use rookery_core::BareJid;

pub async fn run(s: &dyn Storage) {
    let alice = BareJid::new("alice@example.test").unwrap();
    let bob = BareJid::new("bob@example.test").unwrap();
    let creds = crate::scram::derive_with_salt("pw", vec![1; 16], 64);

    // Accounts
    assert!(s.create_account(&alice, &creds).await.unwrap());
    assert!(!s.create_account(&alice, &creds).await.unwrap());
    assert_eq!(s.credentials(&alice).await.unwrap(), Some(creds.clone()));
    assert_eq!(s.credentials(&bob).await.unwrap(), None);
    let other = crate::scram::derive_with_salt("pw2", vec![2; 16], 64);
    assert!(s.set_credentials(&alice, &other).await.unwrap());
    assert!(!s.set_credentials(&bob, &other).await.unwrap());
    assert_eq!(s.credentials(&alice).await.unwrap(), Some(other));
    assert!(s.create_account(&bob, &creds).await.unwrap());
    assert_eq!(
        s.list_accounts("example.test").await.unwrap(),
        vec!["alice@example.test", "bob@example.test"]
    );
    assert!(s.list_accounts("elsewhere").await.unwrap().is_empty());

    // Roster, with a version that grows on every change
    let (v0, items) = s.roster(&alice).await.unwrap();
    assert!(items.is_empty());
    let item = RosterItem {
        jid: "bob@example.test".into(),
        name: Some("Bob".into()),
        subscription: Subscription::To,
        ask: false,
        approved: false,
        groups: vec!["Friends".into(), "Work".into()],
    };
    let v1 = s.put_roster_item(&alice, &item).await.unwrap();
    assert!(v1 > v0);
    assert_eq!(
        s.roster_item(&alice, "bob@example.test").await.unwrap(),
        Some(item.clone())
    );
    let (v, items) = s.roster(&alice).await.unwrap();
    assert_eq!((v, items), (v1, vec![item]));
    assert_eq!(
        s.remove_roster_item(&alice, "nobody@x").await.unwrap(),
        None
    );
    let v2 = s
        .remove_roster_item(&alice, "bob@example.test")
        .await
        .unwrap()
        .unwrap();
    assert!(v2 > v1);
    assert!(s.roster(&alice).await.unwrap().1.is_empty());

    // Pending inbound subscription requests
    s.put_pending_in(&alice, "carol@x", "<presence type='subscribe'/>")
        .await
        .unwrap();
    s.put_pending_in(
        &alice,
        "carol@x",
        "<presence type='subscribe'><status>hi</status></presence>",
    )
    .await
    .unwrap();
    assert_eq!(
        s.pending_in(&alice).await.unwrap(),
        vec![(
            "carol@x".to_string(),
            "<presence type='subscribe'><status>hi</status></presence>".to_string()
        )]
    );
    assert!(s.remove_pending_in(&alice, "carol@x").await.unwrap());
    assert!(!s.remove_pending_in(&alice, "carol@x").await.unwrap());

    // Offline queue: ordered, capped, emptied when taken
    assert!(s.push_offline(&bob, "1", 2).await.unwrap());
    assert!(s.push_offline(&bob, "2", 2).await.unwrap());
    assert!(!s.push_offline(&bob, "3", 2).await.unwrap());
    assert_eq!(s.count_offline(&bob).await.unwrap(), 2);
    assert_eq!(s.peek_offline(&bob).await.unwrap(), vec!["1", "2"]);
    assert_eq!(s.offline_owners().await.unwrap(), vec!["bob@example.test"]);
    assert!(s.push_offline(&alice, "x", usize::MAX).await.unwrap());
    assert_eq!(s.take_offline(&alice).await.unwrap(), vec!["x"]);
    assert_eq!(s.take_offline(&bob).await.unwrap(), vec!["1", "2"]);
    assert!(s.offline_owners().await.unwrap().is_empty());
    assert!(s.take_offline(&bob).await.unwrap().is_empty());

    // Key-value
    assert_eq!(s.kv_get(&alice, "vcard", "").await.unwrap(), None);
    s.kv_set(&alice, "vcard", "", Some("<vCard/>"))
        .await
        .unwrap();
    s.kv_set(&alice, "vcard", "", Some("<vCard><FN/></vCard>"))
        .await
        .unwrap();
    assert_eq!(
        s.kv_get(&alice, "vcard", "").await.unwrap().as_deref(),
        Some("<vCard><FN/></vCard>")
    );
    assert_eq!(s.kv_get(&bob, "vcard", "").await.unwrap(), None);
    s.kv_set(&bob, "vcard", "x", Some("b")).await.unwrap();
    assert_eq!(
        s.kv_all("vcard").await.unwrap(),
        vec![
            (
                "alice@example.test".to_string(),
                String::new(),
                "<vCard><FN/></vCard>".to_string()
            ),
            (
                "bob@example.test".to_string(),
                "x".to_string(),
                "b".to_string()
            ),
        ]
    );
    s.kv_set(&bob, "vcard", "x", None).await.unwrap();
    s.kv_set(&alice, "vcard", "", None).await.unwrap();
    assert_eq!(s.kv_get(&alice, "vcard", "").await.unwrap(), None);

    // Archive: paging both ways, filters, expiry
    let msg = |i: i64, with: &str| Archived {
        id: format!("id{i}"),
        timestamp: 1_000_000 * i,
        with: with.to_string(),
        stanza: format!("<message><body>{i}</body></message>"),
    };
    let batch: Vec<(String, Archived)> = (1..=10)
        .map(|i| {
            (
                "alice@example.test".to_string(),
                msg(i, if i % 2 == 0 { "even@x" } else { "odd@x" }),
            )
        })
        .collect();
    s.archive_append(&batch).await.unwrap();
    s.archive_append(&batch[..1]).await.unwrap(); // idempotent by id
    let ids = |p: &ArchivePage| p.items.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    let q = ArchiveQuery {
        max: 3,
        ..Default::default()
    };
    let p = s.archive_query("alice@example.test", &q).await.unwrap();
    assert_eq!(
        (ids(&p), p.complete, p.count),
        (vec!["id1".into(), "id2".into(), "id3".into()], false, 10)
    );
    let q = ArchiveQuery {
        max: 3,
        after: Some("id9".into()),
        ..Default::default()
    };
    let p = s.archive_query("alice@example.test", &q).await.unwrap();
    assert_eq!((ids(&p), p.complete), (vec!["id10".to_string()], true));
    let q = ArchiveQuery {
        max: 3,
        from_end: true,
        ..Default::default()
    };
    let p = s.archive_query("alice@example.test", &q).await.unwrap();
    assert_eq!(
        (ids(&p), p.complete),
        (vec!["id8".into(), "id9".into(), "id10".into()], false)
    );
    let q = ArchiveQuery {
        max: 3,
        before: Some("id3".into()),
        ..Default::default()
    };
    let p = s.archive_query("alice@example.test", &q).await.unwrap();
    assert_eq!(
        (ids(&p), p.complete),
        (vec!["id1".into(), "id2".into()], true)
    );
    let q = ArchiveQuery {
        max: 10,
        with: Some("even@x".into()),
        start: Some(4_000_000),
        end: Some(8_000_000),
        ..Default::default()
    };
    let p = s.archive_query("alice@example.test", &q).await.unwrap();
    assert_eq!(ids(&p), vec!["id4".to_string(), "id6".into(), "id8".into()]);
    let q = ArchiveQuery {
        max: 10,
        ids: vec!["id2".into(), "id7".into()],
        ..Default::default()
    };
    assert_eq!(
        ids(&s.archive_query("alice@example.test", &q).await.unwrap()),
        vec!["id2".to_string(), "id7".into()]
    );
    let q = ArchiveQuery {
        max: 3,
        after: Some("nope".into()),
        ..Default::default()
    };
    assert!(s.archive_query("alice@example.test", &q).await.is_err());
    archive_paging(s).await;
    assert_eq!(s.archive_expire(3_000_000).await.unwrap(), 2);
    let q = ArchiveQuery {
        max: 100,
        ..Default::default()
    };
    assert_eq!(
        s.archive_query("alice@example.test", &q)
            .await
            .unwrap()
            .count,
        8
    );
    s.archive_clear("alice@example.test").await.unwrap();
    assert_eq!(
        s.archive_query("alice@example.test", &q)
            .await
            .unwrap()
            .count,
        0
    );

    pubsub(s).await;
    export(s).await;
    uploads(s).await;

    // Deleting an account removes its data
    s.kv_set(&bob, "private", "a:b", Some("x")).await.unwrap();
    s.pubsub_put_node("bob@example.test", "n", "{}")
        .await
        .unwrap();
    s.put_roster_item(
        &bob,
        &RosterItem {
            jid: "alice@example.test".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.push_offline(&bob, "m", 10).await.unwrap();
    assert!(s.delete_account(&bob).await.unwrap());
    assert!(!s.delete_account(&bob).await.unwrap());
    assert_eq!(s.credentials(&bob).await.unwrap(), None);
    assert_eq!(s.kv_get(&bob, "private", "a:b").await.unwrap(), None);
    assert!(s.roster(&bob).await.unwrap().1.is_empty());
    assert_eq!(s.count_offline(&bob).await.unwrap(), 0);
    assert!(s.pubsub_load("bob@example.test").await.unwrap().is_empty());
}

/// PubSub nodes: configuration, affiliations, subscriptions, ordered and capped items.
async fn pubsub(s: &dyn Storage) {
    let svc = "pubsub.example.test";
    assert!(s.pubsub_load(svc).await.unwrap().is_empty());
    s.pubsub_put_node(svc, "b", "{\"v\":1}").await.unwrap();
    s.pubsub_put_node(svc, "a", "{}").await.unwrap();
    s.pubsub_put_node(svc, "b", "{\"v\":2}").await.unwrap();
    s.pubsub_put_node("other", "a", "{}").await.unwrap();
    s.pubsub_set_affiliation(svc, "b", "owner@x", Some("owner"))
        .await
        .unwrap();
    s.pubsub_set_affiliation(svc, "b", "pub@x", Some("member"))
        .await
        .unwrap();
    s.pubsub_set_affiliation(svc, "b", "pub@x", Some("publisher"))
        .await
        .unwrap();
    s.pubsub_set_affiliation(svc, "b", "gone@x", Some("member"))
        .await
        .unwrap();
    s.pubsub_set_affiliation(svc, "b", "gone@x", None)
        .await
        .unwrap();
    let sub = |jid: &str, state: &str| StoredSubscription {
        jid: jid.to_string(),
        subid: format!("sub-{jid}"),
        state: state.to_string(),
        options: "{}".to_string(),
    };
    s.pubsub_set_subscription(svc, "b", "u@x/r", Some(&sub("u@x/r", "pending")))
        .await
        .unwrap();
    s.pubsub_set_subscription(svc, "b", "u@x/r", Some(&sub("u@x/r", "subscribed")))
        .await
        .unwrap();
    s.pubsub_set_subscription(svc, "b", "v@x", Some(&sub("v@x", "subscribed")))
        .await
        .unwrap();
    s.pubsub_set_subscription(svc, "b", "v@x", None)
        .await
        .unwrap();
    let item = |id: &str, ts: i64| StoredItem {
        id: id.to_string(),
        publisher: "pub@x".to_string(),
        timestamp: ts,
        payload: format!("<entry xmlns='urn:x'>{id}</entry>"),
    };
    for (i, id) in ["1", "2", "3"].iter().enumerate() {
        s.pubsub_put_item(svc, "b", &item(id, i as i64), 10)
            .await
            .unwrap();
    }
    // Republishing an id makes it the newest; the cap drops the oldest.
    s.pubsub_put_item(svc, "b", &item("1", 7), 10)
        .await
        .unwrap();
    s.pubsub_put_item(svc, "b", &item("4", 8), 3).await.unwrap();
    let nodes = s.pubsub_load(svc).await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    let b = &nodes[1];
    assert_eq!(b.config, "{\"v\":2}");
    assert_eq!(
        b.affiliations,
        vec![
            ("owner@x".to_string(), "owner".to_string()),
            ("pub@x".to_string(), "publisher".to_string())
        ]
    );
    assert_eq!(b.subscriptions, vec![sub("u@x/r", "subscribed")]);
    assert_eq!(b.items, vec![item("3", 2), item("1", 7), item("4", 8)]);
    s.pubsub_delete_items(svc, "b", &["1".to_string(), "nope".to_string()])
        .await
        .unwrap();
    let ids = |nodes: Vec<StoredNode>| -> Vec<String> {
        nodes[1].items.iter().map(|i| i.id.clone()).collect()
    };
    assert_eq!(ids(s.pubsub_load(svc).await.unwrap()), vec!["3", "4"]);
    s.pubsub_purge(svc, "b").await.unwrap();
    assert!(ids(s.pubsub_load(svc).await.unwrap()).is_empty());
    s.pubsub_put_item(svc, "b", &item("5", 9), 10)
        .await
        .unwrap();
    s.pubsub_delete_node(svc, "b").await.unwrap();
    s.pubsub_put_node(svc, "b", "{}").await.unwrap();
    let nodes = s.pubsub_load(svc).await.unwrap();
    assert!(nodes[1].items.is_empty() && nodes[1].affiliations.is_empty());
    assert!(nodes[1].subscriptions.is_empty());
    for id in ["6", "7", "8"] {
        s.pubsub_put_item(svc, "b", &item(id, 10), usize::MAX)
            .await
            .unwrap();
    }
    assert_eq!(ids(s.pubsub_load(svc).await.unwrap()), vec!["6", "7", "8"]);
    s.pubsub_put_item(svc, "b", &item("9", 11), 1)
        .await
        .unwrap();
    assert_eq!(ids(s.pubsub_load(svc).await.unwrap()), vec!["9"]);
    s.pubsub_delete_service(svc).await.unwrap();
    assert!(s.pubsub_load(svc).await.unwrap().is_empty());
    assert_eq!(s.pubsub_load("other").await.unwrap().len(), 1);
}

/// RSM edges: pages backwards from an id, both bounds at once, an empty page that only counts,
/// filters with paging (the count ignores the window), unknown `before` ids.
async fn archive_paging(s: &dyn Storage) {
    let owner = "alice@example.test";
    let page = |q: ArchiveQuery| async move {
        let p = s.archive_query(owner, &q).await.unwrap();
        let ids: Vec<String> = p.items.iter().map(|m| m.id.clone()).collect();
        (ids, p.complete, p.count)
    };
    let v = |ids: &[&str]| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    let q = ArchiveQuery {
        max: 3,
        before: Some("id8".into()),
        ..Default::default()
    };
    assert_eq!(page(q).await, (v(&["id5", "id6", "id7"]), false, 10));
    let q = ArchiveQuery {
        max: 10,
        after: Some("id3".into()),
        before: Some("id7".into()),
        ..Default::default()
    };
    assert_eq!(page(q).await, (v(&["id4", "id5", "id6"]), true, 10));
    let q = ArchiveQuery {
        max: 2,
        after: Some("id3".into()),
        before: Some("id7".into()),
        ..Default::default()
    };
    assert_eq!(page(q).await, (v(&["id5", "id6"]), false, 10));
    let q = ArchiveQuery {
        max: 0,
        ..Default::default()
    };
    assert_eq!(page(q).await, (vec![], false, 10));
    let q = ArchiveQuery {
        max: 2,
        with: Some("odd@x".into()),
        after: Some("id3".into()),
        ..Default::default()
    };
    assert_eq!(page(q).await, (v(&["id5", "id7"]), false, 5));
    let q = ArchiveQuery {
        max: 2,
        with: Some("odd@x".into()),
        from_end: true,
        ..Default::default()
    };
    assert_eq!(page(q).await, (v(&["id7", "id9"]), false, 5));
    let q = ArchiveQuery {
        max: 10,
        ids: vec!["id2".into(), "id7".into(), "id9".into()],
        after: Some("id2".into()),
        ..Default::default()
    };
    assert_eq!(page(q).await, (v(&["id7", "id9"]), true, 3));
    let q = ArchiveQuery {
        max: 10,
        start: Some(9_000_000),
        ..Default::default()
    };
    assert_eq!(page(q).await, (v(&["id9", "id10"]), true, 2));
    let q = ArchiveQuery {
        max: 3,
        before: Some("nope".into()),
        ..Default::default()
    };
    assert!(s.archive_query(owner, &q).await.is_err());
    let empty = s
        .archive_query("nobody@example.test", &ArchiveQuery::default())
        .await
        .unwrap();
    assert!(empty.items.is_empty() && empty.complete && empty.count == 0);
}

/// The export surface `rookery migrate` reads and writes through.
async fn export(s: &dyn Storage) {
    let carol = BareJid::new("carol@other.test").unwrap();
    let alice = BareJid::new("alice@example.test").unwrap();
    let creds = crate::scram::derive_with_salt("pw", vec![3; 16], 64);
    assert!(s.create_account(&carol, &creds).await.unwrap());
    assert_eq!(
        s.all_accounts().await.unwrap(),
        vec!["alice@example.test", "bob@example.test", "carol@other.test"]
    );
    // alice's roster is empty but has a version; carol only has a pending request.
    s.put_pending_in(&carol, "dan@x", "<presence type='subscribe'/>")
        .await
        .unwrap();
    assert_eq!(
        s.roster_owners().await.unwrap(),
        vec!["alice@example.test", "carol@other.test"]
    );
    let items = vec![
        RosterItem {
            jid: "a@x".into(),
            subscription: Subscription::Both,
            groups: vec!["G".into()],
            ..Default::default()
        },
        RosterItem {
            jid: "b@x".into(),
            name: Some("B".into()),
            ask: true,
            ..Default::default()
        },
    ];
    s.restore_roster(&carol, 41, &items).await.unwrap();
    assert_eq!(s.roster(&carol).await.unwrap(), (41, items.clone()));
    assert_eq!(s.pending_in(&carol).await.unwrap().len(), 1);
    s.restore_roster(&carol, 7, &items[1..]).await.unwrap();
    assert_eq!(s.roster(&carol).await.unwrap(), (7, items[1..].to_vec()));
    assert_eq!(s.put_roster_item(&carol, &items[0]).await.unwrap(), 8);

    s.kv_set(&carol, "zeta", "k", Some("v")).await.unwrap();
    s.kv_set(&alice, "alpha", "k", Some("v")).await.unwrap();
    assert_eq!(s.kv_stores().await.unwrap(), vec!["alpha", "zeta"]);
    s.kv_set(&alice, "alpha", "k", None).await.unwrap();
    assert_eq!(s.kv_stores().await.unwrap(), vec!["zeta"]);

    assert!(s.archive_owners().await.unwrap().is_empty());
    let m = |id: &str| Archived {
        id: id.to_string(),
        timestamp: 5,
        with: "w@x".into(),
        stanza: "<message/>".into(),
    };
    s.archive_append(&[
        ("room@conference.x".to_string(), m("r1")),
        ("carol@other.test".to_string(), m("c1")),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.archive_owners().await.unwrap(),
        vec!["carol@other.test", "room@conference.x"]
    );
    s.archive_clear("room@conference.x").await.unwrap();
    assert_eq!(s.archive_owners().await.unwrap(), vec!["carol@other.test"]);

    assert_eq!(s.pubsub_services().await.unwrap(), vec!["other"]);
    s.pubsub_put_node("carol@other.test", "n", "{}")
        .await
        .unwrap();
    assert_eq!(
        s.pubsub_services().await.unwrap(),
        vec!["carol@other.test", "other"]
    );

    assert!(s.delete_account(&carol).await.unwrap());
    assert!(s.archive_owners().await.unwrap().is_empty());
    assert_eq!(s.pubsub_services().await.unwrap(), vec!["other"]);
    assert!(s.kv_stores().await.unwrap().is_empty());
    assert_eq!(s.roster_owners().await.unwrap(), vec!["alice@example.test"]);
}

/// Upload slots and files (XEP-0363): reservations judged by what the owner holds, one use
/// per slot, expiry, contents in pieces.
async fn uploads(s: &dyn Storage) {
    let slot = |id: &str, owner: &str, size: u64, expires: u64| Upload {
        id: id.to_string(),
        owner: owner.to_string(),
        filename: "a b.txt".into(),
        content_type: "text/plain".into(),
        size,
        created: 100,
        expires: Some(expires),
        stored: false,
        token_hash: vec![7; 32],
    };
    let under =
        |limit: u64| move |held: &[Upload]| held.iter().map(|u| u.size).sum::<u64>() <= limit;
    assert_eq!(s.upload_get("a1").await.unwrap(), None);
    assert!(s
        .upload_reserve(&slot("a1", "u@x", 10, 400), &under(100))
        .await
        .unwrap());
    assert_eq!(
        s.upload_get("a1").await.unwrap(),
        Some(slot("a1", "u@x", 10, 400))
    );
    // The judge sees what the owner holds, and only that.
    assert!(s
        .upload_reserve(&slot("b2", "v@x", 95, 400), &under(95))
        .await
        .unwrap());
    let seen = std::sync::Mutex::new(Vec::new());
    let judge = |held: &[Upload]| {
        seen.lock()
            .unwrap()
            .extend(held.iter().map(|u| u.id.clone()));
        false
    };
    assert!(!s
        .upload_reserve(&slot("a3", "u@x", 1, 400), &judge)
        .await
        .unwrap());
    assert_eq!(*seen.lock().unwrap(), vec!["a1"]);
    assert_eq!(s.upload_get("a3").await.unwrap(), None);
    assert!(s
        .upload_reserve(&slot("a1", "u@x", 1, 400), &under(100))
        .await
        .is_err());

    // A slot is used once: of two uploads staged for it, the first to finish wins.
    s.upload_put_chunk("a1~one", 0, b"first").await.unwrap();
    s.upload_put_chunk("a1~two", 0, b"second").await.unwrap();
    assert!(!s.upload_finish("zz", 200, None, None).await.unwrap());
    assert!(s
        .upload_finish("a1", 200, Some(9000), Some("a1~one"))
        .await
        .unwrap());
    assert!(!s
        .upload_finish("a1", 300, None, Some("a1~two"))
        .await
        .unwrap());
    assert_eq!(
        s.upload_chunk("a1", 0).await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(s.upload_chunk("a1~one", 0).await.unwrap(), None);
    assert_eq!(s.upload_chunk("a1~two", 0).await.unwrap(), None);
    let stored = s.upload_get("a1").await.unwrap().unwrap();
    assert!(stored.stored && stored.token_hash.is_empty());
    assert_eq!((stored.created, stored.expires), (200, Some(9000)));
    assert!(s
        .upload_reserve(&slot("a4", "u@x", 30, 500), &under(40))
        .await
        .unwrap());
    assert_eq!(
        s.upload_by_owner("u@x")
            .await
            .unwrap()
            .iter()
            .map(|u| u.id.as_str())
            .collect::<Vec<_>>(),
        vec!["a1", "a4"]
    );

    // Contents, piece by piece.
    let big = vec![0xAB; UPLOAD_CHUNK];
    s.upload_put_chunk("a1", 0, &big).await.unwrap();
    s.upload_put_chunk("a1", 1, b"tail").await.unwrap();
    assert_eq!(s.upload_chunk("a1", 0).await.unwrap(), Some(big));
    assert_eq!(
        s.upload_chunk("a1", 1).await.unwrap().as_deref(),
        Some(&b"tail"[..])
    );
    assert_eq!(s.upload_chunk("a1", 2).await.unwrap(), None);
    s.upload_put_chunk("a4~x", 0, b"x").await.unwrap();
    s.upload_delete_chunks("a4~x").await.unwrap();
    assert_eq!(s.upload_chunk("a4~x", 0).await.unwrap(), None);
    assert!(s.upload_get("a4").await.unwrap().is_some());
    // Deleting a slot drops what was staged for it.
    s.upload_put_chunk("a4~y", 0, b"y").await.unwrap();

    // Lapsed slots and expired files; only stored files are exported.
    let ids = |v: Vec<Upload>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert!(s.upload_expired(399).await.unwrap().is_empty());
    assert_eq!(
        s.upload_expired(400).await.unwrap(),
        vec![slot("b2", "v@x", 95, 400)]
    );
    assert_eq!(
        ids(s.upload_expired(9000).await.unwrap()),
        vec!["a1", "a4", "b2"]
    );
    assert_eq!(s.all_uploads().await.unwrap(), vec![stored.clone()]);
    s.upload_delete(&["a1".to_string(), "b2".to_string()])
        .await
        .unwrap();
    assert_eq!(s.upload_get("a1").await.unwrap(), None);
    assert_eq!(s.upload_chunk("a1", 0).await.unwrap(), None);
    assert!(s.all_uploads().await.unwrap().is_empty());
    let mut kept = stored;
    kept.expires = None;
    s.upload_restore(&kept).await.unwrap();
    assert_eq!(s.all_uploads().await.unwrap(), vec![kept]);
    assert_eq!(
        ids(s.upload_expired(u64::MAX >> 2).await.unwrap()),
        vec!["a4"]
    );
    s.upload_delete(&["a1".to_string(), "a4".to_string()])
        .await
        .unwrap();
    assert_eq!(s.upload_chunk("a4~y", 0).await.unwrap(), None);
}
