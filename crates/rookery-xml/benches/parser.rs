//! Micro-benchmarks of the XML stream parser and serialiser (run on demand: `cargo bench -p
//! rookery-xml`; not part of the test run): a stream of chat messages fed in network-sized
//! pieces, and one message written back out.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rookery_xml::{Element, Limits, StreamParser};
use std::hint::black_box;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

fn message(i: usize) -> String {
    format!(
        "<message to='bob@localhost/phone' id='m{i}' type='chat'><body>Hello Bob, message {i} of \
         the benchmark, with a few words in it.</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
         <request xmlns='urn:xmpp:receipts'/></message>"
    )
}

fn parse(c: &mut Criterion) {
    let stanzas = 1000;
    let mut input = String::from(HEADER);
    for i in 0..stanzas {
        input.push_str(&message(i));
    }
    let bytes = input.into_bytes();
    let mut g = c.benchmark_group("stream parser");
    g.throughput(Throughput::Elements(stanzas as u64));
    for piece in [4096usize, 512] {
        g.bench_function(format!("1000 messages in {piece}-byte reads"), |b| {
            b.iter(|| {
                let mut p = StreamParser::new(Limits::default());
                let mut out = Vec::with_capacity(stanzas + 1);
                for chunk in bytes.chunks(piece) {
                    p.feed(chunk, &mut out).unwrap();
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn serialise(c: &mut Criterion) {
    let el = Element::parse(&message(7)).unwrap();
    c.bench_function("serialise one message", |b| {
        b.iter(|| black_box(el.to_xml()))
    });
}

criterion_group!(benches, parse, serialise);
criterion_main!(benches);
