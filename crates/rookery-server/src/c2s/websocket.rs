//! XMPP over WebSocket (RFC 7395): one element per text frame, `<open/>` and `<close/>` framing,
//! parsed by the same parser and limits as TCP streams.

use super::{limits, ReadError, Transport};
use crate::scram::ChannelBindings;
use crate::Server;
use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocket};
use rookery_xml::{ns, parse_document, Element, Limits, StreamError, StreamEvent, StreamHeader};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

pub struct WsTransport {
    socket: WebSocket,
    limits: Limits,
    secure: bool,
    peer: IpAddr,
}

impl WsTransport {
    pub fn new(server: &Server, socket: WebSocket, peer: IpAddr, tls: bool) -> Self {
        WsTransport {
            socket,
            limits: limits(server, false),
            secure: tls || peer.is_loopback() || server.config.http.behind_tls_proxy,
            peer,
        }
    }

    async fn send_text(&mut self, text: String) -> io::Result<()> {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))
    }
}

fn to_event(el: Element) -> Result<StreamEvent, StreamError> {
    if el.ns() == ns::FRAMING {
        return match el.name() {
            "open" => Ok(StreamEvent::Header(StreamHeader {
                attrs: el
                    .attrs()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })),
            "close" => Ok(StreamEvent::Close),
            _ => Err(StreamError::NotWellFormed(format!(
                "unknown framing element <{}>",
                el.name()
            ))),
        };
    }
    Ok(StreamEvent::Stanza(el))
}

#[async_trait]
impl Transport for WsTransport {
    async fn read_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ReadError> {
        loop {
            let msg = match self.socket.recv().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(ReadError::Io(io::Error::other(e))),
                None => return Err(ReadError::Eof),
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(_) => return Err(ReadError::Eof),
                Message::Binary(_) => {
                    return Err(ReadError::Xml(StreamError::NotWellFormed(
                        "binary frames are not XMPP".into(),
                    )))
                }
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            // A whitespace-only frame is a keepalive.
            if text.trim().is_empty() {
                continue;
            }
            let el = parse_document(text.as_bytes(), &self.limits).map_err(ReadError::Xml)?;
            out.push(to_event(el).map_err(ReadError::Xml)?);
            return Ok(());
        }
    }

    async fn open_stream(&mut self, from: &str, id: &str, _to: Option<&str>) -> io::Result<()> {
        let open = Element::new("open", ns::FRAMING)
            .with_attr("from", from)
            .with_attr("id", id)
            .with_attr("version", "1.0")
            .with_attr("xml:lang", "en");
        self.send_text(open.to_xml()).await
    }

    async fn send(&mut self, els: &[Element]) -> io::Result<()> {
        for el in els {
            // Each frame is a document of its own, so every element declares its namespace.
            self.send_text(el.to_xml()).await?;
        }
        Ok(())
    }

    async fn close_stream(&mut self) -> io::Result<()> {
        let _ = self
            .send_text(Element::new("close", ns::FRAMING).to_xml())
            .await;
        let _ = self.socket.send(Message::Close(None)).await;
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
        self.limits = limits;
    }

    fn peer_ip(&self) -> IpAddr {
        self.peer
    }
}

/// Runs a c2s session over an upgraded WebSocket.
pub async fn serve(server: Arc<Server>, socket: WebSocket, peer: IpAddr, tls: bool) {
    let _conn = server
        .metrics
        .connection(crate::metrics::Transport::Websocket);
    let t = WsTransport::new(&server, socket, peer, tls);
    super::stream::run(server, Box::new(t)).await;
}
