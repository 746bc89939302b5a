//! One client connection: TCP, STARTTLS, SASL SCRAM login, resource binding and initial presence,
//! plus XEP-0077 in-band registration on an unauthenticated STARTTLS'd stream.

use crate::scram::{Mechanism, SaltCache, ScramClient};
use crate::split::{self, Piece, Splitter};
use anyhow::{anyhow, bail, Context, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use rookery_xml::{ns, Element, Limits, StreamEvent, StreamParser};
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const REGISTER_NS: &str = "jabber:iq:register";

/// What every connection needs to know; shared by all clients.
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub domain: String,
    pub password: String,
    pub mechanism: Mechanism,
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
    pub salt_cache: SaltCache,
    pub login_timeout: Duration,
    /// Stay on plain TCP: no STARTTLS (for measuring the cost of a session without TLS).
    pub plain: bool,
}

/// A client connection: TLS after STARTTLS, or plain TCP with `Settings::plain`.
pub enum Stream {
    Tls(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

impl From<TlsStream<TcpStream>> for Stream {
    fn from(tls: TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(tls))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The parsing side of an XML stream, independent of the transport it reads from, so that it
/// survives splitting a connection into read and write halves.
/// Where [`Reader::next_event_or_message`] hands message stanzas, as their bytes.
pub type OnMessage<'a> = dyn FnMut(&[u8]) + Send + 'a;

pub struct Reader {
    parser: StreamParser,
    split: Splitter,
    pending: VecDeque<StreamEvent>,
    scratch: Vec<StreamEvent>,
    buf: Box<[u8]>,
}

impl Reader {
    fn new() -> Self {
        Reader {
            parser: StreamParser::new(Limits::default()),
            split: Splitter::default(),
            pending: VecDeque::new(),
            scratch: Vec::new(),
            buf: vec![0; 8192].into_boxed_slice(),
        }
    }

    /// Starts over for a stream restart (after STARTTLS and after SASL success).
    fn reset(&mut self) {
        self.parser = StreamParser::new(Limits::default());
        self.split = Splitter::default();
        self.pending.clear();
    }

    /// The next stream event. Cancel-safe: the only await point is a single `read`.
    pub async fn next_event<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<StreamEvent> {
        self.next_event_or_message(io, None).await
    }

    /// [`Reader::next_event`], except that `<message>` stanzas, when `messages` is given, go to
    /// it as their bytes instead of through the parser. Cancel-safe, as `next_event`.
    pub async fn next_event_or_message<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        mut messages: Option<&mut OnMessage<'_>>,
    ) -> Result<StreamEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            while let Some((piece, n)) = self.split.next_piece() {
                let bytes = &self.split.bytes()[..n];
                match messages.as_mut() {
                    Some(m) if piece == Piece::Element && split::is_message(bytes) => m(bytes),
                    _ => self
                        .parser
                        .feed(bytes, &mut self.scratch)
                        .map_err(|e| anyhow!("server sent bad XML: {}", e.condition()))?,
                }
                self.split.consume(n);
                self.pending.extend(self.scratch.drain(..));
            }
            if !self.pending.is_empty() {
                continue;
            }
            let n = io.read(&mut self.buf).await.map_err(|e| match e.kind() {
                // rustls reports a close without close_notify this way; the detail is a long URL.
                std::io::ErrorKind::UnexpectedEof => anyhow!("connection closed by server"),
                _ => anyhow!("read: {e}"),
            })?;
            if n == 0 {
                bail!("connection closed by server");
            }
            self.split.push(&self.buf[..n]);
        }
    }

    /// The next top-level element; a stream error or the stream's end is an error.
    async fn next_stanza<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Element> {
        match self.next_event(io).await? {
            StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => {
                Err(anyhow!("stream error: {}", first_child_name(&el)))
            }
            StreamEvent::Stanza(el) => Ok(el),
            StreamEvent::Header(_) => bail!("unexpected stream header"),
            StreamEvent::Close => bail!("stream closed by server"),
        }
    }
}

/// A connection on which `login` has completed: bound, presence sent.
pub struct Online {
    pub jid: String,
    pub stream: Stream,
    pub reader: Reader,
    pub login_time: Duration,
}

