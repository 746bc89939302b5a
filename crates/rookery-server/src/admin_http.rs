//! The admin HTTP API (`/api/v1/`, JSON, described by `docs/admin-api.json`, OpenAPI 3.1) and
//! the admin page (`/admin/`) that uses it. Both are served to loopback clients only unless
//! `http.admin_public`; every route but the token request needs an administrator's bearer
//! token. The operations are those of `admin` (shared with the CLI, ad-hoc commands and
//! Jabber-RPC).

use crate::admin::{self, AdminError, Motd};
use crate::http::Peer;
use crate::Server;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rookery_core::BareJid;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Where tokens are kept: the key-value store of their account, by the SHA-256 of the secret.
const TOKENS: &str = "admin_token";
const OPENAPI: &str = include_str!("../../../docs/admin-api.json");
const PAGE: &str = include_str!("admin_page.html");

pub fn routes(server: Arc<Server>) -> Router {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/", get(page))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/tokens", post(new_token).delete(revoke_token))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/users", get(users).post(add_user))
        .route("/api/v1/users/{jid}", delete(delete_user))
        .route("/api/v1/users/{jid}/password", put(set_password))
        .route("/api/v1/users/{jid}/disabled", put(set_disabled))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{jid}", delete(kick))
        .route("/api/v1/rooms", get(rooms).post(create_room))
        .route("/api/v1/rooms/{jid}", delete(destroy_room))
        .route("/api/v1/announce", post(announce))
        .route("/api/v1/invites", post(create_invite))
        .route(
            "/api/v1/motd/{host}",
            get(motd).put(set_motd).delete(delete_motd),
        )
        .route("/api/v1/logs", get(logs))
        .with_state(server)
}

/// An API failure: its status and what to tell the caller.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        use crate::accounts::AccountError as A;
        let status = match &e {
            AdminError::Account(A::Exists) => StatusCode::CONFLICT,
            AdminError::Account(A::NotFound) => StatusCode::NOT_FOUND,
            AdminError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Failure(status, e.to_string())
    }
}

type Reply = Result<Response, Failure>;

fn ok(v: serde_json::Value) -> Reply {
    Ok(Json(v).into_response())
}

fn bad(why: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, why.into())
}

fn reachable(server: &Server, peer: &Peer) -> Result<(), Failure> {
    if crate::metrics::may_scrape(peer.0.ip(), server.config.http.admin_public) {
        Ok(())
    } else {
        Err(Failure(
            StatusCode::FORBIDDEN,
            "the admin API is served to loopback clients only (http.admin_public)".into(),
        ))
    }
}

/// The administrator a request's bearer token names: 401 without a valid token, 403 for an
/// account that is not (or no longer) an administrator.
async fn caller(server: &Server, peer: &Peer, headers: &HeaderMap) -> Result<BareJid, Failure> {
    reachable(server, peer)?;
    let unauthorized = || {
        Failure(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is needed".into(),
        )
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let (who, secret) = token.trim().split_once('.').ok_or_else(unauthorized)?;
    let jid = B64
        .decode(who)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| BareJid::new(&s).ok())
        .ok_or_else(unauthorized)?;
    let key = crate::secrets::hash_hex(secret);
    let stored = server
        .storage
        .kv_get(&jid, TOKENS, &key)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let expires = stored
        .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
        .and_then(|v| v.get("expires").and_then(|e| e.as_u64()))
        .ok_or_else(unauthorized)?;
    if expires <= crate::unix_now() {
        let _ = server.storage.kv_set(&jid, TOKENS, &key, None).await;
        return Err(unauthorized());
    }
    if crate::accounts::is_disabled(server, &jid).await {
        return Err(unauthorized());
    }
    if !admin::is_admin(server, &jid) {
        return Err(Failure(
            StatusCode::FORBIDDEN,
            format!("{jid} is not an administrator"),
        ));
    }
    Ok(jid)
}

/// The administrator making a request (see [`caller`]); handlers that take it run only for one.
struct Admin(BareJid);

impl axum::extract::FromRequestParts<Arc<Server>> for Admin {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        server: &Arc<Server>,
    ) -> Result<Self, Failure> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .map(|c| c.0)
            .ok_or_else(|| Failure(StatusCode::INTERNAL_SERVER_ERROR, "no peer address".into()))?;
        caller(server, &peer, &parts.headers).await.map(Admin)
    }
}

