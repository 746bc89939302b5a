//! XEP-0363 HTTP File Upload at `upload.<host>`: slot requests checked against the size limit
//! (advertised with a XEP-0128 form), allowed types and per-user quotas; the PUT and GET
//! themselves go to this server's HTTP listeners (`http`), records to storage and contents to
//! files or the database (`store`), and PUTs carry the slot's bearer token (`crate::secrets`).

mod http;
pub mod store;

use super::{HttpRoutes, Module, Registry, Service, SessionHook};
use crate::forms::{Field, Form};
use crate::Server;
use async_trait::async_trait;
use rookery_core::config::{Config, UploadOptions};
use rookery_core::stanza::{self, StanzaError};
use rookery_core::storage::Upload as Record;
use rookery_core::{BareJid, Element, Jid};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::{Limits, Refusal, Store};
use tokio::sync::watch;

pub const NS: &str = "urn:xmpp:http:upload:0";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// How often expired files and lapsed slots are looked for.
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);

pub struct Upload {
    /// Service domains this module answers for.
    domains: Vec<String>,
    inner: Arc<Inner>,
}

/// What the XMPP side and the HTTP side share.
struct Inner {
    options: super::Live<UploadOptions>,
    store: Store,
    /// HTTP listeners as they start serving our routes: (address, is HTTPS).
    listeners: watch::Sender<Vec<(SocketAddr, bool)>>,
    /// Whether URLs should point at an HTTPS listener (one is configured).
    want_tls: bool,
}

impl Upload {
    pub fn new(config: &Config) -> Upload {
        let options = config.modules.upload.clone();
        Upload {
            domains: config
                .hosts
                .iter()
                .map(|h| format!("{}.{}", options.subdomain, h))
                .collect(),
            inner: Arc::new(Inner {
                want_tls: !config.listen.https.is_empty(),
                options: super::Live::new(options),
                store: Store::new(config.upload_contents(), config.upload_dir()),
                listeners: watch::channel(Vec::new()).0,
            }),
        }
    }
}

impl Module for Upload {
    fn name(&self) -> &'static str {
        "upload"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        for d in &self.domains {
            reg.service(d, self.clone());
        }
        reg.http(self.clone());
        reg.reload(self.clone());
        reg.hook(self);
    }
}

impl HttpRoutes for Upload {
    fn routes(&self, server: Arc<Server>, local: SocketAddr, tls: bool) -> axum::Router {
        self.inner.store.attach(server.storage.clone());
        self.inner.listeners.send_modify(|l| l.push((local, tls)));
        http::routes(self.inner.clone())
    }
}

#[async_trait]
impl super::Reload for Upload {
    async fn reload(&self, config: &Config) -> Vec<&'static str> {
        let mut new = config.modules.upload.clone();
        let old = self.inner.options.get();
        let mut restart = Vec::new();
        if new.subdomain != old.subdomain {
            restart.push("modules.upload.subdomain");
            new.subdomain = old.subdomain.clone();
        }
        if config.upload_contents() != self.inner.store.contents
            || config.upload_dir() != self.inner.store.dir
        {
            restart.push("modules.upload.store");
        }
        new.store = old.store;
        new.path = old.path.clone();
        self.inner.options.set(new);
        restart
    }
}

#[async_trait]
impl SessionHook for Upload {
    async fn on_user_deleted(&self, _server: &Server, user: &BareJid) {
        if let Err(e) = self.inner.store.remove_owner(user.as_str()).await {
            tracing::error!(%e, %user, "removing a deleted account's uploads failed");
        }
    }
}

