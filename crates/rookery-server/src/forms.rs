//! XEP-0004 Data Forms: building forms and reading submitted values; XEP-0122 validation.

use rookery_core::stanza::StanzaError;
use rookery_core::{Element, Jid};
use std::collections::HashMap;

pub const NS: &str = "jabber:x:data";
pub const VALIDATE: &str = "http://jabber.org/protocol/xdata-validate";

/// The field types of XEP-0004 §3.3; anything else reads as text-single (the default).
pub const FIELD_TYPES: [&str; 11] = [
    "boolean",
    "fixed",
    "hidden",
    "jid-multi",
    "jid-single",
    "list-multi",
    "list-single",
    "text-multi",
    "text-private",
    "text-single",
    "",
];

pub struct Field {
    pub var: String,
    pub kind: &'static str,
    pub label: Option<String>,
    pub values: Vec<String>,
    pub options: Vec<(String, String)>,
    pub required: bool,
    pub desc: Option<String>,
    /// XEP-0122: an integer range the value must fall in.
    pub range: Option<(Option<i64>, Option<i64>)>,
    /// Other children, written before the values (XEP-0122 `<validate/>`).
    pub extra: Vec<Element>,
}

impl Field {
    pub fn new(var: &str, kind: &'static str, label: &str, values: Vec<String>) -> Self {
        Field {
            var: var.to_string(),
            kind,
            label: (!label.is_empty()).then(|| label.to_string()),
            values,
            options: Vec::new(),
            required: false,
            desc: None,
            range: None,
            extra: Vec::new(),
        }
    }

    pub fn with_desc(mut self, desc: &str) -> Self {
        self.desc = Some(desc.to_string());
        self
    }

    /// An integer field (XEP-0122 `xs:integer`), optionally bounded.
    pub fn integer(var: &str, label: &str, v: i64, min: Option<i64>, max: Option<i64>) -> Self {
        let mut f = Field::text(var, label, &v.to_string());
        f.range = Some((min, max));
        f
    }

    pub fn jid_single(var: &str, label: &str, v: Option<&str>) -> Self {
        Field::new(
            var,
            "jid-single",
            label,
            v.into_iter().map(str::to_string).collect(),
        )
    }

    /// Adds a child such as XEP-0122 `<validate/>`.
    pub fn with_extra(mut self, el: Element) -> Self {
        self.extra.push(el);
        self
    }

    pub fn jid_multi(var: &str, label: &str, v: &[String]) -> Self {
        Field::new(var, "jid-multi", label, v.to_vec())
    }

    pub fn text_multi(var: &str, label: &str, v: &str) -> Self {
        let lines = if v.is_empty() {
            vec![]
        } else {
            v.lines().map(str::to_string).collect()
        };
        Field::new(var, "text-multi", label, lines)
    }

    pub fn text_private(var: &str, label: &str) -> Self {
        Field::new(var, "text-private", label, vec![])
    }

    pub fn fixed(text: &str) -> Self {
        let mut f = Field::new("", "fixed", "", vec![text.to_string()]);
        f.var.clear();
        f
    }

