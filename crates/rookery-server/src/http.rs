//! The HTTP listener: the web chat app and, for browsers, XEP-0156 discovery.

use crate::Server;
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};

/// Where the built web app lives: `ROOKERY_WEB_ROOT`, else `web/dist` beside the working directory.
pub fn web_root() -> PathBuf {
    std::env::var_os("ROOKERY_WEB_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("web/dist"))
}

pub fn router(server: Arc<Server>) -> Router {
    let root = web_root();
    let index = root.join("index.html");
    let app = Router::new();
    let _ = server;
    if index.exists() {
        app.fallback_service(ServeDir::new(&root).fallback(ServeFile::new(index)))
    } else {
        app.fallback(|| async {
            axum::response::Html(
                "<!doctype html><title>Rookery</title><h1>Rookery</h1>\
                 <p>The web app is not built. Run <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code>.</p>",
            )
        })
    }
}

pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    let shutdown = server.shutdown.clone();
    let app = router(server);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = r {
        tracing::error!(%e, "http server failed");
    }
}
