//! The incremental XML stream parser (RFC 6120 §4 and §11) shared by every transport, enforcing
//! size, depth and attribute limits while bytes arrive, before any stanza is handed on.

use crate::element::Element;
use crate::ns;
use crate::resolve::{Refused, Resolved, Resolver};
use compact_str::CompactString;
use rxml::error::EndOrError;
use rxml::{Options, Parse, RawEvent, RawParser, WithOptions};

/// Limits checked while parsing. `max_stanza_bytes` counts raw input bytes of one top-level
/// element including whatever precedes it, so a header that never closes is caught too.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
    pub max_token_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            max_attributes: 64,
            max_token_bytes: 16 * 1024,
        }
    }
}

/// What went wrong with a stream; each maps to one RFC 6120 §4.9.3 condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("not-well-formed: {0}")]
    NotWellFormed(String),
    #[error("invalid-namespace: {0}")]
    InvalidNamespace(String),
    #[error("policy-violation: {0}")]
    PolicyViolation(String),
    /// A DTD, entity reference, comment or processing instruction (RFC 6120 §11.1).
    #[error("restricted-xml: {0}")]
    RestrictedXml(String),
}

impl StreamError {
    /// The defined condition element name.
    pub fn condition(&self) -> &'static str {
        match self {
            StreamError::NotWellFormed(_) => "not-well-formed",
            StreamError::InvalidNamespace(_) => "invalid-namespace",
            StreamError::PolicyViolation(_) => "policy-violation",
            StreamError::RestrictedXml(_) => "restricted-xml",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            StreamError::NotWellFormed(t)
            | StreamError::InvalidNamespace(t)
            | StreamError::PolicyViolation(t)
            | StreamError::RestrictedXml(t) => t,
        }
    }

    /// Classifies an rxml error: XML features XMPP forbids are `restricted-xml`, tokens over the
    /// length limit are `policy-violation`, anything else is `not-well-formed`.
    fn from_rxml(e: rxml::Error) -> Self {
        match e {
            rxml::Error::RestrictedXml(what @ ("event too long" | "long name or reference")) => {
                StreamError::PolicyViolation(what.to_string())
            }
            rxml::Error::RestrictedXml(what) => StreamError::RestrictedXml(what.to_string()),
            rxml::Error::UndeclaredEntity => StreamError::RestrictedXml("entity references".into()),
            // `<!` that starts neither a comment nor CDATA: a document type declaration.
            rxml::Error::InvalidSyntax("malformed cdata or comment section start") => {
                StreamError::RestrictedXml("document type declarations".into())
            }
            e => StreamError::NotWellFormed(e.to_string()),
        }
    }
}

/// The opening `<stream:stream>` (or a WebSocket `<open/>`), attributes as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub attrs: Vec<(String, String)>,
}

impl StreamHeader {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Header(StreamHeader),
    Stanza(Element),
    Close,
}

/// Parses one XML stream: feed it bytes as they arrive, get headers, stanzas and the close.
/// A stream restart (after STARTTLS or SASL) is a new parser.
pub struct StreamParser {
    /// None after [`StreamParser::compact`]: made again, fed `<` `root` `>`, when bytes come.
    parser: Option<Box<RawParser>>,
    resolver: Resolver,
    limits: Limits,
    /// Elements currently open below the stream root.
    stack: Vec<Element>,
    header_seen: bool,
    closed: bool,
    /// Input bytes since the last completed top-level element.
    pending: usize,
    /// The last event completed the header or a top-level element, and no byte came since.
    at_boundary: bool,
    /// The stream root's qualified name as sent (`stream:stream`), once its head opened.
    root: Option<CompactString>,
}

