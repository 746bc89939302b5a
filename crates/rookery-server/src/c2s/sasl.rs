//! SASL negotiation for c2s (RFC 6120 §6): SCRAM-SHA-1/-256 and their -PLUS variants (RFC 5802,
//! RFC 7677, XEP-0440 channel-binding types), and PLAIN over TLS only (RFC 4616).

use super::{ReadError, Transport};
use crate::scram::{self, Hash, ScramServer};
use crate::Server;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rookery_core::{ns, BareJid, Element};
use rookery_xml::StreamEvent;
use std::time::{Duration, Instant};

/// Mechanisms to offer on this transport, best first.
pub fn mechanisms(server: &Server, t: &dyn Transport) -> Vec<&'static str> {
    let mut m = Vec::new();
    let cb = t.channel_bindings();
    if t.is_secure() && (cb.tls_exporter.is_some() || cb.tls_server_end_point.is_some()) {
        m.push("SCRAM-SHA-256-PLUS");
        m.push("SCRAM-SHA-1-PLUS");
    }
    m.push("SCRAM-SHA-256");
    m.push("SCRAM-SHA-1");
    if t.is_secure() {
        m.push("PLAIN");
    }
    let _ = server;
    m
}

/// XEP-0440: which channel-binding types this connection supports.
pub fn channel_binding_feature(t: &dyn Transport) -> Option<Element> {
    let cb = t.channel_bindings();
    let mut el = Element::new("sasl-channel-binding", "urn:xmpp:sasl-cb:0");
    if cb.tls_exporter.is_some() {
        el.push_child(
            Element::new("channel-binding", "urn:xmpp:sasl-cb:0").with_attr("type", "tls-exporter"),
        );
    }
    if cb.tls_server_end_point.is_some() {
        el.push_child(
            Element::new("channel-binding", "urn:xmpp:sasl-cb:0")
                .with_attr("type", "tls-server-end-point"),
        );
    }
    let any = el.children().next().is_some();
    any.then_some(el)
}

fn failure(condition: &str, text: Option<&str>) -> Element {
    let mut f = Element::new("failure", ns::SASL).with_child(Element::new(condition, ns::SASL));
    if let Some(t) = text {
        f.push_child(
            Element::new("text", ns::SASL)
                .with_attr("xml:lang", "en")
                .with_text(t),
        );
    }
    f
}

pub enum Outcome {
    Success(BareJid),
    /// A failure was sent; the client may try again.
    Failed,
    /// The transport broke.
    Broken(ReadError),
}

/// Runs one SASL exchange, starting from the client's `<auth/>`.
pub async fn authenticate(
    server: &Server,
    t: &mut dyn Transport,
    host: &str,
    auth: &Element,
) -> Outcome {
    let mech = auth.attr("mechanism").unwrap_or("").to_string();
    if banned(server, t.peer_ip()) {
        // Whatever the account and password: guessing from here has stopped paying.
        return locked_out(server, t, &mech).await;
    }
    let offered = mechanisms(server, t);
    if !offered.contains(&mech.as_str()) {
        server.metrics.auth("other", false);
        return send_failure(t, failure("invalid-mechanism", None)).await;
    }
    let initial = match decode(&auth.text()) {
        Some(d) => d,
        None => {
            server.metrics.auth(&mech, false);
            return send_failure(t, failure("incorrect-encoding", None)).await;
        }
    };
    // Failures count per account name too, existing or not (limits.auth_account_failures).
    let account = attempted_user(&mech, &initial).map(|u| format!("{u}@{host}"));
    let cap = server.config.limits.auth_account_failures;
    if let Some(a) = account.as_ref().filter(|_| cap > 0) {
        if server.guards.account_failures.count(a) >= cap {
            return locked_out(server, t, &mech).await;
        }
    }
    let result = match mech.as_str() {
        "PLAIN" => plain(server, host, &initial).await,
        _ => {
            let hash = if mech.starts_with("SCRAM-SHA-256") {
                Hash::Sha256
            } else {
                Hash::Sha1
            };
            let plus = mech.ends_with("-PLUS");
            let plus_offered = offered.iter().any(|m| m.ends_with("-PLUS"));
            match scram_exchange(server, t, host, hash, plus, plus_offered, initial).await {
                Ok(r) => r,
                Err(e) => return Outcome::Broken(e),
            }
        }
    };
    let result = match result {
        // A disabled account proves its password but may not sign in (RFC 6120 §6.5.1).
        Ok((user, _)) if crate::accounts::is_disabled(server, &user).await => Err((
            "account-disabled",
            Some("This account is disabled by the administrator"),
        )),
        r => r,
    };
    server.metrics.auth(&mech, result.is_ok());
    match result {
        Ok((user, server_final)) => {
            server.auth_failures.lock().unwrap().remove(&t.peer_ip());
            let ok = Element::new("success", ns::SASL)
                .with_text(server_final.map(|f| B64.encode(f)).unwrap_or_default());
            match t.send(&[ok]).await {
                Ok(()) => Outcome::Success(user),
                Err(e) => Outcome::Broken(ReadError::Io(e)),
            }
        }
        Err((cond, text)) => {
            if cond == "not-authorized" {
                if let Some(a) = account {
                    if server.guards.account_failures.hit(a.clone()) == cap {
                        tracing::warn!(account = %a, "account name locked from authenticating for a while");
                    }
                }
                penalise(server, t.peer_ip()).await;
            }
            send_failure(t, failure(cond, text)).await
        }
    }
}

