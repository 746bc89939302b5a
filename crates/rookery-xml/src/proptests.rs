//! Property tests for the stream parser: no input or chunking makes it panic, chunking never
//! changes what it yields, and the size, depth and attribute limits hold whatever the chunking.

use crate::{ns, parse_document, Element, Limits, StreamError, StreamEvent, StreamParser};
use proptest::prelude::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Splits `data` at the given cut points (taken modulo its length, so any list fits any input).
fn chunks<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    if data.is_empty() {
        return vec![data];
    }
    let mut at: Vec<usize> = cuts.iter().map(|c| c % data.len()).collect();
    at.push(0);
    at.push(data.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

/// Feeds the chunks one by one; stops at the first error, as every transport does.
fn feed_chunks(
    limits: Limits,
    chunks: &[&[u8]],
) -> (Vec<StreamEvent>, Option<StreamError>, StreamParser) {
    let mut p = StreamParser::new(limits);
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = p.feed(c, &mut out) {
            return (out, Some(e), p);
        }
    }
    (out, None, p)
}

/// Pieces of XML, valid and hostile, that random sequences are made of.
const TOKENS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "a",
    "message",
    "stream:stream",
    " ",
    "\n",
    "=",
    "'",
    "\"",
    " x='1'",
    " xmlns='urn:x'",
    " xmlns:p='urn:p'",
    "p:",
    "xml:lang='en'",
    "&amp;",
    "&lt;",
    "&#65;",
    "&#0;",
    "&#x110000;",
    "&lol;",
    "&",
    ";",
    "<!--",
    "-->",
    "<?",
    "?>",
    "<![CDATA[",
    "]]>",
    "<!DOCTYPE x [<!ENTITY lol 'lol'>]>",
    "<!ENTITY",
    "\u{0}",
    "\u{fffe}",
    "é",
    "\u{1F600}",
    "</stream:stream>",
    HEADER,
];

fn xmlish() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
                1 => prop::collection::vec(any::<u8>(), 0..4),
            ],
            0..64,
        ),
    )
        .prop_map(|(header, parts)| {
            let mut v = if header {
                HEADER.as_bytes().to_vec()
            } else {
                Vec::new()
            };
            for p in parts {
                v.extend(p);
            }
            v
        })
}

/// Text with characters that need escaping, multi-byte UTF-8, and whitespace.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            &[
                "a",
                "b",
                " ",
                "\n",
                "&",
                "<",
                ">",
                "'",
                "\"",
                "é",
                "\u{1F600}",
            ][..],
        ),
        0..12,
    )
    .prop_map(|v| v.concat())
}

/// Well-formed elements in jabber:client (or a child namespace), a few levels deep.
fn element() -> impl Strategy<Value = Element> {
    let names = prop::sample::select(&["a", "b", "body", "query", "x"][..]);
    let leaf = (
        names.clone(),
        prop::collection::btree_map(
            prop::sample::select(&["id", "to", "type", "v"][..]),
            text(),
            0..4,
        ),
        text(),
    )
        .prop_map(|(name, attrs, body)| {
            let mut el = Element::new(name, ns::CLIENT);
            for (k, v) in attrs {
                el.set_attr(k, v);
            }
            el.append_text(body);
            el
        });
    leaf.prop_recursive(4, 24, 4, move |inner| {
        (
            names.clone(),
            prop::bool::ANY,
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(name, other_ns, children)| {
                let ns = if other_ns {
                    "urn:example:x"
                } else {
                    ns::CLIENT
                };
                let mut el = Element::new(name, ns);
                for mut c in children {
                    if c.ns() == ns::CLIENT {
                        c.set_ns(ns);
                    }
                    el.push_child(c);
                }
                el
            })
    })
}

