//! Bearer secrets kept only as their SHA-256 (upload slots, admin API tokens, invitations): the
//! secret works on every node, and a leaked database grants nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

/// A new token: 32 random bytes, base64url.
pub fn new_token() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The hash as lowercase hex, for use as a storage key.
pub fn hash_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `token` is the one `stored` is the hash of (compared in constant time).
pub fn matches(token: &str, stored: &[u8]) -> bool {
    let h = hash(token);
    !stored.is_empty()
        && h.len() == stored.len()
        && h.iter().zip(stored).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_hash_only() {
        let t = new_token();
        assert_eq!(t.len(), 43);
        assert!(matches(&t, &hash(&t)));
        assert!(!matches(&new_token(), &hash(&t)));
        assert!(!matches(&format!("{t}x"), &hash(&t)));
        assert!(!matches(&t, &[]));
        assert!(!matches("", &[]));
    }
}