fn options(limits: &Limits) -> Options {
    Options {
        max_token_length: limits.max_token_bytes,
        ..Options::default()
    }
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        StreamParser {
            parser: Some(Box::new(RawParser::with_options(options(&limits)))),
            resolver: Resolver::new(limits.max_attributes),
            limits,
            stack: Vec::new(),
            header_seen: false,
            closed: false,
            pending: 0,
            at_boundary: false,
            root: None,
        }
    }

    /// Frees what the parser holds between stanzas when nothing is half-read; the next bytes
    /// find a new raw parser, fed the root's start tag first so that it expects the root's end
    /// tag. The root's namespace scope stays with the resolver. For connections gone quiet.
    pub fn compact(&mut self) {
        if self.at_boundary && self.header_seen && !self.closed && self.root.is_some() {
            self.parser = None;
            self.stack = Vec::new();
            self.resolver.keep_root_only();
        }
    }

    /// The raw parser, made again after [`StreamParser::compact`].
    fn parser(&mut self) -> &mut RawParser {
        let limits = &self.limits;
        let root = &self.root;
        self.parser.get_or_insert_with(|| {
            let mut p = Box::new(RawParser::with_options(options(limits)));
            let root = root
                .as_ref()
                .expect("compact() keeps the parser until the root is known");
            let tag = format!("<{root}>");
            let mut bytes = tag.as_bytes();
            // It parsed before, as the start of this stream: only its own head's events come.
            while let Ok(Some(_)) = p.parse(&mut bytes, false) {}
            p
        })
    }

    /// Raise or lower the stanza size limit, e.g. once the peer has authenticated.
    pub fn set_max_stanza_bytes(&mut self, n: usize) {
        self.limits.max_stanza_bytes = n;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Feeds bytes; complete events are appended to `out`. After an error the stream is dead.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        while !self.closed {
            let before = data.len();
            let chunk = data;
            let res = self.parser().parse(&mut data, false);
            let used = before - data.len();
            self.pending += used;
            // Whitespace after a stanza (a keepalive, RFC 6120 §4.6.1) leaves nothing half-read
            // that matters: a connection that sends only keepalives still compacts.
            if used > 0
                && !chunk[..used]
                    .iter()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                self.at_boundary = false;
            }
            if self.pending > self.limits.max_stanza_bytes {
                return Err(StreamError::PolicyViolation(format!(
                    "stanza larger than {} bytes",
                    self.limits.max_stanza_bytes
                )));
            }
            match res {
                Ok(Some(ev)) => {
                    if let (RawEvent::ElementHeadOpen(_, (prefix, local)), None) = (&ev, &self.root)
                    {
                        self.root = Some(match prefix {
                            Some(p) => {
                                compact_str::format_compact!("{}:{}", p.as_str(), local.as_str())
                            }
                            None => local.as_str().into(),
                        });
                    }
                    match self.resolver.resolve(ev) {
                        Ok(Some(r)) => self.handle(r, out)?,
                        Ok(None) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(None) => {
                    self.closed = true;
                }
                Err(EndOrError::NeedMoreData) => {
                    // The lexer keeps a scratch buffer of max_token_bytes between reads: most
                    // of an idle connection's memory. Dropped here, taken again on the next read.
                    self.parser().release_temporaries();
                    if self.stack.is_empty() {
                        // Between stanzas the element stack holds nothing but its capacity.
                        self.stack = Vec::new();
                    }
                    return Ok(());
                }
                Err(EndOrError::Error(e)) => return Err(StreamError::from_rxml(e)),
            }
        }
        Ok(())
    }

    fn handle(&mut self, ev: Resolved, out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        match ev {
            Resolved::Start(el) => {
                if !self.header_seen {
                    if el.ns() != ns::STREAM && el.ns() != ns::FRAMING {
                        return Err(StreamError::InvalidNamespace(format!(
                            "stream root in namespace '{}'",
                            el.ns()
                        )));
                    }
                    if el.name() != "stream" && el.name() != "open" {
                        return Err(StreamError::NotWellFormed(format!(
                            "unexpected root element <{}>",
                            el.name()
                        )));
                    }
                    self.header_seen = true;
                    self.pending = 0;
                    self.at_boundary = true;
                    out.push(StreamEvent::Header(StreamHeader {
                        attrs: el
                            .attrs()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    }));
                    return Ok(());
                }
                if self.stack.len() >= self.limits.max_depth {
                    return Err(StreamError::PolicyViolation(
                        "elements nested too deeply".into(),
                    ));
                }
                self.stack.push(el);
            }
            Resolved::End => match self.stack.pop() {
                Some(el) => match self.stack.last_mut() {
                    Some(parent) => parent.push_child(el),
                    None => {
                        self.pending = 0;
                        self.at_boundary = true;
                        out.push(StreamEvent::Stanza(el));
                    }
                },
                None => {
                    self.closed = true;
                    out.push(StreamEvent::Close);
                }
            },
            Resolved::Text(text) => match self.stack.last_mut() {
                Some(parent) => parent.append_text(text),
                // Whitespace between stanzas is a keepalive (RFC 6120 §4.6.1).
                None => {
                    self.pending = 0;
                }
            },
        }
        Ok(())
    }
}

