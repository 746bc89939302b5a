//! XMPP over BOSH (XEP-0124, XEP-0206): HTTP long polling with `rid` ordering and replay, `hold`,
//! `wait` and inactivity; the session behind it is the same c2s stream as TCP and WebSocket.

use super::{limits, ReadError, Transport};
use crate::scram::ChannelBindings;
use crate::Server;
use async_trait::async_trait;
use dashmap::DashMap;
use rand::Rng;
use rookery_xml::{escape_attr, parse_document, Element, Limits, StreamEvent, StreamHeader};
use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

pub const NS: &str = "http://jabber.org/protocol/httpbind";
const XBOSH: &str = "urn:xmpp:xbosh";

/// Live BOSH sessions by `sid`.
#[derive(Default)]
pub struct Sessions {
    map: DashMap<String, Arc<Session>>,
}

struct Session {
    wait: u64,
    hold: usize,
    requests: u64,
    inactivity: u64,
    state: Mutex<State>,
    rid_advanced: Notify,
    input: mpsc::Sender<StreamEvent>,
}

struct State {
    next_rid: u64,
    out: Vec<String>,
    held: VecDeque<(u64, oneshot::Sender<Vec<String>>)>,
    replay: VecDeque<(u64, String)>,
    terminated: Option<Option<&'static str>>,
    last_request: Instant,
    in_flight: usize,
    authid: String,
    from: String,
    limits: Limits,
    next_waiter: u64,
}

/// The c2s side of a BOSH session.
pub struct BoshTransport {
    session: Arc<Session>,
    input: mpsc::Receiver<StreamEvent>,
    secure: bool,
    peer: IpAddr,
}

impl Session {
    fn push_output(&self, items: Vec<String>) {
        let mut st = self.state.lock().unwrap();
        let mut items = items;
        if !st.out.is_empty() {
            st.out.append(&mut items);
            items = std::mem::take(&mut st.out);
        }
        match st.held.pop_front() {
            Some((_, tx)) => {
                if let Err(items) = tx.send(items) {
                    st.out = items;
                }
            }
            None => st.out = items,
        }
    }
}

#[async_trait]
impl Transport for BoshTransport {
    async fn read_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ReadError> {
        loop {
            let check = Duration::from_secs(1);
            tokio::select! {
                ev = self.input.recv() => match ev {
                    Some(ev) => {
                        out.push(ev);
                        while let Ok(ev) = self.input.try_recv() {
                            out.push(ev);
                        }
                        return Ok(());
                    }
                    None => return Err(ReadError::Eof),
                },
                _ = tokio::time::sleep(check) => {
                    let st = self.session.state.lock().unwrap();
                    // No request held and none for `inactivity` seconds: the client is gone.
                    if st.in_flight == 0 && st.last_request.elapsed() > Duration::from_secs(self.session.inactivity) {
                        return Err(ReadError::Eof);
                    }
                }
            }
        }
    }

    async fn open_stream(&mut self, from: &str, id: &str, _to: Option<&str>) -> io::Result<()> {
        let mut st = self.session.state.lock().unwrap();
        st.from = from.to_string();
        st.authid = id.to_string();
        Ok(())
    }

    async fn send(&mut self, els: &[Element]) -> io::Result<()> {
        self.session
            .push_output(els.iter().map(|e| e.to_xml()).collect());
        Ok(())
    }

    async fn close_stream(&mut self) -> io::Result<()> {
        let mut st = self.session.state.lock().unwrap();
        st.terminated = Some(None);
        let items = std::mem::take(&mut st.out);
        // Held requests learn of the end now.
        let mut first = Some(items);
        while let Some((_, tx)) = st.held.pop_front() {
            let _ = tx.send(first.take().unwrap_or_default());
        }
        if let Some(items) = first {
            st.out = items;
        }
        Ok(())
    }

    async fn starttls(&mut self) -> Option<io::Result<()>> {
        None
    }

    fn is_secure(&self) -> bool {
        self.secure
    }

    fn channel_bindings(&self) -> ChannelBindings {
        ChannelBindings::default()
    }

    fn restart(&mut self, limits: Limits) {
        self.session.state.lock().unwrap().limits = limits;
    }

    fn peer_ip(&self) -> IpAddr {
        self.peer
    }
}

/// An HTTP answer: status and XML body.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

fn terminate(condition: Option<&str>, children: &[String]) -> String {
    let mut b = format!("<body xmlns='{NS}' type='terminate'");
    if let Some(c) = condition {
        b.push_str(" condition='");
        escape_attr(&mut b, c);
        b.push('\'');
    }
    b.push('>');
    for c in children {
        b.push_str(c);
    }
    b.push_str("</body>");
    b
}

