//! XEP-0215 External Service Discovery: the STUN/TURN (and other) services of the config, with
//! time-limited TURN credentials from a shared secret (the TURN REST API scheme that coturn's
//! `use-auth-secret` checks: username `<expiry>[:<user>]`, password
//! base64(HMAC-SHA1(secret, username))).

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, Target};
use crate::Server;
use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use rookery_core::config::{ExtdiscoOptions, ExternalService, ServiceSecret};
use rookery_core::stanza::StanzaError;
use rookery_core::Element;
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:extdisco:2";
/// Version 0.6 of the XEP, still asked for by some clients; answered the same way.
const NS_V1: &str = "urn:xmpp:extdisco:1";

pub struct ExtDisco {
    options: super::Live<ExtdiscoOptions>,
}

impl ExtDisco {
    pub fn new(options: ExtdiscoOptions) -> ExtDisco {
        ExtDisco {
            options: super::Live::new(options),
        }
    }
}

impl Module for ExtDisco {
    fn name(&self) -> &'static str {
        "extdisco"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.reload(self.clone());
        if self.options.get().services.is_empty() {
            return;
        }
        for ns in [NS, NS_V1] {
            reg.iq(ns, "services", On::Server, self.clone());
            reg.iq(ns, "credentials", On::Server, self.clone());
            reg.server_feature(ns);
        }
    }
}

/// A service as listed to one client.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    kind: String,
    transport: Option<String>,
    host: String,
    port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
    restricted: bool,
}

impl Listed {
    fn element(&self, ns: &str) -> Element {
        Element::new("service", ns)
            .with_attr("type", self.kind.clone())
            .with_opt_attr("transport", self.transport.clone())
            .with_attr("host", self.host.clone())
            .with_opt_attr("port", self.port.map(|p| p.to_string()))
            .with_opt_attr("username", self.username.clone())
            .with_opt_attr("password", self.password.clone())
            .with_opt_attr("restricted", self.restricted.then_some("1"))
    }
}

/// TURN REST API credentials valid until `expires` (Unix seconds).
pub fn turn_credentials(secret: &str, expires: u64, user: Option<&str>) -> (String, String) {
    let username = match user {
        Some(u) => format!("{expires}:{u}"),
        None => expires.to_string(),
    };
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

impl ExtDisco {
    /// Every configured service as `domain`'s users see it at time `now`.
    fn services(&self, domain: &str, now: u64) -> Vec<Listed> {
        let options = self.options.get();
        options
            .services
            .iter()
            .map(|s| listed(&options, s, domain, now))
            .collect()
    }
}

#[async_trait]
impl super::Reload for ExtDisco {
    async fn reload(&self, config: &rookery_core::config::Config) -> Vec<&'static str> {
        let new = config.modules.extdisco.clone();
        // The handlers are registered only when there are services.
        let restart = self.options.get().services.is_empty() != new.services.is_empty();
        self.options.set(new);
        if restart {
            vec!["modules.extdisco.services"]
        } else {
            Vec::new()
        }
    }
}

/// One service as `domain`'s users see it at time `now`.
fn listed(options: &ExtdiscoOptions, s: &ExternalService, domain: &str, now: u64) -> Listed {
    let mut l = Listed {
        kind: s.kind.clone(),
        transport: s.transport.clone(),
        host: s
            .host
            .clone()
            .or_else(|| options.host.clone())
            .unwrap_or_else(|| domain.to_string()),
        port: s.port.or(options.port),
        username: s.username.clone(),
        password: s.password.clone(),
        restricted: s.restricted || s.password.is_some(),
    };
    let secret = match &s.secret {
        Some(ServiceSecret::Own(secret)) => Some(secret.as_str()),
        Some(ServiceSecret::Shared(true)) => options.secret.as_deref(),
        _ => None,
    };
    if let Some(secret) = secret {
        let ttl = s.ttl_seconds.unwrap_or(options.ttl_seconds);
        let (username, password) = turn_credentials(secret, now + ttl, s.username.as_deref());
        l.username = Some(username);
        l.password = Some(password);
        l.restricted = true;
    }
    l
}

