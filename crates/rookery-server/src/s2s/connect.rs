//! One server-to-server XML stream (either direction), and opening one to a remote domain:
//! static route or DNS SRV (`_xmpps-server._tcp` for direct TLS, XEP-0368, and
//! `_xmpp-server._tcp`, RFC 6120 §3.2) with fallback to the domain on 5269, then STARTTLS.

use super::{DIALBACK_NS, SERVER_NS};
use crate::c2s::Io;
use crate::Server;
use rookery_core::Element;
use rookery_xml::{Limits, StreamEvent, StreamParser};
use rustls_pki_types::CertificateDer;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STREAM_NS: &str = "http://etherx.jabber.org/streams";
const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

pub struct Stream {
    io: Option<Box<dyn Io>>,
    parser: StreamParser,
    queue: VecDeque<StreamEvent>,
    buf: Vec<u8>,
    out: String,
    pub secure: bool,
    limits: Limits,
    /// The stream's content namespace: `jabber:server`, or `jabber:component:accept`.
    ns: &'static str,
    /// The certificate chain the peer showed in the TLS handshake (empty without one).
    pub peer_certs: Vec<CertificateDer<'static>>,
    rate: Option<crate::rate::ByteRate>,
    /// A parse error met after events still queued: reported once they are taken (a header
    /// read together with an attack gets its answer, then the stream error).
    failed: Option<String>,
}

impl Stream {
    pub fn new(io: Box<dyn Io>, limits: Limits) -> Stream {
        Stream::with_ns(io, limits, SERVER_NS)
    }

    pub fn with_ns(io: Box<dyn Io>, limits: Limits, ns: &'static str) -> Stream {
        Stream {
            ns,
            io: Some(io),
            parser: StreamParser::new(limits.clone()),
            queue: VecDeque::new(),
            failed: None,
            buf: vec![0u8; 16 * 1024],
            out: String::with_capacity(1024),
            secure: false,
            limits,
            peer_certs: Vec::new(),
            rate: None,
        }
    }

    /// Limits the average rate the peer may send at.
    pub fn limit_rate(&mut self, bytes_per_second: u64) {
        self.rate = crate::rate::ByteRate::new(bytes_per_second);
    }

    fn io(&mut self) -> &mut Box<dyn Io> {
        self.io
            .as_mut()
            .expect("stream used after a failed TLS upgrade")
    }

