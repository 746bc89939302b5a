//! The receiving and authoritative sides of server-to-server streams: STARTTLS, dialback
//! results verified against the originating domain's servers, verification requests answered,
//! and stanzas accepted only for the domain pairs proven on the stream.

use super::connect::Stream;
use super::{from_wire, is_local_domain, outgoing, DIALBACK_FEATURE, DIALBACK_NS};
use crate::Server;
use rookery_core::{ns, Element, Jid};
use rookery_xml::StreamEvent;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const STREAM_NS: &str = "http://etherx.jabber.org/streams";
const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

pub async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    loop {
        let (conn, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "s2s accept failed");
                    continue;
                }
            },
            _ = server.shutdown.cancelled() => return,
        };
        let _ = conn.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let s = Stream::new(Box::new(conn), crate::c2s::limits(&server, false));
            if let Err(e) = serve(&server, s).await {
                tracing::info!(%peer, error = %e, "incoming s2s stream ended");
            }
        });
    }
}

async fn serve(server: &Arc<Server>, mut s: Stream) -> Result<(), String> {
    let id = format!("{:x}", rand::random::<u128>());
    let local = open(server, &mut s, &id).await?;
    // Domain pairs (remote, local) proven by dialback on this stream.
    let mut proven: HashSet<(String, String)> = HashSet::new();
    let idle = Duration::from_secs(server.config.s2s.idle_timeout_seconds.max(1));
    loop {
        let ev = tokio::select! {
            ev = s.next() => ev,
            _ = tokio::time::sleep(idle) => {
                let _ = s.send_raw("</stream:stream>").await;
                return Ok(());
            }
            _ = server.shutdown.cancelled() => {
                s.error("system-shutdown", None).await;
                return Ok(());
            }
        };
        let el = match ev {
            Ok(StreamEvent::Stanza(el)) => el,
            Ok(StreamEvent::Close) => {
                let _ = s.send_raw("</stream:stream>").await;
                return Ok(());
            }
            Ok(StreamEvent::Header(_)) => {
                s.error("not-well-formed", None).await;
                return Err("unexpected stream header".into());
            }
            Err(condition) => {
                s.error(&condition, None).await;
                return Err(condition);
            }
        };
        if el.is("starttls", TLS_NS) && !s.secure {
            s.send(&Element::new("proceed", TLS_NS))
                .await
                .map_err(|e| e.to_string())?;
            s.accept_tls(server).await?;
            open(server, &mut s, &id).await?;
            continue;
        }
        if el.ns() == DIALBACK_NS {
            dialback(server, &mut s, &id, &el, &mut proven).await?;
            continue;
        }
        if !matches!(el.name(), "message" | "presence" | "iq") || el.ns() != super::SERVER_NS {
            s.error("unsupported-stanza-type", None).await;
            return Err(format!("unexpected <{}/>", el.name()));
        }
        let domain = |a: &str| {
            el.attr(a)
                .and_then(|j| Jid::new(j).ok())
                .map(|j| j.domain().to_string())
        };
        let (Some(from), Some(to)) = (domain("from"), domain("to")) else {
            s.error("improper-addressing", None).await;
            return Err("stanza without from or to".into());
        };
        if !is_local_domain(server, &to) {
            s.error("host-unknown", Some("not a domain served here"))
                .await;
            return Err(format!("stanza for {to}"));
        }
        if !proven.contains(&(from.clone(), to.clone())) {
            // A domain the stream has not proven: the whole stream is suspect (RFC 6120 §4.9.3.9).
            s.error(
                "invalid-from",
                Some("that domain is not authenticated on this stream"),
            )
            .await;
            return Err(format!("unauthenticated from {from} (stream for {local})"));
        }
        tracing::debug!(stanza = %el, "s2s in");
        crate::router::deliver(server, from_wire(el)).await;
    }
}

/// Reads the peer's header and answers with ours and the features; returns the local domain.
async fn open(server: &Server, s: &mut Stream, id: &str) -> Result<String, String> {
    let header = match s.next().await? {
        StreamEvent::Header(h) => h,
        _ => return Err("no stream header".into()),
    };
    let to = header.attr("to").unwrap_or_default().to_string();
    let from = header.attr("from").unwrap_or_default().to_string();
    s.header(&to, &from, Some(id))
        .await
        .map_err(|e| e.to_string())?;
    if !is_local_domain(server, &to) {
        s.error("host-unknown", None).await;
        return Err(format!("stream for unknown domain {to:?}"));
    }
    let mut features = Element::new("features", STREAM_NS);
    if s.secure {
        features.push_child(
            Element::new("dialback", DIALBACK_FEATURE)
                .with_child(Element::new("errors", DIALBACK_FEATURE)),
        );
    } else {
        features.push_child(
            Element::new("starttls", TLS_NS).with_child(Element::new("required", TLS_NS)),
        );
    }
    s.send(&features).await.map_err(|e| e.to_string())?;
    Ok(to)
}

async fn dialback(
    server: &Server,
    s: &mut Stream,
    id: &str,
    el: &Element,
    proven: &mut HashSet<(String, String)>,
) -> Result<(), String> {
    let from = el.attr("from").unwrap_or_default().to_string();
    let to = el.attr("to").unwrap_or_default().to_string();
    let key = el.text().trim().to_string();
    let answer = |name: &str, kind: &str| {
        Element::new(name, DIALBACK_NS)
            .with_attr("from", to.clone())
            .with_attr("to", from.clone())
            .with_attr("type", kind)
    };
    if !s.secure {
        s.error("policy-violation", Some("STARTTLS first")).await;
        return Err("dialback before TLS".into());
    }
    match el.name() {
        "result" if el.attr("type").is_none() => {
            if !is_local_domain(server, &to) {
                let e = answer("result", "error").with_child(
                    Element::new("error", DIALBACK_NS)
                        .with_attr("type", "cancel")
                        .with_child(Element::new("item-not-found", ns::STANZAS_ERR)),
                );
                return s.send(&e).await.map_err(|e| e.to_string());
            }
            let valid = Jid::new(&from).is_ok()
                && !is_local_domain(server, &from)
                && outgoing::verify(server, &to, &from, id, &key).await;
            if valid {
                proven.insert((from.clone(), to.clone()));
                s.authenticated(server.config.limits.max_stanza_bytes);
                tracing::info!(remote = %from, local = %to, "s2s domain verified by dialback");
            } else {
                tracing::info!(remote = %from, local = %to, "s2s dialback key refused");
            }
            s.send(&answer("result", if valid { "valid" } else { "invalid" }))
                .await
                .map_err(|e| e.to_string())
        }
        "verify" => {
            // We are the authoritative server: is this the key we made for that stream?
            let vid = el.attr("id").unwrap_or_default();
            let expected = server.s2s.dialback_key(&from, &to, vid);
            let valid = is_local_domain(server, &to) && !key.is_empty() && key == expected;
            let reply =
                answer("verify", if valid { "valid" } else { "invalid" }).with_attr("id", vid);
            s.send(&reply).await.map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}