/// How an in-band registration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    AlreadyExists,
}

/// Signs `user` in: connect, STARTTLS, SCRAM, bind resource `r`, initial presence.
pub async fn login(cfg: &Settings, user: &str) -> Result<Online> {
    login_as(cfg, user, "r").await
}

/// `login` with another resource (a user signed in several times).
pub async fn login_as(cfg: &Settings, user: &str, resource: &str) -> Result<Online> {
    let started = Instant::now();
    let work = async {
        let (mut io, mut reader, features) = client_stream(cfg).await?;
        authenticate(cfg, user, &mut io, &mut reader, &features)
            .await
            .context("sasl")?;
        let features = open_stream(cfg, &mut io, &mut reader)
            .await
            .context("stream restart")?;
        let jid = bind(&mut io, &mut reader, &features, resource)
            .await
            .context("bind")?;
        send(&mut io, "<presence/>").await.context("presence")?;
        Ok::<_, anyhow::Error>((io, reader, jid))
    };
    let (stream, reader, jid) = tokio::time::timeout(cfg.login_timeout, work)
        .await
        .map_err(|_| anyhow!("timeout"))??;
    Ok(Online {
        jid,
        stream,
        reader,
        login_time: started.elapsed(),
    })
}

/// Joins MUC room `room` as `nick` without history and waits for the self-presence (XEP-0045
/// §7.2). When the room was just created (status 201), submits a configuration allowing
/// `max_users` occupants, which also unlocks it.
pub async fn join_room(online: &mut Online, room: &str, nick: &str, max_users: u32) -> Result<()> {
    let occupant = format!("{room}/{nick}");
    let join = Element::new("presence", ns::CLIENT)
        .with_attr("to", occupant.as_str())
        .with_child(
            Element::new("x", MUC)
                .with_child(Element::new("history", MUC).with_attr("maxstanzas", "0")),
        );
    send(&mut online.stream, &join.to_stream_xml(ns::CLIENT)).await?;
    let io = &mut online.stream;
    loop {
        let el = online.reader.next_stanza(io).await?;
        if !el.is("presence", ns::CLIENT) || el.attr("from") != Some(occupant.as_str()) {
            continue;
        }
        if el.attr("type") == Some("error") {
            bail!("join refused: {}", stanza_error(&el));
        }
        let codes: Vec<&str> = el
            .get_child("x", MUC_USER)
            .map(|x| x.children().filter_map(|c| c.attr("code")).collect())
            .unwrap_or_default();
        if !codes.contains(&"110") {
            continue;
        }
        if codes.contains(&"201") {
            let field = |var: &str, value: &str| {
                Element::new("field", DATA)
                    .with_attr("var", var)
                    .with_child(Element::new("value", DATA).with_text(value))
            };
            let config = Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", "cfg")
                .with_attr("to", room)
                .with_child(
                    Element::new("query", MUC_OWNER).with_child(
                        Element::new("x", DATA)
                            .with_attr("type", "submit")
                            .with_child(field("FORM_TYPE", MUC_CONFIG))
                            .with_child(field("muc#roomconfig_maxusers", &max_users.to_string())),
                    ),
                );
            send(io, &config.to_stream_xml(ns::CLIENT)).await?;
            let reply = iq_reply(io, &mut online.reader, "cfg").await?;
            if reply.attr("type") != Some("result") {
                bail!("room configuration refused: {}", stanza_error(&reply));
            }
        }
        return Ok(());
    }
}

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const MUC_CONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
const DATA: &str = "jabber:x:data";

/// Creates account `user` with XEP-0077 in-band registration, then closes the stream.
pub async fn register(cfg: &Settings, user: &str) -> Result<Registered> {
    let work = async {
        let (mut io, mut reader, _features) = client_stream(cfg).await?;
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "reg")
            .with_child(
                Element::new("query", REGISTER_NS)
                    .with_child(Element::new("username", REGISTER_NS).with_text(user))
                    .with_child(Element::new("password", REGISTER_NS).with_text(&cfg.password)),
            );
        send(&mut io, &iq.to_stream_xml(ns::CLIENT)).await?;
        let reply = iq_reply(&mut io, &mut reader, "reg")
            .await
            .context("register")?;
        let outcome = match reply.attr("type") {
            Some("result") => Registered::Created,
            _ => match stanza_error(&reply).as_str() {
                "conflict" => Registered::AlreadyExists,
                cond => bail!("register refused: {cond}"),
            },
        };
        // Best effort: the account exists whatever happens to the goodbye.
        let _ = send(&mut io, "</stream:stream>").await;
        let _ = io.shutdown().await;
        Ok(outcome)
    };
    tokio::time::timeout(cfg.login_timeout, work)
        .await
        .map_err(|_| anyhow!("timeout"))?
}

