//! Property tests for what the server parses from untrusted peers: user JIDs, SCRAM messages,
//! BOSH request bodies and data forms never panic, and a made-up SCRAM exchange never succeeds.

use crate::c2s::bosh;
use crate::forms::{self, Field, Form};
use crate::scram::{self, ChannelBindings, Hash, ScramServer};
use proptest::prelude::*;
use rookery_core::config::Config;
use rookery_core::storage::Credentials;
use rookery_xml::{Element, Limits};
use std::sync::OnceLock;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Strings made of the pieces these parsers look for, and a little noise.
fn pieces(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(vocabulary).prop_map(str::to_string),
            1 => any::<String>().prop_map(|s| s.chars().take(3).collect()),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

const JID_PIECES: &[&str] = &[
    "alice",
    "@",
    "/",
    "localhost",
    "LocalHost",
    "example.org",
    ".",
    "\u{0}",
    " ",
    "ß",
    "ǅ",
    "\u{FB01}",
    "\u{200B}",
    "\u{202E}",
    "\"",
    "&",
    "'",
    ":",
    "<",
    "ﬀ",
    "Ⅸ",
    "\u{0301}",
    "ｆｕｌｌ",
    "[::1]",
    "xn--",
    "..",
    "@@",
];

const SCRAM_PIECES: &[&str] = &[
    "n",
    "y",
    "p=",
    "tls-exporter",
    "tls-server-end-point",
    ",",
    "a=",
    "n=",
    "r=",
    "c=",
    "p=",
    "m=",
    "s=",
    "i=",
    "=2C",
    "=3D",
    "=",
    "=Z",
    "biws",
    "AAAA",
    "user",
    "é",
    "\u{0}",
];

const XML_PIECES: &[&str] = &[
    "<body",
    "<x",
    "<field",
    "<value>",
    "</value>",
    "<option",
    "<required/>",
    "</field>",
    "</x>",
    "</body>",
    "/>",
    ">",
    " xmlns='http://jabber.org/protocol/httpbind'",
    " xmlns='jabber:x:data'",
    " rid='",
    " sid='",
    " wait='",
    " hold='",
    " type='",
    " var='",
    " label='",
    "'",
    "1",
    "0",
    "-1",
    "18446744073709551615",
    "9007199254740992",
    "99999999999999999999",
    "submit",
    "form",
    "terminate",
    "boolean",
    "jid-single",
    "list-single",
    "text-multi",
    "FORM_TYPE",
    "true",
    "x",
    "a@b",
    "&amp;",
    "<message/>",
    " ",
    "é",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn user_jids_never_panic_and_normalise_stably(s in pieces(JID_PIECES)) {
        let config = Config::default();
        if let Ok(jid) = crate::accounts::parse_user(&config, &s) {
            prop_assert!(jid.node().is_some());
            prop_assert!(config.is_local_host(jid.domain().as_str()));
            // What we store is what we would parse it back to.
            let again = crate::accounts::parse_user(&config, &jid.to_string());
            prop_assert_eq!(again.ok(), Some(jid));
        }
    }

    #[test]
    fn scram_client_first_never_panics(s in pieces(SCRAM_PIECES), plus: bool, offered: bool) {
        if let Ok(first) = scram::parse_client_first(&s, plus, offered) {
            prop_assert!(!first.username.is_empty());
        }
    }

    #[test]
    fn scram_never_authenticates_a_made_up_exchange(
        first in pieces(SCRAM_PIECES),
        fin in pieces(SCRAM_PIECES),
        proof in prop::collection::vec(any::<u8>(), 0..40),
        sha1: bool,
        known: bool,
    ) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let hash = if sha1 { Hash::Sha1 } else { Hash::Sha256 };
        let first = format!("n,,n=user,r=abc{first}");
        let Ok(first) = scram::parse_client_first(&first, false, false) else {
            return Ok(());
        };
        let creds = known.then(credentials);
        let cb = ChannelBindings::default();
        let server = ScramServer::new(hash, first, creds, &cb).unwrap();
        let nonce = server.server_first().split(',').next().unwrap().to_string();
        // Arbitrary text, and a well-formed final message with the right nonce and a wrong proof.
        prop_assert!(server.finish(&fin).is_err());
        let crafted = format!("c=biws,{nonce},p={}", b64.encode(&proof));
        prop_assert!(server.finish(&crafted).is_err());
        let crafted = format!("c=biws,{nonce}{fin},p={}", b64.encode(&proof));
        prop_assert!(server.finish(&crafted).is_err());
    }

    #[test]
    fn bosh_bodies_never_panic(s in pieces(XML_PIECES), max_wait in 0u64..120) {
        if let Ok((el, rid)) = bosh::parse_request(s.as_bytes(), &Limits::default()) {
            prop_assert!(el.is("body", bosh::NS));
            // A session adds to the rid; it must not overflow.
            prop_assert!(rid <= bosh::MAX_RID);
            let (wait, hold) = bosh::wait_and_hold(&el, max_wait);
            prop_assert!(wait >= 1 && wait <= max_wait.max(1));
            prop_assert!((1..=2).contains(&hold));
        }
    }

    #[test]
    fn data_forms_never_panic(s in pieces(XML_PIECES)) {
        let Ok(el) = Element::parse(&s) else {
            return Ok(());
        };
        let reference = reference_form();
        // Whatever arrives, wrapped as a submitted form or not.
        let wrapped = Element::new("x", forms::NS)
            .with_attr("type", "submit")
            .with_child(el.clone());
        for x in [el, wrapped] {
            let _ = forms::values(&x);
            let _ = forms::form_type(&x);
            if let Ok(form) = Form::parse(&x) {
                let _ = reference.validate(&form);
                let _ = form.to_element();
            }
        }
    }

    #[test]
    fn submitted_values_never_panic_validation(
        values in prop::collection::vec(
            (prop::sample::select(&["b", "j", "l", "n", "t", "FORM_TYPE"][..]), pieces(XML_PIECES)),
            0..8,
        ),
    ) {
        let mut x = Element::new("x", forms::NS).with_attr("type", "submit");
        for (var, v) in values {
            x.push_child(
                Element::new("field", forms::NS)
                    .with_attr("var", var)
                    .with_child(Element::new("value", forms::NS).with_text(v)),
            );
        }
        let form = Form::parse(&x).unwrap();
        let _ = reference_form().validate(&form);
    }
}

