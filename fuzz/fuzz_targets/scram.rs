//! SCRAM client-first messages (RFC 5802, with channel binding flags) on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if let Ok(s) = std::str::from_utf8(rest) {
        let _ = rookery_server::scram::parse_client_first(s, flags & 1 != 0, flags & 2 != 0);
    }
});
