//! `rookery export` and `rookery import` as an operator runs them: accounts made with the CLI
//! leave one server as a XEP-0227 file (owner-only, no plaintext passwords) and arrive in
//! another, where their passwords still work; a second import skips what exists.

mod common;

use common::text;

fn rookery(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    common::rookery(dir, None, args)
}

#[test]
fn export_then_import_moves_accounts_with_working_passwords() {
    let old = tempfile::tempdir().unwrap();
    let new = tempfile::tempdir().unwrap();
    for (user, pw) in [("alice@localhost", "alice-pw"), ("bob@localhost", "bob-pw")] {
        let o = rookery(old.path(), &["user", "add", user, pw]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let file = old.path().join("export.xml");
    let o = rookery(old.path(), &["export", "--out", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the export is readable by others: {mode:o}"
        );
    }
    let xml = std::fs::read_to_string(&file).unwrap();
    assert!(xml.contains("urn:xmpp:pie:0#scram"), "{xml}");
    assert!(!xml.contains("alice-pw"));

    let o = rookery(new.path(), &["import", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("imported 2 users"), "{}", text(&o));
    let o = rookery(new.path(), &["user", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "alice@localhost\nbob@localhost\n"
    );
    // The SCRAM keys came along: the old password still checks, a wrong one does not.
    let o = rookery(
        new.path(),
        &["user", "check", "alice@localhost", "alice-pw"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = rookery(new.path(), &["user", "check", "alice@localhost", "nope"]);
    assert!(!o.status.success(), "{}", text(&o));

    let o = rookery(new.path(), &["import", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("skipped alice@localhost"), "{}", text(&o));
}
