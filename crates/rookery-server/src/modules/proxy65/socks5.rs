//! The SOCKS5 side of the XEP-0065 proxy (RFC 1928, as XEP-0065 §5.3 maps it): no
//! authentication, CONNECT to a domain name that is the stream's hash, then the connection
//! waits for its peer and the requester's activation; once paired, bytes are relayed both ways.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The client must finish the SOCKS5 handshake within this time.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Connections waiting for activation, across all streams (each holds a socket).
const MAX_WAITING: usize = 4096;
/// Relay buffers: large enough to keep loopback and LAN transfers at full speed.
const BUFFER: usize = 64 * 1024;

/// Rules of one proxy.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes per transfer, both ways together (0: none).
    pub max_bytes: u64,
    /// Silence after which a transfer, or a connection waiting for activation, is closed.
    pub idle: Duration,
}

struct Waiting {
    id: u64,
    stream: TcpStream,
}

/// Connections that completed the handshake, by stream hash, the first one (the target's)
/// first.
#[derive(Default)]
pub struct Hub {
    waiting: Mutex<HashMap<String, Vec<Waiting>>>,
    next_id: AtomicU64,
}

/// Why an activation failed (XEP-0065 §6.3.5).
#[derive(Debug, PartialEq, Eq)]
pub enum ActivateError {
    /// No connection uses this hash: wrong stream, or not the requester asking.
    Unknown,
    /// Only one party is connected.
    Alone,
}