    /// Whether the field may carry several values.
    pub fn is_multi(&self) -> bool {
        matches!(self.kind, "jid-multi" | "list-multi" | "text-multi")
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn hidden(var: &str, value: &str) -> Self {
        Field::new(var, "hidden", "", vec![value.to_string()])
    }

    pub fn boolean(var: &str, label: &str, v: bool) -> Self {
        Field::new(
            var,
            "boolean",
            label,
            vec![if v { "1" } else { "0" }.to_string()],
        )
    }

    pub fn text(var: &str, label: &str, v: &str) -> Self {
        Field::new(var, "text-single", label, vec![v.to_string()])
    }

    pub fn list(var: &str, label: &str, v: &str, options: &[(&str, &str)]) -> Self {
        let mut f = Field::new(var, "list-single", label, vec![v.to_string()]);
        f.options = options
            .iter()
            .map(|(l, v)| (l.to_string(), v.to_string()))
            .collect();
        f
    }

    pub fn list_multi(var: &str, label: &str, v: &[String], options: &[(&str, &str)]) -> Self {
        let mut f = Field::new(var, "list-multi", label, v.to_vec());
        f.options = options
            .iter()
            .map(|(l, v)| (l.to_string(), v.to_string()))
            .collect();
        f
    }

    fn element(&self, with_type: bool) -> Element {
        let mut e = Element::new("field", NS);
        if !self.var.is_empty() {
            e.set_attr("var", self.var.clone());
        }
        if with_type {
            e.set_attr("type", self.kind);
        }
        if let Some(l) = &self.label {
            e.set_attr("label", l.clone());
        }
        if let (Some(d), true) = (&self.desc, with_type) {
            e.push_child(Element::new("desc", NS).with_text(d.clone()));
        }
        if let (Some((min, max)), true) = (self.range, with_type) {
            let mut v = Element::new("validate", VALIDATE).with_attr("datatype", "xs:integer");
            if min.is_some() || max.is_some() {
                v.push_child(
                    Element::new("range", VALIDATE)
                        .with_opt_attr("min", min.map(|m| m.to_string()))
                        .with_opt_attr("max", max.map(|m| m.to_string())),
                );
            }
            e.push_child(v);
        }
        for (label, value) in &self.options {
            e.push_child(
                Element::new("option", NS)
                    .with_attr("label", label.clone())
                    .with_child(Element::new("value", NS).with_text(value.clone())),
            );
        }
        if self.required && with_type {
            e.push_child(Element::new("required", NS));
        }
        if with_type {
            for x in &self.extra {
                e.push_child(x.clone());
            }
        }
        for v in &self.values {
            e.push_child(Element::new("value", NS).with_text(v.clone()));
        }
        e
    }
}

/// A form of `kind` ("form", "result", "submit").
pub fn form(kind: &str, title: Option<&str>, fields: &[Field]) -> Element {
    let mut x = Element::new("x", NS).with_attr("type", kind);
    if let Some(t) = title {
        x.push_child(Element::new("title", NS).with_text(t));
    }
    for f in fields {
        x.push_child(f.element(kind == "form"));
    }
    x
}

/// Submitted values by field var.
pub fn values(x: &Element) -> HashMap<String, Vec<String>> {
    x.children()
        .filter(|f| f.is("field", NS))
        .filter_map(|f| {
            let var = f.attr("var")?.to_string();
            let vals = f
                .children()
                .filter(|v| v.is("value", NS))
                .map(|v| v.text())
                .collect();
            Some((var, vals))
        })
        .collect()
}

/// The form's FORM_TYPE (XEP-0068), if it has one.
pub fn form_type(x: &Element) -> Option<String> {
    values(x).remove("FORM_TYPE")?.into_iter().next()
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// A whole data form, typed: what a client submitted, or what a module offers.
#[derive(Default)]
pub struct Form {
    /// "form", "submit", "cancel" or "result".
    pub kind: String,
    pub title: Option<String>,
    pub instructions: Vec<String>,
    pub fields: Vec<Field>,
}

impl Form {
    pub fn new(kind: &str, title: Option<&str>, fields: Vec<Field>) -> Form {
        Form {
            kind: kind.to_string(),
            title: title.map(str::to_string),
            instructions: vec![],
            fields,
        }
    }

    pub fn with_instructions(mut self, text: &str) -> Form {
        self.instructions.push(text.to_string());
        self
    }

    /// Reads a `<x xmlns='jabber:x:data'/>`; a form without a known type is bad-request.
    pub fn parse(x: &Element) -> Result<Form, StanzaError> {
        if !x.is("x", NS) {
            return Err(StanzaError::bad_request().with_text("not a data form"));
        }
        let kind = x.attr("type").unwrap_or_default();
        if !["form", "submit", "cancel", "result"].contains(&kind) {
            return Err(StanzaError::bad_request().with_text("unknown data form type"));
        }
        let mut form = Form::new(kind, x.child_text("title", NS).as_deref(), vec![]);
        form.instructions = x
            .children()
            .filter(|c| c.is("instructions", NS))
            .map(|c| c.text())
            .collect();
        for f in x.children().filter(|c| c.is("field", NS)) {
            let t = f.attr("type").unwrap_or("text-single");
            let kind = FIELD_TYPES
                .iter()
                .find(|k| **k == t && !k.is_empty())
                .copied()
                .unwrap_or("text-single");
            let values = f
                .children()
                .filter(|v| v.is("value", NS))
                .map(|v| v.text())
                .collect();
            let mut field = Field::new(
                f.attr("var").unwrap_or_default(),
                kind,
                f.attr("label").unwrap_or_default(),
                values,
            );
            field.required = f.has_child("required", NS);
            field.desc = f.child_text("desc", NS);
            field.options = f
                .children()
                .filter(|o| o.is("option", NS))
                .map(|o| {
                    let label = o.attr("label").unwrap_or_default().to_string();
                    (label, o.child_text("value", NS).unwrap_or_default())
                })
                .collect();
            form.fields.push(field);
        }
        Ok(form)
    }

    pub fn to_element(&self) -> Element {
        let mut x = Element::new("x", NS).with_attr("type", self.kind.clone());
        if let Some(t) = &self.title {
            x.push_child(Element::new("title", NS).with_text(t.clone()));
        }
        for i in &self.instructions {
            x.push_child(Element::new("instructions", NS).with_text(i.clone()));
        }
        for f in &self.fields {
            x.push_child(f.element(self.kind == "form" || self.kind == "result"));
        }
        x
    }

    pub fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var == var)
    }

    /// The values of field `var` (none when absent).
    pub fn values(&self, var: &str) -> &[String] {
        self.field(var).map(|f| f.values.as_slice()).unwrap_or(&[])
    }

    /// The first value of field `var`.
    pub fn value(&self, var: &str) -> Option<&str> {
        self.values(var).first().map(String::as_str)
    }