fn body(attrs: &str, children: &[String]) -> String {
    let mut b = format!("<body xmlns='{NS}'{attrs}>");
    for c in children {
        b.push_str(c);
    }
    b.push_str("</body>");
    b
}

fn bad(status: u16, condition: &str) -> Reply {
    Reply {
        status,
        body: terminate(Some(condition), &[]),
    }
}

/// The largest `rid` a client may start from (XEP-0124 §14.1: 2^53 - 1). The session adds to it,
/// so an unbounded one would overflow.
pub(crate) const MAX_RID: u64 = (1 << 53) - 1;

/// Parses a request body: a `<body/>` in the BOSH namespace with a numeric `rid`.
pub fn parse_request(data: &[u8], limits: &Limits) -> Result<(Element, u64), Reply> {
    let el = parse_document(data, limits).map_err(|_| bad(400, "bad-request"))?;
    if !el.is("body", NS) {
        return Err(bad(400, "bad-request"));
    }
    let rid = el
        .attr("rid")
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|r| *r <= MAX_RID)
        .ok_or_else(|| bad(400, "bad-request"))?;
    Ok((el, rid))
}

/// The session's `wait` and `hold` (XEP-0124 §7.1): what the client asked for, within bounds.
pub(crate) fn wait_and_hold(el: &Element, max_wait: u64) -> (u64, usize) {
    // max(1): a configured maximum of 0 must not make clamp's bounds cross.
    let max_wait = max_wait.max(1);
    let wait = el
        .attr("wait")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(max_wait)
        .clamp(1, max_wait);
    let hold = el
        .attr("hold")
        .and_then(|h| h.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 2);
    (wait, hold)
}

/// Handles one POST to the BOSH endpoint.
pub async fn handle(
    server: Arc<Server>,
    sessions: Arc<Sessions>,
    peer: IpAddr,
    tls: bool,
    data: &[u8],
) -> Reply {
    // Parse with the larger limit; a session that has not authenticated is held to the smaller
    // one below, once it is known which session this is.
    let (el, rid) = match parse_request(data, &limits(&server, true)) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    match el.attr("sid") {
        None => {
            if data.len() > limits(&server, false).max_stanza_bytes {
                return bad(413, "policy-violation");
            }
            create(server, sessions, peer, tls, rid, &el).await
        }
        Some(sid) => {
            let Some(session) = sessions.map.get(sid).map(|s| s.clone()) else {
                return bad(404, "item-not-found");
            };
            if data.len() > session.state.lock().unwrap().limits.max_stanza_bytes {
                return bad(413, "policy-violation");
            }
            request(&session, rid, el).await
        }
    }
}

async fn create(
    server: Arc<Server>,
    sessions: Arc<Sessions>,
    peer: IpAddr,
    tls: bool,
    rid: u64,
    el: &Element,
) -> Reply {
    let to = el.attr("to").unwrap_or("").to_ascii_lowercase();
    if !server.config.is_local_host(&to) {
        return bad(200, "host-unknown");
    }
    let (wait, hold) = wait_and_hold(el, server.config.http.bosh_max_wait_seconds);
    let sid: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    let (tx, rx) = mpsc::channel(64);
    let session = Arc::new(Session {
        wait,
        hold,
        requests: hold as u64 + 1,
        inactivity: server.config.http.bosh_inactivity_seconds,
        rid_advanced: Notify::new(),
        input: tx,
        state: Mutex::new(State {
            next_rid: rid + 1,
            out: Vec::new(),
            held: VecDeque::new(),
            replay: VecDeque::new(),
            terminated: None,
            last_request: Instant::now(),
            in_flight: 1,
            authid: String::new(),
            from: to.clone(),
            limits: limits(&server, false),
            next_waiter: 0,
        }),
    });
    sessions.map.insert(sid.clone(), session.clone());
    let transport = BoshTransport {
        session: session.clone(),
        input: rx,
        secure: tls || peer.is_loopback() || server.config.http.behind_tls_proxy,
        peer,
    };
    let header = StreamHeader {
        attrs: vec![("to".into(), to), ("version".into(), "1.0".into())],
    };
    let _ = session.input.send(StreamEvent::Header(header)).await;
    let sessions2 = sessions.clone();
    let sid2 = sid.clone();
    let tracker = server.connections.clone();
    tracker.spawn(async move {
        let _conn = server.metrics.connection(crate::metrics::Transport::Bosh);
        super::stream::run(server, Box::new(transport)).await;
        sessions2.map.remove(&sid2);
    });
    let items = wait_output(&session).await;
    let st = session.state.lock().unwrap();
    let mut attrs = String::new();
    for (k, v) in [
        ("sid", sid.as_str()),
        ("wait", &wait.to_string()),
        ("requests", &session.requests.to_string()),
        ("hold", &hold.to_string()),
        ("inactivity", &session.inactivity.to_string()),
        ("polling", "2"),
        ("ver", "1.11"),
        ("from", &st.from),
        ("authid", &st.authid),
        ("secure", "true"),
    ] {
        attrs.push(' ');
        attrs.push_str(k);
        attrs.push_str("='");
        escape_attr(&mut attrs, v);
        attrs.push('\'');
    }
    attrs.push_str(&format!(
        " xmlns:xmpp='{XBOSH}' xmpp:version='1.0' xmpp:restartlogic='true' xmlns:stream='http://etherx.jabber.org/streams'"
    ));
    drop(st);
    finish(&session, rid, body(&attrs, &items))
}

