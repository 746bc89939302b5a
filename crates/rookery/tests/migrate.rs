//! `rookery migrate` as a user runs it: accounts made with the CLI reach a new SQLite database,
//! and a second run into the filled target is refused.

mod common;

use common::text;

fn rookery(dir: &std::path::Path, storage: &str, args: &[&str]) -> std::process::Output {
    common::rookery(dir, Some(storage), args)
}

#[test]
fn migrate_copies_into_an_empty_database_only() {
    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("from.sqlite").display());
    let to = format!("sqlite://{}", dir.path().join("to.sqlite").display());
    for user in ["alice@localhost", "bob@localhost"] {
        let o = rookery(dir.path(), &from, &["user", "add", user, "secret"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = rookery(
        dir.path(),
        &from,
        &["migrate", "--from", &from, "--to", &to],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("copied 2 accounts"), "{}", text(&o));
    let o = rookery(dir.path(), &to, &["user", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "alice@localhost\nbob@localhost\n"
    );
    let o = rookery(
        dir.path(),
        &from,
        &["migrate", "--from", &from, "--to", &to],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("not empty"), "{}", text(&o));
    let missing = format!("sqlite://{}", dir.path().join("nope.sqlite").display());
    let o = rookery(
        dir.path(),
        &from,
        &["migrate", "--from", &missing, "--to", &to],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
}
