//! A small owned XML element tree: what a stanza is once parsed, and what features build.

use std::fmt::Write as _;

/// A child of an element: another element or character data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An XML element with its namespace resolved. Attributes in the XML namespace are kept under
/// their conventional `xml:` prefix (`xml:lang`); other namespaced attributes are kept in Clark
/// notation (`{urn:xmpp:xbosh}restart`) for reading only and are not serialised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    name: String,
    ns: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

impl Element {
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
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

    pub fn set_ns(&mut self, ns: impl Into<String>) {
        self.ns = ns.into();
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

    pub fn set_attr(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((key, value)),
        }
    }

    pub fn remove_attr(&mut self, key: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(pos).1)
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(key, value);
        self
    }

    /// Sets the attribute only when a value is given.
    pub fn with_opt_attr(
        mut self,
        key: impl Into<String>,
        value: Option<impl Into<String>>,
    ) -> Self {
        if let Some(v) = value {
            self.set_attr(key, v);
        }
        self
    }

    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    pub fn with_children(mut self, children: impl IntoIterator<Item = Element>) -> Self {
        self.children
            .extend(children.into_iter().map(Node::Element));
        self
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.append_text(text);
        self
    }

    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    pub fn append_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if text.is_empty() {
            return;
        }
        if let Some(Node::Text(last)) = self.children.last_mut() {
            last.push_str(&text);
        } else {
            self.children.push(Node::Text(text));
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|c| c.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children_mut().find(|c| c.is(name, ns))
    }

    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// Removes every child element for which `keep` answers false.
    pub fn retain_children(&mut self, mut keep: impl FnMut(&Element) -> bool) {
        self.children.retain(|n| match n {
            Node::Element(e) => keep(e),
            Node::Text(_) => true,
        });
    }

    pub fn remove_child(&mut self, name: &str, ns: &str) -> Option<Element> {
        let pos = self
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.is(name, ns)))?;
        match self.children.remove(pos) {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        }
    }

    /// The concatenated character data directly inside this element.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
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
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        let inner_ns = if prefixed {
            parent_ns
        } else {
            self.ns.as_str()
        };
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_to(out, inner_ns),
                Node::Text(t) => escape_text(out, t),
            }
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

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_xml())
    }
}

pub fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

pub fn escape_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\n' | '\r' | '\t' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            _ => out.push(c),
        }
    }
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
