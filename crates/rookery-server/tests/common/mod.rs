//! Test harness: a real server on ephemeral ports, and clients that speak raw XMPP to it.
#![allow(dead_code)]

pub mod http;

use rookery_bench::client::{self, Online, Settings};
use rookery_bench::scram::{Mechanism, SaltCache};
use rookery_core::config::Config;
use rookery_server::{storage::MemoryStorage, Running, Server};
use rookery_xml::{ns, Element, Limits, StreamEvent, StreamParser};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub running: Option<Running>,
    pub c2s: SocketAddr,
    pub direct: SocketAddr,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub server: Arc<Server>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_sharing(tweak, Arc::new(MemoryStorage::default())).await
    }

    /// A server on the given storage (cluster nodes share one).
    pub async fn start_sharing(
        tweak: impl FnOnce(&mut Config),
        storage: Arc<dyn rookery_core::storage::Storage>,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.listen.c2s = vec!["127.0.0.1:0".into()];
        config.listen.c2s_direct_tls = vec!["127.0.0.1:0".into()];
        config.listen.http = vec!["127.0.0.1:0".into()];
        config.listen.https = vec!["127.0.0.1:0".into()];
        config.modules.proxy65.listen = "127.0.0.1:0".into();
        tweak(&mut config);
        let server = Server::with_storage(config, storage).unwrap();
        let running = rookery_server::start_with(server.clone()).await.unwrap();
        TestServer {
            c2s: running.c2s[0],
            direct: running.c2s_direct_tls[0],
            http: running.http[0],
            https: running.https[0],
            server,
            running: Some(running),
            _dir: dir,
        }
    }

    /// The first host served.
    pub fn domain(&self) -> &str {
        &self.server.config.hosts[0]
    }

    /// A server storing in SQLite under `data_dir`, which outlives it: start another one on the
    /// same directory to see what survives a restart.
    pub async fn start_in(data_dir: &std::path::Path) -> TestServer {
        Self::start_in_with(data_dir, |_| {}).await
    }

    /// `start_in` with a config tweak.
    pub async fn start_in_with(
        data_dir: &std::path::Path,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut config = Config {
            data_dir: data_dir.to_path_buf(),
            ..Config::default()
        };
        config.listen.c2s = vec!["127.0.0.1:0".into()];
        config.listen.c2s_direct_tls = vec!["127.0.0.1:0".into()];
        config.listen.http = vec!["127.0.0.1:0".into()];
        config.listen.https = vec!["127.0.0.1:0".into()];
        config.modules.proxy65.listen = "127.0.0.1:0".into();
        tweak(&mut config);
        let server = Server::new(config).await.unwrap();
        let running = rookery_server::start_with(server.clone()).await.unwrap();
        TestServer {
            c2s: running.c2s[0],
            direct: running.c2s_direct_tls[0],
            http: running.http[0],
            https: running.https[0],
            server,
            running: Some(running),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn add_user(&self, local: &str, password: &str) {
        let jid = rookery_server::accounts::parse_user(
            &self.server.config,
            &format!("{local}@{}", self.domain()),
        )
        .unwrap();
        rookery_server::accounts::create(&self.server, &jid, password)
            .await
            .unwrap();
    }

    pub fn settings(&self, password: &str, mechanism: Mechanism) -> Settings {
        Settings {
            host: "127.0.0.1".into(),
            port: self.c2s.port(),
            domain: self.domain().into(),
            password: password.into(),
            mechanism,
            connector: tokio_rustls::TlsConnector::from(
                rookery_bench::tls::client_config().unwrap(),
            ),
            server_name: rustls_pki_types::ServerName::try_from(self.domain().to_string()).unwrap(),
            salt_cache: SaltCache::default(),
            login_timeout: WAIT,
            plain: false,
        }
    }

    /// Signs in over STARTTLS + SCRAM-SHA-256, binds resource `r`, sends initial presence.
    pub async fn login(&self, user: &str, password: &str) -> Client {
        let online = client::login(&self.settings(password, Mechanism::ScramSha256), user)
            .await
            .unwrap_or_else(|e| panic!("login {user}: {e:#}"));
        let mut c = Client { online };
        // Consume the echo of our own initial presence and whatever came with it.
        c.drain().await;
        c
    }

    /// `login`, or why it failed.
    pub async fn try_login(&self, user: &str, password: &str) -> anyhow::Result<Client> {
        let online = client::login(&self.settings(password, Mechanism::ScramSha256), user).await?;
        Ok(Client { online })
    }

    /// Signs in without binding; returns the stream ready for `<bind/>` or `<resume/>`.
    pub async fn authenticated(
        &self,
        user: &str,
        password: &str,
    ) -> (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        client::Reader,
    ) {
        let cfg = self.settings(password, Mechanism::ScramSha256);
        let (mut io, mut reader, features) = client::secure_stream(&cfg).await.unwrap();
        client::authenticate(&cfg, user, &mut io, &mut reader, &features)
            .await
            .unwrap();
        let features = client::open_stream(&cfg, &mut io, &mut reader)
            .await
            .unwrap();
        assert!(
            features.has_child("sm", "urn:xmpp:sm:3"),
            "sm offered after auth: {features}"
        );
        (io, reader)
    }

    /// Signs in with resource `resource` (a user's second session).
    pub async fn login_as(&self, user: &str, password: &str, resource: &str) -> Client {
        let online = client::login_as(
            &self.settings(password, Mechanism::ScramSha256),
            user,
            resource,
        )
        .await
        .unwrap_or_else(|e| panic!("login {user}/{resource}: {e:#}"));
        let mut c = Client { online };
        c.drain().await;
        c
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// A signed-in client (initial presence already sent).
pub struct Client {
    pub online: Online,
}

impl Client {
    pub fn jid(&self) -> &str {
        &self.online.jid
    }

    pub async fn send(&mut self, xml: &str) {
        self.online.stream.write_all(xml.as_bytes()).await.unwrap();
        self.online.stream.flush().await.unwrap();
    }

    pub async fn send_el(&mut self, el: Element) {
        self.send(&el.to_stream_xml(ns::CLIENT)).await;
    }

    /// The next stream event, or panics after [`WAIT`].
    pub async fn event(&mut self) -> StreamEvent {
        tokio::time::timeout(WAIT, self.online.reader.next_event(&mut self.online.stream))
            .await
            .expect("timed out waiting for the server")
            .expect("stream failed")
    }

    pub async fn recv(&mut self) -> Element {
        match self.event().await {
            StreamEvent::Stanza(el) => el,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    /// Skips stanzas until one matches.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&Element) -> bool) -> Element {
        loop {
            let el = self.recv().await;
            if pred(&el) {
                return el;
            }
        }
    }

    /// Sends an IQ and returns its answer, skipping anything else.
    pub async fn iq(&mut self, iq: Element) -> Element {
        let id = iq.attr("id").unwrap().to_string();
        self.send_el(iq).await;
        self.recv_until(|e| {
            e.name() == "iq"
                && e.attr("id") == Some(&id)
                && matches!(e.attr("type"), Some("result" | "error"))
        })
        .await
    }

    /// Reads until a stream error arrives and asserts its condition.
    pub async fn expect_stream_error(&mut self, condition: &str) {
        loop {
            match self.event().await {
                StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => {
                    assert!(
                        el.has_child(condition, ns::STREAMS_ERR),
                        "expected {condition}: {el}"
                    );
                    return;
                }
                StreamEvent::Close => panic!("closed without <{condition}/>"),
                _ => {}
            }
        }
    }

    /// Everything the server sends before answering a ping: since it handles a session's
    /// stanzas in order, this is all that the earlier stanzas caused.
    pub async fn drain(&mut self) -> Vec<Element> {
        self.send("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        let mut got = Vec::new();
        loop {
            let el = self.recv().await;
            if el.attr("id") == Some("sync") && el.name() == "iq" {
                return got;
            }
            got.push(el);
        }
    }

    /// Asserts that nothing is waiting for this client.
    pub async fn expect_silence(&mut self) {
        let got = self.drain().await;
        assert!(got.is_empty(), "unexpected stanzas: {got:?}");
    }
}

/// Connects as external component `domain` with `secret` (XEP-0114); returns the stream and
/// whether the handshake was accepted.
pub async fn component(port: u16, domain: &str, secret: &str) -> (Raw, bool) {
    use sha1::{Digest, Sha1};
    let mut raw = Raw::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
    raw.send(format!("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>").as_bytes()).await;
    let id = match raw.event().await {
        Some(StreamEvent::Header(h)) => h.attr("id").unwrap().to_string(),
        other => panic!("expected a header, got {other:?}"),
    };
    let digest: String = Sha1::digest(format!("{id}{secret}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    raw.send(format!("<handshake>{digest}</handshake>").as_bytes())
        .await;
    match raw.event().await {
        Some(StreamEvent::Stanza(h)) if h.name() == "handshake" => (raw, true),
        _ => (raw, false),
    }
}

pub fn error_condition(el: &Element) -> Option<String> {
    let err = el.get_child("error", ns::CLIENT)?;
    err.children()
        .find(|c| c.ns() == ns::STANZAS_ERR && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// A plaintext connection for negotiation-level tests.
pub struct Raw {
    pub io: TcpStream,
    parser: StreamParser,
    pending: std::collections::VecDeque<StreamEvent>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            io: TcpStream::connect(addr).await.unwrap(),
            parser: StreamParser::new(Limits::default()),
            pending: Default::default(),
        }
    }

    pub async fn send(&mut self, data: &[u8]) {
        // The server may already have closed; tests then look at what it said.
        let _ = self.io.write_all(data).await;
    }

    pub async fn open(&mut self, to: &str) -> Element {
        self.send(format!("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>").as_bytes()).await;
        match self.event().await {
            Some(StreamEvent::Header(_)) => {}
            other => panic!("expected a stream header, got {other:?}"),
        }
        match self.event().await {
            Some(StreamEvent::Stanza(f)) => f,
            other => panic!("expected features, got {other:?}"),
        }
    }

    /// The next event; None when the connection closed.
    pub async fn event(&mut self) -> Option<StreamEvent> {
        read_event(&mut self.io, &mut self.parser, &mut self.pending).await
    }

    /// Reads until the stream ends and returns the stream error condition, if one was sent.
    pub async fn stream_error(&mut self) -> Option<String> {
        let mut cond = None;
        while let Some(ev) = self.event().await {
            match ev {
                StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => {
                    cond = el
                        .children()
                        .find(|c| c.ns() == ns::STREAMS_ERR && c.name() != "text")
                        .map(|c| c.name().to_string());
                }
                StreamEvent::Close => break,
                _ => {}
            }
        }
        cond
    }
}

pub async fn read_event<R: AsyncRead + AsyncWrite + Unpin>(
    io: &mut R,
    parser: &mut StreamParser,
    pending: &mut std::collections::VecDeque<StreamEvent>,
) -> Option<StreamEvent> {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(ev) = pending.pop_front() {
            return Some(ev);
        }
        let n = tokio::time::timeout(WAIT, io.read(&mut buf))
            .await
            .expect("timed out")
            .ok()?;
        if n == 0 {
            return None;
        }
        let mut out = Vec::new();
        parser.feed(&buf[..n], &mut out).ok()?;
        pending.extend(out);
    }
}

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A client's disco#info for XEP-0115, with these extra features.
pub fn disco_info(features: &[&str]) -> Element {
    let mut q = Element::new("query", DISCO_INFO).with_child(
        Element::new("identity", DISCO_INFO)
            .with_attr("category", "client")
            .with_attr("type", "pc")
            .with_attr("name", "Test"),
    );
    for f in [DISCO_INFO].iter().chain(features) {
        q.push_child(Element::new("feature", DISCO_INFO).with_attr("var", *f));
    }
    q
}

/// Sends presence with caps for `features` and answers the server's disco#info queries about
/// them (from the account itself and from contacts' PEP services).
pub async fn announce_caps(c: &mut Client, features: &[&str]) {
    let info = disco_info(features);
    let ver = rookery_server::modules::pubsub::caps::ver(&info, "sha-1").unwrap();
    c.send(&format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='{ver}'/></presence>"
    ))
    .await;
    let got = c.drain().await;
    let queries: Vec<&Element> = got
        .iter()
        .filter(|e| {
            e.name() == "iq" && e.attr("type") == Some("get") && e.has_child("query", DISCO_INFO)
        })
        .collect();
    assert!(!queries.is_empty(), "no caps query in {got:?}");
    for q in queries {
        let node = q
            .get_child("query", DISCO_INFO)
            .unwrap()
            .attr("node")
            .unwrap();
        assert_eq!(node, format!("urn:test#{ver}"));
        let mut answer = info.clone();
        answer.set_attr("node", node);
        let r = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", q.attr("id").unwrap())
            .with_attr("to", q.attr("from").unwrap())
            .with_child(answer);
        c.send_el(r).await;
    }
}
