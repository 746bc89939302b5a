//! Client-to-server connections (RFC 6120): listeners and the TCP transport. The negotiation and
//! session logic in `stream` works on any [`Transport`], so WebSocket and BOSH share it.

pub mod bosh;
pub(crate) mod sasl;
pub mod sm;
pub mod stream;
pub mod websocket;

use crate::scram::ChannelBindings;
use crate::Server;
use async_trait::async_trait;
use rookery_xml::{Element, Limits, StreamError, StreamEvent, StreamParser};
use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Why reading from a transport stopped.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Xml(StreamError),
    /// The peer closed the connection without closing the stream.
    Eof,
}

/// How a c2s stream is framed and carried. Everything above this is transport-independent.
#[async_trait]
pub trait Transport: Send {
    /// Waits for input and appends the events it completes (at least one, or an error).
    async fn read_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ReadError>;
    /// [`Transport::read_events`] returning a fresh vector; cancel-safe, for `select!`.
    async fn read_events_vec(&mut self) -> Result<Vec<StreamEvent>, ReadError> {
        let mut v = Vec::new();
        self.read_events(&mut v).await?;
        Ok(v)
    }
    /// Writes the stream header (the `<stream:stream>` or `<open/>`).
    async fn open_stream(&mut self, from: &str, id: &str, to: Option<&str>) -> io::Result<()>;
    /// Writes elements in the stream's content namespace and flushes.
    async fn send(&mut self, els: &[Element]) -> io::Result<()>;
    /// Writes the closing of the stream and shuts the connection.
    async fn close_stream(&mut self) -> io::Result<()>;
    /// Upgrades to TLS after `<proceed/>` was sent; None where STARTTLS does not apply.
    async fn starttls(&mut self) -> Option<io::Result<()>>;
    fn is_secure(&self) -> bool;
    fn channel_bindings(&self) -> ChannelBindings;
    /// A stream restart (after TLS or SASL): a fresh parser with the given limits.
    fn restart(&mut self, limits: Limits);
    fn peer_ip(&self) -> IpAddr;
    /// Frees what reading holds between stanzas, for a connection gone quiet.
    fn compact(&mut self) {}
}

/// Bytes taken from a socket in one read: a full TLS record's plaintext.
const READ_SIZE: usize = 16 * 1024;

thread_local! {
    /// Where every connection's reads land. A read is parsed in the same poll that fills it, so
    /// the buffer is free again before the task yields: an idle connection holds no read buffer
    /// of its own (most of a session's memory before this).
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

/// Reads once from `io` into the thread's buffer and feeds what came to `parser`; returns the
/// number of bytes read.
async fn read_into_parser(
    io: &mut Box<dyn Io>,
    parser: &mut StreamParser,
    out: &mut Vec<StreamEvent>,
) -> Result<usize, ReadError> {
    std::future::poll_fn(|cx| {
        READ_BUF.with_borrow_mut(|buf| {
            let mut rb = ReadBuf::new(buf);
            match Pin::new(&mut **io).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(ReadError::Io(e))),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        return Poll::Ready(Err(ReadError::Eof));
                    }
                    Poll::Ready(
                        parser
                            .feed(&buf[..n], out)
                            .map(|_| n)
                            .map_err(ReadError::Xml),
                    )
                }
            }
        })
    })
    .await
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct TcpTransport {
    io: Option<Box<dyn Io>>,
    parser: StreamParser,
    /// What is being written; empty (no allocation) between writes.
    wbuf: String,
    secure: bool,
    bindings: ChannelBindings,
    server: Arc<Server>,
    peer: IpAddr,
    /// `limits.rate_bytes_per_second`.
    rate: Option<crate::rate::ByteRate>,
    /// `limits.rate_bytes_per_second_per_ip`, and what this connection owes of it.
    ip_rate: Option<Arc<crate::rate::SharedRate>>,
    ip_debt: Duration,
}

impl TcpTransport {
    pub fn new(server: Arc<Server>, io: Box<dyn Io>, peer: IpAddr, limits: Limits) -> Self {
        TcpTransport {
            io: Some(io),
            parser: StreamParser::new(limits),
            wbuf: String::new(),
            secure: false,
            bindings: ChannelBindings::default(),
            peer,
            rate: crate::rate::ByteRate::new(server.config.limits.rate_bytes_per_second),
            ip_rate: server.c2s_per_ip.shared_rates(peer).0,
            ip_debt: Duration::ZERO,
            server,
        }
    }

