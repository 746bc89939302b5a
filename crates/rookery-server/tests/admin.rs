//! Administration over XMPP: ad-hoc commands (XEP-0050, XEP-0133) and Jabber-RPC (XEP-0009),
//! against a real server.

mod common;

use common::{error_condition, Client, TestServer};
use rookery_bench::client;
use rookery_bench::scram::Mechanism;
use rookery_xml::{ns, Element};

const CMD: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";
const ADMIN: &str = "http://jabber.org/protocol/admin";

async fn server() -> TestServer {
    let s = TestServer::start_with(|c| c.admins = vec!["boss@localhost".into()]).await;
    s.add_user("boss", "pw123456").await;
    s.add_user("pleb", "pw123456").await;
    s
}

fn command(
    node: &str,
    action: Option<&str>,
    sid: Option<&str>,
    fields: &[(&str, &[&str])],
) -> Element {
    let mut c = Element::new("command", CMD)
        .with_attr("node", node)
        .with_opt_attr("action", action)
        .with_opt_attr("sessionid", sid);
    if !fields.is_empty() {
        let mut x = Element::new("x", DATA).with_attr("type", "submit");
        for (var, values) in fields {
            let mut f = Element::new("field", DATA).with_attr("var", *var);
            for v in *values {
                f.push_child(Element::new("value", DATA).with_text(*v));
            }
            x.push_child(f);
        }
        c.push_child(x);
    }
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", format!("c{}", rand_id()))
        .with_attr("to", "localhost")
        .with_child(c)
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn cmd_of(reply: &Element) -> &Element {
    reply
        .get_child("command", CMD)
        .unwrap_or_else(|| panic!("no command in {reply}"))
}

fn field_vars(c: &Element) -> Vec<String> {
    c.get_child("x", DATA)
        .map(|x| {
            x.children()
                .filter_map(|f| f.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn can_login(s: &TestServer, user: &str, pw: &str) -> Result<(), String> {
    client::login(&s.settings(pw, Mechanism::ScramSha256), user)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

#[tokio::test]
async fn admins_list_and_run_commands_others_are_refused() {
    let s = server().await;
    let mut boss = s.login("boss", "pw123456").await;
    let mut pleb = s.login("pleb", "pw123456").await;
    let items = Element::parse(&format!(
        "<iq xmlns='jabber:client' type='get' id='d1' to='localhost'>\
         <query xmlns='http://jabber.org/protocol/disco#items' node='{CMD}'/></iq>"
    ))
    .unwrap();
    let r = boss.iq(items.clone()).await;
    let nodes: Vec<&str> = r
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .filter_map(|i| i.attr("node"))
        .collect();
    assert!(
        nodes.contains(&"http://jabber.org/protocol/admin#add-user"),
        "{nodes:?}"
    );
    assert!(nodes.contains(&"http://jabber.org/protocol/admin#announce"));
    // A non-admin sees no commands and may not run one.
    let r = pleb.iq(items).await;
    assert_eq!(
        r.get_child("query", "http://jabber.org/protocol/disco#items")
            .unwrap()
            .children()
            .count(),
        0
    );
    let r = pleb
        .iq(command(&format!("{ADMIN}#add-user"), None, None, &[]))
        .await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));

    // Add a user: the form, then the submitted form; the account works.
    let r = boss
        .iq(command(&format!("{ADMIN}#add-user"), None, None, &[]))
        .await;
    let c = cmd_of(&r);
    assert_eq!(c.attr("status"), Some("executing"));
    assert_eq!(
        field_vars(c),
        ["FORM_TYPE", "accountjid", "password", "password-verify"]
    );
    let sid = c.attr("sessionid").unwrap().to_string();
    // A required field left out is refused, and the session stays usable.
    let r = boss
        .iq(command(
            &format!("{ADMIN}#add-user"),
            Some("complete"),
            Some(&sid),
            &[
                ("FORM_TYPE", &[ADMIN]),
                ("accountjid", &["newbie@localhost"]),
            ],
        ))
        .await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    let r = boss
        .iq(command(
            &format!("{ADMIN}#add-user"),
            Some("complete"),
            Some(&sid),
            &[
                ("FORM_TYPE", &[ADMIN]),
                ("accountjid", &["newbie@localhost"]),
                ("password", &["newbie-pw"]),
                ("password-verify", &["newbie-pw"]),
            ],
        ))
        .await;
    assert_eq!(cmd_of(&r).attr("status"), Some("completed"), "{r}");
    can_login(&s, "newbie", "newbie-pw").await.unwrap();
    // The finished session is gone.
    let r = boss
        .iq(command(
            &format!("{ADMIN}#add-user"),
            Some("complete"),
            Some(&sid),
            &[],
        ))
        .await;
    assert!(r
        .get_child("error", ns::CLIENT)
        .unwrap()
        .has_child("bad-sessionid", CMD));

    // Counters answer at once with a result form.
    let r = boss
        .iq(command(
            &format!("{ADMIN}#get-online-users-num"),
            None,
            None,
            &[],
        ))
        .await;
    let c = cmd_of(&r);
    assert_eq!(c.attr("status"), Some("completed"));
    let x = c.get_child("x", DATA).unwrap();
    let n = x
        .children()
        .find(|f| f.attr("var") == Some("onlineusersnum"))
        .and_then(|f| f.child_text("value", DATA));
    assert_eq!(n.as_deref(), Some("2"));
    drop(pleb);
}

#[tokio::test]
async fn delete_user_is_two_pages_with_prev_and_cancel() {
    let s = server().await;
    s.add_user("victim", "pw123456").await;
    let mut boss = s.login("boss", "pw123456").await;
    let node = format!("{ADMIN}#delete-user");
    let r = boss.iq(command(&node, Some("execute"), None, &[])).await;
    let c = cmd_of(&r);
    let sid = c.attr("sessionid").unwrap().to_string();
    assert!(c
        .get_child("actions", CMD)
        .is_some_and(|a| a.attr("execute") == Some("next") && a.has_child("next", CMD)));
    // An unknown account is refused on the way to the next page.
    let r = boss
        .iq(command(
            &node,
            Some("next"),
            Some(&sid),
            &[("accountjids", &["ghost@localhost"])],
        ))
        .await;
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    let r = boss
        .iq(command(
            &node,
            Some("next"),
            Some(&sid),
            &[("accountjids", &["victim@localhost"])],
        ))
        .await;
    let c = cmd_of(&r);
    assert_eq!(field_vars(c), ["FORM_TYPE", "confirm"]);
    let actions = c.get_child("actions", CMD).unwrap();
    assert!(actions.has_child("prev", CMD) && actions.has_child("complete", CMD));
    // Back to the first page, forward again, then confirm.
    let r = boss.iq(command(&node, Some("prev"), Some(&sid), &[])).await;
    assert_eq!(field_vars(cmd_of(&r)), ["FORM_TYPE", "accountjids"]);
    let r = boss
        .iq(command(
            &node,
            Some("next"),
            Some(&sid),
            &[("accountjids", &["victim@localhost"])],
        ))
        .await;
    assert_eq!(cmd_of(&r).attr("status"), Some("executing"));
    let r = boss
        .iq(command(
            &node,
            Some("complete"),
            Some(&sid),
            &[("confirm", &["1"])],
        ))
        .await;
    let c = cmd_of(&r);
    assert_eq!(c.attr("status"), Some("completed"));
    assert!(c
        .child_text("note", CMD)
        .unwrap()
        .contains("victim@localhost"));
    assert!(can_login(&s, "victim", "pw123456").await.is_err());

    // Cancel ends a session.
    let r = boss.iq(command(&node, None, None, &[])).await;
    let sid = cmd_of(&r).attr("sessionid").unwrap().to_string();
    let r = boss
        .iq(command(&node, Some("cancel"), Some(&sid), &[]))
        .await;
    assert_eq!(cmd_of(&r).attr("status"), Some("canceled"));
    let r = boss.iq(command(&node, Some("prev"), Some(&sid), &[])).await;
    assert!(r
        .get_child("error", ns::CLIENT)
        .unwrap()
        .has_child("bad-sessionid", CMD));
}

#[tokio::test]
async fn disabled_accounts_cannot_sign_in_until_reenabled() {
    let s = server().await;
    let mut boss = s.login("boss", "pw123456").await;
    let mut pleb = s.login("pleb", "pw123456").await;
    let node = format!("{ADMIN}#disable-user");
    let r = boss.iq(command(&node, None, None, &[])).await;
    let sid = cmd_of(&r).attr("sessionid").unwrap().to_string();
    let r = boss
        .iq(command(
            &node,
            Some("complete"),
            Some(&sid),
            &[("accountjids", &["pleb@localhost"])],
        ))
        .await;
    assert_eq!(cmd_of(&r).attr("status"), Some("completed"));
    // The live session is closed with a stream error, and signing in again fails.
    pleb.expect_stream_error("not-authorized").await;
    let e = can_login(&s, "pleb", "pw123456").await.unwrap_err();
    assert!(e.contains("account-disabled"), "{e}");
    let node = format!("{ADMIN}#reenable-user");
    let r = boss.iq(command(&node, None, None, &[])).await;
    let sid = cmd_of(&r).attr("sessionid").unwrap().to_string();
    boss.iq(command(
        &node,
        Some("complete"),
        Some(&sid),
        &[("accountjids", &["pleb@localhost"])],
    ))
    .await;
    can_login(&s, "pleb", "pw123456").await.unwrap();
}

fn rpc(method: &str, params: &[&str]) -> Element {
    let mut p = Element::new("params", "jabber:iq:rpc");
    for v in params {
        p.push_child(
            Element::new("param", "jabber:iq:rpc").with_child(
                Element::new("value", "jabber:iq:rpc")
                    .with_child(Element::new("string", "jabber:iq:rpc").with_text(*v)),
            ),
        );
    }
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", format!("r{}", rand_id()))
        .with_attr("to", "localhost")
        .with_child(
            Element::new("query", "jabber:iq:rpc").with_child(
                Element::new("methodCall", "jabber:iq:rpc")
                    .with_child(Element::new("methodName", "jabber:iq:rpc").with_text(method))
                    .with_child(p),
            ),
        )
}

/// The methodResponse's value, or the fault's string.
fn rpc_result(r: &Element) -> Result<Element, String> {
    let resp = r
        .get_child("query", "jabber:iq:rpc")
        .and_then(|q| q.get_child("methodResponse", "jabber:iq:rpc"))
        .unwrap_or_else(|| panic!("no methodResponse in {r}"));
    if let Some(f) = resp.get_child("fault", "jabber:iq:rpc") {
        return Err(f.to_xml());
    }
    Ok(resp
        .get_child("params", "jabber:iq:rpc")
        .and_then(|p| p.get_child("param", "jabber:iq:rpc"))
        .and_then(|p| p.get_child("value", "jabber:iq:rpc"))
        .unwrap()
        .clone())
}

#[tokio::test]
async fn jabber_rpc_adds_a_user_who_can_sign_in_and_sets_the_motd() {
    let s = server().await;
    let mut boss = s.login("boss", "pw123456").await;
    let r = boss
        .iq(rpc("users.add", &["rpcuser@localhost", "rpc-secret"]))
        .await;
    assert!(rpc_result(&r)
        .unwrap()
        .to_xml()
        .contains("rpcuser@localhost"));
    can_login(&s, "rpcuser", "rpc-secret").await.unwrap();
    // Failures are XML-RPC faults, not IQ errors.
    let r = boss
        .iq(rpc("users.add", &["rpcuser@localhost", "again-pw"]))
        .await;
    assert!(rpc_result(&r).unwrap_err().contains("exists"));
    let r = boss.iq(rpc("no.such.method", &[])).await;
    assert!(rpc_result(&r).unwrap_err().contains("-32601"));
    let r = boss.iq(rpc("system.listMethods", &[])).await;
    assert!(rpc_result(&r).unwrap().to_xml().contains("sessions.list"));
    // The message of the day reaches the next session to sign in.
    let r = boss
        .iq(rpc(
            "motd.set",
            &["localhost", "Hello", "Maintenance at noon"],
        ))
        .await;
    rpc_result(&r).unwrap();
    let online = client::login(&s.settings("pw123456", Mechanism::ScramSha256), "pleb")
        .await
        .unwrap();
    let mut c = Client { online };
    let m = c
        .recv_until(|e| e.name() == "message" && e.attr("type") == Some("headline"))
        .await;
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("Maintenance at noon")
    );
    // Someone who is not an administrator gets an IQ error.
    let r = c.iq(rpc("users.count", &["localhost"])).await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
}