#[async_trait]
impl IqHandler for ExtDisco {
    async fn handle_iq(&self, _server: &Server, req: IqRequest) -> IqResult {
        if req.kind != IqType::Get {
            return Err(StanzaError::bad_request());
        }
        // Credentials are for this server's own users, signed in here.
        if req.session.is_none() {
            return Err(StanzaError::forbidden());
        }
        let Target::Server(domain) = &req.target else {
            return Err(StanzaError::service_unavailable());
        };
        let payload = req.payload();
        let ns = payload.ns().to_string();
        let all = self.services(domain, crate::unix_now());
        let chosen: Vec<&Listed> = if payload.name() == "services" {
            let kind = payload.attr("type");
            all.iter()
                .filter(|s| kind.is_none_or(|k| k == s.kind))
                .collect()
        } else {
            // Each requested service names its type and host, and optionally its port.
            let mut wanted = Vec::new();
            for s in payload.children().filter(|c| c.name() == "service") {
                let (Some(kind), Some(host)) = (s.attr("type"), s.attr("host")) else {
                    return Err(StanzaError::bad_request());
                };
                let port = match s.attr("port") {
                    None => None,
                    Some(p) => Some(p.parse::<u16>().map_err(|_| StanzaError::bad_request())?),
                };
                wanted.push((kind, host, port));
            }
            all.iter()
                .filter(|s| s.restricted)
                .filter(|s| {
                    wanted.iter().any(|(k, h, p)| {
                        *k == s.kind && *h == s.host && (p.is_none() || *p == s.port)
                    })
                })
                .collect()
        };
        let mut q = Element::new(payload.name(), ns.clone());
        for s in chosen {
            q.push_child(s.element(&ns));
        }
        Ok(IqReply::Payload(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_rest_credentials_match_coturn() {
        // coturn checks base64(HMAC-SHA1(static-auth-secret, username)); value from Python's hmac.
        let (u, p) = turn_credentials("north", 1_700_000_000, None);
        assert_eq!(u, "1700000000");
        assert_eq!(p, "CWyHi3zCeWqXBir9thl4m+iZPRY=");
        let (u, _) = turn_credentials("north", 1_700_000_000, Some("alice"));
        assert_eq!(u, "1700000000:alice");
    }

    #[test]
    fn prosody_test_config_at_its_frozen_clock_gives_the_recorded_credentials() {
        // scansion/extdisco.scs was recorded with the clock at 1219439344 and a TTL of a day.
        let turn = |secret| ExternalService {
            kind: "turn".into(),
            transport: Some("udp".into()),
            secret: Some(secret),
            ..Default::default()
        };
        let d = ExtDisco::new(ExtdiscoOptions {
            host: Some("default.example".into()),
            port: Some(9876),
            secret: Some("<secret>".into()),
            services: vec![
                turn(ServiceSecret::Shared(true)),
                turn(ServiceSecret::Own("foo".into())),
            ],
            ..Default::default()
        });
        let l = d.services("localhost", 1_219_439_344);
        assert_eq!(l[0].username.as_deref(), Some("1219525744"));
        assert_eq!(
            l[0].password.as_deref(),
            Some("yHYYBDN7M3mdlug0LTdJbW0GvvQ=")
        );
        assert_eq!(
            l[1].password.as_deref(),
            Some("1Uc6QfrDhIlbK97rGCUQ/cUICxs=")
        );
        assert_eq!(l[1].host, "default.example");
    }

    #[test]
    fn services_take_defaults_and_secrets() {
        let d = ExtDisco::new(ExtdiscoOptions {
            host: None,
            port: Some(3478),
            secret: Some("s3cret".into()),
            ttl_seconds: 600,
            services: vec![
                ExternalService {
                    kind: "stun".into(),
                    transport: Some("udp".into()),
                    ..Default::default()
                },
                ExternalService {
                    kind: "turn".into(),
                    transport: Some("udp".into()),
                    secret: Some(ServiceSecret::Shared(true)),
                    ..Default::default()
                },
                ExternalService {
                    kind: "turns".into(),
                    host: Some("turn.example.org".into()),
                    port: Some(5349),
                    secret: Some(ServiceSecret::Own("other".into())),
                    ttl_seconds: Some(60),
                    ..Default::default()
                },
            ],
        });
        let l = d.services("example.org", 1000);
        assert_eq!(l[0].host, "example.org");
        assert_eq!(l[0].port, Some(3478));
        assert!(!l[0].restricted && l[0].password.is_none());
        assert_eq!(l[1].username.as_deref(), Some("1600"));
        assert_eq!(
            l[1].password,
            Some(turn_credentials("s3cret", 1600, None).1)
        );
        assert!(l[1].restricted);
        assert_eq!(l[2].username.as_deref(), Some("1060"));
        assert_eq!(l[2].password, Some(turn_credentials("other", 1060, None).1));
        assert_eq!(
            l[2].element(NS).to_xml(),
            format!(
                "<service xmlns='{NS}' type='turns' host='turn.example.org' port='5349' \
                 username='1060' password='{}' restricted='1'/>",
                l[2].password.as_deref().unwrap()
            )
        );
    }
}
