//! Stanza helpers (RFC 6120 §8): kinds, addressing and error replies built from the original.

use rookery_xml::{ns, Element};

/// Stanza error types (RFC 6120 §8.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza error condition (RFC 6120 §8.3.3) with its usual type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub kind: ErrorType,
    pub condition: &'static str,
    pub text: Option<String>,
    /// An application-specific condition element.
    pub extra: Option<Box<Element>>,
}

macro_rules! conditions {
    ($($fn:ident => ($cond:literal, $ty:ident)),* $(,)?) => {
        impl StanzaError {
            $(pub fn $fn() -> Self {
                StanzaError { kind: ErrorType::$ty, condition: $cond, text: None, extra: None }
            })*
        }
    };
}

conditions! {
    bad_request => ("bad-request", Modify),
    conflict => ("conflict", Cancel),
    feature_not_implemented => ("feature-not-implemented", Cancel),
    forbidden => ("forbidden", Auth),
    internal_server_error => ("internal-server-error", Wait),
    item_not_found => ("item-not-found", Cancel),
    jid_malformed => ("jid-malformed", Modify),
    not_acceptable => ("not-acceptable", Modify),
    not_allowed => ("not-allowed", Cancel),
    not_authorized => ("not-authorized", Auth),
    policy_violation => ("policy-violation", Modify),
    recipient_unavailable => ("recipient-unavailable", Wait),
    remote_server_not_found => ("remote-server-not-found", Cancel),
    remote_server_timeout => ("remote-server-timeout", Wait),
    resource_constraint => ("resource-constraint", Wait),
    service_unavailable => ("service-unavailable", Cancel),
    undefined_condition => ("undefined-condition", Cancel),
    unexpected_request => ("unexpected-request", Wait),
}

impl StanzaError {
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn with_type(mut self, kind: ErrorType) -> Self {
        self.kind = kind;
        self
    }

    pub fn to_element(&self, by: Option<&str>) -> Element {
        let mut e = Element::new("error", ns::CLIENT)
            .with_attr("type", self.kind.as_str())
            .with_opt_attr("by", by)
            .with_child(Element::new(self.condition, ns::STANZAS_ERR));
        if let Some(t) = &self.text {
            e.push_child(Element::new("text", ns::STANZAS_ERR).with_text(t.clone()));
        }
        if let Some(x) = &self.extra {
            e.push_child((**x).clone());
        }
        e
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

pub fn kind(el: &Element) -> Option<Kind> {
    if el.ns() != ns::CLIENT && el.ns() != ns::SERVER && el.ns() != ns::COMPONENT {
        return None;
    }
    match el.name() {
        "message" => Some(Kind::Message),
        "presence" => Some(Kind::Presence),
        "iq" => Some(Kind::Iq),
        _ => None,
    }
}

/// Whether an error may be sent in reply (never answer an error with an error, §8.3.1).
pub fn can_bounce(el: &Element) -> bool {
    el.attr("type") != Some("error") && !(el.name() == "iq" && el.attr("type") == Some("result"))
}

/// The error reply to `orig`: addresses swapped, the original payload kept (§8.3.1).
pub fn error_reply(orig: &Element, err: &StanzaError) -> Element {
    let mut reply = Element::new(orig.name(), ns::CLIENT)
        .with_attr("type", "error")
        .with_opt_attr("id", orig.attr("id"))
        .with_opt_attr("to", orig.attr("from"))
        .with_opt_attr("from", orig.attr("to"));
    if orig.name() == "iq" {
        // Only the first payload child matters for an IQ error.
        if let Some(c) = orig.children().next() {
            reply.push_child(c.clone());
        }
    } else {
        for c in orig.children() {
            reply.push_child(c.clone());
        }
    }
    reply.push_child(err.to_element(None));
    reply
}

/// An empty IQ result for `iq`.
pub fn iq_result(iq: &Element) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_opt_attr("id", iq.attr("id"))
        .with_opt_attr("to", iq.attr("from"))
        .with_opt_attr("from", iq.attr("to"))
}

/// An IQ result carrying `payload`.
pub fn iq_result_with(iq: &Element, payload: Element) -> Element {
    iq_result(iq).with_child(payload)
}

/// The XEP-0203 delay element.
pub fn delay(from: &str, stamp: &str) -> Element {
    Element::new("delay", "urn:xmpp:delay")
        .with_attr("from", from)
        .with_attr("stamp", stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses_and_keeps_payload() {
        let iq = Element::parse(
            "<iq xmlns='jabber:client' type='get' id='1' from='a@b/c' to='b'><query xmlns='x'/></iq>",
        )
        .unwrap();
        let r = error_reply(&iq, &StanzaError::service_unavailable());
        assert_eq!(
            r.to_stream_xml(ns::CLIENT),
            "<iq type='error' id='1' to='a@b/c' from='b'><query xmlns='x'/><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }

    #[test]
    fn never_bounce_errors_or_results() {
        let e = Element::new("message", ns::CLIENT).with_attr("type", "error");
        assert!(!can_bounce(&e));
        let r = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        assert!(!can_bounce(&r));
        assert!(can_bounce(&Element::new("message", ns::CLIENT)));
    }
}
