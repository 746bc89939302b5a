//! A small owned XML element tree: what a stanza is once parsed, and what features build.

use compact_str::CompactString;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

/// A child of an element: another element or character data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An XML element with its namespace resolved. Attributes in the XML namespace are kept under
/// their conventional `xml:` prefix (`xml:lang`); other namespaced attributes are kept in Clark
/// notation (`{urn:xmpp:xbosh}restart`) for reading only and are not serialised.
///
/// Children are shared between clones (copy on write), and their serialisation is cached once
/// shared: fanning one stanza out to many recipients, which differ only in `to`, then copies and
/// serialises the content once rather than once per recipient.
///
/// Names, namespaces and attributes are compact strings: up to 24 bytes (every element name,
/// most namespaces, attribute names and JIDs) they live inline, so parsing and copying a stanza
/// allocates per element rather than per string.
#[derive(Clone)]
pub struct Element {
    name: CompactString,
    ns: CompactString,
    attrs: Vec<(CompactString, CompactString)>,
    children: Option<Arc<Children>>,
}

#[derive(Default)]
struct Children {
    nodes: Vec<Node>,
    /// The serialised content, with this element's namespace as the default in scope.
    xml: OnceLock<String>,
}

impl Clone for Children {
    fn clone(&self) -> Self {
        Children {
            nodes: self.nodes.clone(),
            xml: OnceLock::new(),
        }
    }
}

impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.ns == other.ns
            && self.attrs == other.attrs
            && self.nodes() == other.nodes()
    }
}

impl Eq for Element {}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Element")
            .field("name", &self.name)
            .field("ns", &self.ns)
            .field("attrs", &self.attrs)
            .field("children", &self.nodes())
            .finish()
    }
}