    /// The next header, element or close; `Err` carries a stream error condition.
    pub async fn next(&mut self) -> Result<StreamEvent, String> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(ev);
            }
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            // Cancel-safe (callers select! on it): nothing is taken out of `self` across the await.
            if let Some(rate) = &mut self.rate {
                rate.pay().await;
            }
            let io = self
                .io
                .as_mut()
                .expect("stream used after a failed TLS upgrade");
            let n = io
                .read(&mut self.buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Ok(StreamEvent::Close);
            }
            if let Some(rate) = &mut self.rate {
                rate.charge(n);
            }
            let mut out = Vec::new();
            let fed = self.parser.feed(&self.buf[..n], &mut out);
            self.queue.extend(out);
            if let Err(e) = fed {
                self.failed = Some(e.condition().to_string());
            }
        }
    }

    pub async fn send_raw(&mut self, s: &str) -> std::io::Result<()> {
        let io = self.io();
        io.write_all(s.as_bytes()).await?;
        io.flush().await
    }

    /// Writes an element as a child of the stream.
    pub async fn send(&mut self, el: &Element) -> std::io::Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        el.write_to(&mut out, self.ns);
        let r = self.send_raw(&out).await;
        self.out = out;
        r
    }

    pub async fn header(&mut self, from: &str, to: &str, id: Option<&str>) -> std::io::Result<()> {
        let mut h = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{SERVER_NS}' xmlns:db='{DIALBACK_NS}' \
             xmlns:stream='{STREAM_NS}' version='1.0' from='"
        );
        rookery_xml::escape_attr(&mut h, from);
        h.push_str("' to='");
        rookery_xml::escape_attr(&mut h, to);
        if let Some(id) = id {
            h.push_str("' id='");
            h.push_str(id);
        }
        h.push_str("'>");
        self.send_raw(&h).await
    }

    pub async fn error(&mut self, condition: &str, text: Option<&str>) {
        // A read failure (not a stream condition) leaves nobody to tell anything precise.
        let condition = if condition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        {
            condition
        } else {
            "undefined-condition"
        };
        let mut e =
            format!("<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
        if let Some(t) = text {
            e.push_str("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>");
            rookery_xml::escape_text(&mut e, t);
            e.push_str("</text>");
        }
        e.push_str("</stream:error></stream:stream>");
        let _ = self.send_raw(&e).await;
    }

    /// Once a peer has proven a domain, its stanzas may be as large as clients' (the small
    /// pre-authentication limit applied until then).
    pub fn authenticated(&mut self, max_stanza_bytes: usize) {
        self.limits.max_stanza_bytes = max_stanza_bytes;
        self.parser.set_max_stanza_bytes(max_stanza_bytes);
    }

    /// A fresh parser after a TLS upgrade or SASL success (RFC 6120 §5.4.3.3, §6.4.6).
    pub fn restart(&mut self) {
        self.parser = StreamParser::new(self.limits.clone());
        self.queue.clear();
    }

    pub async fn accept_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> Result<(), String> {
        let io = self.io.take().expect("stream in use");
        let tls = acceptor.accept(io).await.map_err(|e| format!("TLS: {e}"))?;
        self.peer_certs = owned_chain(tls.get_ref().1.peer_certificates());
        self.io = Some(Box::new(tls));
        self.secure = true;
        self.restart();
        Ok(())
    }

    async fn connect_tls(
        &mut self,
        remote: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<(), String> {
        let io = self.io.take().expect("stream in use");
        let name = rustls_pki_types::ServerName::try_from(remote.to_string())
            .map_err(|e| format!("{remote}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, io)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        self.peer_certs = owned_chain(tls.get_ref().1.peer_certificates());
        self.io = Some(Box::new(tls));
        self.secure = true;
        self.restart();
        Ok(())
    }
}

fn owned_chain(certs: Option<&[CertificateDer<'_>]>) -> Vec<CertificateDer<'static>> {
    certs
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect()
}

/// One place to connect to, and whether it speaks TLS from the first byte (XEP-0368).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub direct_tls: bool,
}

/// Places to try for `remote`, best first.
async fn resolve(server: &Server, remote: &str) -> Vec<Target> {
    if let Some(route) = server.s2s.route_for(remote) {
        let (direct_tls, hostport) = match route.strip_prefix("tls://") {
            Some(rest) => (true, rest),
            None => (false, route.as_str()),
        };
        return tokio::net::lookup_host(hostport)
            .await
            .map(|a| a.map(|addr| Target { addr, direct_tls }).collect())
            .unwrap_or_default();
    }
    // (priority, direct TLS first at equal priority, host, port, direct TLS)
    let mut targets: Vec<(u16, bool, String, u16)> = vec![];
    if let Ok(r) = hickory_resolver::TokioResolver::builder_tokio().and_then(|b| b.build()) {
        for (service, direct) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
            let Ok(lookup) = r.srv_lookup(format!("{service}.{remote}.")).await else {
                continue;
            };
            for rec in lookup.answers() {
                if let hickory_resolver::proto::rr::RData::SRV(srv) = &rec.data {
                    let target = srv.target.to_utf8();
                    let target = target.trim_end_matches('.');
                    // "." means the service is decidedly not available (RFC 2782).
                    if !target.is_empty() {
                        targets.push((srv.priority, direct, target.to_string(), srv.port));
                    }
                }
            }
        }
    }
    let mut out = vec![];
    for (direct_tls, host, port) in srv_order(targets, remote) {
        if let Ok(a) = tokio::net::lookup_host((host.as_str(), port)).await {
            out.extend(a.map(|addr| Target { addr, direct_tls }));
        }
    }
    out
}

/// SRV targets of both services (priority, direct TLS, host, port) in the order to try them:
/// by priority, direct TLS first at equal priority (XEP-0368 §3); the domain itself on 5269 when
/// there are none.
fn srv_order(mut targets: Vec<(u16, bool, String, u16)>, remote: &str) -> Vec<(bool, String, u16)> {
    targets.sort_by_key(|t| (t.0, !t.1));
    if targets.is_empty() {
        targets.push((0, false, remote.to_string(), 5269));
    }
    targets.into_iter().map(|(_, d, h, p)| (d, h, p)).collect()
}

/// A negotiated stream to a remote domain, before authentication.
pub struct Opened {
    pub stream: Stream,
    /// The id of the remote's stream header (what dialback keys are made for).
    pub id: String,
    pub features: Element,
    /// Whether the remote's certificate is valid for its domain (RFC 6125); `Err` says why not.
    pub certificate: Result<(), String>,
}

/// A stream from `local` to `remote`, encrypted (STARTTLS or direct TLS), with the remote's
/// stream id, features and certificate verdict.
pub async fn open(server: &Server, local: &str, remote: &str) -> Result<Opened, String> {
    let timeout = Duration::from_secs(server.config.s2s.connect_timeout_seconds.max(1));
    let targets = resolve(server, remote).await;
    if targets.is_empty() {
        return Err(format!("{remote}: no address"));
    }
    let (tcp, target) = connect_any(targets, timeout).await?;
    let _ = tcp.set_nodelay(true);
    let mut s = Stream::new(Box::new(tcp), crate::c2s::limits(server, true));
    let certs = &server.s2s.certs;
    let negotiate = async {
        if target.direct_tls {
            s.connect_tls(remote, certs.client(local, true)).await?;
        }
        let (mut id, mut features) = greet(&mut s, local, remote).await?;
        if !s.secure {
            if !features.has_child("starttls", TLS_NS) {
                return Err(format!("{remote} offers no TLS"));
            }
            s.send(&Element::new("starttls", TLS_NS))
                .await
                .map_err(|e| e.to_string())?;
            match s.next().await? {
                StreamEvent::Stanza(p) if p.is("proceed", TLS_NS) => {}
                _ => return Err("STARTTLS refused".to_string()),
            }
            s.connect_tls(remote, certs.client(local, false)).await?;
            (id, features) = greet(&mut s, local, remote).await?;
        }
        Ok::<_, String>((id, features))
    };
    let (id, features) = tokio::time::timeout(timeout * 2, negotiate)
        .await
        .map_err(|_| format!("{remote}: negotiation timed out"))??;
    let certificate = certs.verify(&s.peer_certs, remote);
    Ok(Opened {
        stream: s,
        id,
        features,
        certificate,
    })
}

/// Re-sends the header after SASL success and reads the remote's new one and its features.
pub async fn restart(s: &mut Stream, local: &str, remote: &str) -> Result<Element, String> {
    s.restart();
    greet(s, local, remote).await.map(|(_, f)| f)
}

/// Happy eyeballs (RFC 8305 §5): attempts start 250 ms apart, in order, without waiting for the
/// earlier ones to fail; the first connection made wins and the others are dropped.
async fn connect_any(
    targets: Vec<Target>,
    timeout: Duration,
) -> Result<(tokio::net::TcpStream, Target), String> {
    const STAGGER: Duration = Duration::from_millis(250);
    let mut pending = targets.into_iter().peekable();
    let mut attempts = tokio::task::JoinSet::new();
    let mut last = String::from("no address");
    loop {
        if let Some(t) = pending.next() {
            attempts.spawn(async move {
                let r = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(t.addr)).await;
                (t, r)
            });
        }
        if attempts.is_empty() {
            return Err(last);
        }
        let more = pending.peek().is_some();
        tokio::select! {
            done = attempts.join_next() => match done {
                Some(Ok((t, Ok(Ok(s))))) => return Ok((s, t)),
                Some(Ok((t, Ok(Err(e))))) => last = format!("{}: {e}", t.addr),
                Some(Ok((t, Err(_)))) => last = format!("{}: timeout", t.addr),
                _ => {}
            },
            // Nothing yet: start the next address alongside.
            _ = tokio::time::sleep(STAGGER), if more => {}
        }
    }
}

async fn greet(s: &mut Stream, local: &str, remote: &str) -> Result<(String, Element), String> {
    s.header(local, remote, None)
        .await
        .map_err(|e| e.to_string())?;
    let id = match s.next().await? {
        StreamEvent::Header(h) => h.attr("id").unwrap_or_default().to_string(),
        _ => return Err("no stream header".into()),
    };
    match s.next().await? {
        StreamEvent::Stanza(f) if f.is("features", STREAM_NS) => Ok((id, f)),
        StreamEvent::Stanza(e) if e.is("error", STREAM_NS) => Err(format!(
            "stream error {}",
            e.children()
                .next()
                .map(|c| c.name().to_string())
                .unwrap_or_default()
        )),
        _ => Err("no stream features".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_targets_by_priority_with_direct_tls_first() {
        let t = |p, d, h: &str| (p, d, h.to_string(), 5269);
        let order = srv_order(
            vec![
                t(20, false, "c"),
                t(10, false, "b"),
                t(10, true, "a"),
                t(5, false, "z"),
            ],
            "example.org",
        );
        let hosts: Vec<&str> = order.iter().map(|(_, h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["z", "a", "b", "c"]);
        assert!(order[1].0);
        assert_eq!(
            srv_order(vec![], "example.org"),
            [(false, "example.org".to_string(), 5269)]
        );
    }

    #[tokio::test]
    async fn happy_eyeballs_takes_the_address_that_answers() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let t = Duration::from_secs(2);
        let target = |addr| Target {
            addr,
            direct_tls: false,
        };
        let (s, _) = connect_any(vec![target(closed), target(open.local_addr().unwrap())], t)
            .await
            .unwrap();
        assert_eq!(s.peer_addr().unwrap(), open.local_addr().unwrap());
        let e = connect_any(vec![target(closed)], t).await.unwrap_err();
        assert!(e.starts_with(&closed.to_string()), "{e}");
        assert_eq!(connect_any(vec![], t).await.unwrap_err(), "no address");
    }
}
