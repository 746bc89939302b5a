//! BOSH request bodies (XEP-0124) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rookery_server::c2s::bosh::parse_request(data, &rookery_xml::Limits::default());
});
