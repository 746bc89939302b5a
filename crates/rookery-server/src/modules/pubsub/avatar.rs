//! XEP-0398 User Avatar to vCard-Based Avatars Conversion: a XEP-0084 avatar published through
//! PEP becomes the vcard-temp PHOTO (XEP-0153) and the other way round, and available presence
//! carries the avatar's hash in `vcard-temp:x:update`.

use super::engine::{Broadcast, EventKind};
use super::pep::{Pep, PepObserver};
use crate::session::SessionHandle;
use crate::Server;
use async_trait::async_trait;
use base64::Engine;
use rookery_core::{BareJid, Element};
use sha1::{Digest, Sha1};

pub const DATA: &str = "urn:xmpp:avatar:data";
pub const METADATA: &str = "urn:xmpp:avatar:metadata";
pub const VCARD: &str = "vcard-temp";
pub const UPDATE: &str = "vcard-temp:x:update";
const VCARD_STORE: &str = "vcard";

/// Avatar nodes made from a vCard are as public as the vCard itself.
const NODE_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#persist_items", "true"),
    ("pubsub#access_model", "open"),
    ("pubsub#max_items", "1"),
];

pub struct Avatars;

/// The avatar currently advertised: Some(id) (empty when the avatar was disabled), None when
/// the account never had one.
async fn current(server: &Server, pep: &Pep, owner: &BareJid) -> Option<String> {
    let items = pep.items(server, owner, METADATA).await;
    let last = items.last()?;
    Some(
        last.payload
            .as_ref()
            .and_then(|m| m.get_child("info", METADATA))
            .map(|_| last.id.clone())
            .unwrap_or_default(),
    )
}

/// XEP-0398 §3: the server puts the current avatar hash in its user's available presence. A
/// user who never had an avatar is announced without one (an empty `<photo/>`, XEP-0153 §3.2),
/// unless the client speaks for itself.
pub async fn annotate(server: &Server, pep: &Pep, origin: &SessionHandle, el: &mut Element) {
    let id = match current(server, pep, &origin.bare()).await {
        Some(id) => id,
        None if el.has_child("x", UPDATE) => return,
        None => String::new(),
    };
    el.retain_children(|c| !c.is("x", UPDATE));
    let mut photo = Element::new("photo", UPDATE);
    if !id.is_empty() {
        photo.append_text(id);
    }
    el.push_child(Element::new("x", UPDATE).with_child(photo));
}

async fn load_vcard(server: &Server, owner: &BareJid) -> Option<Element> {
    server
        .storage
        .kv_get(owner, VCARD_STORE, "")
        .await
        .ok()
        .flatten()
        .and_then(|x| Element::parse(&x).ok())
}

async fn save_vcard(server: &Server, owner: &BareJid, vcard: &Element) {
    if let Err(e) = server
        .storage
        .kv_set(owner, VCARD_STORE, "", Some(&vcard.to_xml()))
        .await
    {
        tracing::error!(%e, "saving vCard for avatar failed");
    }
}

/// Sets (or with None removes) the vCard's PHOTO.
async fn set_photo(server: &Server, owner: &BareJid, photo: Option<(String, String)>) {
    let existing = load_vcard(server, owner).await;
    if existing.is_none() && photo.is_none() {
        return;
    }
    let mut vcard = existing.unwrap_or_else(|| Element::new("vCard", VCARD));
    vcard.retain_children(|c| !c.is("PHOTO", VCARD));
    if let Some((mime, b64)) = photo {
        vcard.push_child(
            Element::new("PHOTO", VCARD)
                .with_child(Element::new("TYPE", VCARD).with_text(mime))
                .with_child(Element::new("BINVAL", VCARD).with_text(b64)),
        );
    }
    save_vcard(server, owner, &vcard).await;
}

#[async_trait]
impl PepObserver for Avatars {
    async fn changed(&self, server: &Server, pep: &Pep, owner: &BareJid, b: &Broadcast) {
        if b.node != METADATA {
            return;
        }
        match &b.what {
            EventKind::Published(item) => {
                let info = item.payload.as_ref().and_then(|m| {
                    m.children()
                        .find(|i| i.is("info", METADATA) && i.attr("url").is_none())
                        .cloned()
                });
                let Some(info) = info else {
                    // An empty <metadata/> disables the avatar (XEP-0084 §4.2).
                    set_photo(server, owner, None).await;
                    return;
                };
                let id = info.attr("id").unwrap_or(&item.id).to_string();
                let data = pep
                    .items(server, owner, DATA)
                    .await
                    .into_iter()
                    .find(|d| d.id == id)
                    .and_then(|d| d.payload.map(|p| p.text()));
                if let Some(b64) = data {
                    let mime = info.attr("type").unwrap_or("image/png").to_string();
                    let b64: String = b64.split_whitespace().collect();
                    set_photo(server, owner, Some((mime, b64))).await;
                }
            }
            EventKind::Deleted | EventKind::Purged => set_photo(server, owner, None).await,
            _ => {}
        }
    }
}

/// The user stored a vCard: its PHOTO becomes the XEP-0084 avatar (XEP-0398 §4).
pub async fn vcard_stored(server: &Server, pep: &Pep, owner: &BareJid, vcard: &Element) {
    let photo = vcard.get_child("PHOTO", VCARD);
    let binval = photo.and_then(|p| p.child_text("BINVAL", VCARD));
    let Some(b64) = binval.map(|b| b.split_whitespace().collect::<String>()) else {
        // No photo any more: disable the avatar if there was one.
        if current(server, pep, owner)
            .await
            .is_some_and(|id| !id.is_empty())
        {
            let _ = pep
                .publish(
                    server,
                    owner,
                    METADATA,
                    "current",
                    Element::new("metadata", METADATA),
                    NODE_OPTIONS,
                )
                .await;
        }
        return;
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&b64) else {
        return;
    };
    let id = format!("{:x}", Sha1::digest(&bytes));
    if current(server, pep, owner).await.as_deref() == Some(id.as_str()) {
        return;
    }
    let mime = photo
        .and_then(|p| p.child_text("TYPE", VCARD))
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "image/png".into());
    let data = Element::new("data", DATA).with_text(b64);
    if let Err(e) = pep
        .publish(server, owner, DATA, &id, data, NODE_OPTIONS)
        .await
    {
        tracing::debug!(?e, "avatar data from vCard not published");
        return;
    }
    let metadata = Element::new("metadata", METADATA).with_child(
        Element::new("info", METADATA)
            .with_attr("id", id.clone())
            .with_attr("bytes", bytes.len().to_string())
            .with_attr("type", mime.trim()),
    );
    if let Err(e) = pep
        .publish(server, owner, METADATA, &id, metadata, NODE_OPTIONS)
        .await
    {
        tracing::debug!(?e, "avatar metadata from vCard not published");
    }
}