/// `secure_stream`, or with `Settings::plain` the first stream's features on plain TCP.
pub async fn client_stream(cfg: &Settings) -> Result<(Stream, Reader, Element)> {
    if !cfg.plain {
        let (tls, reader, features) = secure_stream(cfg).await?;
        return Ok((tls.into(), reader, features));
    }
    let (tcp, reader, features) = plain_stream(cfg).await?;
    Ok((Stream::Plain(tcp), reader, features))
}

/// TCP connect and the first stream's features.
async fn plain_stream(cfg: &Settings) -> Result<(TcpStream, Reader, Element)> {
    let mut tcp = TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .context("connect")?;
    tcp.set_nodelay(true).context("connect")?;
    let mut reader = Reader::new();
    let features = open_stream(cfg, &mut tcp, &mut reader)
        .await
        .context("stream open")?;
    Ok((tcp, reader, features))
}

/// TCP connect, first stream, STARTTLS, TLS handshake and the second stream's features.
pub async fn secure_stream(cfg: &Settings) -> Result<(TlsStream<TcpStream>, Reader, Element)> {
    let (mut tcp, mut reader, features) = plain_stream(cfg).await?;
    if !features.has_child("starttls", ns::TLS) {
        bail!("starttls: not offered");
    }
    send(
        &mut tcp,
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    )
    .await
    .context("starttls")?;
    let answer = reader.next_stanza(&mut tcp).await.context("starttls")?;
    if !answer.is("proceed", ns::TLS) {
        bail!("starttls: server answered <{}/>", answer.name());
    }
    let mut tls = cfg
        .connector
        .connect(cfg.server_name.clone(), tcp)
        .await
        .context("tls handshake")?;
    let features = open_stream(cfg, &mut tls, &mut reader)
        .await
        .context("stream open after tls")?;
    Ok((tls, reader, features))
}

/// Sends a stream header and returns the server's `<stream:features/>`.
pub async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(
    cfg: &Settings,
    io: &mut S,
    reader: &mut Reader,
) -> Result<Element> {
    reader.reset();
    let mut header = String::from(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='",
    );
    rookery_xml::escape_attr(&mut header, &cfg.domain);
    header.push_str("' version='1.0'>");
    send(io, &header).await?;
    match reader.next_event(io).await? {
        StreamEvent::Header(_) => {}
        _ => bail!("expected a stream header"),
    }
    let features = reader.next_stanza(io).await?;
    if !features.is("features", ns::STREAM) {
        bail!("expected stream features, got <{}/>", features.name());
    }
    Ok(features)
}

