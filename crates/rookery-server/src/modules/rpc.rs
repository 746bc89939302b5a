//! XEP-0009 Jabber-RPC: XML-RPC method calls in `jabber:iq:rpc` IQs. Calls to other entities
//! are routed like any IQ; the server answers administrators' calls with the operations of
//! `admin` (the same ones the ad-hoc commands and the CLI offer).

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry};
use crate::admin::{self, AdminError, Motd};
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::{BareJid, Element};
use std::sync::Arc;

pub const NS: &str = "jabber:iq:rpc";

/// An XML-RPC value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Str(String),
    Double(f64),
    DateTime(String),
    Base64(String),
    Array(Vec<Value>),
    Struct(Vec<(String, Value)>),
    Nil,
}

/// An XML-RPC fault: code and text.
#[derive(Debug, PartialEq)]
pub struct Fault(pub i64, pub String);

/// Fault codes (the usual XML-RPC interop set, plus ours from 1 up for failed operations).
pub const PARSE_ERROR: i64 = -32700;
pub const UNKNOWN_METHOD: i64 = -32601;
pub const BAD_PARAMS: i64 = -32602;
pub const FAILED: i64 = 1;

impl Value {
    pub fn parse(v: &Element) -> Result<Value, Fault> {
        let bad = |what: &str| Fault(PARSE_ERROR, format!("invalid {what}"));
        let Some(inner) = v.children().next() else {
            return Ok(Value::Str(v.text()));
        };
        let text = inner.text();
        Ok(match inner.name() {
            "i4" | "int" | "i8" => Value::Int(text.trim().parse().map_err(|_| bad("int"))?),
            "boolean" => match text.trim() {
                "1" => Value::Bool(true),
                "0" => Value::Bool(false),
                _ => return Err(bad("boolean")),
            },
            "string" => Value::Str(text),
            "double" => Value::Double(text.trim().parse().map_err(|_| bad("double"))?),
            "dateTime.iso8601" => Value::DateTime(text.trim().to_string()),
            "base64" => Value::Base64(text.trim().to_string()),
            "nil" => Value::Nil,
            "array" => {
                let data = inner.children().find(|c| c.name() == "data");
                Value::Array(
                    data.into_iter()
                        .flat_map(|d| d.children())
                        .filter(|c| c.name() == "value")
                        .map(Value::parse)
                        .collect::<Result<_, _>>()?,
                )
            }
            "struct" => Value::Struct(
                inner
                    .children()
                    .filter(|m| m.name() == "member")
                    .map(|m| {
                        let name = m
                            .children()
                            .find(|c| c.name() == "name")
                            .map(|n| n.text())
                            .ok_or_else(|| bad("struct member"))?;
                        let value = m
                            .children()
                            .find(|c| c.name() == "value")
                            .ok_or_else(|| bad("struct member"))?;
                        Ok((name, Value::parse(value)?))
                    })
                    .collect::<Result<_, Fault>>()?,
            ),
            other => return Err(bad(other)),
        })
    }