impl Element {
    pub fn new(name: impl Into<CompactString>, ns: impl Into<CompactString>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: None,
        }
    }

    /// An element as the parser makes it: parts already owned, attributes checked.
    pub(crate) fn from_parts(
        name: CompactString,
        ns: CompactString,
        attrs: Vec<(CompactString, CompactString)>,
    ) -> Self {
        Element {
            name,
            ns,
            attrs,
            children: None,
        }
    }

    /// The children for changing: unshared first, and the cached serialisation dropped.
    fn nodes_mut(&mut self) -> &mut Vec<Node> {
        let c = Arc::make_mut(self.children.get_or_insert_with(Default::default));
        c.xml.take();
        &mut c.nodes
    }

    /// Appends a child. The first takes room for one only: most elements have one child, and a
    /// vector's first growth makes room for four (320 bytes kept by every stored presence).
    fn push_node(&mut self, n: Node) {
        let nodes = self.nodes_mut();
        if nodes.capacity() == 0 {
            nodes.reserve_exact(1);
        }
        nodes.push(n);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn set_ns(&mut self, ns: impl Into<CompactString>) {
        self.ns = ns.into();
        // The cached content was written with the old namespace as the default.
        if self.children.is_some() {
            self.nodes_mut();
        }
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn set_attr(&mut self, key: impl Into<CompactString>, value: impl Into<CompactString>) {
        let key = key.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((key, value)),
        }
    }

    pub fn remove_attr(&mut self, key: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(pos).1.into_string())
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(
        mut self,
        key: impl Into<CompactString>,
        value: impl Into<CompactString>,
    ) -> Self {
        self.set_attr(key, value);
        self
    }

    /// Sets the attribute only when a value is given.
    pub fn with_opt_attr(
        mut self,
        key: impl Into<CompactString>,
        value: Option<impl Into<CompactString>>,
    ) -> Self {
        if let Some(v) = value {
            self.set_attr(key, v);
        }
        self
    }

    pub fn with_child(mut self, child: Element) -> Self {
        self.push_node(Node::Element(child));
        self
    }

    pub fn with_children(mut self, children: impl IntoIterator<Item = Element>) -> Self {
        let mut children = children.into_iter().map(Node::Element).peekable();
        if children.peek().is_some() {
            self.nodes_mut().extend(children);
        }
        self
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.append_text(text);
        self
    }

    pub fn push_child(&mut self, child: Element) {
        self.push_node(Node::Element(child));
    }

    pub fn append_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if text.is_empty() {
            return;
        }
        if let Some(Node::Text(last)) = self.nodes_mut().last_mut() {
            last.push_str(&text);
        } else {
            self.push_node(Node::Text(text));
        }
    }

    pub fn nodes(&self) -> &[Node] {
        self.children.as_deref().map_or(&[], |c| c.nodes.as_slice())
    }

    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.nodes().iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.nodes_mut().iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|c| c.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        if !self.has_child(name, ns) {
            return None;
        }
        self.children_mut().find(|c| c.is(name, ns))
    }

    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// Removes every child element for which `keep` answers false.
    pub fn retain_children(&mut self, mut keep: impl FnMut(&Element) -> bool) {
        let mut keep = |n: &Node| match n {
            Node::Element(e) => keep(e),
            Node::Text(_) => true,
        };
        // Only unshare (and forget the cached serialisation) when something goes.
        let Some(first_gone) = self.nodes().iter().position(|n| !keep(n)) else {
            return;
        };
        let nodes = self.nodes_mut();
        let mut i = 0;
        nodes.retain(|n| {
            let k = i < first_gone || (i != first_gone && keep(n));
            i += 1;
            k
        });
    }

    pub fn remove_child(&mut self, name: &str, ns: &str) -> Option<Element> {
        let pos = self
            .nodes()
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.is(name, ns)))?;
        match self.nodes_mut().remove(pos) {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        }
    }

    /// The concatenated character data directly inside this element.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in self.nodes() {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Text of the first child with this name and namespace.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.get_child(name, ns).map(|c| c.text())
    }

    /// Serialises the element. `parent_ns` is the default namespace in scope where it is written
    /// (the stream's content namespace for a stanza), so that no redundant `xmlns` is emitted.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        // Stream-level elements use the `stream:` prefix the stream header declares, which is what
        // deployed clients look for.
        let prefixed = self.ns == crate::ns::STREAM;
        if prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        if prefixed {
            if parent_ns != crate::ns::STREAM_PREFIX_DECLARED {
                out.push_str(" xmlns:stream='http://etherx.jabber.org/streams'");
            }
        } else if self.ns != parent_ns {
            out.push_str(" xmlns='");
            escape_attr(out, &self.ns);
            out.push('\'');
        }
        for (k, v) in &self.attrs {
            if k.starts_with('{') {
                continue;
            }
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            escape_attr(out, v);
            out.push('\'');
        }
        let Some(children) = self.children.as_ref().filter(|c| !c.nodes.is_empty()) else {
            out.push_str("/>");
            return;
        };
        out.push('>');
        if prefixed {
            write_nodes(&children.nodes, out, parent_ns);
        } else if Arc::strong_count(children) > 1 {
            // Shared with other copies of this stanza: serialise the content once for all.
            out.push_str(children.xml.get_or_init(|| {
                let mut s = String::with_capacity(128);
                write_nodes(&children.nodes, &mut s, &self.ns);
                s
            }));
        } else {
            write_nodes(&children.nodes, out, &self.ns);
        }
        out.push_str("</");
        if prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        out.push('>');
    }

    /// Serialises as a standalone document fragment (namespace always declared).
    pub fn to_xml(&self) -> String {
        let mut s = String::with_capacity(128);
        self.write_to(&mut s, "");
        s
    }

    /// Serialises as a child of a stream whose content namespace is `stream_ns`.
    pub fn to_stream_xml(&self, stream_ns: &str) -> String {
        let mut s = String::with_capacity(128);
        self.write_to(&mut s, stream_ns);
        s
    }

    /// Serialises as a child of an RFC 6120 `<stream:stream>` (jabber:client content, `stream:`
    /// prefix declared on the root), appending to `out`.
    pub fn write_in_stream(&self, out: &mut String) {
        if self.ns == crate::ns::STREAM {
            // The prefix is declared on the root; children of stream elements default to the
            // content namespace of the stream.
            let mut tmp = String::new();
            self.write_to(&mut tmp, crate::ns::STREAM_PREFIX_DECLARED);
            out.push_str(&tmp);
        } else {
            self.write_to(out, crate::ns::CLIENT);
        }
    }

    /// Parses one standalone XML element (tests, stored data). Uses the same parser as streams.
    pub fn parse(xml: &str) -> Result<Element, crate::StreamError> {
        crate::stream::parse_fragment(xml.as_bytes())
    }
}

fn write_nodes(nodes: &[Node], out: &mut String, ns: &str) {
    for n in nodes {
        match n {
            Node::Element(e) => e.write_to(out, ns),
            Node::Text(t) => escape_text(out, t),
        }
    }
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_xml())
    }
}

pub fn escape_text(out: &mut String, s: &str) {
    escape(out, s, |b| matches!(b, b'<' | b'>' | b'&' | b'\r'));
}

pub fn escape_attr(out: &mut String, s: &str) {
    escape(out, s, |b| {
        matches!(b, b'<' | b'>' | b'&' | b'\'' | b'"' | b'\n' | b'\r' | b'\t')
    });
}