/// The answer to an address or account name locked out by repeated failures.
async fn locked_out(server: &Server, t: &mut dyn Transport, mech: &str) -> Outcome {
    server.metrics.auth(mech, false);
    send_failure(
        t,
        failure(
            "temporary-auth-failure",
            Some("Too many failed attempts; try again later"),
        ),
    )
    .await
}

async fn send_failure(t: &mut dyn Transport, f: Element) -> Outcome {
    match t.send(&[f]).await {
        Ok(()) => Outcome::Failed,
        Err(e) => Outcome::Broken(ReadError::Io(e)),
    }
}

/// Failures are forgotten after this long without another.
const FAILURE_MEMORY: Duration = Duration::from_secs(300);

/// Repeated failures from one address wait longer each time (up to 5 s), slowing guessing; at
/// `limits.auth_ban_failures` the address is banned for `auth_ban_seconds`.
pub(crate) async fn penalise(server: &Server, ip: std::net::IpAddr) {
    let limits = &server.config.limits;
    let ban = Duration::from_secs(limits.auth_ban_seconds);
    let delay = {
        let mut map = server.auth_failures.lock().unwrap();
        let now = Instant::now();
        if map.len() > 10_000 {
            map.retain(|_, (_, t)| now.duration_since(*t) < FAILURE_MEMORY.max(ban));
        }
        let e = map.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) > FAILURE_MEMORY {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
        if limits.auth_ban_failures > 0 && e.0 == limits.auth_ban_failures {
            tracing::warn!(%ip, failures = e.0, ban_seconds = limits.auth_ban_seconds, "address banned from authenticating");
        }
        Duration::from_millis((100u64 << e.0.min(6)).min(5000))
    };
    tokio::time::sleep(delay).await;
}

/// Whether `ip` reached the failure limit less than `auth_ban_seconds` ago.
pub(crate) fn banned(server: &Server, ip: std::net::IpAddr) -> bool {
    let limits = &server.config.limits;
    if limits.auth_ban_failures == 0 {
        return false;
    }
    let map = server.auth_failures.lock().unwrap();
    map.get(&ip).is_some_and(|(n, last)| {
        *n >= limits.auth_ban_failures
            && last.elapsed() < Duration::from_secs(limits.auth_ban_seconds)
    })
}

/// The account name a first SASL message names (PLAIN's authcid, SCRAM's `n=`), lowercased.
fn attempted_user(mech: &str, initial: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(initial).ok()?;
    let name = if mech == "PLAIN" {
        s.split('\0').nth(1)?.to_string()
    } else {
        // After the GS2 header (channel binding flag, authzid): "n=user,r=nonce".
        let bare = s.splitn(3, ',').nth(2)?;
        let n = bare.split(',').find_map(|f| f.strip_prefix("n="))?;
        n.replace("=2C", ",").replace("=3D", "=")
    };
    (!name.is_empty()).then(|| name.to_lowercase())
}

fn decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if t.is_empty() || t == "=" {
        return Some(Vec::new());
    }
    B64.decode(t).ok()
}

type AuthResult = Result<(BareJid, Option<String>), (&'static str, Option<&'static str>)>;