async fn page(State(server): State<Arc<Server>>, ConnectInfo(peer): ConnectInfo<Peer>) -> Response {
    match reachable(&server, &peer) {
        Ok(()) => (
            [(
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'",
            )],
            Html(PAGE),
        )
            .into_response(),
        Err(f) => f.into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[derive(Deserialize)]
struct Login {
    jid: String,
    password: String,
}

/// A token for an account whose password is right (administrators use it; others are refused
/// by every other route). Failures slow down and ban the address as SASL failures do.
async fn new_token(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Json(login): Json<Login>,
) -> Reply {
    reachable(&server, &peer)?;
    let ip = peer.0.ip();
    let refused = || Failure(StatusCode::UNAUTHORIZED, "wrong address or password".into());
    if crate::c2s::sasl::banned(&server, ip) {
        return Err(Failure(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts from this address".into(),
        ));
    }
    let jid = crate::accounts::parse_user(&server.config, &login.jid).ok();
    let creds = match &jid {
        Some(j) => server
            .storage
            .credentials(j)
            .await
            .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        None => None,
    };
    let (Some(jid), Some(creds)) = (jid, creds) else {
        crate::c2s::sasl::penalise(&server, ip).await;
        return Err(refused());
    };
    if !crate::scram::verify_password(&creds, &login.password)
        || crate::accounts::is_disabled(&server, &jid).await
    {
        crate::c2s::sasl::penalise(&server, ip).await;
        return Err(refused());
    }
    let secret = B64.encode(rand::random::<[u8; 32]>());
    let expires = crate::unix_now() + server.config.http.admin_token_hours * 3600;
    server
        .storage
        .kv_set(
            &jid,
            TOKENS,
            &crate::secrets::hash_hex(&secret),
            Some(&json!({ "expires": expires }).to_string()),
        )
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(%jid, %ip, "admin API token issued");
    let token = format!("{}.{secret}", B64.encode(jid.as_str()));
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "jid": jid.to_string(),
            "admin": admin::is_admin(&server, &jid),
            "expires": expires,
        })),
    )
        .into_response())
}

async fn revoke_token(
    State(server): State<Arc<Server>>,
    Admin(jid): Admin,
    headers: HeaderMap,
) -> Reply {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit_once('.'))
        .map(|(_, s)| s.trim().to_string())
        .unwrap_or_default();
    server
        .storage
        .kv_set(&jid, TOKENS, &crate::secrets::hash_hex(&secret), None)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn stats(State(server): State<Arc<Server>>, Admin(_): Admin) -> Reply {
    let s = admin::stats(&server);
    let mut registered = 0;
    for host in &server.config.hosts {
        registered += admin::registered_users(&server, host).await?.len();
    }
    let rooms = match &server.modules.rooms {
        Some(r) => r.rooms(&server).await.len(),
        None => 0,
    };
    let (stanzas_in, stanzas_out) = server.metrics.stanza_totals();
    ok(json!({
        "hosts": server.config.hosts,
        "online_sessions": s.online_sessions,
        "online_users": s.online_users,
        "registered_users": registered,
        "rooms": rooms,
        "s2s_streams": server.s2s.streams().len(),
        "stanzas_in": stanzas_in,
        "stanzas_out": stanzas_out,
        "uptime_seconds": s.uptime_seconds,
        "node": server.cluster.as_ref().map(|c| c.node.to_string()),
    }))
}

#[derive(Deserialize)]
struct HostQuery {
    host: Option<String>,
}

async fn users(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Query(q): Query<HostQuery>,
) -> Reply {
    let hosts = match q.host {
        Some(h) => vec![h],
        None => server.config.hosts.clone(),
    };
    let online = admin::online_users(&server, None);
    let mut out = Vec::new();
    for h in hosts {
        for jid in admin::registered_users(&server, &h).await? {
            let bare = BareJid::new(&jid).map_err(|e| bad(e.to_string()))?;
            out.push(json!({
                "jid": jid,
                "online": online.binary_search(&jid).is_ok(),
                "disabled": crate::accounts::is_disabled(&server, &bare).await,
                "admin": admin::is_admin(&server, &bare),
            }));
        }
    }
    ok(json!(out))
}

async fn add_user(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Json(body): Json<Login>,
) -> Reply {
    let jid = admin::add_user(&server, &body.jid, &body.password).await?;
    Ok((StatusCode::CREATED, Json(json!({ "jid": jid.to_string() }))).into_response())
}

