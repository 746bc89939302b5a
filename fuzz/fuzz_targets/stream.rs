//! The XML stream parser (RFC 6120 streams) on arbitrary bytes, cut into pieces as a network
//! would: it must never panic, and limits must hold in any chunking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rookery_xml::{Limits, StreamParser};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the piece size.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut parser = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    for piece in rest.chunks((cut as usize).max(1)) {
        if parser.feed(piece, &mut out).is_err() {
            break;
        }
    }
});
