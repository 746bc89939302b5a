//! Namespaces in XML 1.0 (third edition) §3–§6 over rxml's raw events: prefixes resolved and
//! attributes checked while an element's head is read, the element built directly.
//!
//! rxml's own resolver kept an ordered map per element and per attribute set and handed out
//! attribute maps we then converted: a tenth of the server's time per chat message. Stanzas
//! declare at most a default namespace, so scopes here are a short stack of small vectors.
//! rxml's raw parser still checks the reserved prefixes and names and empty prefixed
//! declarations; what it leaves to a resolver (unique attributes, declared prefixes) is here.

use crate::element::Element;
use crate::ns;
use compact_str::CompactString;
use rxml::{RawEvent, RawQName};

/// What the resolver makes of the raw events: at most one per raw event.
pub(crate) enum Resolved {
    /// A start tag, read to its end: the element, without children yet.
    Start(Element),
    End,
    Text(String),
}

/// The namespaces in force at one open element.
struct Scope {
    /// For unprefixed element names ("" for none).
    default: CompactString,
    /// Prefixes this element declares.
    prefixes: Vec<(CompactString, CompactString)>,
}

/// The head of an element being read.
#[derive(Default)]
struct Head {
    name: Option<RawQName>,
    default: Option<CompactString>,
    prefixes: Vec<(CompactString, CompactString)>,
    attrs: Vec<(Option<CompactString>, CompactString, CompactString)>,
}

/// Every signed-in session holds one, so what an idle stream keeps is small: the root's scope
/// inline, no other scope, no head.
#[derive(Default)]
pub(crate) struct Resolver {
    /// The outermost element's scope (a stream's root), once its head is read.
    root: Option<Scope>,
    /// The scopes of the elements open below it, innermost last.
    scopes: Vec<Scope>,
    /// The head being read; made with the first element, freed by [`Resolver::keep_root_only`].
    head: Option<Box<Head>>,
    max_attributes: usize,
}

/// Why a head or a name was refused: an rxml well-formedness error, or a limit.
pub(crate) enum Refused {
    Xml(rxml::Error),
    TooManyAttributes,
}

impl Resolver {
    pub(crate) fn new(max_attributes: usize) -> Self {
        Resolver {
            max_attributes,
            ..Resolver::default()
        }
    }

    /// Forgets every scope but the outermost (the stream root's), and any capacity held.
    pub(crate) fn keep_root_only(&mut self) {
        self.scopes = Vec::new();
        self.head = None;
    }

    pub(crate) fn resolve(&mut self, ev: RawEvent) -> Result<Option<Resolved>, Refused> {
        match ev {
            RawEvent::XmlDeclaration(..) => Ok(None),
            RawEvent::ElementHeadOpen(_, name) => {
                self.head.get_or_insert_with(Box::default).name = Some(name);
                Ok(None)
            }
            RawEvent::Attribute(_, (prefix, local), value) => {
                let h = self.head.as_mut().expect("raw parser opens a head first");
                if h.attrs.len() + h.prefixes.len() + usize::from(h.default.is_some())
                    >= self.max_attributes
                {
                    return Err(Refused::TooManyAttributes);
                }
                match prefix {
                    // Well-formedness constraint: Unique Att Spec, for declarations too.
                    None if local == "xmlns" => {
                        if h.default.is_some() {
                            return Err(Refused::Xml(rxml::Error::DuplicateAttribute));
                        }
                        if value == rxml::XMLNS_XMLNS {
                            return Err(Refused::Xml(rxml::Error::ReservedNamespaceName));
                        }
                        h.default = Some(namespace(&value));
                    }
                    Some(p) if p == "xmlns" => {
                        // Reserved Prefixes and Namespace Names, the part rxml leaves to us.
                        if local == "xmlns" {
                            return Err(Refused::Xml(rxml::Error::ReservedNamespacePrefix));
                        }
                        if value == rxml::XMLNS_XMLNS {
                            return Err(Refused::Xml(rxml::Error::ReservedNamespaceName));
                        }
                        let local: CompactString = local.into();
                        if h.prefixes.iter().any(|(p, _)| *p == local) {
                            return Err(Refused::Xml(rxml::Error::DuplicateAttribute));
                        }
                        h.prefixes.push((local, namespace(&value)));
                    }
                    p => h
                        .attrs
                        .push((p.map(Into::into), local.into(), value.into())),
                }
                Ok(None)
            }
            RawEvent::ElementHeadClose(_) => self.close_head().map(|el| Some(Resolved::Start(el))),
            RawEvent::ElementFoot(_) => {
                if self.scopes.pop().is_none() {
                    self.root = None;
                }
                Ok(Some(Resolved::End))
            }
            RawEvent::Text(_, text) => Ok(Some(Resolved::Text(text))),
        }
    }

