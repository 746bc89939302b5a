//! The admin HTTP API against the real server: tokens, every route refused without an
//! administrator's token, and each operation doing what it says as XMPP clients see it.

mod common;

use common::http::{http, Reply};
use common::TestServer;
use rookery_xml::ns;
use serde_json::{json, Value};

async fn admin_server() -> TestServer {
    let s = TestServer::start_with(|c| c.admins = vec!["boss@localhost".into()]).await;
    s.add_user("boss", "boss-password").await;
    s
}

async fn call(
    s: &TestServer,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let len = body.len().to_string();
    headers.push(("Content-Length", len.as_str()));
    http(s.http, method, path, &headers, body.as_bytes()).await
}

async fn token(s: &TestServer, jid: &str, password: &str) -> String {
    let r = call(
        s,
        None,
        "POST",
        "/api/v1/tokens",
        Some(json!({ "jid": jid, "password": password })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["token"].as_str().unwrap().to_string()
}

/// Every route with a request it would accept from an administrator.
fn routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/api/v1/stats", None),
        ("GET", "/api/v1/users", None),
        (
            "POST",
            "/api/v1/users",
            Some(json!({"jid": "new@localhost", "password": "pw123456"})),
        ),
        ("DELETE", "/api/v1/users/boss%40localhost", None),
        (
            "PUT",
            "/api/v1/users/boss%40localhost/password",
            Some(json!({"password": "x"})),
        ),
        (
            "PUT",
            "/api/v1/users/boss%40localhost/disabled",
            Some(json!({"disabled": true})),
        ),
        ("GET", "/api/v1/sessions", None),
        ("DELETE", "/api/v1/sessions/boss%40localhost", None),
        ("GET", "/api/v1/rooms", None),
        (
            "POST",
            "/api/v1/rooms",
            Some(json!({"jid": "r@conference.localhost"})),
        ),
        ("DELETE", "/api/v1/rooms/r%40conference.localhost", None),
        ("POST", "/api/v1/announce", Some(json!({"body": "hi"}))),
        ("GET", "/api/v1/motd/localhost", None),
        ("PUT", "/api/v1/motd/localhost", Some(json!({"body": "hi"}))),
        ("DELETE", "/api/v1/motd/localhost", None),
        ("GET", "/api/v1/logs", None),
        ("DELETE", "/api/v1/tokens", None),
    ]
}

#[tokio::test]
async fn without_an_administrators_token_every_route_is_refused() {
    let s = admin_server().await;
    s.add_user("pleb", "pleb-password").await;
    let pleb = token(&s, "pleb@localhost", "pleb-password").await;
    for (method, path, body) in routes() {
        let none = call(&s, None, method, path, body.clone()).await;
        assert_eq!(none.status, 401, "{method} {path} without a token");
        let forged = call(
            &s,
            Some("Ym9zc0Bsb2NhbGhvc3Q.forged"),
            method,
            path,
            body.clone(),
        )
        .await;
        assert_eq!(forged.status, 401, "{method} {path} with a forged token");
        let r = call(&s, Some(&pleb), method, path, body).await;
        assert_eq!(r.status, 403, "{method} {path} with a non-admin token");
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not an administrator"));
    }
    // Nothing was done.
    let boss = s.login("boss", "boss-password").await;
    drop(boss);
    // Wrong passwords and unknown accounts look alike.
    for (jid, pw) in [("boss@localhost", "wrong"), ("ghost@localhost", "wrong")] {
        let r = call(
            &s,
            None,
            "POST",
            "/api/v1/tokens",
            Some(json!({"jid": jid, "password": pw})),
        )
        .await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"], "wrong address or password");
    }
    // The document describing the API is public and names every route.
    let doc = call(&s, None, "GET", "/api/v1/openapi.json", None)
        .await
        .json();
    for (_, path, _) in routes() {
        let templated = path
            .trim_start_matches("/api/v1")
            .replace("boss%40localhost", "{jid}")
            .replace("r%40conference.localhost", "{jid}")
            .replace("/motd/localhost", "/motd/{host}");
        assert!(
            doc["paths"][&templated].is_object(),
            "{templated} documented"
        );
    }
}

