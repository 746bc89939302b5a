//! The originating side (XEP-0220 §2.1): open a stream, send the dialback key, wait for the
//! verdict, then carry the queued stanzas until the connection idles out. Also the receiving
//! side's verification request to an authoritative server (§2.3).

use super::connect::{self, Stream};
use super::{to_wire, DIALBACK_NS};
use crate::Server;
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use rookery_xml::StreamEvent;
use std::time::Duration;
use tokio::sync::mpsc;

pub async fn run(server: &Server, local: &str, remote: &str, mut rx: mpsc::Receiver<Element>) {
    let stream = match authenticate(server, local, remote).await {
        Ok(s) => s,
        Err((e, condition)) => {
            tracing::info!(%local, %remote, error = %e, "s2s connection failed");
            rx.close();
            while let Ok(el) = rx.try_recv() {
                crate::router::bounce(server, &el, condition.clone().with_text(e.clone()));
            }
            return;
        }
    };
    tracing::info!(%local, %remote, "s2s connection established");
    carry(server, stream, remote, &mut rx).await;
    // Anything still queued goes back through routing (a new connection), or bounces.
    rx.close();
    while let Ok(el) = rx.try_recv() {
        crate::router::bounce(server, &el, StanzaError::remote_server_timeout());
    }
}

async fn authenticate(
    server: &Server,
    local: &str,
    remote: &str,
) -> Result<Stream, (String, StanzaError)> {
    let not_found = |e: String| (e, StanzaError::remote_server_not_found());
    let (mut s, id, _features) = connect::open(server, local, remote)
        .await
        .map_err(not_found)?;
    let key = server.s2s.dialback_key(remote, local, &id);
    let result = Element::new("result", DIALBACK_NS)
        .with_attr("from", local)
        .with_attr("to", remote)
        .with_text(key);
    s.send(&result)
        .await
        .map_err(|e| not_found(e.to_string()))?;
    let timeout = Duration::from_secs(server.config.s2s.connect_timeout_seconds.max(1) * 3);
    let verdict = tokio::time::timeout(timeout, async {
        loop {
            match s.next().await {
                Ok(StreamEvent::Stanza(el))
                    if el.is("result", DIALBACK_NS)
                        && el.attr("from") == Some(remote)
                        && el.attr("to") == Some(local) =>
                {
                    return el.attr("type").map(str::to_string);
                }
                Ok(StreamEvent::Stanza(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .map_err(|_| {
        (
            "dialback timed out".to_string(),
            StanzaError::remote_server_timeout(),
        )
    })?;
    match verdict.as_deref() {
        Some("valid") => Ok(s),
        other => Err((
            format!("dialback refused ({})", other.unwrap_or("closed")),
            StanzaError::remote_server_not_found(),
        )),
    }
}

async fn carry(server: &Server, mut s: Stream, remote: &str, rx: &mut mpsc::Receiver<Element>) {
    let idle = Duration::from_secs(server.config.s2s.idle_timeout_seconds.max(1));
    loop {
        tokio::select! {
            el = rx.recv() => {
                let Some(el) = el else { break };
                if s.send(&to_wire(el.clone())).await.is_err() {
                    crate::router::bounce(server, &el, StanzaError::remote_server_timeout());
                    break;
                }
            }
            ev = s.next() => match ev {
                // One-way stream (no XEP-0288): the remote only closes it or sends errors.
                Ok(StreamEvent::Stanza(e)) if e.name() == "error" => {
                    tracing::info!(%remote, error = %e, "s2s stream error from remote");
                    break;
                }
                Ok(StreamEvent::Stanza(_)) => {}
                _ => break,
            },
            _ = tokio::time::sleep(idle) => {
                let _ = s.send_raw("</stream:stream>").await;
                break;
            }
            _ = server.shutdown.cancelled() => {
                s.error("system-shutdown", None).await;
                break;
            }
        }
    }
}

/// As the receiving server: asks `originating`'s authoritative server whether `key` is the one
/// it generated for our stream `id` (XEP-0220 §2.3).
pub async fn verify(
    server: &Server,
    receiving: &str,
    originating: &str,
    id: &str,
    key: &str,
) -> bool {
    let work = async {
        let (mut s, _, _) = connect::open(server, receiving, originating).await?;
        let req = Element::new("verify", DIALBACK_NS)
            .with_attr("from", receiving)
            .with_attr("to", originating)
            .with_attr("id", id)
            .with_text(key);
        s.send(&req).await.map_err(|e| e.to_string())?;
        loop {
            match s.next().await? {
                StreamEvent::Stanza(el)
                    if el.is("verify", DIALBACK_NS) && el.attr("id") == Some(id) =>
                {
                    let _ = s.send_raw("</stream:stream>").await;
                    return Ok::<bool, String>(el.attr("type") == Some("valid"));
                }
                StreamEvent::Stanza(_) => continue,
                _ => return Err("closed before answering".into()),
            }
        }
    };
    let timeout = Duration::from_secs(server.config.s2s.connect_timeout_seconds.max(1) * 3);
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(e)) => {
            tracing::info!(%originating, error = %e, "dialback verification failed");
            false
        }
        Err(_) => false,
    }
}
