//! XML streams for XMPP (RFC 6120 §4, §11): an element tree, an incremental stream parser with
//! limits enforced while parsing, and serialisation. No I/O and no XMPP logic live here.

mod element;
#[cfg(test)]
mod proptests;
mod resolve;
mod stream;

pub use element::{escape_attr, escape_text, Element, Node};
pub use stream::{
    markup_end, parse_document, Limits, StreamError, StreamEvent, StreamHeader, StreamParser,
};

/// The namespaces every layer above needs to name.
pub mod ns {
    pub const STREAM: &str = "http://etherx.jabber.org/streams";
    pub const CLIENT: &str = "jabber:client";
    pub const SERVER: &str = "jabber:server";
    pub const COMPONENT: &str = "jabber:component:accept";
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
    pub const STREAMS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    pub const STANZAS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
    pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
    pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
    pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
    /// Marker "namespace" meaning: inside a stream whose root declared the `stream:` prefix.
    pub(crate) const STREAM_PREFIX_DECLARED: &str = "\u{0}stream-prefix-declared";
}
