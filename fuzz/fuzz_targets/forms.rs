//! Data forms (XEP-0004) parsed from arbitrary XML.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rookery_server::forms;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(el) = rookery_xml::Element::parse(s) else {
        return;
    };
    let _ = forms::values(&el);
    let _ = forms::form_type(&el);
    if let Ok(form) = forms::Form::parse(&el) {
        let _ = form.to_element();
    }
});
