//! The HTTP listener: the web chat app, XMPP over WebSocket (RFC 7395) and BOSH (XEP-0206), and
//! their discovery (XEP-0156).

use crate::c2s::{bosh, websocket};
use crate::Server;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

#[derive(Clone)]
struct AppState {
    server: Arc<Server>,
    bosh: Arc<bosh::Sessions>,
}

/// Where the built web app lives: config `http.web_root`, `ROOKERY_WEB_ROOT`, else `web/dist`.
pub fn web_root(server: &Server) -> PathBuf {
    server
        .config
        .http
        .web_root
        .clone()
        .or_else(|| std::env::var_os("ROOKERY_WEB_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("web/dist"))
}

pub fn router(server: Arc<Server>) -> Router {
    let state = AppState {
        server: server.clone(),
        bosh: Arc::default(),
    };
    let cors = {
        let origins = &server.config.http.cors_origins;
        let allow = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE])
    };
    let body_limit = server.config.limits.max_stanza_bytes + 4096;
    let api = Router::new()
        .route("/xmpp-websocket", get(ws))
        .route("/http-bind", get(bosh_info).post(bosh_post))
        .route("/.well-known/host-meta", get(host_meta))
        .route("/.well-known/host-meta.json", get(host_meta_json))
        .layer(cors)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    let root = web_root(&server);
    let index = root.join("index.html");
    if index.exists() {
        api.fallback_service(ServeDir::new(&root).fallback(ServeFile::new(index)))
    } else {
        api.fallback(|| async {
            axum::response::Html(
                "<!doctype html><title>Rookery</title><h1>Rookery</h1>\
                 <p>The web app is not built. Run <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code>.</p>",
            )
        })
    }
}

async fn ws(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let limit = st.server.config.limits.max_stanza_bytes;
    upgrade
        .protocols(["xmpp"])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            let server = st.server.clone();
            let tracker = server.connections.clone();
            async move {
                // Tracked, so shutdown waits for the session to flush.
                let _ = tracker
                    .spawn(websocket::serve(server, socket, peer.ip(), false))
                    .await;
            }
        })
}

async fn bosh_info() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><title>BOSH</title><p>This is Rookery's BOSH endpoint (XEP-0206). POST XML here.</p>",
    )
}

async fn bosh_post(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let reply = bosh::handle(st.server.clone(), st.bosh.clone(), peer.ip(), false, &body).await;
    (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        reply.body,
    )
        .into_response()
}

fn endpoints(headers: &HeaderMap) -> (String, String) {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    (
        format!("ws://{host}/xmpp-websocket"),
        format!("http://{host}/http-bind"),
    )
}

async fn host_meta(headers: HeaderMap) -> impl IntoResponse {
    let (ws, bosh) = endpoints(&headers);
    let xml = format!(
        "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\
         <Link rel='urn:xmpp:alt-connections:websocket' href='{ws}'/>\
         <Link rel='urn:xmpp:alt-connections:xbosh' href='{bosh}'/></XRD>"
    );
    ([(header::CONTENT_TYPE, "application/xrd+xml")], xml)
}

async fn host_meta_json(headers: HeaderMap) -> impl IntoResponse {
    let (ws, bosh) = endpoints(&headers);
    let json = serde_json::json!({
        "links": [
            {"rel": "urn:xmpp:alt-connections:websocket", "href": ws},
            {"rel": "urn:xmpp:alt-connections:xbosh", "href": bosh},
        ]
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
}

pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    let shutdown = server.shutdown.clone();
    let app = router(server);
    let r = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await;
    if let Err(e) = r {
        tracing::error!(%e, "http server failed");
    }
}