/// A form with a field of every kind that validation looks at.
fn reference_form() -> Form {
    Form::new(
        "form",
        Some("t"),
        vec![
            Field::hidden("FORM_TYPE", "urn:example"),
            Field::boolean("b", "B", false),
            Field::jid_single("j", "J", None),
            Field::list("l", "L", "x", &[("X", "x"), ("Y", "y")]),
            Field::integer("n", "N", 1, Some(-5), Some(i64::MAX)),
            Field::text_multi("t", "T", "").required(),
        ],
    )
}

fn credentials() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| scram::derive_credentials("pencil"))
}

/// Regression: a `rid` of u64::MAX was accepted and `rid + 1` overflowed when the session was
/// created (a panic in debug builds, a wrapped counter in release).
#[test]
fn bosh_rid_that_would_overflow_is_refused() {
    let body = |rid: u64| format!("<body xmlns='{}' rid='{rid}' to='localhost'/>", bosh::NS);
    assert!(bosh::parse_request(body(u64::MAX).as_bytes(), &Limits::default()).is_err());
    assert!(bosh::parse_request(body(bosh::MAX_RID + 1).as_bytes(), &Limits::default()).is_err());
    assert!(bosh::parse_request(body(bosh::MAX_RID).as_bytes(), &Limits::default()).is_ok());
}

/// Regression: `http.bosh_max_wait_seconds = 0` made `clamp(1, 0)` panic on every session.
#[test]
fn bosh_max_wait_of_zero_does_not_panic() {
    let el = Element::new("body", bosh::NS).with_attr("wait", "30");
    assert_eq!(bosh::wait_and_hold(&el, 0), (1, 1));
}
