//! The HTTP listener: the web chat app, XMPP over WebSocket (RFC 7395) and BOSH (XEP-0206), and
//! their discovery (XEP-0156).

use crate::c2s::{bosh, websocket};
use crate::Server;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
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
    /// This listener is HTTPS: its WebSocket and BOSH clients are encrypted.
    tls: bool,
}

/// The peer address, for plain and TLS listeners alike.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(s: IncomingStream<'_, TcpListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(s: IncomingStream<'_, TlsListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

/// An HTTPS listener: handshakes run in their own tasks so a slow client cannot stall accept.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(server: &Server, listener: TcpListener) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = server.tls.https.clone();
        let shutdown = server.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (sock, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(_) => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = shutdown.cancelled() => return,
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(
                        std::time::Duration::from_secs(30),
                        acceptor.accept(sock),
                    );
                    if let Ok(Ok(tls)) = hs.await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended (shutdown): never yield another connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
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

pub fn router(
    server: Arc<Server>,
    local: SocketAddr,
    tls: bool,
    bosh: Arc<bosh::Sessions>,
) -> Router {
    let state = AppState {
        server: server.clone(),
        bosh,
        tls,
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
    let mut api = Router::new()
        .route("/xmpp-websocket", get(ws))
        .route("/http-bind", get(bosh_info).post(bosh_post))
        .route("/.well-known/host-meta", get(host_meta))
        .route("/.well-known/host-meta.json", get(host_meta_json))
        .route("/metrics", get(metrics))
        .layer(cors)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    // Same-origin only (no CORS): the admin page and API.
    api = api.merge(crate::admin_http::routes(server.clone()));
    // Modules' routes keep their own limits and CORS rules.
    for m in &server.modules.http {
        api = api.merge(m.routes(server.clone(), local, tls));
    }
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
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
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
                    .spawn(websocket::serve(server, socket, peer.ip(), st.tls))
                    .await;
            }
        })
}

async fn metrics(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
) -> Response {
    if !crate::metrics::may_scrape(peer.ip(), st.server.config.http.metrics_public) {
        return (
            StatusCode::FORBIDDEN,
            "metrics are served to loopback clients only\n",
        )
            .into_response();
    }
    let body = st.server.metrics.render(&st.server).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn bosh_info() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><title>BOSH</title><p>This is Rookery's BOSH endpoint (XEP-0206). POST XML here.</p>",
    )
}

async fn bosh_post(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    body: Bytes,
) -> Response {
    let reply = bosh::handle(st.server.clone(), st.bosh.clone(), peer.ip(), st.tls, &body).await;
    (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        reply.body,
    )
        .into_response()
}

fn endpoints(headers: &HeaderMap, tls: bool) -> (String, String) {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    (
        format!("{ws}://{host}/xmpp-websocket"),
        format!("{http}://{host}/http-bind"),
    )
}

async fn host_meta(State(st): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let (ws, bosh) = endpoints(&headers, st.tls);
    let xml = format!(
        "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\
         <Link rel='urn:xmpp:alt-connections:websocket' href='{ws}'/>\
         <Link rel='urn:xmpp:alt-connections:xbosh' href='{bosh}'/></XRD>"
    );
    ([(header::CONTENT_TYPE, "application/xrd+xml")], xml)
}

async fn host_meta_json(State(st): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let (ws, bosh) = endpoints(&headers, st.tls);
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

pub async fn serve(server: Arc<Server>, listener: TcpListener, bosh: Arc<bosh::Sessions>) {
    let shutdown = server.shutdown.clone();
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let app = router(server, local, false, bosh);
    let r = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = r {
        tracing::error!(%e, "http server failed");
    }
}

/// HTTPS (and WSS): the same routes behind TLS with the hosts' certificates.
pub async fn serve_tls(server: Arc<Server>, listener: TlsListener, bosh: Arc<bosh::Sessions>) {
    let shutdown = server.shutdown.clone();
    let app = router(server, listener.local, true, bosh);
    let r = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = r {
        tracing::error!(%e, "https server failed");
    }
}