impl Hub {
    fn count(&self) -> usize {
        self.waiting
            .lock()
            .expect("hub lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Pairs the two connections of `hash` and relays between them until one side closes, the
    /// transfer goes idle or exceeds its limit, or the server stops.
    pub fn activate(
        &self,
        hash: &str,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Result<(), ActivateError> {
        let mut waiting = self.waiting.lock().expect("hub lock");
        match waiting.get(hash).map(Vec::len) {
            None => return Err(ActivateError::Unknown),
            Some(1) => return Err(ActivateError::Alone),
            Some(_) => {}
        }
        let mut pair = waiting.remove(hash).expect("checked above");
        drop(waiting);
        let b = pair.pop().expect("two connections").stream;
        let a = pair.pop().expect("two connections").stream;
        tokio::spawn(relay(a, b, limits, shutdown));
        Ok(())
    }

    /// Serves one SOCKS5 client: the handshake, then it waits (at most `limits.idle`) for its
    /// stream's activation.
    pub async fn accept(self: Arc<Self>, mut stream: TcpStream, limits: Limits) {
        let hash = match tokio::time::timeout(HANDSHAKE, self.handshake(&mut stream)).await {
            Ok(Ok(Some(h))) => h,
            _ => return,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.waiting
            .lock()
            .expect("hub lock")
            .entry(hash.clone())
            .or_default()
            .push(Waiting { id, stream });
        // Not activated in time: drop it (a no-op when it was activated).
        tokio::time::sleep(limits.idle).await;
        let mut waiting = self.waiting.lock().expect("hub lock");
        if let Some(list) = waiting.get_mut(&hash) {
            list.retain(|w| w.id != id);
            if list.is_empty() {
                waiting.remove(&hash);
            }
        }
    }

    /// RFC 1928 §3-§6 for the XEP-0065 profile; the hash (DST.ADDR) once the client is
    /// admitted, `None` when it was refused.
    async fn handshake(&self, s: &mut TcpStream) -> io::Result<Option<String>> {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await?;
        let mut methods = vec![0u8; head[1] as usize];
        s.read_exact(&mut methods).await?;
        if head[0] != 5 || !methods.contains(&0) {
            // No acceptable method: XEP-0065 uses "no authentication" only.
            s.write_all(&[5, 0xff]).await?;
            return Ok(None);
        }
        s.write_all(&[5, 0]).await?;
        let mut req = [0u8; 5];
        s.read_exact(&mut req).await?;
        let [ver, cmd, _rsv, atyp, len] = req;
        if ver != 5 || atyp != 3 {
            // Address type not supported: the address is always a hash, as a domain name.
            s.write_all(&reply(8, &[], [0, 0])).await?;
            return Ok(None);
        }
        let mut addr = vec![0u8; len as usize];
        s.read_exact(&mut addr).await?;
        let mut port = [0u8; 2];
        s.read_exact(&mut port).await?;
        if cmd != 1 {
            s.write_all(&reply(7, &addr, port)).await?;
            return Ok(None);
        }
        let hash = String::from_utf8_lossy(&addr).to_ascii_lowercase();
        let valid = hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        // One target per stream (XEP-0065 §9.1): a third connection is refused, as are
        // connections beyond the proxy's capacity.
        let taken = self
            .waiting
            .lock()
            .expect("hub lock")
            .get(&hash)
            .is_some_and(|l| l.len() >= 2);
        if !valid || taken || self.count() >= MAX_WAITING {
            s.write_all(&reply(2, &addr, port)).await?;
            return Ok(None);
        }
        // BND.ADDR and BND.PORT echo DST.ADDR and DST.PORT (XEP-0065 §5.3.3).
        s.write_all(&reply(0, &addr, port)).await?;
        Ok(Some(hash))
    }
}

/// A SOCKS5 reply with status `rep` and a domain-name address.
fn reply(rep: u8, addr: &[u8], port: [u8; 2]) -> Vec<u8> {
    let mut r = vec![5, rep, 0, 3, addr.len() as u8];
    r.extend_from_slice(addr);
    r.extend_from_slice(&port);
    r
}

/// Counts the bytes read through it into a shared total, and fails once the total exceeds
/// the transfer's limit.
struct Metered<S> {
    inner: S,
    moved: Arc<AtomicU64>,
    max: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let total = self.moved.fetch_add(n, Ordering::Relaxed) + n;
            if self.max > 0 && total > self.max {
                return Poll::Ready(Err(io::Error::other("transfer limit reached")));
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn relay(a: TcpStream, b: TcpStream, limits: Limits, shutdown: CancellationToken) {
    let moved = Arc::new(AtomicU64::new(0));
    let meter = |inner| Metered {
        inner,
        moved: moved.clone(),
        max: limits.max_bytes,
    };
    let (mut a, mut b) = (meter(a), meter(b));
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, BUFFER, BUFFER);
    let idle = async {
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(limits.idle).await;
            let now = moved.load(Ordering::Relaxed);
            if now == last {
                return;
            }
            last = now;
        }
    };
    tokio::select! {
        r = copy => match r {
            Ok((ab, ba)) => tracing::debug!(ab, ba, "bytestream closed"),
            Err(e) => tracing::debug!(%e, "bytestream ended"),
        },
        _ = idle => tracing::debug!("bytestream idle, closed"),
        _ = shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const HASH: &str = "8c1ffa7a5d2e4d9e6fae1d1bbd4c2a9cf8a7a6b2";

    async fn proxy(limits: Limits) -> (Arc<Hub>, std::net::SocketAddr) {
        let hub = Arc::new(Hub::default());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = hub.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(h.clone().accept(s, limits));
            }
        });
        (hub, addr)
    }

    /// Connects and asks for `hash`; the status byte of the reply.
    async fn connect(addr: std::net::SocketAddr, hash: &str) -> (TcpStream, u8) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await.unwrap();
        assert_eq!(m, [5, 0]);
        let mut req = vec![5, 1, 0, 3, hash.len() as u8];
        req.extend_from_slice(hash.as_bytes());
        req.extend_from_slice(&[0, 0]);
        s.write_all(&req).await.unwrap();
        let mut r = vec![0u8; 5 + hash.len() + 2];
        s.read_exact(&mut r).await.unwrap();
        (s, r[1])
    }

    async fn wait_for(hub: &Hub, n: usize) {
        while hub.count() != n {
            tokio::task::yield_now().await;
        }
    }

    fn limits(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            idle: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn pairs_activates_and_relays_both_ways() {
        let (hub, addr) = proxy(limits(0)).await;
        let (mut target, st) = connect(addr, HASH).await;
        let (mut requester, sr) = connect(addr, HASH).await;
        assert_eq!((st, sr), (0, 0));
        wait_for(&hub, 2).await;
        // A third party for the same stream is refused.
        let (_, s3) = connect(addr, HASH).await;
        assert_eq!(s3, 2);
        hub.activate(HASH, limits(0), CancellationToken::new())
            .unwrap();
        requester.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        target.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        target.write_all(b"back").await.unwrap();
        let mut got = [0u8; 4];
        requester.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"back");
        assert_eq!(
            hub.activate(HASH, limits(0), CancellationToken::new()),
            Err(ActivateError::Unknown)
        );
    }

    #[tokio::test]
    async fn activation_needs_both_parties() {
        let (hub, addr) = proxy(limits(0)).await;
        let (_target, _) = connect(addr, HASH).await;
        wait_for(&hub, 1).await;
        assert_eq!(
            hub.activate(HASH, limits(0), CancellationToken::new()),
            Err(ActivateError::Alone)
        );
    }

    #[tokio::test]
    async fn the_byte_limit_ends_a_transfer() {
        let (hub, addr) = proxy(limits(1000)).await;
        let (mut target, _) = connect(addr, HASH).await;
        let (mut requester, _) = connect(addr, HASH).await;
        wait_for(&hub, 2).await;
        hub.activate(HASH, limits(1000), CancellationToken::new())
            .unwrap();
        let _ = requester.write_all(&[7u8; 4000]).await;
        let mut got = Vec::new();
        let _ = target.read_to_end(&mut got).await;
        assert!(got.len() <= 1000, "{} bytes relayed", got.len());
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        let (hub, addr) = proxy(limits(0)).await;
        let (_, status) = connect(addr, "not-a-hash").await;
        assert_eq!(status, 2);
        // Username/password only: no acceptable method.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[5, 1, 2]).await.unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await.unwrap();
        assert_eq!(m, [5, 0xff]);
        assert_eq!(hub.count(), 0);
    }
}