    fn close_head(&mut self) -> Result<Element, Refused> {
        let h = self.head.as_mut().expect("raw parser opens a head first");
        let (prefix, local) = h.name.take().expect("raw parser opens a head first");
        let declared = h.default.take();
        let prefixes = std::mem::take(&mut h.prefixes);
        let default = declared.unwrap_or_else(|| {
            in_force(&self.scopes, &self.root)
                .next()
                .map_or_else(CompactString::default, |s| s.default.clone())
        });
        let scope = Scope { default, prefixes };
        if self.root.is_none() {
            self.root = Some(scope);
        } else {
            self.scopes.push(scope);
        }
        let ns = match &prefix {
            None => in_force(&self.scopes, &self.root)
                .next()
                .expect("just pushed")
                .default
                .clone(),
            Some(p) => lookup(in_force(&self.scopes, &self.root), p)?.clone(),
        };
        let h = self.head.as_mut().expect("raw parser opens a head first");
        let mut attrs: Vec<(CompactString, CompactString)> = Vec::with_capacity(h.attrs.len());
        for (prefix, local, value) in h.attrs.drain(..) {
            let key = match prefix {
                None => local,
                Some(p) if p == "xml" => {
                    if local == "lang" {
                        CompactString::const_new("xml:lang")
                    } else {
                        compact_str::format_compact!("xml:{local}")
                    }
                }
                // Clark notation; readable by `attr("{ns}name")`, never serialised back.
                Some(p) => {
                    let uri = lookup(in_force(&self.scopes, &self.root), &p)?;
                    compact_str::format_compact!("{{{uri}}}{local}")
                }
            };
            // Namespace constraint: Attributes Unique. Keys name (namespace, local name) pairs
            // one to one: local names hold no ':' and never start with '{'.
            if attrs.iter().any(|(k, _)| *k == key) {
                return Err(Refused::Xml(rxml::Error::DuplicateAttribute));
            }
            attrs.push((key, value));
        }
        Ok(Element::from_parts(local.into(), ns, attrs))
    }
}

/// The scopes in force, innermost first. Free of `self` so that the head can be read while it
/// is borrowed.
fn in_force<'a>(scopes: &'a [Scope], root: &'a Option<Scope>) -> impl Iterator<Item = &'a Scope> {
    scopes.iter().rev().chain(root.iter())
}

/// Namespace constraint: Prefix Declared. `xml` is bound without a declaration.
fn lookup<'a>(
    mut scopes: impl Iterator<Item = &'a Scope>,
    prefix: &str,
) -> Result<&'a CompactString, Refused> {
    static XML: CompactString = CompactString::const_new(ns::XML);
    if prefix == "xml" {
        return Ok(&XML);
    }
    scopes
        .find_map(|s| s.prefixes.iter().find(|(p, _)| p == prefix))
        .map(|(_, uri)| uri)
        .ok_or(Refused::Xml(rxml::Error::UndeclaredNamespacePrefix(None)))
}

/// A namespace name: the ones streams carry most often are shared static text, any other of
/// up to 24 bytes is stored inline.
fn namespace(uri: &str) -> CompactString {
    const KNOWN: &[&str] = &[
        ns::STREAM,
        ns::STANZAS_ERR,
        ns::STREAMS_ERR,
        ns::SASL,
        ns::BIND,
        ns::TLS,
        ns::SESSION,
        ns::FRAMING,
        ns::COMPONENT,
        ns::XML,
        "http://jabber.org/protocol/chatstates",
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/muc",
        "http://jabber.org/protocol/muc#user",
        "http://jabber.org/protocol/muc#admin",
        "http://jabber.org/protocol/muc#owner",
        "http://jabber.org/protocol/pubsub",
        "http://jabber.org/protocol/pubsub#event",
        "http://jabber.org/protocol/pubsub#owner",
        "http://jabber.org/protocol/nick",
        "http://jabber.org/protocol/address",
        "urn:xmpp:message-correct:0",
        "urn:xmpp:chat-markers:0",
    ];
    if uri.len() > 24 {
        if let Some(k) = KNOWN.iter().find(|k| **k == uri) {
            return CompactString::const_new(k);
        }
    }
    CompactString::from(uri)
}