    fn io(&mut self) -> &mut Box<dyn Io> {
        self.io
            .as_mut()
            .expect("transport in use after TLS failure")
    }

    async fn flush_wbuf(&mut self) -> io::Result<()> {
        let io = self
            .io
            .as_mut()
            .expect("transport in use after TLS failure");
        let r = async {
            io.write_all(self.wbuf.as_bytes()).await?;
            io.flush().await
        }
        .await;
        // Freed rather than kept: idle connections outnumber busy ones.
        self.wbuf = String::new();
        r
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn read_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ReadError> {
        loop {
            // Waiting before reading keeps this cancel-safe: nothing parsed is held.
            crate::rate::pay(self.rate.as_mut(), self.ip_debt).await;
            self.ip_debt = Duration::ZERO;
            let io = self
                .io
                .as_mut()
                .expect("transport in use after TLS failure");
            let n = read_into_parser(io, &mut self.parser, out).await?;
            if let Some(rate) = &mut self.rate {
                rate.charge(n);
            }
            if let Some(shared) = &self.ip_rate {
                self.ip_debt += shared.charge(n);
            }
            if !out.is_empty() {
                return Ok(());
            }
        }
    }

    async fn open_stream(&mut self, from: &str, id: &str, to: Option<&str>) -> io::Result<()> {
        self.wbuf.push_str("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='");
        rookery_xml::escape_attr(&mut self.wbuf, id);
        self.wbuf.push_str("' from='");
        rookery_xml::escape_attr(&mut self.wbuf, from);
        if let Some(to) = to {
            self.wbuf.push_str("' to='");
            rookery_xml::escape_attr(&mut self.wbuf, to);
        }
        self.wbuf.push_str("' version='1.0' xml:lang='en'>");
        self.flush_wbuf().await
    }

    async fn send(&mut self, els: &[Element]) -> io::Result<()> {
        self.wbuf.reserve(256 * els.len());
        for el in els {
            el.write_in_stream(&mut self.wbuf);
        }
        self.flush_wbuf().await
    }

    async fn close_stream(&mut self) -> io::Result<()> {
        self.wbuf.push_str("</stream:stream>");
        self.flush_wbuf().await?;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.io().shutdown()).await;
        Ok(())
    }

    async fn starttls(&mut self) -> Option<io::Result<()>> {
        if self.secure {
            return None;
        }
        let io = self.io.take()?;
        let acceptor = self.server.tls.starttls.clone();
        Some(match acceptor.accept(io).await {
            Ok(tls) => {
                self.bindings = self.server.tls.bindings(tls.get_ref().1);
                self.io = Some(Box::new(tls));
                self.secure = true;
                Ok(())
            }
            Err(e) => Err(e),
        })
    }

    fn is_secure(&self) -> bool {
        self.secure
    }

    fn channel_bindings(&self) -> ChannelBindings {
        self.bindings.clone()
    }

    fn restart(&mut self, limits: Limits) {
        self.parser = StreamParser::new(limits);
    }

    fn peer_ip(&self) -> IpAddr {
        self.peer
    }

    fn compact(&mut self) {
        self.parser.compact();
    }
}

pub fn limits(server: &Server, authenticated: bool) -> Limits {
    let l = &server.config.limits;
    Limits {
        max_stanza_bytes: if authenticated {
            l.max_stanza_bytes
        } else {
            l.max_stanza_bytes_unauthenticated
        },
        max_depth: l.max_depth,
        max_attributes: l.max_attributes,
        ..Limits::default()
    }
}

pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = server.shutdown.cancelled() => return,
        };
        let Some(slot) = server.c2s_per_ip.acquire(&server, peer.ip()) else {
            tracing::info!(peer = %peer.ip(), "too many connections from one address");
            server.connections.spawn(refuse(sock, direct_tls));
            continue;
        };
        let _ = sock.set_nodelay(true);
        let server2 = server.clone();
        server.connections.spawn(async move {
            let _slot = slot;
            handle_tcp(server2, sock, peer.ip(), direct_tls).await;
        });
    }
}