/// Copies `s` in runs between the bytes `special` picks (all ASCII, so never inside a UTF-8
/// sequence): most text has none and goes in one copy.
fn escape(out: &mut String, s: &str, special: impl Fn(u8) -> bool) {
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if !special(b) {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'<' => out.push_str("&lt;"),
            b'>' => out.push_str("&gt;"),
            b'&' => out.push_str("&amp;"),
            b'\'' => out.push_str("&apos;"),
            b'"' => out.push_str("&quot;"),
            _ => {
                let _ = write!(out, "&#{};", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_minimal_namespace_declarations() {
        let el = Element::new("iq", "jabber:client")
            .with_attr("type", "result")
            .with_attr("id", "a'b")
            .with_child(
                Element::new("query", "jabber:iq:roster")
                    .with_child(Element::new("item", "jabber:iq:roster").with_attr("jid", "a@b")),
            );
        assert_eq!(
            el.to_stream_xml("jabber:client"),
            "<iq type='result' id='a&apos;b'><query xmlns='jabber:iq:roster'><item jid='a@b'/></query></iq>"
        );
    }

    #[test]
    fn stream_elements_use_the_stream_prefix() {
        let f = Element::new("features", crate::ns::STREAM)
            .with_child(Element::new("bind", crate::ns::BIND));
        let mut s = String::new();
        f.write_in_stream(&mut s);
        assert_eq!(
            s,
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
        assert_eq!(
            f.to_xml(),
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
    }

    #[test]
    fn round_trips_text_and_escapes() {
        let el = Element::new("body", "jabber:client").with_text("<3 & \"x\"");
        let xml = el.to_xml();
        assert_eq!(xml, "<body xmlns='jabber:client'>&lt;3 &amp; \"x\"</body>");
        assert_eq!(Element::parse(&xml).unwrap(), el);
    }

    #[test]
    fn escapes_every_special_byte_and_keeps_multibyte_text() {
        let mut t = String::new();
        escape_text(&mut t, "é<a>&\r'\"\n\tz");
        assert_eq!(t, "é&lt;a&gt;&amp;&#13;'\"\n\tz");
        let mut a = String::new();
        escape_attr(&mut a, "é<a>&\r'\"\n\tz");
        assert_eq!(a, "é&lt;a&gt;&amp;&#13;&apos;&quot;&#10;&#9;z");
        let mut plain = String::from("x=");
        escape_attr(&mut plain, "ünïcode");
        assert_eq!(plain, "x=ünïcode");
    }

    #[test]
    fn shared_copies_serialise_alike_and_changes_stay_private() {
        let m = Element::new("message", "jabber:client")
            .with_attr("from", "room@muc/nick")
            .with_child(Element::new("body", "jabber:client").with_text("hi & bye"));
        let mut a = m.clone();
        a.set_attr("to", "a@x/r");
        let mut b = m.clone();
        b.set_attr("to", "b@x/r");
        // Shared content: the first serialisation fills the cache, the second reads it.
        assert_eq!(
            a.to_stream_xml("jabber:client"),
            "<message from='room@muc/nick' to='a@x/r'><body>hi &amp; bye</body></message>"
        );
        assert_eq!(
            b.to_stream_xml("jabber:client"),
            "<message from='room@muc/nick' to='b@x/r'><body>hi &amp; bye</body></message>"
        );
        // The cache was made for jabber:client as the default namespace; elsewhere it is not used.
        assert_eq!(
            a.to_xml(),
            "<message xmlns='jabber:client' from='room@muc/nick' to='a@x/r'><body>hi &amp; bye</body></message>"
        );
        // Changing one copy's children leaves the others (and their cache) alone.
        b.push_child(Element::new("x", "urn:x"));
        b.retain_children(|c| c.name() != "body");
        assert_eq!(
            b.to_stream_xml("jabber:client"),
            "<message from='room@muc/nick' to='b@x/r'><x xmlns='urn:x'/></message>"
        );
        assert_eq!(
            a.to_stream_xml("jabber:client"),
            "<message from='room@muc/nick' to='a@x/r'><body>hi &amp; bye</body></message>"
        );
        // A namespace change re-serialises the content under the new default.
        let mut c = m.clone();
        c.set_ns("jabber:server");
        assert_eq!(
            c.to_stream_xml("jabber:server"),
            "<message from='room@muc/nick'><body xmlns='jabber:client'>hi &amp; bye</body></message>"
        );
        let mut d = a.clone();
        d.remove_attr("to");
        assert_eq!(m, d);
    }

    #[test]
    fn child_lookup_and_removal() {
        let mut el = Element::parse("<m xmlns='a'><x xmlns='b'/><y/>t</m>").unwrap();
        assert!(el.has_child("x", "b"));
        assert!(el.has_child("y", "a"));
        assert!(!el.has_child("x", "a"));
        assert_eq!(el.text(), "t");
        el.remove_child("x", "b");
        assert!(!el.has_child("x", "b"));
    }
}
