//! `rookery backup`: a consistent copy of the SQLite database that opens with everything in it.

mod common;

use common::{rookery, text};
use rookery_core::storage::{AccountStore, OfflineStore};
use rookery_core::BareJid;

#[tokio::test]
async fn a_backup_holds_the_accounts_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for user in ["alice@localhost", "bob@localhost"] {
        let o = rookery(&data, None, &["user", "add", user, "pw123456"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let out = dir.path().join("copy.sqlite");
    let o = rookery(&data, None, &["backup", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    let again = rookery(&data, None, &["backup", "--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("exists"), "{}", text(&again));

    let copy = rookery_server::storage::SqliteStorage::open(out.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        copy.list_accounts("localhost").await.unwrap(),
        vec!["alice@localhost", "bob@localhost"]
    );
    let bob = BareJid::new("bob@localhost").unwrap();
    assert_eq!(copy.count_offline(&bob).await.unwrap(), 0);
}

#[tokio::test]
async fn a_backup_taken_while_writes_go_on_is_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sqlite");
    let live = std::sync::Arc::new(
        rookery_server::storage::SqliteStorage::open(path.to_str().unwrap())
            .await
            .unwrap(),
    );
    let bob = BareJid::new("bob@localhost").unwrap();
    // A writer queues numbered messages while the backup runs.
    let writer = {
        let live = live.clone();
        let bob = bob.clone();
        tokio::spawn(async move {
            for i in 0..2000 {
                live.push_offline(&bob, &format!("<message id='{i}'/>"), usize::MAX)
                    .await
                    .unwrap();
            }
        })
    };
    while live.count_offline(&bob).await.unwrap() < 200 {
        tokio::task::yield_now().await;
    }
    let out = dir.path().join("snap.sqlite");
    use rookery_core::storage::ExportStore;
    assert!(live.backup(&out).await.unwrap());
    writer.await.unwrap();
    let copy = rookery_server::storage::SqliteStorage::open(out.to_str().unwrap())
        .await
        .unwrap();
    let queued = copy.peek_offline(&bob).await.unwrap();
    // A prefix of what was written, in order, with nothing torn.
    assert!(
        queued.len() >= 200 && queued.len() <= 2000,
        "{}",
        queued.len()
    );
    for (i, m) in queued.iter().enumerate() {
        assert_eq!(m, &format!("<message id='{i}'/>"));
    }
}
