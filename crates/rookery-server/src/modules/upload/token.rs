//! XEP-0363 slot grants: what a PUT may store, signed with the server's upload secret so the
//! HTTP side needs no shared state to check it (HMAC-SHA256, compared in constant time).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// One slot: the file it is for and until when it may be uploaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub filename: String,
    pub size: u64,
    pub content_type: String,
    /// Bare JID of the uploader.
    pub owner: String,
    /// Unix seconds after which the slot is void.
    pub expires: u64,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// `<payload>.<signature>`, both base64url: the value of the PUT's `Authorization: Bearer`.
pub fn sign(secret: &[u8], grant: &Grant) -> String {
    let payload = B64.encode(serde_json::to_vec(grant).expect("grant serialises"));
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    format!("{payload}.{}", B64.encode(m.finalize().into_bytes()))
}

/// The grant a token carries, if this server signed it.
pub fn verify(secret: &[u8], token: &str) -> Option<Grant> {
    let (payload, sig) = token.split_once('.')?;
    let sig = B64.decode(sig).ok()?;
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    m.verify_slice(&sig).ok()?;
    serde_json::from_slice(&B64.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            id: "abc".into(),
            filename: "très cool.jpg".into(),
            size: 23456,
            content_type: "image/jpeg".into(),
            owner: "romeo@montague.tld".into(),
            expires: 1_700_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let t = sign(b"key", &grant());
        assert_eq!(verify(b"key", &t), Some(grant()));
    }

    #[test]
    fn other_keys_and_edits_are_refused() {
        let t = sign(b"key", &grant());
        assert_eq!(verify(b"other", &t), None);
        let (payload, sig) = t.split_once('.').unwrap();
        let mut g = grant();
        g.size = 1 << 40;
        let forged = B64.encode(serde_json::to_vec(&g).unwrap());
        assert_eq!(verify(b"key", &format!("{forged}.{sig}")), None);
        assert_eq!(verify(b"key", payload), None);
        assert_eq!(verify(b"key", ""), None);
    }
}
