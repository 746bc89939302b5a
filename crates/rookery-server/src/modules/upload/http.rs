//! XEP-0363 over HTTP: PUT stores a slot's file (streamed to disk or into the database, checked
//! against the slot's record and token), GET and HEAD serve it (ranges, conditional requests),
//! with CORS for web clients.

use super::store::{is_id, remove_file};
use super::{essence, Inner, Record};
use crate::secrets as token;
use crate::secrets::hex;
use crate::unix_now;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use rookery_core::config::UploadContents as Contents;
use rookery_core::storage::{Storage, UPLOAD_CHUNK};
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
    if !is_id(&id) {
        return refuse(StatusCode::FORBIDDEN, "no valid slot for this URL");
    }
    let record = match inner.store.storage().upload_get(&id).await {
        Ok(r) => r.filter(|r| r.filename == filename),
        Err(e) => {
            tracing::error!(%e, "reading an upload slot failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "uploads unavailable");
        }
    };
    // A slot takes one file.
    if record.as_ref().is_some_and(|r| r.stored) {
        return refuse(StatusCode::CONFLICT, "already uploaded");
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(slot) = record.filter(|r| bearer.is_some_and(|t| token::matches(t, &r.token_hash)))
    else {
        return refuse(StatusCode::FORBIDDEN, "no valid slot for this URL");
    };
    let now = unix_now();
    if slot.expires.is_some_and(|e| e <= now) {
        return refuse(StatusCode::FORBIDDEN, "the slot has expired");
    }
    // XEP-0363 §6: the length must be the one requested, the type too if one was given.
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        None => return refuse(StatusCode::LENGTH_REQUIRED, "Content-Length is required"),
        Some(n) if n != slot.size => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Content-Length differs from the slot's size",
            )
        }
        Some(_) => {}
    }
    if let Some(t) = headers.get(header::CONTENT_TYPE) {
        if essence(t.to_str().unwrap_or_default()) != essence(&slot.content_type) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type differs from the slot's",
            );
        }
    }
    let days = inner.options.get().expire_after_days;
    let expires = (days > 0).then(|| now + days * 86_400);
    let stored = match inner.store.contents {
        Contents::Files => to_file(&inner, &slot, body, now, expires).await,
        Contents::Database => to_database(&inner, &slot, body, now, expires).await,
    };
    match stored {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(r) => r,
    }
}

/// A PUT's body, chunk by chunk, checked against the slot's size.
struct Chunks {
    stream: axum::body::BodyDataStream,
    size: u64,
    written: u64,
}

impl Chunks {
    fn new(size: u64, body: Body) -> Chunks {
        Chunks {
            stream: body.into_data_stream(),
            size,
            written: 0,
        }
    }

    /// The next chunk, None at the end, or the error response when the body stalls, breaks
    /// off, or is longer or shorter than the slot's size.
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, Response> {
        let chunk = match tokio::time::timeout(BODY_IDLE, self.stream.next()).await {
            Err(_) => return Err(refuse(StatusCode::REQUEST_TIMEOUT, "the upload stalled")),
            Ok(None) if self.written != self.size => {
                return Err(refuse(StatusCode::BAD_REQUEST, "less than the slot's size"))
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(_))) => {
                return Err(refuse(StatusCode::BAD_REQUEST, "the upload broke off"))
            }
            Ok(Some(Ok(c))) => c,
        };
        self.written += chunk.len() as u64;
        if self.written > self.size {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "more than the slot's size",
            ));
        }
        Ok(Some(chunk))
    }
}

fn cannot_store() -> Response {
    refuse(StatusCode::INSUFFICIENT_STORAGE, "cannot store the file")
}

async fn to_file(
    inner: &Inner,
    slot: &Record,
    body: Body,
    now: u64,
    expires: Option<u64>,
) -> Result<(), Response> {
    let part = inner.store.part_path(&slot.id);
    let data = inner.store.data_path(&slot.id);
    // create_new: a concurrent PUT of the same slot gets a conflict, not a shared file.
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .await
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(refuse(
                StatusCode::CONFLICT,
                "an upload to this slot is under way",
            ))
        }
        Err(e) => {
            tracing::error!(%e, path = %part.display(), "cannot create upload file");
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot store the file",
            ));
        }
    };
    let _partial = Partial(part.clone());
    let mut chunks = Chunks::new(slot.size, body);
    while let Some(chunk) = chunks.next().await? {
        if let Err(e) = file.write_all(&chunk).await {
            tracing::error!(%e, "writing an upload failed");
            return Err(cannot_store());
        }
    }
    let written = async {
        file.flush().await?;
        file.sync_data().await?;
        drop(file);
        // A link, unlike a rename, never replaces a file already there: of two uploads racing
        // for one slot, one wins.
        tokio::fs::hard_link(&part, &data).await
    };
    match written.await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(refuse(StatusCode::CONFLICT, "already uploaded"))
        }
        Err(e) => {
            tracing::error!(%e, "finishing an upload failed");
            return Err(cannot_store());
        }
    }
    match inner
        .store
        .storage()
        .upload_finish(&slot.id, now, expires, None)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => {
            remove_file(&data).await;
            Err(refuse(StatusCode::CONFLICT, "the slot is gone"))
        }
        Err(e) => {
            tracing::error!(%e, "recording an upload failed");
            remove_file(&data).await;
            Err(cannot_store())
        }
    }
}