    /// A multi-line text value joined with newlines.
    pub fn text(&self, var: &str) -> Option<String> {
        self.field(var).map(|f| f.values.join("\n"))
    }

    pub fn form_type(&self) -> Option<&str> {
        self.value("FORM_TYPE")
    }

    /// Checks `submitted` against this form (XEP-0004 §3.2, XEP-0122): FORM_TYPE matches,
    /// required fields have a value, single-value fields have at most one, booleans, JIDs,
    /// options and integer ranges are valid. The error names the first offending field.
    pub fn validate(&self, submitted: &Form) -> Result<(), StanzaError> {
        let bad = |f: &Field, why: &str| {
            let name = f.label.clone().unwrap_or_else(|| f.var.clone());
            Err(StanzaError::not_acceptable().with_text(format!("{name}: {why}")))
        };
        if submitted.kind != "submit" {
            return Err(StanzaError::bad_request().with_text("expected a submitted form"));
        }
        if let (Some(want), Some(got)) = (self.form_type(), submitted.form_type()) {
            if want != got {
                return Err(StanzaError::bad_request().with_text("wrong FORM_TYPE"));
            }
        }
        for f in self
            .fields
            .iter()
            .filter(|f| !f.var.is_empty() && f.kind != "fixed")
        {
            let values = submitted.values(&f.var);
            let present = values.iter().any(|v| !v.trim().is_empty());
            if f.required && !present {
                return bad(f, "a value is required");
            }
            if !f.is_multi() && values.len() > 1 {
                return bad(f, "only one value is allowed");
            }
            for v in values.iter().filter(|v| !v.is_empty()) {
                match f.kind {
                    "boolean" if parse_bool(v).is_none() => return bad(f, "not a boolean"),
                    "jid-single" | "jid-multi" if Jid::new(v).is_err() => {
                        return bad(f, "not a valid JID")
                    }
                    "list-single" | "list-multi"
                        if !f.options.is_empty() && !f.options.iter().any(|(_, o)| o == v) =>
                    {
                        return bad(f, "not one of the options")
                    }
                    _ => {}
                }
                if let Some((min, max)) = f.range {
                    let Ok(n) = v.trim().parse::<i64>() else {
                        return bad(f, "not a whole number");
                    };
                    if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                        return bad(f, "out of range");
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(fields: &[(&str, &[&str])]) -> Form {
        Form::new(
            "submit",
            None,
            fields
                .iter()
                .map(|(var, vals)| {
                    Field::new(
                        var,
                        "text-single",
                        "",
                        vals.iter().map(|v| v.to_string()).collect(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn round_trips_and_validates() {
        let template = Form::new(
            "form",
            Some("Add a user"),
            vec![
                Field::hidden("FORM_TYPE", "urn:test"),
                Field::jid_single("jid", "JID", None).required(),
                Field::boolean("ok", "OK?", false),
                Field::integer("n", "Count", 5, Some(1), Some(10)),
                Field::list(
                    "colour",
                    "Colour",
                    "red",
                    &[("Red", "red"), ("Blue", "blue")],
                ),
                Field::jid_multi("others", "Others", &[]),
            ],
        )
        .with_instructions("Fill it in");
        let x = template.to_element();
        let back = Form::parse(&x).unwrap();
        assert_eq!(back.title.as_deref(), Some("Add a user"));
        assert_eq!(back.instructions, ["Fill it in"]);
        assert!(back.field("jid").unwrap().required);
        assert_eq!(back.field("colour").unwrap().options.len(), 2);
        assert_eq!(back.form_type(), Some("urn:test"));
        assert!(x.get_child("field", NS).is_some());

        let good = submitted(&[
            ("FORM_TYPE", &["urn:test"]),
            ("jid", &["a@b"]),
            ("ok", &["true"]),
            ("n", &["10"]),
            ("others", &["c@d", "e@f"]),
        ]);
        template.validate(&good).unwrap();
        for (bad, why) in [
            (submitted(&[("FORM_TYPE", &["urn:test"])]), "required"),
            (submitted(&[("jid", &["a@b", "c@d"])]), "only one"),
            (submitted(&[("jid", &["a@@b"])]), "JID"),
            (
                submitted(&[("jid", &["a@b"]), ("ok", &["maybe"])]),
                "boolean",
            ),
            (submitted(&[("jid", &["a@b"]), ("n", &["11"])]), "range"),
            (
                submitted(&[("jid", &["a@b"]), ("n", &["x"])]),
                "whole number",
            ),
            (
                submitted(&[("jid", &["a@b"]), ("colour", &["green"])]),
                "options",
            ),
        ] {
            let e = template.validate(&bad).unwrap_err();
            assert!(
                e.text.as_deref().unwrap_or("").contains(why),
                "{why}: {:?}",
                e.text
            );
        }
        let wrong_type = submitted(&[("FORM_TYPE", &["urn:other"]), ("jid", &["a@b"])]);
        assert_eq!(
            template.validate(&wrong_type).unwrap_err().condition,
            "bad-request"
        );
    }
}
