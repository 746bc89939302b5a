//! Rookery's shared vocabulary: configuration, JIDs, stanza helpers (RFC 6120 §8) and the storage
//! contracts every backend implements. No I/O lives here.

pub mod config;
pub mod stanza;
pub mod storage;

pub use jid::{BareJid, FullJid, Jid};
pub use rookery_xml::{ns, Element};