#[tokio::test]
async fn an_administrator_manages_users_sessions_rooms_and_announcements() {
    let s = admin_server().await;
    let t = token(&s, "boss@localhost", "boss-password").await;

    // A user added through the API signs in.
    let r = call(
        &s,
        Some(&t),
        "POST",
        "/api/v1/users",
        Some(json!({"jid": "alice@localhost", "password": "alice-pw1"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let again = call(
        &s,
        Some(&t),
        "POST",
        "/api/v1/users",
        Some(json!({"jid": "alice@localhost", "password": "another-pw"})),
    )
    .await;
    assert_eq!(again.status, 409);
    let mut alice = s.login("alice", "alice-pw1").await;
    let users = call(&s, Some(&t), "GET", "/api/v1/users", None)
        .await
        .json();
    let entry = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["jid"] == "alice@localhost")
        .unwrap()
        .clone();
    assert_eq!(
        entry,
        json!({"jid": "alice@localhost", "online": true, "disabled": false, "admin": false})
    );
    let stats = call(&s, Some(&t), "GET", "/api/v1/stats", None)
        .await
        .json();
    assert_eq!(
        (
            stats["online_sessions"].as_u64(),
            stats["registered_users"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert!(stats["stanzas_in"].as_u64().unwrap() > 0);

    // An announcement reaches her.
    let r = call(
        &s,
        Some(&t),
        "POST",
        "/api/v1/announce",
        Some(json!({"subject": "Maintenance", "body": "at noon"})),
    )
    .await;
    assert_eq!(r.json()["sessions"], 1);
    let m = alice.recv_until(|e| e.name() == "message").await;
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("at noon"));

    // Rooms: created, listed, destroyed with the occupant told why.
    let r = call(
        &s,
        Some(&t),
        "POST",
        "/api/v1/rooms",
        Some(json!({"jid": "ops@conference.localhost", "name": "Ops"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let dup = call(
        &s,
        Some(&t),
        "POST",
        "/api/v1/rooms",
        Some(json!({"jid": "ops@conference.localhost"})),
    )
    .await;
    assert_eq!(dup.status, 409);
    alice
        .send("<presence to='ops@conference.localhost/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await;
    alice
        .recv_until(|e| {
            e.name() == "presence" && e.attr("from") == Some("ops@conference.localhost/al")
        })
        .await;
    let rooms = call(&s, Some(&t), "GET", "/api/v1/rooms", None)
        .await
        .json();
    assert_eq!(
        rooms,
        json!([{"jid": "ops@conference.localhost", "name": "Ops", "occupants": 1, "persistent": true, "public": true}])
    );
    let r = call(
        &s,
        Some(&t),
        "DELETE",
        "/api/v1/rooms/ops%40conference.localhost?reason=closing",
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let gone = alice
        .recv_until(|e| e.name() == "presence" && e.attr("type") == Some("unavailable"))
        .await;
    assert!(gone.to_xml().contains("closing"), "{gone}");
    assert_eq!(
        call(&s, Some(&t), "GET", "/api/v1/rooms", None)
            .await
            .json(),
        json!([])
    );
    let r = call(
        &s,
        Some(&t),
        "DELETE",
        "/api/v1/rooms/ops%40conference.localhost",
        None,
    )
    .await;
    assert_eq!(r.status, 404);

    // Sessions: listed, then ended.
    let sessions = call(&s, Some(&t), "GET", "/api/v1/sessions", None)
        .await
        .json();
    assert_eq!(sessions, json!(["alice@localhost/r"]));
    let r = call(
        &s,
        Some(&t),
        "DELETE",
        "/api/v1/sessions/alice%40localhost",
        None,
    )
    .await;
    assert_eq!(r.json()["ended"], 1);
    loop {
        match alice.event().await {
            rookery_xml::StreamEvent::Stanza(e) if e.name() != "error" => continue,
            _ => break,
        }
    }

    // A disabled account cannot sign in; a new password works.
    let r = call(
        &s,
        Some(&t),
        "PUT",
        "/api/v1/users/alice%40localhost/disabled",
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(s.try_login("alice", "alice-pw1").await.is_err());
    call(
        &s,
        Some(&t),
        "PUT",
        "/api/v1/users/alice%40localhost/disabled",
        Some(json!({"disabled": false})),
    )
    .await;
    let r = call(
        &s,
        Some(&t),
        "PUT",
        "/api/v1/users/alice%40localhost/password",
        Some(json!({"password": "alice-pw2"})),
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(s.try_login("alice", "alice-pw1").await.is_err());
    drop(s.login("alice", "alice-pw2").await);
    let r = call(
        &s,
        Some(&t),
        "DELETE",
        "/api/v1/users/alice%40localhost",
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        call(
            &s,
            Some(&t),
            "DELETE",
            "/api/v1/users/alice%40localhost",
            None
        )
        .await
        .status,
        404
    );

    // Recent problems are readable; a revoked token is dead.
    assert!(call(&s, Some(&t), "GET", "/api/v1/logs", None)
        .await
        .json()
        .is_array());
    assert_eq!(
        call(&s, Some(&t), "DELETE", "/api/v1/tokens", None)
            .await
            .status,
        204
    );
    assert_eq!(
        call(&s, Some(&t), "GET", "/api/v1/stats", None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn the_admin_page_is_served() {
    let s = admin_server().await;
    let r = http(s.http, "GET", "/admin/", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("Rookery administration"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
}

/// Rooms made through the CLI's admin socket are the API's rooms: one implementation.
#[tokio::test]
async fn rooms_through_the_admin_socket_and_the_api_are_the_same() {
    let s = admin_server().await;
    let t = token(&s, "boss@localhost", "boss-password").await;
    let made = rookery_server::admin_socket::answer(
        &s.server,
        r#"{"method":"rooms.create","params":["cli@conference.localhost","boss@localhost","From the CLI"]}"#,
    )
    .await;
    assert_eq!(made, r#"{"result":"cli@conference.localhost"}"#);
    let rooms = call(&s, Some(&t), "GET", "/api/v1/rooms", None)
        .await
        .json();
    assert_eq!(rooms[0]["name"], "From the CLI");
    let listed =
        rookery_server::admin_socket::answer(&s.server, r#"{"method":"rooms.list"}"#).await;
    assert!(listed.contains("\"occupants\":0"), "{listed}");
    let gone = rookery_server::admin_socket::answer(
        &s.server,
        r#"{"method":"rooms.destroy","params":["cli@conference.localhost"]}"#,
    )
    .await;
    assert_eq!(gone, r#"{"result":true}"#);
    assert_eq!(
        call(&s, Some(&t), "GET", "/api/v1/rooms", None)
            .await
            .json(),
        json!([])
    );
}