/// SASL SCRAM exchange, verifying the server's signature before accepting success.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    cfg: &Settings,
    user: &str,
    io: &mut S,
    reader: &mut Reader,
    features: &Element,
) -> Result<()> {
    let mech = cfg.mechanism.name();
    let offered = features
        .get_child("mechanisms", ns::SASL)
        .map(|m| m.children().any(|c| c.text().trim() == mech))
        .unwrap_or(false);
    if !offered {
        bail!("{mech} not offered");
    }
    let mut scram = ScramClient::with_random_nonce(cfg.mechanism, user, &cfg.password);
    let auth = Element::new("auth", ns::SASL)
        .with_attr("mechanism", mech)
        .with_text(B64.encode(scram.client_first()));
    send(io, &auth.to_stream_xml(ns::CLIENT)).await?;

    let challenge = sasl_step(io, reader).await?;
    let server_first = match challenge {
        SaslStep::Challenge(data) => data,
        SaslStep::Success(_) => bail!("success before proof"),
    };
    let client_final = scram.client_final(&server_first, Some(&cfg.salt_cache))?;
    let response = Element::new("response", ns::SASL).with_text(B64.encode(client_final));
    send(io, &response.to_stream_xml(ns::CLIENT)).await?;

    match sasl_step(io, reader).await? {
        SaslStep::Success(data) if !data.is_empty() => scram.verify_server_final(&data),
        SaslStep::Success(_) => bail!("success without server signature"),
        // Some servers send server-final as a challenge and want an empty response.
        SaslStep::Challenge(data) => {
            scram.verify_server_final(&data)?;
            send(io, "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await?;
            match sasl_step(io, reader).await? {
                SaslStep::Success(_) => Ok(()),
                SaslStep::Challenge(_) => bail!("unexpected third challenge"),
            }
        }
    }
}

enum SaslStep {
    Challenge(String),
    Success(String),
}

async fn sasl_step<R: AsyncRead + Unpin>(io: &mut R, reader: &mut Reader) -> Result<SaslStep> {
    let el = reader.next_stanza(io).await?;
    if el.ns() != ns::SASL {
        bail!("unexpected <{}/> during SASL", el.name());
    }
    let decode = |el: &Element| -> Result<String> {
        let text = el.text();
        let text = text.trim();
        if text.is_empty() || text == "=" {
            return Ok(String::new());
        }
        let raw = B64.decode(text).context("payload is not base64")?;
        String::from_utf8(raw).context("payload is not UTF-8")
    };
    match el.name() {
        "challenge" => Ok(SaslStep::Challenge(decode(&el)?)),
        "success" => Ok(SaslStep::Success(decode(&el)?)),
        "failure" => bail!("failure: {}", first_child_name(&el)),
        other => bail!("unexpected <{other}/>"),
    }
}

/// Binds `resource` (and opens a legacy session if the server insists), returning the full JID.
async fn bind<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    reader: &mut Reader,
    features: &Element,
    resource: &str,
) -> Result<String> {
    if !features.has_child("bind", ns::BIND) {
        bail!("not offered");
    }
    let mut req = String::from(
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>",
    );
    rookery_xml::escape_text(&mut req, resource);
    req.push_str("</resource></bind></iq>");
    send(io, &req).await?;
    let reply = iq_reply(io, reader, "b").await?;
    if reply.attr("type") != Some("result") {
        bail!("refused: {}", stanza_error(&reply));
    }
    let jid = reply
        .get_child("bind", ns::BIND)
        .and_then(|b| b.child_text("jid", ns::BIND))
        .map(|j| j.trim().to_owned())
        .filter(|j| !j.is_empty())
        .ok_or_else(|| anyhow!("result without a jid"))?;
    let session_required = features
        .get_child("session", ns::SESSION)
        .is_some_and(|s| !s.has_child("optional", ns::SESSION));
    if session_required {
        send(
            io,
            "<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
        )
        .await?;
        let reply = iq_reply(io, reader, "s").await?;
        if reply.attr("type") != Some("result") {
            bail!("session refused: {}", stanza_error(&reply));
        }
    }
    Ok(jid)
}

/// Waits for the `<iq/>` answering `id`, skipping anything else the server sends meanwhile.
async fn iq_reply<R: AsyncRead + Unpin>(
    io: &mut R,
    reader: &mut Reader,
    id: &str,
) -> Result<Element> {
    loop {
        let el = reader.next_stanza(io).await?;
        let is_reply = el.is("iq", ns::CLIENT)
            && el.attr("id") == Some(id)
            && matches!(el.attr("type"), Some("result" | "error"));
        if is_reply {
            return Ok(el);
        }
    }
}

pub async fn send<W: AsyncWrite + Unpin>(io: &mut W, xml: &str) -> Result<()> {
    io.write_all(xml.as_bytes()).await?;
    io.flush().await?;
    Ok(())
}

/// The defined condition of a stanza error (`<error><conflict/></error>` → "conflict").
pub fn stanza_error(el: &Element) -> String {
    el.get_child("error", ns::CLIENT)
        .and_then(|e| e.children().find(|c| c.ns() == ns::STANZAS_ERR))
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "unknown error".to_owned())
}

fn first_child_name(el: &Element) -> String {
    el.children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "unspecified".to_owned())
}