fn user_jid(server: &Server, host: &str, username: &str) -> Option<BareJid> {
    crate::accounts::parse_user(&server.config, &format!("{username}@{host}")).ok()
}

async fn plain(server: &Server, host: &str, data: &[u8]) -> AuthResult {
    let s = std::str::from_utf8(data).map_err(|_| ("malformed-request", None))?;
    let mut parts = s.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(("malformed-request", None));
    };
    let user = user_jid(server, host, authcid).ok_or(("not-authorized", None))?;
    if !authzid.is_empty() && authzid != user.as_str() {
        return Err(("invalid-authzid", None));
    }
    let creds = server
        .storage
        .credentials(&user)
        .await
        .map_err(|_| ("temporary-auth-failure", None))?;
    match creds {
        Some(c) if scram::verify_password(&c, password) => Ok((user, None)),
        _ => Err(("not-authorized", None)),
    }
}

async fn read_response(t: &mut dyn Transport) -> Result<Option<Vec<u8>>, ReadError> {
    let mut events = Vec::new();
    t.read_events(&mut events).await?;
    // One SASL element per client turn; anything else is a protocol error.
    match events.into_iter().next() {
        Some(StreamEvent::Stanza(el)) if el.is("response", ns::SASL) => Ok(decode(&el.text())),
        _ => Ok(None),
    }
}

async fn scram_exchange(
    server: &Server,
    t: &mut dyn Transport,
    host: &str,
    hash: Hash,
    plus: bool,
    plus_offered: bool,
    mut initial: Vec<u8>,
) -> Result<AuthResult, ReadError> {
    if initial.is_empty() {
        t.send(&[Element::new("challenge", ns::SASL)])
            .await
            .map_err(ReadError::Io)?;
        match read_response(t).await? {
            Some(d) => initial = d,
            None => return Ok(Err(("aborted", None))),
        }
    }
    let Ok(first) = std::str::from_utf8(&initial) else {
        return Ok(Err(("malformed-request", None)));
    };
    let first = match scram::parse_client_first(first, plus, plus_offered) {
        Ok(f) => f,
        Err(scram::ScramError::BindingMismatch) => {
            return Ok(Err(("not-authorized", Some("channel binding downgrade"))))
        }
        Err(_) => return Ok(Err(("malformed-request", None))),
    };
    let Some(user) = user_jid(server, host, &first.username) else {
        return Ok(Err(("not-authorized", None)));
    };
    if let Some(a) = &first.authzid {
        if a != user.as_str() {
            return Ok(Err(("invalid-authzid", None)));
        }
    }
    let creds = match server.storage.credentials(&user).await {
        Ok(c) => c,
        Err(_) => return Ok(Err(("temporary-auth-failure", None))),
    };
    let session = match ScramServer::new(hash, first, creds.as_ref(), &t.channel_bindings()) {
        Ok(s) => s,
        Err(_) => return Ok(Err(("not-authorized", Some("unsupported channel binding")))),
    };
    let challenge =
        Element::new("challenge", ns::SASL).with_text(B64.encode(session.server_first()));
    t.send(&[challenge]).await.map_err(ReadError::Io)?;
    let Some(resp) = read_response(t).await? else {
        return Ok(Err(("aborted", None)));
    };
    let Ok(resp) = std::str::from_utf8(&resp) else {
        return Ok(Err(("malformed-request", None)));
    };
    Ok(match session.finish(resp) {
        Ok(server_final) => Ok((user, Some(server_final))),
        Err(scram::ScramError::Malformed) => Err(("malformed-request", None)),
        Err(_) => Err(("not-authorized", None)),
    })
}

#[cfg(test)]
mod tests {
    use super::attempted_user;

    #[test]
    fn the_attempted_account_is_read_from_any_mechanism() {
        assert_eq!(
            attempted_user("PLAIN", b"\0Alice\0pw").as_deref(),
            Some("alice")
        );
        assert_eq!(
            attempted_user("SCRAM-SHA-256", b"n,,n=bob,r=abc").as_deref(),
            Some("bob")
        );
        assert_eq!(
            attempted_user("SCRAM-SHA-1-PLUS", b"p=tls-exporter,,n=a=2Cb,r=x").as_deref(),
            Some("a,b")
        );
        assert_eq!(attempted_user("SCRAM-SHA-1", b"n,,r=x"), None);
        assert_eq!(attempted_user("PLAIN", b"\0\0pw"), None);
    }
}