/// Contents staged in the database under a key of their own; dropped however the upload ends
/// unless it finished (also when the request is dropped midway).
struct Staged {
    storage: Arc<dyn Storage>,
    key: String,
    finished: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.finished {
            let storage = self.storage.clone();
            let key = std::mem::take(&mut self.key);
            tokio::spawn(async move {
                if let Err(e) = storage.upload_delete_chunks(&key).await {
                    tracing::warn!(%e, "dropping a broken upload failed; it goes with its slot");
                }
            });
        }
    }
}

async fn to_database(
    inner: &Inner,
    slot: &Record,
    body: Body,
    now: u64,
    expires: Option<u64>,
) -> Result<(), Response> {
    let storage = inner.store.storage_arc();
    // Each attempt stages under its own key, so racing PUTs of one slot never mix.
    let mut staged = Staged {
        storage: storage.clone(),
        key: format!("{}~{}", slot.id, hex(&rand::random::<[u8; 8]>())),
        finished: false,
    };
    let mut buf = bytes::BytesMut::with_capacity(UPLOAD_CHUNK.min(slot.size as usize));
    let mut seq = 0u32;
    let mut chunks = Chunks::new(slot.size, body);
    loop {
        let next = chunks.next().await?;
        let end = next.is_none();
        let mut chunk = next.unwrap_or_default();
        while !chunk.is_empty() || (end && !buf.is_empty()) {
            let take = (UPLOAD_CHUNK - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk.split_to(take));
            if buf.len() == UPLOAD_CHUNK || end {
                let piece = buf.split().freeze();
                if let Err(e) = storage.upload_put_chunk(&staged.key, seq, &piece).await {
                    tracing::error!(%e, "writing an upload failed");
                    return Err(cannot_store());
                }
                seq += 1;
            }
        }
        if end {
            break;
        }
    }
    match storage
        .upload_finish(&slot.id, now, expires, Some(&staged.key))
        .await
    {
        Ok(true) => {
            staged.finished = true;
            Ok(())
        }
        Ok(false) => {
            // The store dropped what was staged.
            staged.finished = true;
            Err(refuse(StatusCode::CONFLICT, "already uploaded"))
        }
        Err(e) => {
            tracing::error!(%e, "recording an upload failed");
            Err(cannot_store())
        }
    }
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
    if !is_id(&id) {
        return refuse(StatusCode::NOT_FOUND, "no such file");
    }
    let meta = match inner.store.file(&id, unix_now()).await {
        Ok(m) => m.filter(|m| m.filename == filename),
        Err(e) => {
            tracing::error!(%e, "reading an upload failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "uploads unavailable");
        }
    };
    let Some(meta) = meta else {
        return refuse(StatusCode::NOT_FOUND, "no such file");
    };
    let mut res = match inner.store.contents {
        // ServeFile streams from disk and does HEAD, Range and If-Modified-Since.
        Contents::Files => match ServeFile::new(inner.store.data_path(&id))
            .oneshot(req)
            .await
        {
            Ok(r) => r.map(Body::new),
            Err(e) => match e {},
        },
        Contents::Database => pieces(inner.store.storage_arc(), &meta, req.headers()),
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

/// The inclusive byte range a `Range` header asks of `size` bytes: None for the whole (no
/// header, several ranges, or one this does not parse, which RFC 9110 §14.2 lets us ignore);
/// Err when it cannot be satisfied.
fn byte_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = match b {
            "" => u64::MAX,
            b => match b.parse::<u64>() {
                Ok(e) if e >= start => e,
                _ => return Ok(None),
            },
        };
        if start >= size {
            return Err(());
        }
        (start, end.min(size - 1))
    };
    Ok(Some(range))
}

/// A file kept in the database, streamed piece by piece (only the pieces a range covers), with
/// ranges and `If-None-Match` on its id.
fn pieces(storage: Arc<dyn Storage>, meta: &Record, req: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", meta.id);
    let size = meta.size;
    if req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let range = req.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match byte_range(range, size) {
        Err(()) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response()
        }
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Ok(None) => (StatusCode::OK, 0, size),
    };
    let chunk = UPLOAD_CHUNK as u64;
    let id = meta.id.clone();
    let first = start / chunk;
    // Pieces [first, last) hold bytes [start, end).
    let last = if end > start {
        (end - 1) / chunk + 1
    } else {
        first
    };
    let body = futures_util::stream::unfold(first, move |seq| {
        let storage = storage.clone();
        let id = id.clone();
        async move {
            if seq >= last {
                return None;
            }
            let piece = match storage.upload_chunk(&id, seq as u32).await {
                Ok(Some(p)) => bytes::Bytes::from(p),
                Ok(None) => return Some((Err(std::io::Error::other("a piece is missing")), last)),
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), last)),
            };
            let base = seq * chunk;
            let lo = start.saturating_sub(base) as usize;
            let hi = ((end - base) as usize).min(piece.len());
            if lo > hi {
                return Some((Err(std::io::Error::other("a piece is short")), last));
            }
            Some((Ok(piece.slice(lo..hi)), seq + 1))
        }
    });
    let mut res = Response::new(Body::from_stream(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=2-4"), 10), Ok(Some((2, 4))));
        assert_eq!(byte_range(Some("bytes=2-"), 10), Ok(Some((2, 9))));
        assert_eq!(byte_range(Some("bytes=5-100"), 10), Ok(Some((5, 9))));
        assert_eq!(byte_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(byte_range(Some("bytes=-30"), 10), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 10), Err(()));
        // Ignored: several ranges, nonsense, other units, backwards.
        for h in [
            "bytes=0-1,3-4",
            "bytes=x-1",
            "items=0-1",
            "bytes=4-2",
            "bytes=5",
        ] {
            assert_eq!(byte_range(Some(h), 10), Ok(None), "{h}");
        }
    }
}
