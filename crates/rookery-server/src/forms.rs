//! XEP-0004 Data Forms: building forms and reading submitted values.

use rookery_core::Element;
use std::collections::HashMap;

pub const NS: &str = "jabber:x:data";

pub struct Field {
    pub var: String,
    pub kind: &'static str,
    pub label: Option<String>,
    pub values: Vec<String>,
    pub options: Vec<(String, String)>,
    pub required: bool,
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
            extra: Vec::new(),
        }
    }

    /// Adds a child such as XEP-0122 `<validate/>`.
    pub fn with_extra(mut self, el: Element) -> Self {
        self.extra.push(el);
        self
    }

    pub fn jid_multi(var: &str, label: &str, v: &[String]) -> Self {
        Field::new(var, "jid-multi", label, v.to_vec())
    }

    pub fn text_multi(var: &str, label: &str, v: &[String]) -> Self {
        Field::new(var, "text-multi", label, v.to_vec())
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
        let mut e = Element::new("field", NS).with_attr("var", self.var.clone());
        if with_type {
            e.set_attr("type", self.kind);
        }
        if let Some(l) = &self.label {
            e.set_attr("label", l.clone());
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
