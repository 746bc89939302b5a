//! JID parsing and normalisation (RFC 7622) on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(j) = rookery_core::Jid::new(s) {
            // What was accepted reads back the same.
            assert_eq!(rookery_core::Jid::new(j.as_str()).ok().as_ref(), Some(&j));
        }
        let _ = rookery_core::BareJid::new(s);
    }
});
