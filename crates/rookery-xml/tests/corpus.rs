//! Regression tests from the attack corpus in `tests/corpus/`: every file, fed whole and in small
//! chunks with the default limits, ends with the stream error its name starts with (or stays
//! pending), and nothing panics. Larger attacks are generated here rather than stored.

use rookery_xml::{Limits, StreamError, StreamEvent, StreamParser};
use std::path::Path;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Feeds `data` in chunks of `size`; returns the error (if any) and how many bytes were fed when
/// it came.
fn feed(data: &[u8], size: usize) -> (Option<StreamError>, usize, Vec<StreamEvent>) {
    let mut p = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    let mut fed = 0;
    for chunk in data.chunks(size.max(1)) {
        fed += chunk.len();
        if let Err(e) = p.feed(chunk, &mut out) {
            return (Some(e), fed, out);
        }
    }
    (None, fed, out)
}

#[test]
fn every_corpus_file_gets_its_stream_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".xml") {
            continue;
        }
        let expected = name.split('.').next().unwrap();
        let data = std::fs::read(&path).unwrap();
        for size in [data.len(), 4096, 7, 1] {
            let (err, _, events) = feed(&data, size);
            let got = err.as_ref().map_or("pending", |e| e.condition());
            if got != expected {
                failures.push(format!("{name} in chunks of {size}: got {got} ({err:?})"));
            }
            // Nothing an attack sends gets through as a stanza.
            if let Some(ev) = events.iter().find(|e| matches!(e, StreamEvent::Stanza(_))) {
                failures.push(format!("{name}: a stanza got through: {ev:?}"));
            }
        }
        seen += 1;
    }
    assert!(seen >= 25, "corpus files found: {seen}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_hundred_thousand_nested_elements_stop_at_the_depth_limit() {
    let data = format!("{HEADER}{}", "<a>".repeat(100_000));
    let (err, fed, _) = feed(data.as_bytes(), 4096);
    assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
    // Cut at the first chunk past depth 32, not after reading everything.
    assert!(fed <= HEADER.len() + 4096 + 200, "fed {fed}");
}

/// Feeds a stream whose one start tag carries `attrs` and asserts it is refused within the
/// stanza size limit (by the attribute count or the size, whichever comes first).
fn assert_start_tag_cut_off(attrs: String) {
    let data = format!("{HEADER}<message{attrs}/>");
    let (err, fed, _) = feed(data.as_bytes(), 4096);
    assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
    let bound = HEADER.len() + Limits::default().max_stanza_bytes + 4096;
    assert!(fed <= bound, "fed {fed}");
}

#[test]
fn ten_thousand_attributes_are_cut_off() {
    assert_start_tag_cut_off((0..10_000).map(|i| format!(" a{i}='v'")).collect());
}

#[test]
fn a_hundred_megabyte_stanza_is_cut_off_at_the_size_limit() {
    let limit = Limits::default().max_stanza_bytes;
    let mut p = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    p.feed(HEADER.as_bytes(), &mut out).unwrap();
    p.feed(b"<message><body>", &mut out).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut fed = 0usize;
    let err = loop {
        assert!(fed < 100 * 1024 * 1024, "100 MB accepted");
        fed += chunk.len();
        if let Err(e) = p.feed(&chunk, &mut out) {
            break e;
        }
    };
    assert_eq!(err.condition(), "policy-violation");
    assert!(fed <= limit + chunk.len(), "fed {fed}");
}

#[test]
fn a_never_ending_start_tag_is_cut_off() {
    // No event ever completes: only the byte count can stop it.
    let mut p = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    p.feed(HEADER.as_bytes(), &mut out).unwrap();
    p.feed(b"<message to='", &mut out).unwrap();
    let mut fed = 0usize;
    let err = loop {
        assert!(fed < 10 * 1024 * 1024, "10 MB accepted");
        fed += 1000;
        if let Err(e) = p.feed(&[b'a'; 1000], &mut out) {
            break e;
        }
    };
    assert_eq!(err.condition(), "policy-violation");
    assert!(
        fed <= Limits::default().max_stanza_bytes + 1000,
        "fed {fed}"
    );
}

#[test]
fn a_header_that_never_closes_is_cut_off() {
    let mut p = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    p.feed(
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'",
        &mut out,
    )
    .unwrap();
    let mut fed = 0usize;
    let err = loop {
        assert!(fed < 10 * 1024 * 1024, "10 MB accepted");
        fed += 1000;
        let attrs: String = (0..100).map(|_| " ").collect::<String>() + &"x".repeat(900);
        if let Err(e) = p.feed(format!(" a{fed}='{attrs}'").as_bytes(), &mut out) {
            break e;
        }
    };
    assert_eq!(err.condition(), "policy-violation");
}

#[test]
fn namespace_declarations_are_bounded_by_the_stanza_size() {
    // rxml does not report namespace declarations as attributes, so `max_attributes` does not
    // count them; the stanza size limit bounds them instead.
    assert_start_tag_cut_off(
        (0..20_000)
            .map(|i| format!(" xmlns:p{i}='urn:{i}'"))
            .collect(),
    );
}

#[test]
fn text_before_the_stream_is_bounded() {
    // Something that is not XML at all (an HTTP request, a TLS hello on the plain port).
    let data = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100_000);
    let (err, fed, _) = feed(data.as_bytes(), 4096);
    assert!(err.is_some(), "never refused");
    assert!(
        fed <= Limits::default().max_stanza_bytes + 4096,
        "fed {fed}"
    );
}
