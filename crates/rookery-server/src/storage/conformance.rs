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
    assert_eq!(s.take_offline(&bob).await.unwrap(), vec!["1", "2"]);
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

    // Deleting an account removes its data
    s.kv_set(&bob, "private", "a:b", Some("x")).await.unwrap();
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
}