fn finish(session: &Session, rid: u64, text: String) -> Reply {
    let mut st = session.state.lock().unwrap();
    st.in_flight = st.in_flight.saturating_sub(1);
    st.last_request = Instant::now();
    st.replay.push_back((rid, text.clone()));
    while st.replay.len() as u64 > session.requests {
        st.replay.pop_front();
    }
    Reply {
        status: 200,
        body: text,
    }
}

async fn request(session: &Arc<Session>, rid: u64, el: Element) -> Reply {
    {
        let mut st = session.state.lock().unwrap();
        st.last_request = Instant::now();
        if rid < st.next_rid {
            // A repeated request: the client lost our answer, send it again (XEP-0124 §14.3).
            return match st.replay.iter().find(|(r, _)| *r == rid) {
                Some((_, b)) => Reply {
                    status: 200,
                    body: b.clone(),
                },
                None => bad(404, "item-not-found"),
            };
        }
        if rid > st.next_rid + session.requests {
            return bad(404, "item-not-found");
        }
        st.in_flight += 1;
    }
    // Requests are processed in rid order; a later one waits for the gap to fill.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(session.wait);
    loop {
        let notified = session.rid_advanced.notified();
        if session.state.lock().unwrap().next_rid == rid {
            break;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let mut st = session.state.lock().unwrap();
            st.in_flight = st.in_flight.saturating_sub(1);
            return bad(404, "item-not-found");
        }
    }
    let restart = el.attr(&format!("{{{XBOSH}}}restart")) == Some("true");
    let ending = el.attr("type") == Some("terminate");
    let mut events: Vec<StreamEvent> = el.children().cloned().map(StreamEvent::Stanza).collect();
    if restart {
        let to = session.state.lock().unwrap().from.clone();
        events.push(StreamEvent::Header(StreamHeader {
            attrs: vec![("to".into(), to), ("version".into(), "1.0".into())],
        }));
    }
    if ending {
        events.push(StreamEvent::Close);
    }
    for ev in events {
        if session.input.send(ev).await.is_err() {
            break;
        }
    }
    session.state.lock().unwrap().next_rid = rid + 1;
    session.rid_advanced.notify_waiters();
    if ending {
        return finish(session, rid, terminate(None, &[]));
    }
    let items = wait_output(session).await;
    let terminated = session.state.lock().unwrap().terminated;
    let text = match terminated {
        Some(cond) if items.is_empty() || cond.is_some() => terminate(cond, &items),
        Some(_) => terminate(None, &items),
        None => body("", &items),
    };
    finish(session, rid, text)
}

/// Waits for output for up to `wait` seconds; with more than `hold` requests waiting, the oldest
/// is answered (empty) at once.
async fn wait_output(session: &Arc<Session>) -> Vec<String> {
    let (id, rx) = {
        let mut st = session.state.lock().unwrap();
        if !st.out.is_empty() || st.terminated.is_some() {
            return std::mem::take(&mut st.out);
        }
        let (tx, rx) = oneshot::channel();
        let id = st.next_waiter;
        st.next_waiter += 1;
        st.held.push_back((id, tx));
        while st.held.len() > session.hold {
            if let Some((_, old)) = st.held.pop_front() {
                let _ = old.send(Vec::new());
            }
        }
        (id, rx)
    };
    let mut rx = rx;
    match tokio::time::timeout(Duration::from_secs(session.wait), &mut rx).await {
        Ok(Ok(items)) => items,
        _ => {
            let mut st = session.state.lock().unwrap();
            if let Some(pos) = st.held.iter().position(|(i, _)| *i == id) {
                st.held.remove(pos);
                Vec::new()
            } else {
                // Answered just as the wait ran out: take what was sent.
                rx.try_recv().unwrap_or_default()
            }
        }
    }
}
