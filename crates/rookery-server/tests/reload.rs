//! Configuration reload (what SIGHUP does) against the real server: admins, limits and modules'
//! options change for what comes next, a signed-in client stays, and what is fixed at start is
//! kept and named.

mod common;

use common::{error_condition, TestServer};
use rookery_xml::Element;

fn iq(xml: &str) -> Element {
    Element::parse(xml).unwrap()
}

#[tokio::test]
async fn modules_options_admins_and_limits_change_without_a_restart() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw123456").await;
    let mut alice = s.login("alice", "pw123456").await;
    let version = "<iq xmlns='jabber:client' type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>";
    let upload_info = "<iq xmlns='jabber:client' type='get' id='u' to='upload.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    let r = alice.iq(iq(version)).await;
    assert!(r.to_xml().contains("<name>Rookery</name>"), "{r}");

    let mut next = (*s.server.config).clone();
    next.modules.version.name = "Renamed".into();
    next.modules.upload.max_file_size = 1234;
    next.modules.muc.room_creation = "admins".into();
    next.modules.muc.subdomain = "rooms".into();
    next.listen.c2s = vec!["127.0.0.1:1".into()];
    next.admins = vec!["alice@localhost".into()];
    next.limits.max_stanza_bytes = 50_000;
    let restart = s.server.reload(next).await.unwrap();
    assert_eq!(restart, vec!["listen", "modules.muc.subdomain"]);

    // The session from before answers with the new options.
    let r = alice.iq(iq(version)).await;
    assert!(r.to_xml().contains("<name>Renamed</name>"), "{r}");
    let r = alice.iq(iq(upload_info)).await;
    assert!(r.to_xml().contains("<value>1234</value>"), "{r}");
    assert_eq!(s.server.config.admins, vec!["alice@localhost".to_string()]);
    assert_eq!(s.server.config.limits.max_stanza_bytes, 50_000);
    // Fixed at start: kept.
    assert_eq!(s.server.config.modules.muc.subdomain, "conference");
    assert_ne!(s.server.config.listen.c2s, vec!["127.0.0.1:1".to_string()]);

    // Only admins may create rooms now: alice is one; bob is not.
    s.add_user("bob", "pw123456").await;
    let mut bob = s.login("bob", "pw123456").await;
    bob.send("<presence to='new@conference.localhost/b'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    let refused = bob
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("error"))
        .await;
    assert_eq!(error_condition(&refused).as_deref(), Some("not-allowed"));
    alice
        .send("<presence to='new@conference.localhost/a'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    let joined = alice
        .recv_until(|e| {
            e.name() == "presence" && e.attr("from") == Some("new@conference.localhost/a")
        })
        .await;
    assert_eq!(joined.attr("type"), None, "{joined}");
}

#[tokio::test]
async fn a_certificate_that_does_not_load_changes_nothing() {
    let s = TestServer::start().await;
    let mut next = (*s.server.config).clone();
    next.admins = vec!["x@localhost".into()];
    next.tls.certificates = vec![rookery_core::config::CertificateConfig {
        host: "localhost".into(),
        cert: "/nonexistent.crt".into(),
        key: "/nonexistent.key".into(),
    }];
    let e = s.server.reload(next).await.unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent.crt"), "{e:#}");
    assert!(s.server.config.admins.is_empty());
    // Clients still sign in over TLS with the certificate from before.
    s.add_user("alice", "pw123456").await;
    let _alice = s.login("alice", "pw123456").await;
}