impl From<Refused> for StreamError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Xml(e) => StreamError::from_rxml(e),
            Refused::TooManyAttributes => {
                StreamError::PolicyViolation("too many attributes".into())
            }
        }
    }
}

/// One past the end of the markup that starts `b` (at a `<`): a tag (quoted attribute values
/// may hold `>`), a comment, a CDATA section or a processing instruction. None while incomplete.
/// Finds markup without parsing it, for framing a stream's bytes.
pub fn markup_end(b: &[u8]) -> Option<usize> {
    for (open, close) in [
        (&b"<!--"[..], &b"-->"[..]),
        (b"<![CDATA[", b"]]>"),
        (b"<?", b"?>"),
    ] {
        if b.starts_with(open) {
            let body = &b[open.len()..];
            let at = body.windows(close.len()).position(|w| w == close)?;
            return Some(open.len() + at + close.len());
        }
        if b.len() < open.len() && open.starts_with(b) {
            return None; // too short to tell yet
        }
    }
    let mut quote = None;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match (quote, c) {
            (None, b'\'' | b'"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Parses a complete standalone element (stored XML, tests) with default limits.
pub(crate) fn parse_fragment(data: &[u8]) -> Result<Element, StreamError> {
    parse_document(data, &Limits::default())
}

/// Parses one complete document (a WebSocket frame, a BOSH body) with the stream limits.
pub fn parse_document(data: &[u8], limits: &Limits) -> Result<Element, StreamError> {
    if data.len() > limits.max_stanza_bytes {
        return Err(StreamError::PolicyViolation(format!(
            "stanza larger than {} bytes",
            limits.max_stanza_bytes
        )));
    }
    let mut parser = RawParser::with_options(options(limits));
    let mut resolver = Resolver::new(limits.max_attributes);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let mut buf = data;
    loop {
        let ev = match parser.parse(&mut buf, true) {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(EndOrError::NeedMoreData) => {
                return Err(StreamError::NotWellFormed("truncated document".into()))
            }
            Err(EndOrError::Error(e)) => return Err(StreamError::from_rxml(e)),
        };
        match resolver.resolve(ev)? {
            Some(Resolved::Start(el)) => {
                // The document root does not count towards stanza depth.
                if stack.len() > limits.max_depth {
                    return Err(StreamError::PolicyViolation(
                        "elements nested too deeply".into(),
                    ));
                }
                stack.push(el);
            }
            Some(Resolved::End) => {
                let el = stack.pop().expect("parser balances elements");
                match stack.last_mut() {
                    Some(p) => p.push_child(el),
                    None => root = Some(el),
                }
            }
            Some(Resolved::Text(t)) => {
                if let Some(p) = stack.last_mut() {
                    p.append_text(t);
                }
            }
            None => {}
        }
    }
    root.ok_or_else(|| StreamError::NotWellFormed("no element".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    fn feed_all(p: &mut StreamParser, chunks: &[&[u8]]) -> Result<Vec<StreamEvent>, StreamError> {
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn parses_header_stanzas_and_close_byte_by_byte() {
        let doc = format!(
            "{HEADER} <message to='a@b'><body>hi &amp; bye</body></message>\n</stream:stream>"
        );
        let mut p = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        for b in doc.as_bytes() {
            p.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out.len(), 3);
        match &out[0] {
            StreamEvent::Header(h) => assert_eq!(h.attr("to"), Some("localhost")),
            e => panic!("{e:?}"),
        }
        match &out[1] {
            StreamEvent::Stanza(m) => {
                assert!(m.is("message", ns::CLIENT));
                assert_eq!(m.child_text("body", ns::CLIENT).unwrap(), "hi & bye");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(out[2], StreamEvent::Close);
    }

    fn stanzas(out: &[StreamEvent]) -> Vec<String> {
        out.iter()
            .filter_map(|e| match e {
                StreamEvent::Stanza(el) => Some(el.to_xml()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn compacting_between_stanzas_keeps_the_root_scope() {
        // A plain root, and one declaring a prefix its stanzas use (kept as sent).
        let prefixed = "<stream:stream xmlns='jabber:client' xmlns:stream=\
            'http://etherx.jabber.org/streams' xmlns:x=\"urn:x\" version='1.0'>";
        for header in [HEADER, prefixed] {
            let mut p = StreamParser::new(Limits::default());
            let mut out = Vec::new();
            p.feed(header.as_bytes(), &mut out).unwrap();
            p.compact();
            p.feed(b"<message><body>1</body></message>", &mut out)
                .unwrap();
            assert!(p.parser.is_some());
            p.compact();
            assert!(p.parser.is_none(), "{header}");
            // Split mid-stanza: nothing is compacted while something is half-read.
            p.feed(b"<message><bo", &mut out).unwrap();
            p.compact();
            assert!(p.parser.is_some());
            p.feed(b"dy>2</body></message>", &mut out).unwrap();
            p.compact();
            let more: &[u8] = if header == HEADER {
                b"<iq type='get'><q xmlns='urn:y'/></iq>"
            } else {
                b"<iq type='get'><x:q/></iq>"
            };
            p.feed(more, &mut out).unwrap();
            p.compact();
            p.feed(b"</stream:stream>", &mut out).unwrap();
            let got = stanzas(&out);
            assert_eq!(got.len(), 3, "{header}: {out:?}");
            assert_eq!(
                got[0],
                "<message xmlns='jabber:client'><body>1</body></message>"
            );
            assert_eq!(
                got[1],
                "<message xmlns='jabber:client'><body>2</body></message>"
            );
            assert!(got[2].contains("<q xmlns='urn"), "{}", got[2]);
            assert_eq!(out.last(), Some(&StreamEvent::Close));
            assert_eq!(
                out.iter()
                    .filter(|e| matches!(e, StreamEvent::Header(_)))
                    .count(),
                1
            );
        }
    }

    #[test]
    fn keepalives_do_not_keep_a_connection_from_compacting() {
        let mut p = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        p.feed(HEADER.as_bytes(), &mut out).unwrap();
        p.feed(b"<message><body>1</body></message>", &mut out)
            .unwrap();
        p.feed(b" ", &mut out).unwrap();
        p.feed(b"\n", &mut out).unwrap();
        p.compact();
        assert!(p.parser.is_none());
        // Text that is not whitespace, or a tag begun, keeps the parser.
        p.feed(b" <mess", &mut out).unwrap();
        p.compact();
        assert!(p.parser.is_some());
        p.feed(b"age><body>2</body></message>", &mut out).unwrap();
        assert_eq!(
            stanzas(&out),
            [
                "<message xmlns='jabber:client'><body>1</body></message>",
                "<message xmlns='jabber:client'><body>2</body></message>"
            ]
        );
    }

    #[test]
    fn resolves_prefixes_and_checks_attributes() {
        let ok = "<a xmlns='urn:a' xmlns:p='urn:p' p:x='1' x='2' xml:lang='en'>\
            <p:b><c xmlns='' p:y='3'/></p:b></a>";
        let el = parse_document(ok.as_bytes(), &Limits::default()).unwrap();
        assert!(el.is("a", "urn:a"));
        assert_eq!(el.attr("{urn:p}x"), Some("1"));
        assert_eq!(el.attr("x"), Some("2"));
        assert_eq!(el.attr("xml:lang"), Some("en"));
        let b = el.get_child("b", "urn:p").unwrap();
        let c = b.get_child("c", "").unwrap();
        assert_eq!(c.attr("{urn:p}y"), Some("3"));
        for (bad, condition) in [
            ("<a x='1' x='2'/>", "not-well-formed"),
            ("<a xmlns='urn:a' xmlns='urn:b'/>", "not-well-formed"),
            ("<a xmlns:p='urn:a' xmlns:p='urn:b'/>", "not-well-formed"),
            // The same attribute under two prefixes bound to one namespace.
            (
                "<a xmlns:p='urn:a' xmlns:q='urn:a' p:x='1' q:x='2'/>",
                "not-well-formed",
            ),
            ("<p:a/>", "not-well-formed"),
            ("<a p:x='1'/>", "not-well-formed"),
            ("<a><p:b xmlns:p='urn:p'/><p:c/></a>", "not-well-formed"),
            ("<a xmlns:xmlns='urn:x'/>", "not-well-formed"),
            (
                "<a xmlns:p='http://www.w3.org/2000/xmlns/'/>",
                "not-well-formed",
            ),
            ("<a xmlns:p=''/>", "not-well-formed"),
        ] {
            let err = parse_document(bad.as_bytes(), &Limits::default()).unwrap_err();
            assert_eq!(err.condition(), condition, "{bad}: {err}");
        }
        let many = format!(
            "<a {}/>",
            (0..65)
                .map(|i| format!("a{i}='x'"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let err = parse_document(many.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
    }

    #[test]
    fn rejects_oversized_stanza_before_it_completes() {
        let mut p = StreamParser::new(Limits {
            max_stanza_bytes: 1000,
            ..Limits::default()
        });
        let big = format!("<message><body>{}", "x".repeat(2000));
        let err = feed_all(&mut p, &[HEADER.as_bytes(), big.as_bytes()]).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
    }

    #[test]
    fn rejects_unterminated_giant_start_tag() {
        let mut p = StreamParser::new(Limits {
            max_stanza_bytes: 1000,
            ..Limits::default()
        });
        let mut chunks: Vec<Vec<u8>> = vec![HEADER.as_bytes().to_vec(), b"<message ".to_vec()];
        for i in 0..200 {
            chunks.push(format!("a{i}='xxxxxxxx' ").into_bytes());
        }
        let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
        let err = feed_all(&mut p, &refs).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
    }

    #[test]
    fn rejects_nesting_bomb() {
        let mut p = StreamParser::new(Limits::default());
        let bomb = "<a>".repeat(100);
        let err = feed_all(&mut p, &[HEADER.as_bytes(), bomb.as_bytes()]).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
    }

    #[test]
    fn rejects_dtd_comments_and_pis_as_restricted_xml() {
        for bad in [
            "<!DOCTYPE foo [<!ENTITY x 'y'>]><stream:stream/>",
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><!-- hi -->",
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><?pi x?>",
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>&foo;</a>",
        ] {
            let mut p = StreamParser::new(Limits::default());
            let err = feed_all(&mut p, &[bad.as_bytes()]).unwrap_err();
            assert_eq!(err.condition(), "restricted-xml", "{bad}");
        }
    }

    #[test]
    fn rejects_wrong_stream_namespace() {
        let mut p = StreamParser::new(Limits::default());
        let err = feed_all(&mut p, &[b"<stream:stream xmlns:stream='urn:wrong'>"]).unwrap_err();
        assert_eq!(err.condition(), "invalid-namespace");
    }

    #[test]
    fn keepalive_whitespace_does_not_accumulate() {
        let mut p = StreamParser::new(Limits {
            max_stanza_bytes: 300,
            ..Limits::default()
        });
        let mut out = Vec::new();
        p.feed(HEADER.as_bytes(), &mut out).unwrap();
        for _ in 0..500 {
            p.feed(b" <a/>", &mut out).unwrap();
        }
        assert_eq!(out.len(), 501);
    }

    #[test]
    fn fragment_parsing() {
        let el = Element::parse(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x' xml:lang='en'/>",
        )
        .unwrap();
        assert_eq!(el.attr("xml:lang"), Some("en"));
        assert!(Element::parse("<a><b></a>").is_err());
    }
}
