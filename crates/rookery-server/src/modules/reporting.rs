//! XEP-0377 Spam Reporting: a report attached to a block (XEP-0191) reaches the server's
//! administrators as a message naming the reporter, the reported JID, the reason and text, with
//! the reported messages the reporter's archive holds (by the stanza ids given).

use crate::Server;
use rookery_core::storage::ArchiveQuery;
use rookery_core::{ns, BareJid, Element, Jid};

pub const NS: &str = "urn:xmpp:reporting:1";
const SID: &str = "urn:xmpp:sid:0";
const FORWARD: &str = "urn:xmpp:forward:0";
/// Reported messages quoted in one report at most.
const MAX_QUOTED: usize = 20;

/// Sends `report` (the `<report/>` of a block item naming `reported`) from `reporter` to every
/// administrator; logged too, so it shows among the admin page's recent warnings.
pub async fn forward(server: &Server, reporter: &BareJid, reported: &Jid, report: &Element) {
    let reason = report.attr("reason").unwrap_or("urn:xmpp:reporting:spam");
    let text = report.child_text("text", NS).unwrap_or_default();
    tracing::warn!(%reporter, %reported, reason, "abuse report");
    let ids: Vec<String> = report
        .children()
        .filter(|c| c.is("stanza-id", SID))
        .filter_map(|c| c.attr("id").map(str::to_string))
        .take(MAX_QUOTED)
        .collect();
    let mut quoted = Vec::new();
    if !ids.is_empty() {
        let q = ArchiveQuery {
            ids,
            max: MAX_QUOTED,
            ..Default::default()
        };
        match server.storage.archive_query(reporter.as_str(), &q).await {
            Ok(page) => {
                for m in page.items {
                    if let Ok(el) = Element::parse(&m.stanza) {
                        quoted.push(Element::new("forwarded", FORWARD).with_child(el));
                    }
                }
            }
            Err(e) => tracing::warn!(%e, "reading reported messages failed"),
        }
    }
    let host = reporter.domain().to_string();
    let body = format!(
        "{reporter} reported {reported} ({}){}{}",
        reason.rsplit(':').next().unwrap_or(reason),
        if text.trim().is_empty() { "" } else { ": " },
        text.trim()
    );
    for admin in &server.config.admins {
        let mut m = Element::new("message", ns::CLIENT)
            .with_attr("from", host.clone())
            .with_attr("to", admin.clone())
            .with_attr("type", "normal")
            .with_child(Element::new("subject", ns::CLIENT).with_text("Abuse report"))
            .with_child(Element::new("body", ns::CLIENT).with_text(body.clone()))
            .with_child(report.clone());
        for f in &quoted {
            m.push_child(f.clone());
        }
        crate::router::deliver(server, m).await;
    }
}