    pub fn to_element(&self) -> Element {
        let e = |name: &str, text: String| Element::new(name, NS).with_text(text);
        let inner = match self {
            Value::Int(i) => e("int", i.to_string()),
            Value::Bool(b) => e("boolean", if *b { "1" } else { "0" }.into()),
            Value::Str(s) => e("string", s.clone()),
            Value::Double(d) => e("double", d.to_string()),
            Value::DateTime(d) => e("dateTime.iso8601", d.clone()),
            Value::Base64(b) => e("base64", b.clone()),
            Value::Nil => Element::new("nil", NS),
            Value::Array(items) => Element::new("array", NS).with_child(
                Element::new("data", NS).with_children(items.iter().map(Value::to_element)),
            ),
            Value::Struct(members) => {
                Element::new("struct", NS).with_children(members.iter().map(|(k, v)| {
                    Element::new("member", NS)
                        .with_child(e("name", k.clone()))
                        .with_child(v.to_element())
                }))
            }
        };
        Element::new("value", NS).with_child(inner)
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// From JSON, for the admin socket: numbers become ints (or doubles), objects structs.
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Nil,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => n
                .as_i64()
                .map(Value::Int)
                .unwrap_or_else(|| Value::Double(n.as_f64().unwrap_or_default())),
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::Array(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Struct(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Int(i) => J::from(*i),
            Value::Bool(b) => J::from(*b),
            Value::Str(s) | Value::DateTime(s) | Value::Base64(s) => J::from(s.clone()),
            Value::Double(d) => J::from(*d),
            Value::Nil => J::Null,
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::Struct(m) => {
                J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// The methods the server answers, with their parameters, for `system.listMethods` and help.
pub const METHODS: &[(&str, &str)] = &[
    ("system.listMethods", ""),
    ("users.add", "jid, password"),
    ("users.delete", "jid"),
    ("users.disable", "jid"),
    ("users.enable", "jid"),
    ("users.password", "jid, password"),
    ("users.list", "host"),
    ("users.count", "host"),
    ("sessions.list", "[host]"),
    ("sessions.count", "[host]"),
    ("sessions.end", "jid (bare: every session; full: that one)"),
    ("announce", "host, subject, body"),
    ("motd.get", "host"),
    ("motd.set", "host, subject, body"),
    ("motd.delete", "host"),
    ("stats.get", ""),
    ("invites.create", "host, [uses], [days], [username]"),
    ("rooms.list", ""),
    ("rooms.create", "room JID, owner JID, [name]"),
    ("rooms.destroy", "room JID, [reason]"),
    ("s2s.list", ""),
    ("cluster.status", ""),
];

fn failed(e: AdminError) -> Fault {
    Fault(FAILED, e.to_string())
}

/// Runs an administration method. Callers check that the caller is an administrator.
pub async fn call(server: &Server, method: &str, params: &[Value]) -> Result<Value, Fault> {
    let arg = |i: usize, name: &str| -> Result<&str, Fault> {
        params.get(i).and_then(Value::as_str).ok_or_else(|| {
            Fault(
                BAD_PARAMS,
                format!("{method}: parameter {name} (a string) is missing"),
            )
        })
    };
    let opt = |i: usize| params.get(i).and_then(Value::as_str);
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::Str).collect());
    Ok(match method {
        "system.listMethods" => strings(METHODS.iter().map(|(m, _)| m.to_string()).collect()),
        "users.add" => Value::Str(
            admin::add_user(server, arg(0, "jid")?, arg(1, "password")?)
                .await
                .map_err(failed)?
                .to_string(),
        ),
        "users.delete" => Value::Str(
            admin::delete_user(server, arg(0, "jid")?)
                .await
                .map_err(failed)?
                .to_string(),
        ),
        "users.disable" | "users.enable" => Value::Str(
            admin::set_disabled(server, arg(0, "jid")?, method == "users.disable")
                .await
                .map_err(failed)?
                .to_string(),
        ),
        "users.password" => Value::Str(
            admin::change_password(server, arg(0, "jid")?, arg(1, "password")?)
                .await
                .map_err(failed)?
                .to_string(),
        ),
        "users.list" => strings(
            admin::registered_users(server, arg(0, "host")?)
                .await
                .map_err(failed)?,
        ),
        "users.count" => Value::Int(
            admin::registered_users(server, arg(0, "host")?)
                .await
                .map_err(failed)?
                .len() as i64,
        ),
        "sessions.list" => strings(admin::online_sessions(server, opt(0))),
        "cluster.status" => match &server.cluster {
            None => Value::Array(vec![Value::Struct(vec![
                ("node".into(), Value::Str("(single node)".into())),
                ("sessions".into(), Value::Int(server.sessions.len() as i64)),
            ])]),
            Some(c) => Value::Array(
                c.status(server)
                    .into_iter()
                    .map(|(node, n)| {
                        Value::Struct(vec![
                            ("node".into(), Value::Str(node)),
                            ("sessions".into(), Value::Int(n as i64)),
                        ])
                    })
                    .collect(),
            ),
        },
        "s2s.list" => Value::Array(
            server
                .s2s
                .streams()
                .into_iter()
                .map(|i| {
                    Value::Struct(vec![
                        ("direction".into(), Value::Str(i.direction.as_str().into())),
                        ("local".into(), Value::Str(i.local)),
                        ("remote".into(), Value::Str(i.remote)),
                        ("auth".into(), Value::Str(i.auth.as_str().into())),
                        ("bidi".into(), Value::Bool(i.bidi)),
                    ])
                })
                .collect(),
        ),
        "sessions.count" => Value::Int(admin::online_sessions(server, opt(0)).len() as i64),
        "sessions.end" => Value::Int(
            admin::end_sessions(server, arg(0, "jid")?)
                .await
                .map_err(failed)? as i64,
        ),
        "announce" => Value::Int(
            admin::announce(server, arg(0, "host")?, opt(1), arg(2, "body")?).map_err(failed)?
                as i64,
        ),
        "motd.get" => match admin::motd(server, arg(0, "host")?).await.map_err(failed)? {
            Some(m) => Value::Struct(vec![
                ("subject".into(), Value::Str(m.subject)),
                ("body".into(), Value::Str(m.body)),
            ]),
            None => Value::Nil,
        },
        "motd.set" => {
            let m = Motd {
                subject: opt(1).unwrap_or_default().to_string(),
                body: arg(2, "body")?.to_string(),
            };
            admin::set_motd(server, arg(0, "host")?, Some(&m))
                .await
                .map_err(failed)?;
            Value::Bool(true)
        }
        "motd.delete" => {
            admin::set_motd(server, arg(0, "host")?, None)
                .await
                .map_err(failed)?;
            Value::Bool(true)
        }
        "stats.get" => {
            let s = admin::stats(server);
            Value::Struct(vec![
                (
                    "online_sessions".into(),
                    Value::Int(s.online_sessions as i64),
                ),
                ("online_users".into(), Value::Int(s.online_users as i64)),
                ("uptime_seconds".into(), Value::Int(s.uptime_seconds as i64)),
            ])
        }
        "invites.create" => {
            let num = |i: usize, default: u64| -> Result<u64, Fault> {
                match opt(i).filter(|s| !s.is_empty()) {
                    None => Ok(default),
                    Some(s) => s
                        .parse()
                        .map_err(|_| Fault(BAD_PARAMS, format!("{method}: {s} is not a number"))),
                }
            };
            let c = super::invites::create(
                server,
                arg(0, "host")?,
                num(1, 1)? as u32,
                num(2, 7)?,
                opt(3),
            )
            .await
            .map_err(failed)?;
            Value::Struct(vec![
                ("token".into(), Value::Str(c.token)),
                ("uri".into(), Value::Str(c.uri)),
                ("uses".into(), Value::Int(c.uses as i64)),
                ("expires".into(), Value::Int(c.expires as i64)),
            ])
        }
        "rooms.list" | "rooms.create" | "rooms.destroy" => {
            let rooms = server
                .modules
                .rooms
                .as_ref()
                .ok_or_else(|| Fault(FAILED, "the MUC module is disabled".into()))?;
            let jid = |i: usize, name: &str| -> Result<BareJid, Fault> {
                let s = arg(i, name)?;
                BareJid::new(s).map_err(|e| Fault(BAD_PARAMS, format!("{s}: {e}")))
            };
            match method {
                "rooms.list" => Value::Array(
                    rooms
                        .rooms(server)
                        .await
                        .into_iter()
                        .map(|r| {
                            Value::Struct(vec![
                                ("jid".into(), Value::Str(r.jid)),
                                ("name".into(), Value::Str(r.name)),
                                ("occupants".into(), Value::Int(r.occupants as i64)),
                                ("persistent".into(), Value::Bool(r.persistent)),
                                ("public".into(), Value::Bool(r.public)),
                            ])
                        })
                        .collect(),
                ),
                "rooms.create" => {
                    let room = jid(0, "room JID")?;
                    rooms
                        .create_room(server, &room, &jid(1, "owner JID")?, opt(2).unwrap_or(""))
                        .await
                        .map_err(|e| Fault(FAILED, e))?;
                    Value::Str(room.to_string())
                }
                _ => Value::Bool(
                    rooms
                        .destroy_room(server, &jid(0, "room JID")?, opt(1))
                        .await
                        .map_err(|e| Fault(FAILED, e))?,
                ),
            }
        }
        _ => return Err(Fault(UNKNOWN_METHOD, format!("unknown method {method}"))),
    })
}

fn response(result: Result<Value, Fault>) -> Element {
    let body = match result {
        Ok(v) => Element::new("params", NS)
            .with_child(Element::new("param", NS).with_child(v.to_element())),
        Err(Fault(code, text)) => Element::new("fault", NS).with_child(
            Value::Struct(vec![
                ("faultCode".into(), Value::Int(code)),
                ("faultString".into(), Value::Str(text)),
            ])
            .to_element(),
        ),
    };
    Element::new("query", NS).with_child(Element::new("methodResponse", NS).with_child(body))
}

/// Reads a `<methodCall/>`: its name and parameters.
fn method_call(q: &Element) -> Result<(String, Vec<Value>), Fault> {
    let call = q
        .children()
        .find(|c| c.name() == "methodCall")
        .ok_or_else(|| Fault(PARSE_ERROR, "no methodCall".into()))?;
    let name = call
        .children()
        .find(|c| c.name() == "methodName")
        .map(|n| n.text().trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Fault(PARSE_ERROR, "no methodName".into()))?;
    let params = call
        .children()
        .find(|c| c.name() == "params")
        .into_iter()
        .flat_map(|p| p.children())
        .filter(|p| p.name() == "param")
        .map(|p| {
            p.children()
                .find(|c| c.name() == "value")
                .ok_or_else(|| Fault(PARSE_ERROR, "param without value".into()))
                .and_then(Value::parse)
        })
        .collect::<Result<_, _>>()?;
    Ok((name, params))
}

pub struct Rpc;

impl Module for Rpc {
    fn name(&self) -> &'static str {
        "rpc"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "query", On::Server, self);
        reg.server_feature(NS);
    }
}

#[async_trait]
impl IqHandler for Rpc {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        if req.kind != IqType::Set {
            return Err(StanzaError::bad_request().with_text("XML-RPC calls are iq set"));
        }
        let local = server.config.is_local_host(req.from.domain().as_str());
        if !local || !admin::is_admin(server, &req.from.to_bare()) {
            return Err(StanzaError::forbidden().with_text("administrators only"));
        }
        let result = match method_call(req.payload()) {
            Ok((name, params)) => {
                tracing::info!(from = %req.from, method = %name, "jabber-rpc call");
                call(server, &name, &params).await
            }
            Err(f) => Err(f),
        };
        Ok(IqReply::Payload(response(result)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        // Members in name order: JSON objects come back sorted.
        let v = Value::Struct(vec![
            (
                "list".into(),
                Value::Array(vec![
                    Value::Str("a<b".into()),
                    Value::Double(1.5),
                    Value::Nil,
                ]),
            ),
            ("n".into(), Value::Int(-3)),
            ("ok".into(), Value::Bool(true)),
        ]);
        let xml = v.to_element();
        assert_eq!(
            Value::parse(&Element::parse(&xml.to_xml()).unwrap()).unwrap(),
            v
        );
        // A bare <value>text</value> is a string; i4 is an int.
        let bare = Element::parse("<value xmlns='jabber:iq:rpc'>hi</value>").unwrap();
        assert_eq!(Value::parse(&bare).unwrap(), Value::Str("hi".into()));
        let i4 = Element::parse("<value xmlns='jabber:iq:rpc'><i4>42</i4></value>").unwrap();
        assert_eq!(Value::parse(&i4).unwrap(), Value::Int(42));
        let bad = Element::parse("<value xmlns='jabber:iq:rpc'><int>x</int></value>").unwrap();
        assert_eq!(Value::parse(&bad).unwrap_err().0, PARSE_ERROR);
        assert_eq!(Value::from_json(&v.to_json()), v);
    }

    #[test]
    fn reads_method_calls() {
        let q = Element::parse(
            "<query xmlns='jabber:iq:rpc'><methodCall><methodName>users.add</methodName>\
             <params><param><value><string>a@b</string></value></param>\
             <param><value>pw</value></param></params></methodCall></query>",
        )
        .unwrap();
        let (name, params) = method_call(&q).unwrap();
        assert_eq!(name, "users.add");
        assert_eq!(params, [Value::Str("a@b".into()), Value::Str("pw".into())]);
        let none = Element::parse("<query xmlns='jabber:iq:rpc'/>").unwrap();
        assert_eq!(method_call(&none).unwrap_err().0, PARSE_ERROR);
    }
}