/// Open connections per client address, with the rate buckets they share.
#[derive(Default)]
pub struct PerIp {
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, Address>>,
}

/// One address's connections and shared buckets (`limits.rate_*_per_ip`).
struct Address {
    connections: usize,
    bytes: Option<Arc<crate::rate::SharedRate>>,
    stanzas: Option<Arc<crate::rate::SharedRate>>,
}

/// One connection counted in [`PerIp`]; dropping it frees the place.
pub struct IpSlot {
    server: Arc<Server>,
    ip: IpAddr,
}

impl PerIp {
    /// Counts a new connection from `ip`, or None when the address has its fill.
    pub fn acquire(&self, server: &Arc<Server>, ip: IpAddr) -> Option<IpSlot> {
        let max = server.config.limits.max_connections_per_ip;
        let mut open = self.open.lock().unwrap();
        let limits = &server.config.limits;
        let a = open.entry(ip).or_insert_with(|| Address {
            connections: 0,
            bytes: crate::rate::SharedRate::new(limits.rate_bytes_per_second_per_ip),
            stanzas: crate::rate::SharedRate::new(limits.rate_stanzas_per_second_per_ip.into()),
        });
        if max != 0 && a.connections >= max {
            return None;
        }
        a.connections += 1;
        Some(IpSlot {
            server: server.clone(),
            ip,
        })
    }

    /// Connections open from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.open
            .lock()
            .unwrap()
            .get(&ip)
            .map(|a| a.connections)
            .unwrap_or(0)
    }

    /// The byte and stanza buckets the connections from `ip` share (none when unlimited, or for
    /// connections not counted here: WebSocket and BOSH).
    pub fn shared_rates(
        &self,
        ip: IpAddr,
    ) -> (
        Option<Arc<crate::rate::SharedRate>>,
        Option<Arc<crate::rate::SharedRate>>,
    ) {
        match self.open.lock().unwrap().get(&ip) {
            Some(a) => (a.bytes.clone(), a.stanzas.clone()),
            None => (None, None),
        }
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.server.c2s_per_ip.open.lock().unwrap();
        if let Some(a) = open.get_mut(&self.ip) {
            a.connections -= 1;
            if a.connections == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Turns away a connection over the per-address limit: on plain TCP with a stream error
/// (RFC 6120 §4.9.1.1 lets it come before the client's header), on direct TLS by closing, since
/// a handshake would cost more than the connection is allowed.
async fn refuse(mut sock: TcpStream, direct_tls: bool) {
    if direct_tls {
        return;
    }
    let msg = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\
        <stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
        <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too many connections \
        from your address</text></stream:error></stream:stream>";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        sock.write_all(msg.as_bytes()).await?;
        sock.shutdown().await?;
        // Read until the client closes, so that what it sent does not turn our close into a
        // reset that could discard the error before it is read.
        let mut buf = [0u8; 1024];
        while sock.read(&mut buf).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

async fn handle_tcp(server: Arc<Server>, sock: TcpStream, peer: IpAddr, direct_tls: bool) {
    let _conn = server.metrics.connection(if direct_tls {
        crate::metrics::Transport::Tls
    } else {
        crate::metrics::Transport::Tcp
    });
    let pre = limits(&server, false);
    let transport = if direct_tls {
        let acceptor = server.tls.direct.clone();
        // Boxed: the task of every connection would otherwise keep room for the handshake.
        let handshake = Box::pin(tokio::time::timeout(
            Duration::from_secs(30),
            acceptor.accept(Box::new(sock) as Box<dyn Io>),
        ));
        match handshake.await {
            Ok(Ok(tls)) => {
                let bindings = server.tls.bindings(tls.get_ref().1);
                let mut t = TcpTransport::new(server.clone(), Box::new(tls), peer, pre);
                t.secure = true;
                t.bindings = bindings;
                t
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        }
    } else {
        TcpTransport::new(server.clone(), Box::new(sock), peer, pre)
    };
    let serving = Box::pin(stream::run(server, Box::new(transport)));
    serving.await;
}