async fn delete_user(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Path(jid): Path<String>,
) -> Reply {
    admin::delete_user(&server, &jid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct Password {
    password: String,
}

async fn set_password(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Path(jid): Path<String>,
    Json(body): Json<Password>,
) -> Reply {
    admin::change_password(&server, &jid, &body.password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct Disabled {
    disabled: bool,
}

async fn set_disabled(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Path(jid): Path<String>,
    Json(body): Json<Disabled>,
) -> Reply {
    admin::set_disabled(&server, &jid, body.disabled).await?;
    if body.disabled {
        // A disabled account is signed out too.
        admin::end_sessions(&server, &jid).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn sessions(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Query(q): Query<HostQuery>,
) -> Reply {
    ok(json!(admin::online_sessions(&server, q.host.as_deref())))
}

async fn kick(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Path(jid): Path<String>,
) -> Reply {
    let n = admin::end_sessions(&server, &jid).await?;
    ok(json!({ "ended": n }))
}

fn room_admin(server: &Server) -> Result<&Arc<dyn crate::modules::RoomAdmin>, Failure> {
    server
        .modules
        .rooms
        .as_ref()
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, "the MUC module is disabled".into()))
}

async fn rooms(State(server): State<Arc<Server>>, Admin(_): Admin) -> Reply {
    ok(json!(room_admin(&server)?.rooms(&server).await))
}

#[derive(Deserialize)]
struct NewRoom {
    jid: String,
    #[serde(default)]
    name: String,
    /// Bare JID of the owner (default: the caller).
    owner: Option<String>,
}

async fn create_room(
    State(server): State<Arc<Server>>,
    Admin(me): Admin,
    Json(body): Json<NewRoom>,
) -> Reply {
    let jid = BareJid::new(&body.jid).map_err(|e| bad(format!("{}: {e}", body.jid)))?;
    let owner = match body.owner {
        Some(o) => BareJid::new(&o).map_err(|e| bad(format!("{o}: {e}")))?,
        None => me,
    };
    room_admin(&server)?
        .create_room(&server, &jid, &owner, &body.name)
        .await
        .map_err(|e| Failure(StatusCode::CONFLICT, e))?;
    Ok((StatusCode::CREATED, Json(json!({ "jid": jid.to_string() }))).into_response())
}

#[derive(Deserialize)]
struct Reason {
    reason: Option<String>,
}

async fn destroy_room(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Path(jid): Path<String>,
    Query(q): Query<Reason>,
) -> Reply {
    let jid = BareJid::new(&jid).map_err(|e| bad(format!("{jid}: {e}")))?;
    match room_admin(&server)?
        .destroy_room(&server, &jid, q.reason.as_deref())
        .await
    {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(Failure(StatusCode::NOT_FOUND, format!("no room {jid}"))),
        Err(e) => Err(Failure(StatusCode::CONFLICT, e)),
    }
}

#[derive(Deserialize)]
struct NewInvite {
    host: Option<String>,
    uses: Option<u32>,
    days: Option<u64>,
    username: Option<String>,
}

async fn create_invite(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Json(i): Json<NewInvite>,
) -> Reply {
    let host = i.host.unwrap_or_else(|| server.config.hosts[0].clone());
    let created = crate::modules::invites::create(
        &server,
        &host,
        i.uses.unwrap_or(1),
        i.days.unwrap_or(7),
        i.username.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(created))).into_response())
}

#[derive(Deserialize)]
struct Announcement {
    host: Option<String>,
    subject: Option<String>,
    body: String,
}

async fn announce(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Json(a): Json<Announcement>,
) -> Reply {
    let hosts = match a.host {
        Some(h) => vec![h],
        None => server.config.hosts.clone(),
    };
    let mut n = 0;
    for h in hosts {
        n += admin::announce(&server, &h, a.subject.as_deref(), &a.body)?;
    }
    ok(json!({ "sessions": n }))
}

async fn motd(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Path(host): Path<String>,
) -> Reply {
    match admin::motd(&server, &host).await? {
        Some(m) => ok(json!({ "subject": m.subject, "body": m.body })),
        None => Err(Failure(
            StatusCode::NOT_FOUND,
            "no message of the day".into(),
        )),
    }
}

async fn set_motd(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Path(host): Path<String>,
    Json(m): Json<Announcement>,
) -> Reply {
    let m = Motd {
        subject: m.subject.unwrap_or_default(),
        body: m.body,
    };
    admin::set_motd(&server, &host, Some(&m)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_motd(
    State(server): State<Arc<Server>>,
    Admin(_): Admin,
    Path(host): Path<String>,
) -> Reply {
    admin::set_motd(&server, &host, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn logs(Admin(_): Admin) -> Reply {
    ok(json!(crate::logs::recent()))
}