fn stream_of(stanzas: &[Element]) -> Vec<u8> {
    let mut s = String::from(HEADER);
    for el in stanzas {
        s.push_str(&el.to_stream_xml(ns::CLIENT));
    }
    s.push_str("</stream:stream>");
    s.into_bytes()
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..24)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_in_any_chunking_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..512),
        cuts in cuts(),
    ) {
        let (_, err, mut p) = feed_chunks(Limits::default(), &chunks(&data, &cuts));
        // A transport stops after an error; feeding more must still not panic.
        if err.is_some() {
            let _ = p.feed(b"<a/>", &mut Vec::new());
        }
        let _ = parse_document(&data, &Limits::default());
    }

    #[test]
    fn xmlish_input_in_any_chunking_never_panics_and_errors_alike(
        data in xmlish(),
        cuts in cuts(),
    ) {
        let (whole_events, whole_err, _) = feed_chunks(Limits::default(), &[&data]);
        let (events, err, _) = feed_chunks(Limits::default(), &chunks(&data, &cuts));
        // The condition may not depend on where the bytes were cut; events completed before an
        // error are the same too.
        prop_assert_eq!(err.as_ref().map(|e| e.condition()), whole_err.as_ref().map(|e| e.condition()));
        prop_assert_eq!(events, whole_events);
        let _ = parse_document(&data, &Limits::default());
    }

    #[test]
    fn well_formed_stanzas_give_the_same_events_in_any_chunking(
        stanzas in prop::collection::vec(element(), 1..4),
        cuts in cuts(),
    ) {
        let data = stream_of(&stanzas);
        let (whole, err, _) = feed_chunks(Limits::default(), &[&data]);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(whole.len(), stanzas.len() + 2);
        for (ev, el) in whole[1..=stanzas.len()].iter().zip(&stanzas) {
            prop_assert_eq!(ev, &StreamEvent::Stanza(el.clone()));
        }
        prop_assert_eq!(whole.last(), Some(&StreamEvent::Close));
        let (chunked, err, _) = feed_chunks(Limits::default(), &chunks(&data, &cuts));
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(chunked, whole);
    }

    #[test]
    fn depth_limit_holds_in_any_chunking(depth in 1usize..80, cuts in cuts()) {
        let limits = Limits { max_depth: 32, ..Limits::default() };
        let stanza = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        let data = format!("{HEADER}{stanza}").into_bytes();
        let (events, err, _) = feed_chunks(limits, &chunks(&data, &cuts));
        if depth > 32 {
            prop_assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
        } else {
            prop_assert!(err.is_none(), "{:?}", err);
            prop_assert_eq!(events.len(), 2);
        }
    }

    #[test]
    fn attribute_limit_holds_in_any_chunking(n in 0usize..140, cuts in cuts()) {
        let limits = Limits { max_attributes: 64, ..Limits::default() };
        let attrs: String = (0..n).map(|i| format!(" a{i}='{i}'")).collect();
        let data = format!("{HEADER}<message{attrs}/>").into_bytes();
        let (events, err, _) = feed_chunks(limits, &chunks(&data, &cuts));
        if n > 64 {
            prop_assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
        } else {
            prop_assert!(err.is_none(), "{:?}", err);
            prop_assert_eq!(events.len(), 2);
        }
    }

    #[test]
    fn size_limit_holds_in_any_chunking(len in 0usize..3000, cuts in cuts()) {
        let limits = Limits { max_stanza_bytes: 1000, ..Limits::default() };
        let stanza = format!("<message><body>{}</body></message>", "x".repeat(len));
        let data = format!("{HEADER}{stanza}").into_bytes();
        let (events, err, _) = feed_chunks(limits, &chunks(&data, &cuts));
        if stanza.len() > 1000 {
            prop_assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
        } else {
            prop_assert!(err.is_none(), "{:?}", err);
            prop_assert_eq!(events.len(), 2);
        }
    }

    #[test]
    fn documents_obey_the_same_limits(depth in 1usize..60, n in 0usize..100) {
        let limits = Limits { max_depth: 32, max_attributes: 64, ..Limits::default() };
        let attrs: String = (0..n).map(|i| format!(" a{i}='{i}'")).collect();
        // The document root (a BOSH <body/>, a WebSocket frame's stanza) does not count.
        let doc = format!("<body{attrs}>{}{}</body>", "<a>".repeat(depth), "</a>".repeat(depth));
        let r = parse_document(doc.as_bytes(), &limits);
        if depth > 32 || n > 64 {
            prop_assert_eq!(r.map_err(|e| e.condition()).err(), Some("policy-violation"));
        } else {
            prop_assert!(r.is_ok(), "{:?}", r);
        }
    }
}