/// XEP-0082 date-time of Unix seconds `t`.
fn stamp(t: u64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// RFC 3986 unreserved characters stay; everything else (UTF-8 bytes) is percent-encoded.
fn encode_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// A file name is one path segment a browser can save under.
fn valid_filename(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// `type/subtype` with optional parameters, safe to send back as a header.
fn valid_content_type(t: &str) -> bool {
    let essence = t.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(essence.split_once('/'), Some((a, b)) if token(a) && token(b))
        && axum::http::HeaderValue::from_str(t).is_ok()
}

/// The media type without parameters, lowercased.
pub(crate) fn essence(t: &str) -> String {
    t.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether `t` is one of `allowed` (`image/*` covers every image type); an empty list allows all.
fn type_allowed(allowed: &[String], t: &str) -> bool {
    let t = essence(t);
    allowed.is_empty()
        || allowed.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            match a.strip_suffix("/*") {
                Some(major) => t.split('/').next() == Some(major),
                None => a == t,
            }
        })
}

impl Inner {
    fn limits(&self) -> Limits {
        Limits {
            quota: self.options.get().quota_bytes,
            daily: self.options.get().daily_quota_bytes,
        }
    }

    /// Where URLs for users of `host` point: the configured base, else an HTTP(S) listener of
    /// ours (named by `host` when it listens on every address).
    async fn url_base(&self, host: &str) -> Option<String> {
        if let Some(b) = &self.options.get().url_base {
            return Some(b.trim_end_matches('/').to_string());
        }
        let want = self.want_tls;
        let mut rx = self.listeners.subscribe();
        // Listeners mount their routes as they start, which may be just after us.
        let ready = tokio::time::timeout(
            Duration::from_secs(5),
            rx.wait_for(|l| l.iter().any(|(_, tls)| *tls == want)),
        );
        let (addr, tls) = *ready
            .await
            .ok()?
            .ok()?
            .iter()
            .find(|(_, tls)| *tls == want)?;
        let scheme = if tls { "https" } else { "http" };
        let name = match addr.ip() {
            ip if ip.is_unspecified() => host.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Some(match (tls, addr.port()) {
            (false, 80) | (true, 443) => format!("{scheme}://{name}"),
            (_, port) => format!("{scheme}://{name}:{port}"),
        })
    }

    /// Answers a slot request (XEP-0363 §4) from local user `owner` of `host`.
    async fn slot(
        &self,
        owner: &BareJid,
        host: &str,
        req: &Element,
    ) -> Result<Element, StanzaError> {
        let bad = |t: &str| StanzaError::bad_request().with_text(t);
        let size = req
            .attr("size")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("File size must be positive integer"))?;
        let filename = req.attr("filename").unwrap_or_default();
        if !valid_filename(filename) {
            return Err(bad("Invalid filename"));
        }
        let content_type = match req.attr("content-type") {
            None | Some("") => "application/octet-stream",
            Some(t) if valid_content_type(t) => t,
            Some(_) => return Err(bad("Invalid content type")),
        };
        let max = self.options.get().max_file_size;
        if size > max {
            let mut e = StanzaError::not_acceptable().with_text("File too large");
            e.extra = Some(Box::new(Element::new("file-too-large", NS).with_child(
                Element::new("max-file-size", NS).with_text(max.to_string()),
            )));
            return Err(e);
        }
        if !type_allowed(&self.options.get().allowed_types, content_type) {
            return Err(StanzaError::not_acceptable().with_text("File type not allowed"));
        }
        let Some(base) = self.url_base(host).await else {
            return Err(StanzaError::internal_server_error().with_text("no HTTP listener"));
        };
        let now = crate::unix_now();
        let id = store::new_id();
        let bearer = crate::secrets::new_token();
        let slot = Record {
            id: id.clone(),
            owner: owner.to_string(),
            filename: filename.to_string(),
            content_type: content_type.to_string(),
            size,
            created: now,
            expires: Some(now + self.options.get().slot_lifetime_seconds),
            stored: false,
            token_hash: crate::secrets::hash(&bearer),
        };
        match self.store.reserve(&slot, self.limits(), now).await {
            Ok(Ok(())) => {}
            Ok(Err(refusal)) => return Err(quota_error(refusal)),
            Err(e) => {
                tracing::error!(%e, "recording an upload slot failed");
                return Err(
                    StanzaError::internal_server_error().with_text("upload store unavailable")
                );
            }
        }
        let url = format!("{base}/upload/{id}/{}", encode_segment(filename));
        Ok(Element::new("slot", NS)
            .with_child(Element::new("get", NS).with_attr("url", url.clone()))
            .with_child(
                Element::new("put", NS).with_attr("url", url).with_child(
                    Element::new("header", NS)
                        .with_attr("name", "Authorization")
                        .with_text(format!("Bearer {bearer}")),
                ),
            ))
    }
}

/// XEP-0363 §5: a temporary error, with when to retry if that is known.
fn quota_error(r: Refusal) -> StanzaError {
    let (text, retry) = match r {
        Refusal::Quota { retry } => ("Quota reached: too much stored", retry),
        Refusal::Daily { retry } => ("Quota reached: too much uploaded today", retry),
    };
    let mut e = StanzaError::resource_constraint().with_text(text);
    if let Some(t) = retry {
        e.extra = Some(Box::new(
            Element::new("retry", NS).with_attr("stamp", stamp(t)),
        ));
    }
    e
}

impl Upload {
    fn disco_info(&self) -> Element {
        let mut q = Element::new("query", INFO).with_child(
            Element::new("identity", INFO)
                .with_attr("category", "store")
                .with_attr("type", "file")
                .with_attr("name", self.inner.options.get().name.clone()),
        );
        for f in [INFO, ITEMS, NS] {
            q.push_child(Element::new("feature", INFO).with_attr("var", f));
        }
        // XEP-0128: the size limit, so clients need not ask to learn it.
        let form = Form::new(
            "result",
            None,
            vec![
                Field::hidden("FORM_TYPE", NS),
                Field::text(
                    "max-file-size",
                    "",
                    &self.inner.options.get().max_file_size.to_string(),
                ),
            ],
        );
        q.push_child(form.to_element());
        q
    }

    async fn iq(&self, server: &Server, el: &Element, host: &str) -> Result<Element, StanzaError> {
        let payload = el.children().next().ok_or_else(StanzaError::bad_request)?;
        let get = el.attr("type") == Some("get");
        match (payload.ns(), payload.name(), get) {
            (INFO, "query", true) if payload.attr("node").is_none() => Ok(self.disco_info()),
            (ITEMS, "query", true) => Ok(Element::new("query", ITEMS)),
            ("urn:xmpp:ping", "ping", true) => Ok(Element::new("ping", "urn:xmpp:ping")),
            (NS, "request", true) => {
                let from = el.attr("from").and_then(|f| Jid::new(f).ok());
                let owner = match from {
                    Some(f) if f.node().is_some() && server.config.is_local_host(f.domain()) => {
                        f.to_bare()
                    }
                    _ => {
                        return Err(StanzaError::forbidden()
                            .with_text("only users of this server may upload"))
                    }
                };
                self.inner.slot(&owner, host, payload).await
            }
            _ => Err(StanzaError::service_unavailable()),
        }
    }
}

#[async_trait]
impl Service for Upload {
    async fn start(&self, server: &Server) {
        let inner = &self.inner;
        inner.store.attach(server.storage.clone());
        match inner.store.load().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "uploads of an earlier store taken over"),
            Err(e) => {
                tracing::error!(%e, dir = %inner.store.dir.display(), "upload directory unreadable")
            }
        }
        let inner = self.inner.clone();
        let shutdown = server.shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(CLEANUP_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                match inner.store.expire(crate::unix_now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(n, "expired uploads removed"),
                    Err(e) => tracing::warn!(%e, "removing expired uploads failed"),
                }
            }
        });
    }

    async fn handle(&self, server: &Server, el: Element) {
        let Some(domain) = super::service_request(server, &el) else {
            return;
        };
        let host = domain
            .strip_prefix(&format!("{}.", self.inner.options.get().subdomain))
            .unwrap_or(&domain)
            .to_string();
        match self.iq(server, &el, &host).await {
            Ok(p) => crate::router::deliver(server, stanza::iq_result_with(&el, p)).await,
            Err(e) => crate::router::bounce(server, &el, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_and_urls() {
        assert!(valid_filename("très cool.jpg"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
            assert!(!valid_filename(bad), "{bad:?}");
        }
        assert!(valid_content_type("image/png"));
        assert!(valid_content_type("text/plain; charset=utf-8"));
        assert!(!valid_content_type("text"));
        assert!(!valid_content_type("text/plain\r\nX: y"));
        let allowed = vec!["text/plain".to_string(), "image/*".to_string()];
        assert!(type_allowed(&allowed, "image/PNG"));
        assert!(type_allowed(&allowed, "text/plain; charset=utf-8"));
        assert!(!type_allowed(&allowed, "application/x-executable"));
        assert!(type_allowed(&[], "application/x-executable"));
        assert_eq!(encode_segment("très cool.jpg"), "tr%C3%A8s%20cool.jpg");
        assert_eq!(stamp(1_219_439_344), "2008-08-22T21:09:04Z");
    }
}
