//! XEP-0363 over HTTP: PUT stores a slot's file (streamed to disk, checked against the signed
//! grant), GET and HEAD serve it (ranges, conditional requests), with CORS for web clients.

use super::store::{Meta, Refusal};
use super::{essence, token, unix_now, Inner};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeFile;

/// A PUT that sends nothing for this long is abandoned.
const BODY_IDLE: Duration = Duration::from_secs(60);

pub(super) fn routes(inner: Arc<Inner>) -> Router {
    // Slot URLs are capabilities and carry no cookies: any origin may use them (XEP-0363 §7).
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::PUT, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(86400));
    Router::new()
        .route("/upload/{id}/{filename}", get(download).put(upload))
        .layer(cors)
        .with_state(inner)
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why,
    )
        .into_response()
}

/// Removes the partial file however the upload ends, also when the request is dropped midway
/// (the client went away); a complete upload is linked to its final name first.
struct Partial(std::path::PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn upload(
    State(inner): State<Arc<Inner>>,
    Path((id, filename)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(secret) = inner.secret.get() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "uploads unavailable");
    };
    let grant = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| token::verify(secret, t.trim()));
    let Some(grant) = grant.filter(|g| g.id == id && g.filename == filename) else {
        return refuse(StatusCode::FORBIDDEN, "no valid slot for this URL");
    };
    let now = unix_now();
    if grant.expires <= now {
        return refuse(StatusCode::FORBIDDEN, "the slot has expired");
    }
    // XEP-0363 §6: the length must be the one requested, the type too if one was given.
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        None => return refuse(StatusCode::LENGTH_REQUIRED, "Content-Length is required"),
        Some(n) if n != grant.size => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Content-Length differs from the slot's size",
            )
        }
        Some(_) => {}
    }
    if let Some(t) = headers.get(header::CONTENT_TYPE) {
        if essence(t.to_str().unwrap_or_default()) != essence(&grant.content_type) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type differs from the slot's",
            );
        }
    }
    // A slot takes one file.
    let data = inner.store.data_path(&id);
    if inner.store.contains(&id) || tokio::fs::try_exists(&data).await.unwrap_or(true) {
        return refuse(StatusCode::CONFLICT, "already uploaded");
    }
    if let Err(r) = inner
        .store
        .recheck(&id, &grant.owner, grant.size, inner.limits(), now)
    {
        let why = match r {
            Refusal::Quota { .. } => "quota reached",
            Refusal::Daily { .. } => "daily quota reached",
        };
        return refuse(StatusCode::INSUFFICIENT_STORAGE, why);
    }
    let part = inner.store.part_path(&id);
    // create_new: a concurrent PUT of the same slot gets a conflict, not a shared file.
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .await
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return refuse(StatusCode::CONFLICT, "an upload to this slot is under way")
        }
        Err(e) => {
            tracing::error!(%e, path = %part.display(), "cannot create upload file");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the file");
        }
    };
    let _partial = Partial(part.clone());
    let mut stream = body.into_data_stream();
    let mut written: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(BODY_IDLE, stream.next()).await {
            Err(_) => return refuse(StatusCode::REQUEST_TIMEOUT, "the upload stalled"),
            Ok(None) => break,
            Ok(Some(Err(_))) => return refuse(StatusCode::BAD_REQUEST, "the upload broke off"),
            Ok(Some(Ok(c))) => c,
        };
        written += chunk.len() as u64;
        if written > grant.size {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "more than the slot's size");
        }
        if let Err(e) = file.write_all(&chunk).await {
            tracing::error!(%e, "writing an upload failed");
            return refuse(StatusCode::INSUFFICIENT_STORAGE, "cannot store the file");
        }
    }
    if written != grant.size {
        return refuse(StatusCode::BAD_REQUEST, "less than the slot's size");
    }
    let stored = async {
        file.flush().await?;
        file.sync_data().await?;
        drop(file);
        // A link, unlike a rename, never replaces a file already there: of two uploads racing
        // for one slot, one wins.
        tokio::fs::hard_link(&part, &data).await
    };
    match stored.await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return refuse(StatusCode::CONFLICT, "already uploaded")
        }
        Err(e) => {
            tracing::error!(%e, "finishing an upload failed");
            return refuse(StatusCode::INSUFFICIENT_STORAGE, "cannot store the file");
        }
    }
    let days = inner.options.expire_after_days;
    let meta = Meta {
        owner: grant.owner,
        filename: grant.filename,
        content_type: grant.content_type,
        size: grant.size,
        created: now,
        expires: (days > 0).then(|| now + days * 86_400),
    };
    if let Err(e) = inner.store.commit(&id, meta).await {
        tracing::error!(%e, "recording an upload failed");
        let _ = tokio::fs::remove_file(&data).await;
        return refuse(StatusCode::INSUFFICIENT_STORAGE, "cannot store the file");
    }
    StatusCode::CREATED.into_response()
}

/// Types a browser may show in place; anything else is offered as a download.
fn inline(content_type: &str) -> bool {
    let t = essence(content_type);
    ["image/", "audio/", "video/"]
        .iter()
        .any(|p| t.starts_with(p))
        || t == "text/plain"
}

async fn download(
    State(inner): State<Arc<Inner>>,
    Path((id, filename)): Path<(String, String)>,
    req: Request,
) -> Response {
    let meta = inner
        .store
        .get(&id)
        .filter(|m| m.filename == filename && m.expires.is_none_or(|e| e > unix_now()));
    let Some(meta) = meta else {
        return refuse(StatusCode::NOT_FOUND, "no such file");
    };
    // ServeFile streams from disk and does HEAD, Range and If-Modified-Since.
    let served = ServeFile::new(inner.store.data_path(&id))
        .oneshot(req)
        .await;
    let mut res = match served {
        Ok(r) => r.map(Body::new),
        Err(e) => match e {},
    };
    let h = res.headers_mut();
    // The type the uploader declared, not one guessed from the name.
    if h.contains_key(header::CONTENT_TYPE) {
        if let Ok(v) = HeaderValue::from_str(&meta.content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
    }
    // What users upload must not run as this site's content (XEP-0363 §11).
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; sandbox"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let disposition = if inline(&meta.content_type) {
        "inline"
    } else {
        "attachment"
    };
    let encoded = super::encode_segment(&meta.filename);
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename*=UTF-8''{encoded}")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // The file never changes under its URL.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400, immutable"),
    );
    res
}
