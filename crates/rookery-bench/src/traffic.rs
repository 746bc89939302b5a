//! The messaging phase of one online client: sending on its slot of the rate schedule, timing
//! the messages it receives, answering server iqs, and closing the stream at the end.

use crate::client::{Online, Reader};
use crate::split::{self, Message};
use crate::stats::{now_nanos, Traffic};
use rookery_xml::{ns, Element, StreamEvent};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::time::{Instant, MissedTickBehavior};

/// A send due later than this after the window's end is dropped and counted as not sent.
const LATE_SLACK: Duration = Duration::from_millis(100);
/// How long closing the stream may take once the run is over.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// This client's part of the rate schedule.
pub struct Schedule {
    /// Full JID of the client this one sends to, or the room's JID.
    pub target: String,
    /// "chat", or "groupchat" for a room.
    pub kind: &'static str,
    /// When the first message is due; the next ones follow every `period`.
    pub first: Instant,
    pub period: Duration,
    pub count: u64,
    /// End of the messaging window.
    pub end: Instant,
    /// Dropped when this client is done sending; the main task waits for all to drop.
    pub done: mpsc::Sender<()>,
}

/// Runs an online client until `stop` turns true: receives throughout, sends once the
/// schedule arrives, then closes the stream.
pub async fn run(
    online: Online,
    index: usize,
    schedule: oneshot::Receiver<Schedule>,
    stop: watch::Receiver<bool>,
    traffic: Arc<Traffic>,
) {
    let (rd, wr) = tokio::io::split(online.stream);
    let wr = Mutex::new(wr);
    let mut stop_r = stop.clone();
    let mut stop_w = stop;
    let receiving = async {
        tokio::select! {
            _ = stop_r.wait_for(|s| *s) => {}
            _ = receive(rd, online.reader, &wr, &traffic) => {}
        }
    };
    let sending = async {
        tokio::select! {
            _ = stop_w.wait_for(|s| *s) => {}
            _ = send_schedule(schedule, index, &wr, &traffic) => {}
        }
    };
    tokio::join!(receiving, sending);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let mut w = wr.lock().await;
        w.write_all(b"</stream:stream>").await?;
        w.shutdown().await
    })
    .await;
}

async fn send_schedule<S: AsyncWrite>(
    schedule: oneshot::Receiver<Schedule>,
    index: usize,
    wr: &Mutex<WriteHalf<S>>,
    traffic: &Traffic,
) {
    let Ok(s) = schedule.await else { return };
    traffic.planned.fetch_add(s.count, Ordering::Relaxed);
    if s.count == 0 {
        return;
    }
    // The same bytes a serialised <message to type id><body/></message> would be, written
    // straight into one buffer: the generator must stay cheaper than the server it loads.
    let mut xml = String::from("<message to='");
    rookery_xml::escape_attr(&mut xml, &s.target);
    let _ = write!(xml, "' type='{}' id='{index}-", s.kind);
    let prefix = xml.len();
    let mut ticks = tokio::time::interval_at(s.first, s.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for seq in 0..s.count {
        ticks.tick().await;
        if Instant::now() > s.end + LATE_SLACK {
            traffic.skipped.fetch_add(s.count - seq, Ordering::Relaxed);
            break;
        }
        let mut w = wr.lock().await;
        xml.truncate(prefix);
        let _ = write!(xml, "{seq}'><body>{seq} {}</body></message>", now_nanos());
        let written = async {
            w.write_all(xml.as_bytes()).await?;
            w.flush().await
        };
        if written.await.is_err() {
            traffic
                .send_errors
                .fetch_add(s.count - seq, Ordering::Relaxed);
            break;
        }
        traffic.sent.fetch_add(1, Ordering::SeqCst);
    }
    drop(s.done);
}

async fn receive<R: AsyncRead + Unpin, W: AsyncWrite>(
    mut rd: R,
    mut reader: Reader,
    wr: &Mutex<WriteHalf<W>>,
    traffic: &Traffic,
) {
    let mut timed = |bytes: &[u8]| on_message_bytes(bytes, traffic);
    loop {
        let el = match reader
            .next_event_or_message(&mut rd, Some(&mut timed))
            .await
        {
            Ok(StreamEvent::Stanza(el)) => el,
            Ok(StreamEvent::Header(_)) => continue,
            Ok(StreamEvent::Close) => {
                traffic.disconnect("stream closed by server");
                return;
            }
            Err(e) => {
                traffic.disconnect(&format!("{e:#}"));
                return;
            }
        };
        if el.is("iq", ns::CLIENT) {
            if let Some(reply) = iq_answer(&el) {
                let mut w = wr.lock().await;
                let xml = reply.to_stream_xml(ns::CLIENT);
                if w.write_all(xml.as_bytes()).await.is_err() || w.flush().await.is_err() {
                    traffic.disconnect("write failed");
                    return;
                }
            }
        } else if el.is("error", ns::STREAM) {
            let cond = el
                .children()
                .next()
                .map(|c| c.name().to_owned())
                .unwrap_or_default();
            traffic.disconnect(&format!("stream error: {cond}"));
            return;
        }
    }
}

/// Times a benchmark message (`<body>SEQ NANOS</body>`) from its bytes, or counts a bounce.
fn on_message_bytes(bytes: &[u8], traffic: &Traffic) {
    match split::read_message(bytes) {
        Message::Bounced => {
            traffic.bounced.fetch_add(1, Ordering::Relaxed);
        }
        Message::Stamped(sent_at) => {
            traffic.record_delivery(sent_at, now_nanos().saturating_sub(sent_at));
        }
        Message::NoBody => {}
        Message::Other => {
            traffic.malformed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Answers a ping with a result and any other get/set with service-unavailable.
fn iq_answer(iq: &Element) -> Option<Element> {
    if !matches!(iq.attr("type"), Some("get" | "set")) {
        return None;
    }
    let reply = Element::new("iq", ns::CLIENT)
        .with_opt_attr("to", iq.attr("from"))
        .with_opt_attr("id", iq.attr("id"));
    if iq.has_child("ping", "urn:xmpp:ping") {
        return Some(reply.with_attr("type", "result"));
    }
    Some(
        reply.with_attr("type", "error").with_child(
            Element::new("error", ns::CLIENT)
                .with_attr("type", "cancel")
                .with_child(Element::new("service-unavailable", ns::STANZAS_ERR)),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_messages_and_counts_bounces() {
        let t = Traffic::default();
        let sent_at = now_nanos();
        let m = format!("<message><body>7 {sent_at}</body></message>");
        on_message_bytes(m.as_bytes(), &t);
        on_message_bytes(b"<message type='error'><body>7 1</body></message>", &t);
        on_message_bytes(b"<message><body>hello</body></message>", &t);
        on_message_bytes(b"<message><subject/></message>", &t);
        assert_eq!(t.delivered.load(Ordering::SeqCst), 1);
        assert_eq!(t.bounced.load(Ordering::SeqCst), 1);
        assert_eq!(t.malformed.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn answers_pings() {
        let ping = Element::parse(
            "<iq xmlns='jabber:client' type='get' id='p1' from='localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .unwrap();
        assert_eq!(
            iq_answer(&ping).unwrap().to_stream_xml(ns::CLIENT),
            "<iq to='localhost' id='p1' type='result'/>"
        );
        let result = ping.clone().with_attr("type", "result");
        assert!(iq_answer(&result).is_none());
    }
}
