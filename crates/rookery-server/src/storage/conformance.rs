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
